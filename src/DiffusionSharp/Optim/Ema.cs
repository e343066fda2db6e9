using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Optim;

/// <summary>
/// Exponential moving average of weights with the decay warm-up of diffusers' EMAModel:
/// at optimisation step n (1-based), s = max(0, n - updateAfterStep - 1); decay = 0 when s = 0, else
/// (1 + s) / (10 + s), or 1 - (1 + s / invGamma)^-power with <c>useWarmup</c>; clamped to [minDecay, decay].
/// Update: shadow -= (1 - decay) * (shadow - param); parameters that do not require grad are copied.
/// </summary>
public sealed class Ema
{
    private readonly Tensor[] _shadow;
    private Tensor[]? _stored;

    /// <summary>Upper bound of the decay.</summary>
    public double MaxDecay { get; }

    /// <summary>Lower bound of the decay.</summary>
    public double MinDecay { get; }

    /// <summary>Steps before averaging starts (the shadow tracks the weights until then).</summary>
    public long UpdateAfterStep { get; }

    /// <summary>Whether the inv_gamma/power warm-up replaces (1 + s) / (10 + s).</summary>
    public bool UseWarmup { get; }

    /// <summary>Warm-up inverse multiplicative factor.</summary>
    public double InvGamma { get; }

    /// <summary>Warm-up exponent.</summary>
    public double Power { get; }

    /// <summary>Number of <see cref="Step"/> calls so far.</summary>
    public long OptimizationStep { get; private set; }

    /// <summary>Decay used by the last <see cref="Step"/> (NaN before the first).</summary>
    public double CurrentDecay { get; private set; } = double.NaN;

    /// <summary>The averaged weights, one per parameter, in order.</summary>
    public IReadOnlyList<Tensor> Shadow => _shadow;

