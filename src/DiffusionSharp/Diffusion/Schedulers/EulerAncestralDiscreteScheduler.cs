using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Ancestral Euler sampler (k-diffusion's sample_euler_ancestral with eta = 1) over a discrete VP schedule: an Euler
/// step down to sigma_down, then fresh noise of std sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2.
/// </summary>
public sealed class EulerAncestralDiscreteScheduler : SigmaScheduler
{
    /// <summary>Builds the scheduler from a parsed config (missing keys take diffusers' defaults).</summary>
    public EulerAncestralDiscreteScheduler(SchedulerConfig config) : base(config, config.Bind<EulerAncestralOptions>()) { }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static EulerAncestralDiscreteScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <inheritdoc/>
    public override void SetTimesteps(int numInferenceSteps)
    {
        var ts = SpacedTimesteps(numInferenceSteps);
        var sigmas = InferenceSigmas(ref ts);
        TimestepsArr = ts;
        SigmasArr = sigmas.Append(0.0).ToArray();
        NumInferenceSteps = TimestepsArr.Length;
        ResetStepIndex();
    }

    /// <inheritdoc/>
    public override SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null)
    {
        CheckSameShape(modelOutput, sample, "model output");
        int idx = CurrentIndex(timestep);
        float sigma = (float)SigmasArr[idx], sigmaTo = (float)SigmasArr[idx + 1];
        var x0 = PredictX0(modelOutput, sample, sigma);
        var (down, up) = KSamplers.AncestralStep(sigma, sigmaTo);
        var z = DrawNoise(noise, generator, sample, out bool owned);
        var prev = KSamplers.EulerStep(sample, x0, sigma, (float)down - sigma);
        KSamplers.AddNoise(prev, z, 1f, (float)up);
        if (owned) z.Dispose();
        Advance();
        return new SchedulerStepOutput(prev, x0);
    }
}
