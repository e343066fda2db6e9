using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Multistep DPM-Solver (Lu et al. 2022) and DPM-Solver++ (Lu et al. 2022b, Algorithm 2) of orders 1-3, with the SDE
/// variant sde-dpmsolver++, midpoint or heun second-order updates, Karras / exponential / Lu-lambda sigmas and
/// lower-order final steps, following diffusers' DPMSolverMultistepScheduler.
/// </summary>
public sealed class DPMSolverMultistepScheduler : Scheduler
{
    private readonly double[] _trainSigmas, _trainLogSigmas;
    private double[] _sigmas = Array.Empty<double>();
    private readonly Tensor?[] _modelOutputs;
    private int _lowerOrderNums;

    /// <summary>Builds the scheduler from a parsed config (missing keys take diffusers' defaults).</summary>
    public DPMSolverMultistepScheduler(SchedulerConfig config) : this(config, config.Bind<DpmSolverOptions>()) { }

    private DPMSolverMultistepScheduler(SchedulerConfig config, DpmSolverOptions options) : base(config, options)
    {
        Settings = options;
        (_trainSigmas, _trainLogSigmas) = TrainingSigmaTables();
        _modelOutputs = new Tensor?[Settings.SolverOrder];
        TimestepsArr = AllTrainTimesteps();
    }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static DPMSolverMultistepScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <summary>The typed settings.</summary>
    public DpmSolverOptions Settings { get; }

    /// <summary>VE noise level per step plus the final one (float32 values).</summary>
    public IReadOnlyList<double> Sigmas => _sigmas;

    /// <inheritdoc/>
    public override double InitNoiseSigma => 1.0;

    /// <inheritdoc/>
    public override void SetTimesteps(int numInferenceSteps)
    {
        int T = NumTrainTimesteps;
        // lambda_t = log(alpha_t / sigma_t) decreases with t; skip the tail below lambda_min_clipped
        int clipped = 0;
        for (int i = T - 1; i >= 0; i--)
        {
            float ac = (float)AlphasCumprodF[i];
            float lam = MathF.Log(MathF.Sqrt(ac)) - MathF.Log(MathF.Sqrt(1f - ac));
            if (lam < Settings.LambdaMinClipped) clipped++; else break;
        }
        int last = T - clipped;
        double[] ts;
        switch (Settings.Spacing)
        {
            case TimestepSpacingKind.Linspace:
            {
                var l = BetaSchedules.Linspace(0, last - 1, numInferenceSteps + 1);
                ts = new double[numInferenceSteps];
                for (int i = 0; i < numInferenceSteps; i++) ts[i] = Math.Round(l[numInferenceSteps - i], MidpointRounding.ToEven);
                break;
            }
            case TimestepSpacingKind.Leading:
            {
                int ratio = last / (numInferenceSteps + 1);
                ts = new double[numInferenceSteps];
                for (int i = 0; i < numInferenceSteps; i++) ts[i] = (numInferenceSteps - i) * ratio + Settings.StepsOffset;
                break;
            }
            default:
                ts = TimestepSpacing.Trailing(T, numInferenceSteps, last);
                break;
        }

        double[] sigmas;
        if (Settings.UseKarrasSigmas || Settings.UseExponentialSigmas || Settings.UseLuLambdas)
        {
            double lo = _trainSigmas[0], hi = _trainSigmas[T - 1];
            sigmas = Settings.UseKarrasSigmas ? SigmaSchedules.Karras(numInferenceSteps, lo, hi, 7.0, appendZero: false)
                : SigmaSchedules.Exponential(numInferenceSteps, lo, hi, appendZero: false);
            ts = sigmas.Select(s => Math.Round(SigmaSchedules.SigmaToT(s, _trainLogSigmas), MidpointRounding.ToEven)).ToArray();
        }
        else sigmas = ts.Select(t => SigmaSchedules.InterpOnIndex(t, _trainSigmas)).ToArray();
        // rounding repeats timesteps once steps approach T; a repeated sigma gives h = 0 and a 0/0 in the multistep update
        var seen = new HashSet<double>();
        var keep = Enumerable.Range(0, ts.Length).Where(i => seen.Add(ts[i])).ToArray();
        ts = keep.Select(i => ts[i]).ToArray();
        sigmas = keep.Select(i => sigmas[i]).ToArray();

        double final = Settings.FinalSigmasType == FinalSigmasKind.Zero ? 0.0 : _trainSigmas[0];
        _sigmas = sigmas.Append(final).Select(s => (double)(float)s).ToArray();
        TimestepsArr = ts;
        NumInferenceSteps = ts.Length;
        ResetState();
    }