    /// <summary>Starts the average at a copy of <paramref name="parameters"/>; defaults are diffusers'.</summary>
    public Ema(IReadOnlyList<Tensor> parameters, double decay = 0.9999, double minDecay = 0, long updateAfterStep = 0,
        bool useWarmup = false, double invGamma = 1, double power = 2.0 / 3.0)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(decay >= 0 && decay <= 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "decay must be in [0, 1].");
        if (!(minDecay >= 0 && minDecay <= decay)) throw new ArgumentOutOfRangeException(nameof(minDecay), minDecay, "minDecay must be in [0, decay].");
        if (updateAfterStep < 0) throw new ArgumentOutOfRangeException(nameof(updateAfterStep), updateAfterStep, "updateAfterStep must be >= 0.");
        if (!(invGamma > 0)) throw new ArgumentOutOfRangeException(nameof(invGamma), invGamma, "invGamma must be > 0.");
        if (!(power > 0)) throw new ArgumentOutOfRangeException(nameof(power), power, "power must be > 0.");
        MaxDecay = decay;
        MinDecay = minDecay;
        UpdateAfterStep = updateAfterStep;
        UseWarmup = useWarmup;
        InvGamma = invGamma;
        Power = power;
        _shadow = new Tensor[parameters.Count];
        for (int i = 0; i < parameters.Count; i++) _shadow[i] = TensorScope.OwnLike(parameters[i].Clone(), parameters[i]);
    }

    /// <summary>
    /// Exponent gamma of the power-function profile (Karras et al. 2024, Sec. 3.1): when set, the decay at step n is
    /// (1 - 1/n)^(gamma + 1), so the average weighs step i by i^(gamma+1) - (i-1)^(gamma+1), about i^gamma; the bounds and warm-up are unused.
    /// </summary>
    public double? PowerGamma { get; init; }

    /// <summary>gamma of the power-function profile whose relative standard deviation is <paramref name="sigmaRel"/>:
    /// the root gamma > -1 of sigma_rel^2 (gamma + 2)^2 (gamma + 3) = gamma + 1 (Karras et al. 2024, Eq. 3).</summary>
    public static double GammaFromSigmaRel(double sigmaRel)
    {
        if (!(sigmaRel > 0 && sigmaRel < Math.Sqrt(1.0 / 12))) throw new ArgumentOutOfRangeException(nameof(sigmaRel), sigmaRel, "sigma_rel must lie in (0, 0.2887).");
        double SigmaRel(double g) => Math.Sqrt((g + 1) / ((g + 2) * (g + 2) * (g + 3)));  // falls from 1/sqrt(12) at gamma = 0
        double lo = 0, hi = 1;
        while (SigmaRel(hi) > sigmaRel) hi *= 2;
        for (int i = 0; i < 200; i++) { double mid = 0.5 * (lo + hi); if (SigmaRel(mid) > sigmaRel) lo = mid; else hi = mid; }
        return 0.5 * (lo + hi);
    }

    /// <summary>The decay applied at 1-based optimisation step <paramref name="optimizationStep"/>.</summary>
    public double DecayAt(long optimizationStep)
    {
        if (PowerGamma is double gamma) return Math.Pow(1 - 1.0 / Math.Max(1, optimizationStep), gamma + 1);
        long s = Math.Max(0, optimizationStep - UpdateAfterStep - 1);
        if (s <= 0) return 0;
        double d = UseWarmup ? 1 - Math.Pow(1 + s / InvGamma, -Power) : (1.0 + s) / (10.0 + s);
        return Math.Max(Math.Min(d, MaxDecay), MinDecay);
    }

    /// <summary>Advances the step count and blends <paramref name="parameters"/> into the shadow weights.</summary>
    public void Step(IReadOnlyList<Tensor> parameters)
    {
        CheckMatching(parameters);
        OptimizationStep++;
        double decay = DecayAt(OptimizationStep);
        CurrentDecay = decay;
        float omd = (float)(1 - decay);
        for (int i = 0; i < _shadow.Length; i++)
        {
            var s = _shadow[i].Span;
            var p = parameters[i].Span;
            if (!parameters[i].RequiresGrad) { p.CopyTo(s); continue; }
            Blend(s, p, omd);
        }
    }

    // s -= omd * (s - p), in the same operation order at every vector width.
    private static void Blend(Span<float> s, ReadOnlySpan<float> p, float omd)
    {
        int n = s.Length, j = 0;
        ref float ps = ref MemoryMarshal.GetReference(s);
        ref float pp = ref MemoryMarshal.GetReference(p);
        if (Vector512.IsHardwareAccelerated)
        {
            var w = Vector512.Create(omd);
            for (; j <= n - 16; j += 16)
            {
                var sv = Vector512.LoadUnsafe(ref ps, (nuint)j);
                (sv - w * (sv - Vector512.LoadUnsafe(ref pp, (nuint)j))).StoreUnsafe(ref ps, (nuint)j);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var w = Vector256.Create(omd);
            for (; j <= n - 8; j += 8)
            {
                var sv = Vector256.LoadUnsafe(ref ps, (nuint)j);
                (sv - w * (sv - Vector256.LoadUnsafe(ref pp, (nuint)j))).StoreUnsafe(ref ps, (nuint)j);
            }
        }
        for (; j < n; j++) s[j] -= omd * (s[j] - p[j]);
    }

    /// <summary>Copies the averaged weights into <paramref name="parameters"/> (e.g. before sampling or saving).</summary>
    public void CopyTo(IReadOnlyList<Tensor> parameters)
    {
        CheckMatching(parameters);
        for (int i = 0; i < _shadow.Length; i++) _shadow[i].Span.CopyTo(parameters[i].Span);
    }

    /// <summary>Saves copies of <paramref name="parameters"/> so <see cref="Restore"/> can put them back after evaluating with EMA weights.</summary>
    public void Store(IReadOnlyList<Tensor> parameters)
    {
        CheckMatching(parameters);
        if (_stored != null) foreach (var t in _stored) t.Dispose();
        _stored = parameters.Select(p => TensorScope.OwnLike(p.Clone(), p)).ToArray();
    }

    /// <summary>Restores the weights saved by <see cref="Store"/>.</summary>
    public void Restore(IReadOnlyList<Tensor> parameters)
    {
        if (_stored == null) throw new InvalidOperationException("Restore() without a preceding Store().");
        CheckMatching(parameters);
        for (int i = 0; i < _stored.Length; i++) { _stored[i].Span.CopyTo(parameters[i].Span); _stored[i].Dispose(); }
        _stored = null;
    }

    /// <summary>State as named tensors (copies): <c>{prefix}shadow.{i}</c> and <c>{prefix}optimization_step</c>.</summary>
    public Dictionary<string, Tensor> StateDict(string prefix = "")
    {
        if (OptimizationStep > (1L << 24)) throw new InvalidOperationException($"EMA step {OptimizationStep} cannot be stored exactly as float32.");
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal) { [$"{prefix}optimization_step"] = Tensor.Scalar(OptimizationStep) };
        for (int i = 0; i < _shadow.Length; i++) d[$"{prefix}shadow.{i}"] = _shadow[i].Clone();
        return d;
    }

    /// <summary>Restores state written by <see cref="StateDict"/>; throws <see cref="InvalidDataException"/> on missing or mis-shaped entries.</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(state);
        if (!state.TryGetValue($"{prefix}optimization_step", out var st) || st.Size != 1)
            throw new InvalidDataException($"EMA state needs a one-element '{prefix}optimization_step'.");
        float sv = st.Item();
        if (!(sv >= 0) || sv != MathF.Floor(sv)) throw new InvalidDataException($"'{prefix}optimization_step' must be a non-negative integer, got {sv}.");
        for (int i = 0; i < _shadow.Length; i++)
        {
            if (!state.TryGetValue($"{prefix}shadow.{i}", out var s))
                throw new InvalidDataException($"EMA state lacks '{prefix}shadow.{i}' (expected {_shadow.Length} shadow tensors).");
            if (s.Shape != _shadow[i].Shape)
                throw new InvalidDataException($"'{prefix}shadow.{i}' has shape {s.Shape}, expected {_shadow[i].Shape}.");
        }
        if (state.ContainsKey($"{prefix}shadow.{_shadow.Length}"))
            throw new InvalidDataException($"EMA state has more than the {_shadow.Length} shadow tensors expected.");
        for (int i = 0; i < _shadow.Length; i++) state[$"{prefix}shadow.{i}"].Span.CopyTo(_shadow[i].Span);
        OptimizationStep = (long)sv;
    }

    private void CheckMatching(IReadOnlyList<Tensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (parameters.Count != _shadow.Length)
            throw new ArgumentException($"EMA holds {_shadow.Length} tensors but {parameters.Count} parameters were given.");
        for (int i = 0; i < _shadow.Length; i++)
            if (parameters[i].Shape != _shadow[i].Shape)
                throw new ArgumentException($"Parameter {i} has shape {parameters[i].Shape} but its EMA shadow has {_shadow[i].Shape}.");
    }
}
