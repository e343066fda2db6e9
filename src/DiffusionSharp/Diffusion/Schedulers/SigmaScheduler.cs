using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Base of the schedulers that step in the VE parameterisation x = x0 + sigma eps with sigma = sqrt((1 - abar) / abar)
/// (Karras et al. 2022, Table 1): Euler, Euler ancestral and Heun. Timesteps may be fractional; sigma is then
/// interpolated linearly in t from the training table like diffusers.
/// </summary>
public abstract class SigmaScheduler : Scheduler
{
    private protected readonly double[] TrainSigmas, TrainLogSigmas;
    private protected double[] SigmasArr = Array.Empty<double>();

    /// <summary>Reads the training sigma table of the parsed <paramref name="options"/>.</summary>
    private protected SigmaScheduler(SchedulerConfig config, SigmaSchedulerOptions options) : base(config, options)
    {
        SigmaOptions = options;
        (TrainSigmas, TrainLogSigmas) = TrainingSigmaTables();
        TimestepsArr = BetaSchedules.Linspace(0, NumTrainTimesteps - 1, NumTrainTimesteps).Reverse().ToArray();
        SigmasArr = TrainSigmas.Reverse().Append(0.0).ToArray();
    }

    private protected SigmaSchedulerOptions SigmaOptions { get; }

    /// <summary>Noise levels per model call plus the final one (float32 values).</summary>
    public IReadOnlyList<double> Sigmas => SigmasArr;

    /// <summary>Training-schedule sigmas for t = 0..T-1 (float32 values).</summary>
    public IReadOnlyList<double> TrainingSigmas => TrainSigmas;

    /// <inheritdoc/>
    public override double InitNoiseSigma
    {
        get
        {
            float max = (float)SigmasArr.Max();
            return Options.Spacing is TimestepSpacingKind.Linspace or TimestepSpacingKind.Trailing ? max : MathF.Sqrt(max * max + 1f);
        }
    }

    /// <summary>Timesteps for the configured spacing as float32 values (diffusers' Euler / Heun arithmetic).</summary>
    private protected double[] SpacedTimesteps(int numInferenceSteps)
    {
        var ts = SpacedTimesteps(numInferenceSteps, round: false);
        for (int i = 0; i < ts.Length; i++) ts[i] = (float)ts[i];
        return ts;
    }

    /// <summary>Inference sigmas (without the final one) and matching timesteps, per the Karras / exponential / interpolation settings.</summary>
    private protected double[] InferenceSigmas(ref double[] timesteps, SigmaInterpolation interpolation = SigmaInterpolation.Linear)
    {
        int n = timesteps.Length;
        double[] sigmas;
        if (interpolation == SigmaInterpolation.LogLinear)
        {
            var l = BetaSchedules.Linspace(Math.Log(TrainSigmas[^1]), Math.Log(TrainSigmas[0]), n + 1);
            sigmas = l.Select(v => Math.Exp(v)).ToArray();
        }
        else sigmas = timesteps.Select(t => SigmaSchedules.InterpOnIndex(t, TrainSigmas)).ToArray();

        if (SigmaOptions.UseKarrasSigmas || SigmaOptions.UseExponentialSigmas)
        {
            double lo = SigmaOptions.SigmaMin ?? sigmas[^1], hi = SigmaOptions.SigmaMax ?? sigmas[0];
            sigmas = SigmaOptions.UseKarrasSigmas
                ? SigmaSchedules.Karras(n, lo, hi, 7.0, appendZero: false)
                : SigmaSchedules.Exponential(n, lo, hi, appendZero: false);
            timesteps = sigmas.Select(s => (double)(float)SigmaSchedules.SigmaToT(s, TrainLogSigmas)).ToArray();
        }
        for (int i = 0; i < sigmas.Length; i++) sigmas[i] = (float)sigmas[i];
        return sigmas;
    }

    /// <summary>The final sigma: 0 or the training schedule's smallest.</summary>
    private protected double FinalSigma() => SigmaOptions.FinalSigmasType == FinalSigmasKind.Zero ? 0.0 : TrainSigmas[0];

    /// <summary>x / sqrt(sigma^2 + 1): unit-variance model input (the c_in of Karras et al. 2022, Table 1).</summary>
    public override Tensor ScaleModelInput(Tensor sample, double timestep)
    {
        float sigma = (float)SigmasArr[CurrentIndex(timestep)];
        return sample / MathF.Sqrt(sigma * sigma + 1f);
    }

    /// <summary>VE forward process x0 + sigma(t) noise; t must be a schedule timestep after SetTimesteps, else a training timestep.</summary>
    public override Tensor AddNoise(Tensor originalSamples, Tensor noise, ReadOnlySpan<int> timesteps)
    {
        CheckSameShape(noise, originalSamples, "noise");
        if (originalSamples.Rank == 0 || originalSamples.Dim(0) != timesteps.Length)
            throw new ArgumentException($"Expected one timestep per batch element: sample shape {originalSamples.Shape}, {timesteps.Length} timesteps.");
        var sigmas = new double[timesteps.Length];
        for (int b = 0; b < sigmas.Length; b++)
            sigmas[b] = NumInferenceSteps > 0 && Array.IndexOf(TimestepsArr, (double)timesteps[b]) >= 0
                ? (float)SigmasArr[BeginIndex ?? IndexForTimestep(timesteps[b])]
                : (float)TrainSigmas[CheckTrainT(timesteps[b])];
        using var s = Tensor.PerSample(sigmas, originalSamples.Shape);
        return originalSamples + noise * s;
    }

    /// <summary>x0 from the model output at noise level <paramref name="sigma"/> (VE parameterisation).</summary>
    private protected Tensor PredictX0(Tensor modelOutput, Tensor sample, float sigma) =>
        DiscreteTimeDenoiser.Denoised(PredictionType, modelOutput, sample, sigma);
}
