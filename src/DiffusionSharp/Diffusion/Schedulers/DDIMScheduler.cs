using DiffusionSharp.Diffusion.Samplers;
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
        _finalAlphaCumprod = Settings.SetAlphaToOne ? 1f : (float)AlphasCumprodF[0];
        TimestepsArr = AllTrainTimesteps();
    }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static DDIMScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <summary>The typed settings.</summary>
    public DdimOptions Settings { get; }

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
        var (apt, aptp) = AlphaBars(t, prevT);
        return DdpmPosterior.Between(apt, aptp).Variance;
    }

    private (float AlphaBar, float AlphaBarPrev) AlphaBars(int t, int prevT) =>
        ((float)AlphasCumprodF[CheckTrainT(t)], prevT >= 0 ? (float)AlphasCumprodF[prevT] : _finalAlphaCumprod);

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
        var (apt, aptp) = AlphaBars(t, prevT);
        float sa = MathF.Sqrt(apt), sb = MathF.Sqrt(1f - apt);
        var x0 = PredictionType.ToX0(modelOutput, sample, sa, sb);
        ProcessX0(x0, Settings.ClipSample, Settings.ClipSampleRange);
        using var epsT = useClippedModelOutput ? PredictionType.Sample.ToEps(x0, sample, sa, sb) : PredictionType.ToEps(modelOutput, sample, sa, sb);
        float std = Ddim.Sigma(apt, aptp, eta);
        Tensor? z = null;
        bool owned = false;
        if (eta > 0) z = DrawNoise(noise, generator, sample, out owned);
        var prev = Ddim.Step(x0, epsT, [aptp], [std], z);
        if (owned) z!.Dispose();
        return new SchedulerStepOutput(prev, x0);
    }
}
