using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionSharp.Diffusion.Schedules;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>How inference timesteps are picked from the training ones (Lin et al. 2023, Table 2).</summary>
public enum TimestepSpacingKind
{
    /// <summary>k * (T // N) + steps_offset.</summary>
    Leading,
    /// <summary>round(T - k T / N) - 1.</summary>
    Trailing,
    /// <summary>linspace(0, T - 1, N) reversed.</summary>
    Linspace,
}

/// <summary>The reverse-process variance of DDPM sampling (<c>variance_type</c>).</summary>
public enum VarianceKind
{
    /// <summary>Posterior variance beta-tilde_t (Ho et al. 2020, Eq. 7).</summary>
    FixedSmall,
    /// <summary>beta-tilde_t through its logarithm.</summary>
    FixedSmallLog,
    /// <summary>beta_t.</summary>
    FixedLarge,
    /// <summary>beta_t through its logarithm.</summary>
    FixedLargeLog,
    /// <summary>The network outputs the variance.</summary>
    Learned,
    /// <summary>The network interpolates log beta-tilde and log beta (Nichol and Dhariwal 2021, Eq. 15).</summary>
    LearnedRange,
}

/// <summary>Where the sampling sigmas end (<c>final_sigmas_type</c>).</summary>
public enum FinalSigmasKind
{
    /// <summary>At sigma = 0.</summary>
    Zero,
    /// <summary>At the training schedule's smallest sigma.</summary>
    SigmaMin,
}

/// <summary>
/// Settings every diffusers scheduler reads from <c>scheduler_config.json</c>, with diffusers' defaults. Keys no
/// scheduler knows are kept in <see cref="Extra"/> and listed by <see cref="UnknownKeys"/>.
/// </summary>
public record SchedulerOptions : NoiseScheduleOptions
{
    /// <summary>What the model predicts.</summary>
    [JsonPropertyName("prediction_type")] public PredictionType PredictionType { get; init; } = PredictionType.Epsilon;
    /// <summary>The configured timestep spacing, or null for the scheduler's default.</summary>
    [JsonPropertyName("timestep_spacing")] public TimestepSpacingKind? TimestepSpacing { get; init; }
    /// <summary>Offset added to leading-spaced timesteps.</summary>
    [JsonPropertyName("steps_offset")] public int StepsOffset { get; init; }
    /// <summary>Whether x0 predictions are dynamically thresholded (Saharia et al. 2022, Sec. 2.3).</summary>
    [JsonPropertyName("thresholding")] public bool Thresholding { get; init; }
    /// <summary>Quantile of |x0| used by dynamic thresholding, in (0, 1].</summary>
    [JsonPropertyName("dynamic_thresholding_ratio")] public double DynamicThresholdingRatio { get; init; } = 0.995;
    /// <summary>Upper bound of the dynamic threshold.</summary>
    [JsonPropertyName("sample_max_value")] public double SampleMaxValue { get; init; } = 1.0;
    /// <summary>The class the config names (diffusers' <c>_class_name</c>).</summary>
    [JsonPropertyName("_class_name")] public string? ClassName { get; init; }
    /// <summary>The diffusers version that wrote the config.</summary>
    [JsonPropertyName("_diffusers_version")] public string? DiffusersVersion { get; init; }
    /// <summary>Keys this scheduler does not read.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; init; }

    /// <summary>The spacing used when the config names none.</summary>
    protected virtual TimestepSpacingKind DefaultSpacing => TimestepSpacingKind.Linspace;

    /// <summary>The timestep spacing in effect.</summary>
    public TimestepSpacingKind Spacing => TimestepSpacing ?? DefaultSpacing;

    /// <summary>Keys of the config that this scheduler ignores, sorted.</summary>
    public IReadOnlyList<string> UnknownKeys => Extra?.Keys.Order(StringComparer.Ordinal).ToArray() ?? [];

    /// <inheritdoc/>
    public override void Validate(string source)
    {
        base.Validate(source);
        if (!(DynamicThresholdingRatio > 0 && DynamicThresholdingRatio <= 1))
            throw OutOfRange($"{source}: dynamic_thresholding_ratio must lie in (0, 1], got {DynamicThresholdingRatio}.");
        if (!(SampleMaxValue > 0)) throw OutOfRange($"{source}: sample_max_value must be positive, got {SampleMaxValue}.");
        if (StepsOffset < 0) throw OutOfRange($"{source}: steps_offset must be non-negative, got {StepsOffset}.");
    }
}