    private void ResetState()
    {
        for (int i = 0; i < _modelOutputs.Length; i++) { _modelOutputs[i]?.Dispose(); _modelOutputs[i] = null; }
        _lowerOrderNums = 0;
        ResetStepIndex();
    }

    /// <inheritdoc/>
    private protected override bool AbsentTimestepIsLast => true;

    // alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t: VE sigma back to the VP pair
    private static void AlphaSigma(float sigma, out float alpha, out float sigmaT)
    {
        alpha = 1f / MathF.Sqrt(sigma * sigma + 1f);
        sigmaT = sigma * alpha;
    }

    /// <inheritdoc/>
    public override SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null)
    {
        int idx = CurrentIndex(timestep);
        int n = TimestepsArr.Length;
        bool lowerOrderFinal = idx == n - 1 && (Settings.EulerAtFinal || (Settings.LowerOrderFinal && n < 15) || Settings.FinalSigmasType == FinalSigmasKind.Zero);
        bool lowerOrderSecond = idx == n - 2 && Settings.LowerOrderFinal && n < 15;

        var converted = ConvertModelOutput(modelOutput, sample, idx);
        _modelOutputs[0]?.Dispose();
        for (int i = 0; i < Settings.SolverOrder - 1; i++) _modelOutputs[i] = _modelOutputs[i + 1];
        _modelOutputs[Settings.SolverOrder - 1] = converted;

        Tensor? z = null;
        bool ownedNoise = false;
        if (Settings.Stochastic) z = DrawNoise(noise, generator, sample, out ownedNoise);

        Tensor prev;
        if (Settings.SolverOrder == 1 || _lowerOrderNums < 1 || lowerOrderFinal) prev = FirstOrder(converted, sample, z, idx);
        else if (Settings.SolverOrder == 2 || _lowerOrderNums < 2 || lowerOrderSecond) prev = SecondOrder(sample, z, idx);
        else prev = ThirdOrder(sample, idx);
        if (ownedNoise) z!.Dispose();

        if (_lowerOrderNums < Settings.SolverOrder) _lowerOrderNums++;
        Advance();
        return new SchedulerStepOutput(prev, PredictedX0(converted, sample, idx));
    }

    private Tensor PredictedX0(Tensor converted, Tensor sample, int idx)
    {
        if (Settings.DataPrediction) return converted.Clone();
        AlphaSigma((float)_sigmas[idx], out float a, out float s);
        return PredictionType.Epsilon.ToX0(converted, sample, a, s);
    }

    /// <summary>The data prediction x0 (dpmsolver++) or the noise prediction (dpmsolver) from the raw model output.</summary>
    private Tensor ConvertModelOutput(Tensor modelOutput, Tensor sample, int idx)
    {
        Tensor m = modelOutput;
        if (Settings.VarianceType is VarianceKind.Learned or VarianceKind.LearnedRange && modelOutput.Rank >= 2 && sample.Rank >= 2 && modelOutput.Dim(1) == 2 * sample.Dim(1))
            m = modelOutput.Narrow(1, 0, sample.Dim(1));
        CheckSameShape(m, sample, "model output");
        AlphaSigma((float)_sigmas[idx], out float a, out float s);
        Tensor y;
        if (Settings.DataPrediction) ProcessX0(y = PredictionType.ToX0(m, sample, a, s));
        else if (!Settings.Thresholding) y = PredictionType.ToEps(m, sample, a, s);
        else
        {
            using var eps = PredictionType.ToEps(m, sample, a, s);
            using var x0 = PredictionType.Epsilon.ToX0(eps, sample, a, s);
            ProcessX0(x0);
            y = PredictionType.Sample.ToEps(x0, sample, a, s);
        }
        if (!ReferenceEquals(m, modelOutput)) m.Dispose();
        return y;
    }

    private void Lambdas(int idx, out float alphaT, out float sigmaT, out float alphaS0, out float sigmaS0, out float h)
    {
        AlphaSigma((float)_sigmas[idx + 1], out alphaT, out sigmaT);
        AlphaSigma((float)_sigmas[idx], out alphaS0, out sigmaS0);
        float lambdaT = MathF.Log(alphaT) - MathF.Log(sigmaT);
        float lambdaS = MathF.Log(alphaS0) - MathF.Log(sigmaS0);
        h = lambdaT - lambdaS;
    }

    private float LambdaAt(int idx)
    {
        AlphaSigma((float)_sigmas[idx], out float a, out float s);
        return MathF.Log(a) - MathF.Log(s);
    }

    // sum_k c_k t_k elementwise, accumulated left to right in float32 (diffusers' order of operations)
    private static Tensor Combine(params ReadOnlySpan<(float C, Tensor T)> terms)
    {
        var y = Tensor.Empty(terms[0].T.Shape);
        var o = y.Span;
        for (int k = 0; k < terms.Length; k++)
        {
            float c = terms[k].C;
            ReadOnlySpan<float> t = terms[k].T.Span;
            if (k == 0) for (int i = 0; i < o.Length; i++) o[i] = c * t[i];
            else for (int i = 0; i < o.Length; i++) o[i] += c * t[i];
        }
        return y;
    }

    // First-order update = DDIM in lambda time (Eq. 5 of Lu et al. 2022b for ++).
    private Tensor FirstOrder(Tensor m0, Tensor sample, Tensor? noise, int idx)
    {
        Lambdas(idx, out float alphaT, out float sigmaT, out float alphaS, out float sigmaS, out float h);
        return Settings.Algorithm switch
        {
            DpmAlgorithm.DpmSolverPlusPlus => Combine((sigmaT / sigmaS, sample), (-(alphaT * (MathF.Exp(-h) - 1f)), m0)),
            DpmAlgorithm.DpmSolver => Combine((alphaT / alphaS, sample), (-(sigmaT * (MathF.Exp(h) - 1f)), m0)),
            DpmAlgorithm.SdeDpmSolverPlusPlus => Combine((sigmaT / sigmaS * MathF.Exp(-h), sample), (alphaT * (1f - MathF.Exp(-2f * h)), m0),
                (sigmaT * MathF.Sqrt(1f - MathF.Exp(-2f * h)), noise!)),
            _ => Combine((alphaT / alphaS, sample), (-(2f * (sigmaT * (MathF.Exp(h) - 1f))), m0), (sigmaT * MathF.Sqrt(MathF.Exp(2f * h) - 1f), noise!)),
        };
    }

    // Multistep second order (Algorithm 2 of Lu et al. 2022b): D1 = (m0 - m1) / r0 estimates the derivative in lambda.
    private Tensor SecondOrder(Tensor sample, Tensor? noise, int idx)
    {
        Lambdas(idx, out float alphaT, out float sigmaT, out float alphaS, out float sigmaS, out float h);
        float r0 = (LambdaAt(idx) - LambdaAt(idx - 1)) / h, invR0 = 1f / r0;
        var m0 = _modelOutputs[Settings.SolverOrder - 1]!;
        ReadOnlySpan<float> a = m0.Span, b = _modelOutputs[Settings.SolverOrder - 2]!.Span;
        using var d1 = Tensor.Empty(sample.Shape);
        var d1s = d1.Span;
        for (int i = 0; i < d1s.Length; i++) d1s[i] = invR0 * (a[i] - b[i]);
        float emh = MathF.Exp(-h), eh = MathF.Exp(h), c1, c2, c3, c4 = 0f;
        bool midpoint = Settings.Solver == DpmSolverType.Midpoint;
        switch (Settings.Algorithm)
        {
            case DpmAlgorithm.DpmSolverPlusPlus:  // x = c1 x + c2 D0 + c3 D1
                c1 = sigmaT / sigmaS; c2 = -(alphaT * (emh - 1f));
                c3 = midpoint ? -(0.5f * (alphaT * (emh - 1f))) : alphaT * ((emh - 1f) / h + 1f);
                break;
            case DpmAlgorithm.DpmSolver:
                c1 = alphaT / alphaS; c2 = -(sigmaT * (eh - 1f));
                c3 = -(midpoint ? 0.5f * (sigmaT * (eh - 1f)) : sigmaT * ((eh - 1f) / h - 1f));
                break;
            case DpmAlgorithm.SdeDpmSolverPlusPlus:
            {
                float e2 = MathF.Exp(-2f * h);
                c1 = sigmaT / sigmaS * emh; c2 = alphaT * (1f - e2);
                c3 = midpoint ? 0.5f * c2 : alphaT * ((1f - e2) / (-2f * h) + 1f);
                c4 = sigmaT * MathF.Sqrt(1f - e2);
                break;
            }
            default:
                c1 = alphaT / alphaS; c2 = -(2f * (sigmaT * (eh - 1f)));
                c3 = -(midpoint ? sigmaT * (eh - 1f) : 2f * (sigmaT * ((eh - 1f) / h - 1f)));
                c4 = sigmaT * MathF.Sqrt(MathF.Exp(2f * h) - 1f);
                break;
        }
        return noise == null ? Combine((c1, sample), (c2, m0), (c3, d1)) : Combine((c1, sample), (c2, m0), (c3, d1), (c4, noise));
    }

    // Multistep third order (Lu et al. 2022, Sec. 3.3 / Lu et al. 2022b, Appendix).
    private Tensor ThirdOrder(Tensor sample, int idx)
    {
        Lambdas(idx, out float alphaT, out float sigmaT, out float alphaS, out float sigmaS, out float h);
        float l0 = LambdaAt(idx), l1 = LambdaAt(idx - 1), l2 = LambdaAt(idx - 2);
        float r0 = (l0 - l1) / h, r1 = (l1 - l2) / h;
        float i0 = 1f / r0, i1 = 1f / r1, k = r0 / (r0 + r1), k2 = 1f / (r0 + r1);
        var m0 = _modelOutputs[Settings.SolverOrder - 1]!;
        ReadOnlySpan<float> a = m0.Span, b = _modelOutputs[Settings.SolverOrder - 2]!.Span, c = _modelOutputs[Settings.SolverOrder - 3]!.Span;
        using var d1 = Tensor.Empty(sample.Shape);
        using var d2 = Tensor.Empty(sample.Shape);
        Span<float> d1s = d1.Span, d2s = d2.Span;
        for (int i = 0; i < d1s.Length; i++)
        {
            float d10 = i0 * (a[i] - b[i]), d11 = i1 * (b[i] - c[i]);
            d1s[i] = d10 + k * (d10 - d11);
            d2s[i] = k2 * (d10 - d11);
        }
        if (Settings.Algorithm == DpmAlgorithm.DpmSolverPlusPlus)
        {
            float emh = MathF.Exp(-h);
            return Combine((sigmaT / sigmaS, sample), (-(alphaT * (emh - 1f)), m0), (alphaT * ((emh - 1f) / h + 1f), d1),
                (-(alphaT * ((emh - 1f + h) / (h * h) - 0.5f)), d2));
        }
        float eh = MathF.Exp(h);
        return Combine((alphaT / alphaS, sample), (-(sigmaT * (eh - 1f)), m0), (-(sigmaT * ((eh - 1f) / h - 1f)), d1),
            (-(sigmaT * ((eh - 1f - h) / (h * h) - 0.5f)), d2));
    }
}
