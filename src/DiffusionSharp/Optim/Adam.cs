using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Optim;

/// <summary>
/// Adam (Kingma &amp; Ba 2015) with PyTorch's torch.optim.Adam semantics: L2 weight decay added to the gradient,
/// per-parameter step counts, step_size = lr / (1 - beta1^t), denom = sqrt(v) / sqrt(1 - beta2^t) + eps.
/// </summary>
public class Adam : Optimizer
{
    private readonly Tensor?[] _expAvg;
    private readonly Tensor?[] _expAvgSq;
    private readonly long[] _steps;

    /// <summary>First-moment decay.</summary>
    public double Beta1 { get; }

    /// <summary>Second-moment decay.</summary>
    public double Beta2 { get; }

    /// <summary>Added to the bias-corrected root second moment.</summary>
    public double Eps { get; }

    /// <summary>Weight decay coefficient (L2 in Adam, decoupled in AdamW).</summary>
    public double WeightDecay { get; set; }

    /// <summary>Whether decay shrinks the weights directly (AdamW) instead of adding to the gradient.</summary>
    protected virtual bool DecoupledWeightDecay => false;

    /// <summary>Creates the optimizer; defaults are PyTorch's (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no decay).</summary>
    public Adam(IReadOnlyList<Tensor> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 0)
        : base(parameters, lr)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "beta1 must be in [0, 1).");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "beta2 must be in [0, 1).");
        if (!(eps >= 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be >= 0.");
        if (!(weightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight decay must be >= 0.");
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        _expAvg = new Tensor?[Parameters.Count];
        _expAvgSq = new Tensor?[Parameters.Count];
        _steps = new long[Parameters.Count];
    }

    /// <summary>Steps taken by parameter <paramref name="index"/> (parameters without a gradient are not stepped).</summary>
    public long StepOf(int index) => _steps[index];

    /// <summary>First moment of parameter <paramref name="index"/> (null before its first step).</summary>
    public Tensor? ExpAvg(int index) => _expAvg[index];

    /// <summary>Second moment of parameter <paramref name="index"/> (null before its first step).</summary>
    public Tensor? ExpAvgSq(int index) => _expAvgSq[index];

    /// <inheritdoc/>
    public override void Step()
    {
        double lr = LearningRate, wd = WeightDecay;
        for (int i = 0; i < Parameters.Count; i++)
        {
            var p = Parameters[i];
            var g = p.Grad;
            if (g == null) continue;
            if (g.Shape != p.Shape) throw new InvalidOperationException($"Gradient {g.Shape} does not match {Describe(i)}.");
            _expAvg[i] ??= TensorScope.OwnLike(Tensor.Zeros(p.Shape), p);  // moments live as long as the parameter
            _expAvgSq[i] ??= TensorScope.OwnLike(Tensor.Zeros(p.Shape), p);
            long t = ++_steps[i];
            // Scalars in double then rounded to float, as PyTorch passes Python floats to float32 kernels.
            double bc1 = 1 - Math.Pow(Beta1, t);
            double bc2 = 1 - Math.Pow(Beta2, t);
            var k = new AdamCoefficients
            {
                Beta1 = (float)Beta1,
                OneMinusBeta1 = (float)(1 - Beta1),
                Beta2 = (float)Beta2,
                OneMinusBeta2 = (float)(1 - Beta2),
                NegStepSize = (float)-(lr / bc1),
                Bc2Sqrt = (float)Math.Sqrt(bc2),
                Eps = (float)Eps,
                L2 = DecoupledWeightDecay ? 0f : (float)wd,
                Shrink = DecoupledWeightDecay ? (float)(1 - lr * wd) : 1f,
            };
            var m = _expAvg[i]!;
            var v = _expAvgSq[i]!;
            Threading.For(p.Size, 1 << 15, (s, e) => AdamKernel.Update(
                p.Span[s..e], g.Span[s..e], m.Span[s..e], v.Span[s..e], k, DecoupledWeightDecay && wd != 0, !DecoupledWeightDecay && wd != 0));
        }
    }

    /// <inheritdoc/>
    /// <remarks>Names: <c>{prefix}{i}.step</c> (scalar), <c>{prefix}{i}.exp_avg</c>, <c>{prefix}{i}.exp_avg_sq</c> for each stepped parameter i.</remarks>
    public override Dictionary<string, Tensor> StateDict(string prefix = "")
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        for (int i = 0; i < Parameters.Count; i++)
        {
            if (_expAvg[i] == null) continue;
            if (_steps[i] > (1L << 24)) throw new InvalidOperationException($"Step {_steps[i]} of {Describe(i)} cannot be stored exactly as float32.");
            d[$"{prefix}{i}.step"] = Tensor.Scalar(_steps[i]);
            d[$"{prefix}{i}.exp_avg"] = _expAvg[i]!.Clone();
            d[$"{prefix}{i}.exp_avg_sq"] = _expAvgSq[i]!.Clone();
        }
        return d;
    }

    /// <inheritdoc/>
    public override void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(state);
        var steps = new long[Parameters.Count];
        var m = new Tensor?[Parameters.Count];
        var v = new Tensor?[Parameters.Count];
        for (int i = 0; i < Parameters.Count; i++)
        {
            bool hasStep = state.TryGetValue($"{prefix}{i}.step", out var st);
            bool hasM = state.TryGetValue($"{prefix}{i}.exp_avg", out var mi);
            bool hasV = state.TryGetValue($"{prefix}{i}.exp_avg_sq", out var vi);
            if (!hasStep && !hasM && !hasV) continue;
            if (!(hasStep && hasM && hasV))
                throw new InvalidDataException($"Optimizer state for {Describe(i)} is incomplete: needs '{prefix}{i}.step', '.exp_avg' and '.exp_avg_sq'.");
            if (st!.Size != 1) throw new InvalidDataException($"'{prefix}{i}.step' must hold one value, got shape {st.Shape}.");
            float sv = st.Item();
            if (!(sv >= 0) || sv != MathF.Floor(sv)) throw new InvalidDataException($"'{prefix}{i}.step' must be a non-negative integer, got {sv}.");
            if (mi!.Shape != Parameters[i].Shape) throw new InvalidDataException($"'{prefix}{i}.exp_avg' has shape {mi.Shape} but {Describe(i)}.");
            if (vi!.Shape != Parameters[i].Shape) throw new InvalidDataException($"'{prefix}{i}.exp_avg_sq' has shape {vi.Shape} but {Describe(i)}.");
            steps[i] = (long)sv;
            m[i] = TensorScope.OwnLike(mi.Clone(), Parameters[i]);
            v[i] = TensorScope.OwnLike(vi.Clone(), Parameters[i]);
        }
        foreach (var k in state.Keys)
            if (k.StartsWith(prefix, StringComparison.Ordinal) && ParseIndex(k.AsSpan(prefix.Length)) is int idx && idx >= Parameters.Count)
                throw new InvalidDataException($"Optimizer state entry '{k}' refers to parameter {idx}, but there are {Parameters.Count}.");
        for (int i = 0; i < Parameters.Count; i++)
        {
            _expAvg[i]?.Dispose();
            _expAvgSq[i]?.Dispose();
            _expAvg[i] = m[i];
            _expAvgSq[i] = v[i];
            _steps[i] = steps[i];
        }
    }

    private static int? ParseIndex(ReadOnlySpan<char> rest)
    {
        int dot = rest.IndexOf('.');
        if (dot <= 0) return null;
        var tail = rest[(dot + 1)..];
        if (!(tail.SequenceEqual("step") || tail.SequenceEqual("exp_avg") || tail.SequenceEqual("exp_avg_sq"))) return null;
        return int.TryParse(rest[..dot], System.Globalization.NumberStyles.None, null, out int i) ? i : null;
    }
}