/// <summary>Settings of the schedulers that clip the x0 prediction (DDPM, DDIM).</summary>
public record ClippingSchedulerOptions : SchedulerOptions
{
    /// <summary>Whether x0 predictions are clipped to [-clip_sample_range, clip_sample_range].</summary>
    [JsonPropertyName("clip_sample")] public bool ClipSample { get; init; } = true;
    /// <summary>Clipping bound.</summary>
    [JsonPropertyName("clip_sample_range")] public double ClipSampleRange { get; init; } = 1.0;

    /// <inheritdoc/>
    protected override TimestepSpacingKind DefaultSpacing => TimestepSpacingKind.Leading;

    /// <inheritdoc/>
    public override void Validate(string source)
    {
        base.Validate(source);
        if (!(ClipSampleRange > 0)) throw OutOfRange($"{source}: clip_sample_range must be positive, got {ClipSampleRange}.");
    }
}

/// <summary>DDPMScheduler settings.</summary>
public sealed record DdpmOptions : ClippingSchedulerOptions
{
    /// <summary>The reverse-process variance.</summary>
    [JsonPropertyName("variance_type")] public VarianceKind VarianceType { get; init; } = VarianceKind.FixedSmall;
}

/// <summary>DDIMScheduler settings.</summary>
public sealed record DdimOptions : ClippingSchedulerOptions
{
    /// <summary>Whether the step past t = 0 uses alpha_bar = 1 (else alpha_bar_0).</summary>
    [JsonPropertyName("set_alpha_to_one")] public bool SetAlphaToOne { get; init; } = true;
}

/// <summary>Settings of the schedulers that step in sigma (Euler, Euler ancestral, Heun, DPM-Solver).</summary>
public record SigmaSchedulerOptions : SchedulerOptions
{
    /// <summary>Karras et al. 2022 sigmas (Eq. 5, rho = 7).</summary>
    [JsonPropertyName("use_karras_sigmas")] public bool UseKarrasSigmas { get; init; }
    /// <summary>Sigmas evenly spaced in log sigma.</summary>
    [JsonPropertyName("use_exponential_sigmas")] public bool UseExponentialSigmas { get; init; }
    /// <summary>Lower end of Karras / exponential sigmas (null: the schedule's own).</summary>
    [JsonPropertyName("sigma_min")] public double? SigmaMin { get; init; }
    /// <summary>Upper end of Karras / exponential sigmas (null: the schedule's own).</summary>
    [JsonPropertyName("sigma_max")] public double? SigmaMax { get; init; }
    /// <summary>Where the sigmas end.</summary>
    [JsonPropertyName("final_sigmas_type")] public FinalSigmasKind FinalSigmasType { get; init; } = FinalSigmasKind.Zero;

    /// <summary>Number of sigma spacings chosen besides the default; at most one may be.</summary>
    protected virtual int SpacingChoices => (UseKarrasSigmas ? 1 : 0) + (UseExponentialSigmas ? 1 : 0);

    /// <inheritdoc/>
    public override void Validate(string source)
    {
        base.Validate(source);
        if (SpacingChoices > 1) throw new ArgumentException($"{source}: only one of use_karras_sigmas, use_exponential_sigmas and use_lu_lambdas may be true.");
        if (SigmaMin is double lo && !(lo > 0)) throw OutOfRange($"{source}: sigma_min must be positive, got {lo}.");
        if (SigmaMax is double hi && !(hi >= (SigmaMin ?? 0))) throw OutOfRange($"{source}: sigma_max must be at least sigma_min, got {hi}.");
    }
}

/// <summary>How Euler picks inference sigmas (<c>interpolation_type</c>).</summary>
public enum SigmaInterpolation
{
    /// <summary>Sigma interpolated linearly at the inference timesteps.</summary>
    Linear,
    /// <summary>Sigmas evenly spaced in log sigma.</summary>
    LogLinear,
}

/// <summary>What Euler passes to the model as the timestep (<c>timestep_type</c>).</summary>
public enum TimestepKind
{
    /// <summary>Training timesteps.</summary>
    Discrete,
    /// <summary>0.25 log sigma (with v-prediction).</summary>
    Continuous,
}

/// <summary>EulerDiscreteScheduler settings.</summary>
public sealed record EulerOptions : SigmaSchedulerOptions
{
    /// <summary>How inference sigmas are picked.</summary>
    [JsonPropertyName("interpolation_type")] public SigmaInterpolation InterpolationType { get; init; } = SigmaInterpolation.Linear;
    /// <summary>What the model gets as timestep.</summary>
    [JsonPropertyName("timestep_type")] public TimestepKind TimestepType { get; init; } = TimestepKind.Discrete;
}

