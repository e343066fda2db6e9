using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Ancestral sampling of Ho et al. 2020 (DDPM) with diffusers' options: variance types fixed_small, fixed_small_log,
/// fixed_large, fixed_large_log, learned, learned_range (Nichol and Dhariwal 2021), x0 clipping or dynamic thresholding.
/// </summary>
public sealed class DDPMScheduler : Scheduler
{
    private bool _customTimesteps;

    /// <summary>Builds the scheduler from a parsed config (missing keys take diffusers' defaults).</summary>
    public DDPMScheduler(SchedulerConfig config) : this(config, config.Bind<DdpmOptions>()) { }

    private DDPMScheduler(SchedulerConfig config, DdpmOptions options) : base(config, options)
    {
        Settings = options;
        TimestepsArr = AllTrainTimesteps();
    }

    /// <summary>Parses a diffusers <c>scheduler_config.json</c>.</summary>
    public static DDPMScheduler FromConfig(string json) => new(SchedulerConfig.Parse(json));

    /// <summary>The typed settings.</summary>
    public DdpmOptions Settings { get; }

    /// <inheritdoc/>
    public override double InitNoiseSigma => 1.0;

    /// <inheritdoc/>
    public override void SetTimesteps(int numInferenceSteps)
    {
        TimestepsArr = SpacedTimesteps(numInferenceSteps, round: true);
        NumInferenceSteps = numInferenceSteps;
        _customTimesteps = false;
    }

    /// <summary>Uses the given strictly descending training timesteps.</summary>
    public void SetTimesteps(IReadOnlyList<int> timesteps)
    {
        if (timesteps.Count == 0) throw new ArgumentException("Expected at least one custom timestep.");
        for (int i = 0; i < timesteps.Count; i++)
        {
            CheckTrainT(timesteps[i]);
            if (i > 0 && timesteps[i] >= timesteps[i - 1])
                throw new ArgumentException($"Custom timesteps must be strictly descending; found {timesteps[i - 1]} then {timesteps[i]}.");
        }
        TimestepsArr = timesteps.Select(t => (double)t).ToArray();
        NumInferenceSteps = timesteps.Count;
        _customTimesteps = true;
    }

    /// <summary>The timestep after <paramref name="t"/>: the next custom timestep, else t - T // N (diffusers' rule).</summary>
    public int PreviousTimestep(int t)
    {
        if (_customTimesteps)
        {
            int idx = Array.IndexOf(TimestepsArr, (double)t);
            if (idx < 0) throw new ArgumentException($"Timestep {t} is not one of the custom timesteps.");
            return idx == TimestepsArr.Length - 1 ? -1 : (int)TimestepsArr[idx + 1];
        }
        int n = NumInferenceSteps > 0 ? NumInferenceSteps : NumTrainTimesteps;
        return t - NumTrainTimesteps / n;
    }

    /// <summary>
    /// Posterior variance at t: beta~_t of <see cref="DdpmPosterior"/> (Ho et al. 2020, Eq. 7) clamped at 1e-20,
    /// transformed per <see cref="DdpmOptions.VarianceType"/> (log forms return the log-variance, fixed_small_log the std).
    /// </summary>
    public double GetVariance(int t) => Variance(Posterior(t));

    private double Variance(DdpmPosterior q)
    {
        float variance = MathF.Max((float)q.Variance, 1e-20f), beta = (float)q.Beta;
        return Settings.VarianceType switch
        {
            VarianceKind.FixedSmall => variance,
            VarianceKind.FixedSmallLog => MathF.Exp(0.5f * MathF.Log(variance)),
            VarianceKind.FixedLarge => beta,
            VarianceKind.FixedLargeLog => MathF.Log(beta),
            _ => throw new InvalidOperationException($"variance_type '{ConfigNames.Name(Settings.VarianceType)}' needs the model's predicted variance."),
        };
    }

    // q(x_prev | x_t, x_0) from t to the step after it, over the float32 table diffusers holds
    private DdpmPosterior Posterior(int t)
    {
        int prev = PreviousTimestep(t);
        return DdpmPosterior.Between(AlphasCumprodF[CheckTrainT(t)], prev >= 0 ? AlphasCumprodF[prev] : 1);
    }

    /// <inheritdoc/>
    public override SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null)
    {
        int t = (int)timestep;
        if (t != timestep) throw new ArgumentException($"DDPMScheduler needs an integer timestep, got {timestep}.");
        int c = sample.Rank >= 2 ? sample.Dim(1) : 0;
        bool learned = Settings.VarianceType is VarianceKind.Learned or VarianceKind.LearnedRange;
        Tensor eps = modelOutput;
        Tensor? predictedVariance = null;
        if (learned && modelOutput.Rank == sample.Rank && modelOutput.Rank >= 2 && modelOutput.Dim(1) == 2 * c)
        {
            (eps, predictedVariance) = (modelOutput.Narrow(1, 0, c), modelOutput.Narrow(1, c, c));
        }
        else CheckSameShape(modelOutput, sample, "model output");
        if (learned && predictedVariance == null && t > 0)
            throw new ArgumentException($"variance_type '{ConfigNames.Name(Settings.VarianceType)}' needs a model output with 2x the sample's channels: sample {sample.Shape}, model output {modelOutput.Shape}.");

        var q = Posterior(t);
        float apt = (float)AlphasCumprodF[t];
        var x0 = PredictionType.ToX0(eps, sample, MathF.Sqrt(apt), MathF.Sqrt(1f - apt));  // Eq. 15 of Ho et al. 2020 for epsilon
        ProcessX0(x0, Settings.ClipSample, Settings.ClipSampleRange);

        float cx0 = (float)q.CoefX0, cxt = (float)q.CoefXt;  // posterior mean, Eq. 7 of Ho et al. 2020
        var prev = Tensor.Empty(sample.Shape);
        var o = prev.Span;
        ReadOnlySpan<float> p = x0.Span, s = sample.Span;
        for (int i = 0; i < o.Length; i++) o[i] = cx0 * p[i] + cxt * s[i];

        if (t > 0)
        {
            var z = DrawNoise(noise, generator, sample, out bool owned);
            ReadOnlySpan<float> zs = z.Span;
            if (!learned)
            {
                float std = Settings.VarianceType switch
                {
                    VarianceKind.FixedSmallLog => (float)Variance(q),
                    VarianceKind.FixedLargeLog => MathF.Exp(0.5f * (float)Variance(q)),
                    _ => MathF.Sqrt((float)Variance(q)),
                };
                for (int i = 0; i < o.Length; i++) o[i] += std * zs[i];
            }
            else
            {
                ReadOnlySpan<float> v = predictedVariance!.Span;
                float minLog = MathF.Log(MathF.Max((float)q.Variance, 1e-20f)), maxLog = MathF.Log((float)q.Beta);
                for (int i = 0; i < o.Length; i++)
                {
                    float std;
                    if (Settings.VarianceType == VarianceKind.Learned) std = MathF.Sqrt(v[i]);  // the model outputs the variance itself
                    else
                    {
                        float frac = (v[i] + 1f) / 2f;  // interpolate log-variance, Eq. 15 of Nichol and Dhariwal 2021
                        std = MathF.Exp(0.5f * (frac * maxLog + (1f - frac) * minLog));
                    }
                    o[i] += std * zs[i];
                }
            }
            if (owned) z.Dispose();
        }
        if (!ReferenceEquals(eps, modelOutput)) { eps.Dispose(); predictedVariance!.Dispose(); }
        return new SchedulerStepOutput(prev, x0);
    }
}