/// <summary>
/// AdamW (Loshchilov &amp; Hutter 2019) with PyTorch's torch.optim.AdamW semantics: decoupled decay p *= 1 - lr*wd before the Adam update.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>Creates the optimizer; defaults are PyTorch's (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2).</summary>
    public AdamW(IReadOnlyList<Tensor> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weightDecay = 1e-2)
        : base(parameters, lr, beta1, beta2, eps, weightDecay)
    {
    }

    /// <inheritdoc/>
    protected override bool DecoupledWeightDecay => true;
}

/// <summary>Per-step float32 scalars of the Adam update.</summary>
internal struct AdamCoefficients
{
    public float Beta1, OneMinusBeta1, Beta2, OneMinusBeta2, NegStepSize, Bc2Sqrt, Eps, L2, Shrink;
}

/// <summary>The fused Adam/AdamW element update, one pass over p, g, m, v.</summary>
internal static class AdamKernel
{
    // Mirrors PyTorch's op sequence: g += wd*p; p *= shrink; m = m*b1 + (1-b1)*g (fused, like its vectorised add);
    // v = v*b2 + ((1-b2)*g)*g; p += (-step_size*m) / (sqrt(v)/sqrt(bc2) + eps). Every width uses the same FMAs, so results do not depend on it.
    public static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in AdamCoefficients k, bool shrink, bool l2)
    {
        int n = p.Length, i = 0;
        ref float pp = ref MemoryMarshal.GetReference(p);
        ref float pg = ref MemoryMarshal.GetReference(g);
        ref float pm = ref MemoryMarshal.GetReference(m);
        ref float pv = ref MemoryMarshal.GetReference(v);
        if (Vector512.IsHardwareAccelerated)
        {
            var b1 = Vector512.Create(k.Beta1); var omb1 = Vector512.Create(k.OneMinusBeta1);
            var b2 = Vector512.Create(k.Beta2); var omb2 = Vector512.Create(k.OneMinusBeta2);
            var nss = Vector512.Create(k.NegStepSize); var bc2 = Vector512.Create(k.Bc2Sqrt);
            var eps = Vector512.Create(k.Eps); var wd = Vector512.Create(k.L2); var sh = Vector512.Create(k.Shrink);
            for (; i <= n - 16; i += 16)
            {
                var pi = Vector512.LoadUnsafe(ref pp, (nuint)i);
                var gi = Vector512.LoadUnsafe(ref pg, (nuint)i);
                if (l2) gi = Vector512.FusedMultiplyAdd(pi, wd, gi);
                if (shrink) pi *= sh;
                var mi = Vector512.FusedMultiplyAdd(gi, omb1, Vector512.LoadUnsafe(ref pm, (nuint)i) * b1);
                var vi = Vector512.LoadUnsafe(ref pv, (nuint)i) * b2 + omb2 * gi * gi;
                var denom = Vector512.Sqrt(vi) / bc2 + eps;
                pi += nss * mi / denom;
                pi.StoreUnsafe(ref pp, (nuint)i);
                mi.StoreUnsafe(ref pm, (nuint)i);
                vi.StoreUnsafe(ref pv, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var b1 = Vector256.Create(k.Beta1); var omb1 = Vector256.Create(k.OneMinusBeta1);
            var b2 = Vector256.Create(k.Beta2); var omb2 = Vector256.Create(k.OneMinusBeta2);
            var nss = Vector256.Create(k.NegStepSize); var bc2 = Vector256.Create(k.Bc2Sqrt);
            var eps = Vector256.Create(k.Eps); var wd = Vector256.Create(k.L2); var sh = Vector256.Create(k.Shrink);
            for (; i <= n - 8; i += 8)
            {
                var pi = Vector256.LoadUnsafe(ref pp, (nuint)i);
                var gi = Vector256.LoadUnsafe(ref pg, (nuint)i);
                if (l2) gi = Vector256.FusedMultiplyAdd(pi, wd, gi);
                if (shrink) pi *= sh;
                var mi = Vector256.FusedMultiplyAdd(gi, omb1, Vector256.LoadUnsafe(ref pm, (nuint)i) * b1);
                var vi = Vector256.LoadUnsafe(ref pv, (nuint)i) * b2 + omb2 * gi * gi;
                var denom = Vector256.Sqrt(vi) / bc2 + eps;
                pi += nss * mi / denom;
                pi.StoreUnsafe(ref pp, (nuint)i);
                mi.StoreUnsafe(ref pm, (nuint)i);
                vi.StoreUnsafe(ref pv, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float pi = Unsafe.Add(ref pp, i), gi = Unsafe.Add(ref pg, i);
            if (l2) gi = MathF.FusedMultiplyAdd(pi, k.L2, gi);
            if (shrink) pi *= k.Shrink;
            float mi = MathF.FusedMultiplyAdd(gi, k.OneMinusBeta1, Unsafe.Add(ref pm, i) * k.Beta1);
            float vi = Unsafe.Add(ref pv, i) * k.Beta2 + k.OneMinusBeta2 * gi * gi;
            float denom = MathF.Sqrt(vi) / k.Bc2Sqrt + k.Eps;
            pi += k.NegStepSize * mi / denom;
            Unsafe.Add(ref pp, i) = pi;
            Unsafe.Add(ref pm, i) = mi;
            Unsafe.Add(ref pv, i) = vi;
        }
    }
}