/// <summary>EulerAncestralDiscreteScheduler settings.</summary>
public sealed record EulerAncestralOptions : SigmaSchedulerOptions
{
    /// <inheritdoc/>
    public override void Validate(string source)
    {
        base.Validate(source);
        if (PredictionType == PredictionType.Sample)
            throw new NotSupportedException($"{source}: EulerAncestralDiscreteScheduler supports prediction_type epsilon and v_prediction, not sample.");
    }
}

/// <summary>HeunDiscreteScheduler settings.</summary>
public sealed record HeunOptions : SigmaSchedulerOptions
{
    /// <summary>Whether x0 predictions are clipped.</summary>
    [JsonPropertyName("clip_sample")] public bool ClipSample { get; init; }
    /// <summary>Clipping bound.</summary>
    [JsonPropertyName("clip_sample_range")] public double ClipSampleRange { get; init; } = 1.0;
}

/// <summary>The DPM-Solver family member (<c>algorithm_type</c>); "deis" runs as dpmsolver++.</summary>
public enum DpmAlgorithm
{
    /// <summary>DPM-Solver++ on the data prediction (Lu et al. 2022b).</summary>
    [JsonStringEnumMemberName("dpmsolver++")] DpmSolverPlusPlus,
    /// <summary>SDE variant of DPM-Solver++.</summary>
    [JsonStringEnumMemberName("sde-dpmsolver++")] SdeDpmSolverPlusPlus,
    /// <summary>DPM-Solver on the noise prediction (Lu et al. 2022).</summary>
    [JsonStringEnumMemberName("dpmsolver")] DpmSolver,
    /// <summary>SDE variant of DPM-Solver.</summary>
    [JsonStringEnumMemberName("sde-dpmsolver")] SdeDpmSolver,
    /// <summary>Accepted for diffusers configs; runs as dpmsolver++.</summary>
    Deis,
}

/// <summary>Second-order update of DPM-Solver (<c>solver_type</c>); logrho, bh1 and bh2 run as midpoint.</summary>
public enum DpmSolverType
{
    /// <summary>Midpoint update.</summary>
    Midpoint,
    /// <summary>Heun update.</summary>
    Heun,
    /// <summary>Accepted for diffusers configs; runs as midpoint.</summary>
    [JsonStringEnumMemberName("logrho")] LogRho,
    /// <summary>Accepted for diffusers configs; runs as midpoint.</summary>
    Bh1,
    /// <summary>Accepted for diffusers configs; runs as midpoint.</summary>
    Bh2,
}

/// <summary>DPMSolverMultistepScheduler settings.</summary>
public sealed record DpmSolverOptions : SigmaSchedulerOptions
{
    /// <summary>Multistep order 1-3.</summary>
    [JsonPropertyName("solver_order")] public int SolverOrder { get; init; } = 2;
    /// <summary>The algorithm as configured.</summary>
    [JsonPropertyName("algorithm_type")] public DpmAlgorithm AlgorithmType { get; init; } = DpmAlgorithm.DpmSolverPlusPlus;
    /// <summary>The second-order update as configured.</summary>
    [JsonPropertyName("solver_type")] public DpmSolverType SolverType { get; init; } = DpmSolverType.Midpoint;
    /// <summary>Lower orders for the last steps when there are fewer than 15.</summary>
    [JsonPropertyName("lower_order_final")] public bool LowerOrderFinal { get; init; } = true;
    /// <summary>First order for the final step.</summary>
    [JsonPropertyName("euler_at_final")] public bool EulerAtFinal { get; init; }
    /// <summary>Lu et al.'s uniform-lambda spacing.</summary>
    [JsonPropertyName("use_lu_lambdas")] public bool UseLuLambdas { get; init; }
    /// <summary>Timesteps whose lambda falls below this are not used.</summary>
    [JsonPropertyName("lambda_min_clipped")] public double LambdaMinClipped { get; init; } = double.NegativeInfinity;
    /// <summary>Set when the model also outputs a variance (ignored by the solver).</summary>
    [JsonPropertyName("variance_type")] public VarianceKind? VarianceType { get; init; }

    /// <summary>The algorithm that runs.</summary>
    public DpmAlgorithm Algorithm => AlgorithmType == DpmAlgorithm.Deis ? DpmAlgorithm.DpmSolverPlusPlus : AlgorithmType;

    /// <summary>The second-order update that runs.</summary>
    public DpmSolverType Solver => SolverType == DpmSolverType.Heun ? DpmSolverType.Heun : DpmSolverType.Midpoint;

