using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Heun's second-order sampler (Karras et al. 2022, Algorithm 1) over a discrete VP schedule. Each interior noise level
/// appears twice in <see cref="Scheduler.Timesteps"/> (predictor then corrector), so N steps take 2N - 1 model calls.
/// </summary>
public sealed class HeunDiscreteScheduler : SigmaScheduler
{
    private Tensor? _firstSample, _firstX0;
    private bool _inSecondOrder;

    /// <summary>Builds the scheduler from a parsed config (missing keys take diffusers' defaults).</summary>
    public HeunDiscreteScheduler(SchedulerConfig config) : this(config, config.Bind<HeunOptions>()) { }

    private HeunDiscreteScheduler(SchedulerConfig config, HeunOptions options) : base(config, options) { Settings = options; }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static HeunDiscreteScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <summary>The typed settings.</summary>
    public HeunOptions Settings { get; }

    /// <summary>True when the next call is a predictor (first-order) evaluation.</summary>
    public bool StateInFirstOrder => !_inSecondOrder;

    /// <inheritdoc/>
    public override void SetTimesteps(int numInferenceSteps)
    {
        var ts = SpacedTimesteps(numInferenceSteps);
        var sigmas = InferenceSigmas(ref ts).Append(0.0).ToArray();
        // interior sigmas and all timesteps after the first are visited twice
        var s2 = new List<double> { sigmas[0] };
        for (int i = 1; i < sigmas.Length - 1; i++) { s2.Add(sigmas[i]); s2.Add(sigmas[i]); }
        s2.Add(sigmas[^1]);
        var t2 = new List<double> { ts[0] };
        for (int i = 1; i < ts.Length; i++) { t2.Add(ts[i]); t2.Add(ts[i]); }
        SigmasArr = s2.ToArray();
        TimestepsArr = t2.ToArray();
        NumInferenceSteps = numInferenceSteps;
        ClearState();
        ResetStepIndex();
    }

    private void ClearState()
    {
        _firstSample?.Dispose();
        _firstX0?.Dispose();
        (_firstSample, _firstX0) = (null, null);
        _inSecondOrder = false;
    }

    /// <inheritdoc/>
    public override SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null)
    {
        CheckSameShape(modelOutput, sample, "model output");
        int idx = CurrentIndex(timestep);
        bool first = !_inSecondOrder;
        float sigma = (float)(first ? SigmasArr[idx] : SigmasArr[idx - 1]);
        float sigmaNext = (float)(first ? SigmasArr[idx + 1] : SigmasArr[idx]);
        float sigmaInput = first ? sigma : sigmaNext;
        var x0 = PredictX0(modelOutput, sample, sigmaInput);
        if (Settings.ClipSample) ClampInPlace(x0.Span, (float)Settings.ClipSampleRange);

        Tensor prev;
        if (first)
        {
            prev = KSamplers.EulerStep(sample, x0, sigma, sigmaNext - sigma);  // Euler predictor, Algorithm 1 line 5 of Karras et al. 2022
            ClearState();
            (_firstSample, _firstX0, _inSecondOrder) = (sample.Clone(), x0.Clone(), true);
        }
        else
        {
            prev = KSamplers.SecondOrderUpdate(_firstSample!, _firstX0!, sigma, sample, x0, sigmaNext, sigmaNext - sigma, trapezoid: true);
            ClearState();
        }
        Advance();
        return new SchedulerStepOutput(prev, x0);
    }
}
