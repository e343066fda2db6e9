using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Denoising diffusion implicit models (Song et al. 2021), Eq. 12, with diffusers' options (eta, spacing, steps_offset,
/// set_alpha_to_one, clip_sample / thresholding). eta = 0 is deterministic; eta = 1 matches DDPM's posterior variance.
/// </summary>
public sealed class DDIMScheduler : Scheduler
{
    private readonly float _finalAlphaCumprod;

    /// <summary>Builds the scheduler from a parsed config (missing keys take diffusers' defaults).</summary>
    public DDIMScheduler(SchedulerConfig config) : this(config, config.Bind<DdimOptions>()) { }

    private DDIMScheduler(SchedulerConfig config, DdimOptions options) : base(config, options)
    {
        Settings = options;
        _finalAlphaCumprod = SetAlphaToOne ? 1f : (float)AlphasCumprodF[0];
        TimestepsArr = AllTrainTimesteps();
    }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static DDIMScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <summary>The typed settings.</summary>
    public DdimOptions Settings { get; }

    /// <summary>Whether predicted x0 is clipped.</summary>
    public bool ClipSample => Settings.ClipSample;

    /// <summary>Clipping bound for predicted x0.</summary>
    public double ClipSampleRange => Settings.ClipSampleRange;

    /// <summary>Whether the step past t = 0 uses alpha_bar = 1 (else alpha_bar_0).</summary>
    public bool SetAlphaToOne => Settings.SetAlphaToOne;

    /// <summary>Whether dynamic thresholding replaces clipping.</summary>
    public bool Thresholding => Settings.Thresholding;

    /// <summary>Quantile of |x0| used by dynamic thresholding.</summary>
    public double DynamicThresholdingRatio => Settings.DynamicThresholdingRatio;

    /// <summary>Upper bound of the dynamic threshold.</summary>
    public double SampleMaxValue => Settings.SampleMaxValue;

    /// <summary>Noise weight eta used by <see cref="Step(Tensor, double, Tensor, Tensor?, Generator?)"/> (0 = deterministic DDIM).</summary>
    public double Eta { get; set; }

    /// <summary>Whether the direction term re-derives epsilon from the clipped x0.</summary>
    public bool UseClippedModelOutput { get; set; }

    /// <inheritdoc/>
    public override double InitNoiseSigma => 1.0;

    /// <inheritdoc/>
    public override void SetTimesteps(int numInferenceSteps)
    {
        TimestepsArr = SpacedTimesteps(numInferenceSteps, round: true);
        NumInferenceSteps = numInferenceSteps;
    }

    /// <summary>Variance sigma_t^2 / eta^2 of Eq. 16 of Song et al. 2021 between <paramref name="t"/> and <paramref name="prevT"/>.</summary>
    public double GetVariance(int t, int prevT)
    {
        float apt = (float)AlphasCumprodF[CheckTrainT(t)];
        float aptp = prevT >= 0 ? (float)AlphasCumprodF[prevT] : _finalAlphaCumprod;
        return Variance(apt, aptp);
    }

    private static float Variance(float apt, float aptp) => (1f - aptp) / (1f - apt) * (1f - apt / aptp);

    /// <inheritdoc/>
    public override SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null)
        => Step(modelOutput, timestep, sample, Eta, UseClippedModelOutput, noise, generator);

    /// <summary>One DDIM step with an explicit <paramref name="eta"/>; <paramref name="noise"/> is the variance noise.</summary>
    public SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, double eta, bool useClippedModelOutput,
        Tensor? noise = null, Generator? generator = null)
    {
        RequireTimesteps();
        CheckSameShape(modelOutput, sample, "model output");
        int t = (int)timestep;
        if (t != timestep) throw new ArgumentException($"DDIMScheduler needs an integer timestep, got {timestep}.");
        int prevT = t - NumTrainTimesteps / NumInferenceSteps;  // diffusers' rule for every spacing
        float apt = (float)AlphasCumprodF[CheckTrainT(t)];
        float aptp = prevT >= 0 ? (float)AlphasCumprodF[prevT] : _finalAlphaCumprod;
        float bpt = 1f - apt;
        float sa = MathF.Sqrt(apt), sb = MathF.Sqrt(bpt);

        int n = sample.Size;
        var x0 = Tensor.Empty(sample.Shape);
        var epsT = Tensor.Empty(sample.Shape);
        ReadOnlySpan<float> m = modelOutput.Span, s = sample.Span;
        Span<float> p = x0.Span, e = epsT.Span;
        switch (PredictionType)
        {
            case PredictionType.Epsilon:
                for (int i = 0; i < n; i++) { p[i] = (s[i] - sb * m[i]) / sa; e[i] = m[i]; }
                break;
            case PredictionType.Sample:
                for (int i = 0; i < n; i++) { p[i] = m[i]; e[i] = (s[i] - sa * m[i]) / sb; }
                break;
            default:
                for (int i = 0; i < n; i++) { p[i] = sa * s[i] - sb * m[i]; e[i] = sa * m[i] + sb * s[i]; }
                break;
        }
        if (Thresholding) DynamicThreshold(x0, DynamicThresholdingRatio, SampleMaxValue);
        else if (ClipSample) ClampInPlace(p, (float)ClipSampleRange);

        float variance = Variance(apt, aptp);
        float std = (float)eta * MathF.Sqrt(variance);
        if (useClippedModelOutput)
            for (int i = 0; i < n; i++) e[i] = (s[i] - sa * p[i]) / sb;

        float dirCoeff = MathF.Sqrt(1f - aptp - std * std);  // "direction pointing to x_t", Eq. 12 of Song et al. 2021
        float x0Coeff = MathF.Sqrt(aptp);
        var prev = Tensor.Empty(sample.Shape);
        var o = prev.Span;
        for (int i = 0; i < n; i++) o[i] = x0Coeff * p[i] + dirCoeff * e[i];
        if (eta > 0)
        {
            var z = DrawNoise(noise, generator, sample, out bool owned);
            ReadOnlySpan<float> zs = z.Span;
            for (int i = 0; i < n; i++) o[i] += std * zs[i];
            if (owned) z.Dispose();
        }
        epsT.Dispose();
        return new SchedulerStepOutput(prev, x0);
    }
}
