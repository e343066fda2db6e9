using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Euler sampler of Karras et al. 2022 (Algorithm 2 with optional churn) over a discrete VP schedule, with diffusers'
/// EulerDiscreteScheduler settings (Karras / exponential sigmas, linear or log-linear sigma interpolation, fractional timesteps).
/// </summary>
public sealed class EulerDiscreteScheduler : SigmaScheduler
{
    /// <summary>Builds the scheduler from a parsed config (missing keys take diffusers' defaults).</summary>
    public EulerDiscreteScheduler(SchedulerConfig config) : this(config, config.Bind<EulerOptions>()) { }

    private EulerDiscreteScheduler(SchedulerConfig config, EulerOptions options) : base(config, options) { Settings = options; }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static EulerDiscreteScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <summary>The typed settings.</summary>
    public EulerOptions Settings { get; }

    /// <summary>Churn of Karras et al. 2022, Algorithm 2 (none by default); its noise comes from the step's noise or generator.</summary>
    public ChurnOptions Churn { get; set; } = new();

    /// <inheritdoc/>
    public override void SetTimesteps(int numInferenceSteps)
    {
        var ts = SpacedTimesteps(numInferenceSteps);
        var sigmas = InferenceSigmas(ref ts, Settings.InterpolationType);
        if (Settings.TimestepType == TimestepKind.Continuous && PredictionType == PredictionType.VPrediction)
            ts = sigmas.Select(s => (double)(0.25f * MathF.Log((float)s))).ToArray();
        TimestepsArr = ts;
        SigmasArr = sigmas.Append(FinalSigma()).ToArray();
        NumInferenceSteps = TimestepsArr.Length;
        ResetStepIndex();
    }

    /// <inheritdoc/>
    public override SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null)
    {
        CheckSameShape(modelOutput, sample, "model output");
        int idx = CurrentIndex(timestep);
        float sigma = (float)SigmasArr[idx];
        float gamma = KSamplers.ChurnGamma(Churn, SigmasArr, idx);
        float sigmaHat = sigma * (gamma + 1f);
        Tensor x = sample;
        if (gamma > 0)
        {
            var z = DrawNoise(noise, generator, sample, out bool owned);
            x = KSamplers.AddChurn(sample, sigma, sigmaHat, Churn.SNoise, (_, _) => z, 0);
            if (owned) z.Dispose();
        }
        var x0 = PredictX0(modelOutput, x, PredictionType == PredictionType.VPrediction ? sigma : sigmaHat);
        var prev = KSamplers.EulerStep(x, x0, sigmaHat, (float)SigmasArr[idx + 1] - sigmaHat);
        if (!ReferenceEquals(x, sample)) x.Dispose();
        Advance();
        return new SchedulerStepOutput(prev, x0);
    }
}