    /// <summary>Whether the algorithm works on the data prediction (the "++" variants).</summary>
    public bool DataPrediction => Algorithm is DpmAlgorithm.DpmSolverPlusPlus or DpmAlgorithm.SdeDpmSolverPlusPlus;

    /// <summary>Whether the algorithm adds noise.</summary>
    public bool Stochastic => Algorithm is DpmAlgorithm.SdeDpmSolverPlusPlus or DpmAlgorithm.SdeDpmSolver;

    /// <inheritdoc/>
    protected override int SpacingChoices => base.SpacingChoices + (UseLuLambdas ? 1 : 0);

    /// <inheritdoc/>
    public override void Validate(string source)
    {
        base.Validate(source);
        if (SolverOrder is < 1 or > 3) throw OutOfRange($"{source}: solver_order must be 1, 2 or 3, got {SolverOrder}.");
        if (SolverOrder == 3 && Stochastic)
            throw new NotSupportedException($"{source}: solver_order 3 is not supported with algorithm_type '{ConfigNames.Name(Algorithm)}'; use order 1 or 2.");
        if (FinalSigmasType == FinalSigmasKind.Zero && !DataPrediction)
            throw new ArgumentException($"{source}: final_sigmas_type 'zero' needs algorithm_type dpmsolver++ or sde-dpmsolver++, got {ConfigNames.Name(Algorithm)}; use sigma_min.");
    }
}

/// <summary>How EDM sampling sigmas are spaced (<c>sigma_schedule</c>).</summary>
public enum EdmSigmaSchedule
{
    /// <summary>Karras et al. 2022, Eq. 5.</summary>
    Karras,
    /// <summary>Evenly spaced in log sigma.</summary>
    Exponential,
}

/// <summary>
/// An EDM-preconditioned model (Karras et al. 2022; diffusers EDMEulerScheduler / EDMDPMSolverMultistepScheduler keys): the
/// network is F of D = c_skip x + c_out F(c_in x, c_noise). The beta keys give the VP schedule the discrete schedulers run on.
/// </summary>
public sealed record EdmOptions : SchedulerOptions
{
    /// <summary>Smallest sampling sigma.</summary>
    [JsonPropertyName("sigma_min")] public double SigmaMin { get; init; } = 0.002;
    /// <summary>Largest sampling sigma.</summary>
    [JsonPropertyName("sigma_max")] public double SigmaMax { get; init; } = 80;
    /// <summary>Standard deviation of the data.</summary>
    [JsonPropertyName("sigma_data")] public double SigmaData { get; init; } = 0.5;
    /// <summary>Spacing of the k-sampler sigmas.</summary>
    [JsonPropertyName("sigma_schedule")] public EdmSigmaSchedule SigmaSchedule { get; init; } = EdmSigmaSchedule.Karras;
    /// <summary>rho of the Karras schedule.</summary>
    [JsonPropertyName("rho")] public double Rho { get; init; } = 7;

    /// <summary>Whether <paramref name="config"/> names an EDM scheduler class.</summary>
    public static bool Describes(SchedulerConfig config) => config.ClassName is "EDMEulerScheduler" or "EDMDPMSolverMultistepScheduler";

    /// <summary>n sampling sigmas from sigma_max down to sigma_min, then 0.</summary>
    public double[] Sigmas(int n) => SigmaSchedule == EdmSigmaSchedule.Karras
        ? SigmaSchedules.Karras(n, SigmaMin, SigmaMax, Rho) : SigmaSchedules.Exponential(n, SigmaMin, SigmaMax);

    /// <inheritdoc/>
    public override void Validate(string source)
    {
        base.Validate(source);
        if (!(SigmaMin > 0 && SigmaMax >= SigmaMin && double.IsFinite(SigmaMax)))
            throw OutOfRange($"{source}: expected 0 < sigma_min <= sigma_max, got sigma_min {SigmaMin}, sigma_max {SigmaMax}.");
        if (!(SigmaData > 0 && double.IsFinite(SigmaData))) throw OutOfRange($"{source}: sigma_data must be positive, got {SigmaData}.");
        if (!(Rho > 0)) throw OutOfRange($"{source}: rho must be positive, got {Rho}.");
        if (PredictionType != PredictionType.Epsilon)
            throw new NotSupportedException($"{source}: an EDM model supports prediction_type epsilon (the F of D = c_skip x + c_out F), got {ConfigNames.Name(PredictionType)}.");
    }
}
