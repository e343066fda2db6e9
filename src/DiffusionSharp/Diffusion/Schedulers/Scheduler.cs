using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>Result of one scheduler step.</summary>
/// <param name="PrevSample">The sample at the next (less noisy) timestep.</param>
/// <param name="PredOriginalSample">The model's estimate of x0 at this step.</param>
public sealed record SchedulerStepOutput(Tensor PrevSample, Tensor PredOriginalSample);

/// <summary>
/// Base of the diffusers-compatible samplers over a discrete-time (VP) training schedule. Tables are computed in
/// double and stored rounded to float32, and step arithmetic runs in float32 in the same order as diffusers, so a
/// scheduler built from a diffusers <c>scheduler_config.json</c> reproduces diffusers' trajectories.
/// </summary>
public abstract class Scheduler
{
    private protected readonly double[] BetasF, AlphasF, AlphasCumprodF;
    private protected double[] TimestepsArr = Array.Empty<double>();
    private Generator? _fallbackGenerator;

    /// <summary>Builds the training schedule of <paramref name="options"/> (parsed from <paramref name="config"/>) in diffusers' float32 arithmetic.</summary>
    private protected Scheduler(SchedulerConfig config, SchedulerOptions options)
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        Options = options;
        var betas = options.Betas(roundLikeDiffusers: true);
        BetasF = new double[NumTrainTimesteps];
        AlphasF = new double[NumTrainTimesteps];
        AlphasCumprodF = new double[NumTrainTimesteps];
        double p = 1;
        for (int i = 0; i < NumTrainTimesteps; i++)
        {
            BetasF[i] = (float)betas[i];
            AlphasF[i] = (float)(1 - BetasF[i]);
            p *= AlphasF[i];
            AlphasCumprodF[i] = (float)p;
        }
    }

    /// <summary>The configuration this scheduler was built from.</summary>
    public SchedulerConfig Config { get; }

    /// <summary>The typed settings read from <see cref="Config"/>.</summary>
    public SchedulerOptions Options { get; }

    /// <summary>Number of training timesteps T.</summary>
    public int NumTrainTimesteps => Options.NumTrainTimesteps;

    /// <summary>What the model predicts.</summary>
    public PredictionType PredictionType => Options.PredictionType;

    /// <summary>beta_t for t = 0..T-1 (float32 values).</summary>
    public IReadOnlyList<double> Betas => BetasF;

    /// <summary>alpha_t = 1 - beta_t (float32 values).</summary>
    public IReadOnlyList<double> Alphas => AlphasF;

    /// <summary>alpha_bar_t = prod (1 - beta_s) (float32 values).</summary>
    public IReadOnlyList<double> AlphasCumprod => AlphasCumprodF;

    /// <summary>The inference timesteps after <see cref="SetTimesteps(int)"/>, in model-call order.</summary>
    public IReadOnlyList<double> Timesteps => TimestepsArr;

    /// <summary>Number of inference steps set, or 0 before <see cref="SetTimesteps(int)"/>.</summary>
    public int NumInferenceSteps { get; private protected set; }

    /// <summary>Standard deviation of the initial noise x_T.</summary>
    public abstract double InitNoiseSigma { get; }

    /// <summary>Random source used for stochastic steps when neither noise nor a generator is passed (seeded randomly when unset).</summary>
    public Generator? DefaultGenerator { get; set; }

    /// <summary>
    /// sigma_t = sqrt((1 - abar_t) / abar_t) and its log in float32 (Karras et al. 2022, Table 1); a zero-terminal-SNR
    /// schedule gets abar_{T-1} = 2^-24 first so the largest sigma stays finite.
    /// </summary>
    private protected (double[] Sigmas, double[] LogSigmas) TrainingSigmaTables()
    {
        if (Options.RescaleBetasZeroSnr) AlphasCumprodF[^1] = Math.Pow(2, -24);
        var sigmas = new double[NumTrainTimesteps];
        var logSigmas = new double[NumTrainTimesteps];
        for (int i = 0; i < NumTrainTimesteps; i++)
        {
            float ac = (float)AlphasCumprodF[i];
            float sg = MathF.Sqrt((1f - ac) / ac);
            sigmas[i] = sg;
            logSigmas[i] = MathF.Log(sg);
        }
        return (sigmas, logSigmas);
    }

    /// <summary>T-1, ..., 0: the timesteps before <see cref="SetTimesteps(int)"/>.</summary>
    private protected double[] AllTrainTimesteps() => Enumerable.Range(0, NumTrainTimesteps).Reverse().Select(t => (double)t).ToArray();

    /// <summary>Timesteps of the configured spacing; linspace ones rounded half to even when <paramref name="round"/> is set.</summary>
    private protected double[] SpacedTimesteps(int numInferenceSteps, bool round) => Options.Spacing switch
    {
        TimestepSpacingKind.Leading => TimestepSpacing.Leading(NumTrainTimesteps, numInferenceSteps, Options.StepsOffset),
        TimestepSpacingKind.Trailing => TimestepSpacing.Trailing(NumTrainTimesteps, numInferenceSteps),
        _ => TimestepSpacing.Linspace(NumTrainTimesteps, numInferenceSteps, round),
    };

    /// <summary>Chooses <paramref name="numInferenceSteps"/> timesteps and resets the solver state.</summary>
    public abstract void SetTimesteps(int numInferenceSteps);

    /// <summary>The model input for sample <paramref name="sample"/> at timestep <paramref name="timestep"/> (a new tensor).</summary>
    public virtual Tensor ScaleModelInput(Tensor sample, double timestep) => sample.Clone();

    /// <summary>
    /// One reverse step from <paramref name="timestep"/>. Stochastic schedulers use <paramref name="noise"/> when given,
    /// else draw from <paramref name="generator"/> (else <see cref="DefaultGenerator"/>).
    /// </summary>
    public abstract SchedulerStepOutput Step(Tensor modelOutput, double timestep, Tensor sample, Tensor? noise = null, Generator? generator = null);

    /// <summary>Forward process q(x_t | x_0): sqrt(abar_t) x0 + sqrt(1 - abar_t) noise with one timestep per batch element (Ho et al. 2020, Eq. 4).</summary>
    public virtual Tensor AddNoise(Tensor originalSamples, Tensor noise, ReadOnlySpan<int> timesteps)
    {
        CheckSameShape(noise, originalSamples, "noise");
        var (a, b) = SignalNoiseScales(originalSamples.Shape, timesteps);
        using (a) using (b) return originalSamples * a + noise * b;
    }

    /// <summary>Velocity target v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0 (Salimans and Ho 2022, Sec. 4).</summary>
    public Tensor GetVelocity(Tensor sample, Tensor noise, ReadOnlySpan<int> timesteps)
    {
        CheckSameShape(noise, sample, "noise");
        var (a, b) = SignalNoiseScales(sample.Shape, timesteps);
        using (a) using (b) return noise * a - sample * b;
    }

    // sqrt(abar_t) and sqrt(1 - abar_t) in float32, one per batch element, broadcastable against the sample
    private (Tensor Signal, Tensor Noise) SignalNoiseScales(Shape sample, ReadOnlySpan<int> timesteps)
    {
        if (sample.Rank == 0 || sample[0] != timesteps.Length)
            throw new ArgumentException($"Expected one timestep per batch element: sample shape {sample}, {timesteps.Length} timesteps.");
        var a = new double[timesteps.Length];
        var b = new double[timesteps.Length];
        for (int i = 0; i < a.Length; i++)
        {
            float ac = (float)AlphasCumprodF[CheckTrainT(timesteps[i])];
            a[i] = MathF.Sqrt(ac);
            b[i] = MathF.Sqrt(1f - ac);
        }
        return (Tensor.PerSample(a, sample), Tensor.PerSample(b, sample));
    }

    private protected int CheckTrainT(int t)
    {
        if ((uint)t >= (uint)NumTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(t), $"Expected a training timestep in [0, {NumTrainTimesteps - 1}], got {t}.");
        return t;
    }

    private protected static void CheckSameShape(Tensor a, Tensor reference, string what)
    {
        if (a.Shape != reference.Shape)
            throw new ArgumentException($"Expected {what} of shape {reference.Shape} (the sample's), got {a.Shape}.");
    }

    private int? _stepIndex, _beginIndex;

    /// <summary>Index of the next step, or null before the first step.</summary>
    public int? StepIndex => _stepIndex;

    /// <summary>Makes the first step start at <paramref name="beginIndex"/> (e.g. image-to-image).</summary>
    public void SetBeginIndex(int beginIndex) => _beginIndex = beginIndex;

    private protected int? BeginIndex => _beginIndex;

    private protected void ResetStepIndex() { _stepIndex = null; _beginIndex = null; }

    /// <summary>Whether <see cref="IndexForTimestep"/> answers the last step for a timestep not in the schedule (else it throws).</summary>
    private protected virtual bool AbsentTimestepIsLast => false;

    /// <summary>Position of <paramref name="timestep"/> in the schedule; the second match when it occurs twice (diffusers' rule).</summary>
    public int IndexForTimestep(double timestep)
    {
        int first = Array.IndexOf(TimestepsArr, timestep);
        int second = first < 0 ? -1 : Array.IndexOf(TimestepsArr, timestep, first + 1);
        if (first < 0 && AbsentTimestepIsLast) return TimestepsArr.Length - 1;
        if (first < 0) throw new ArgumentException($"Timestep {timestep} is not in the schedule [{string.Join(", ", TimestepsArr)}].");
        return second >= 0 ? second : first;
    }

    /// <summary>The step index for <paramref name="timestep"/>: the running index once stepping has begun.</summary>
    private protected int CurrentIndex(double timestep)
    {
        RequireTimesteps();
        _stepIndex ??= _beginIndex ?? IndexForTimestep(timestep);
        return _stepIndex.Value;
    }

    private protected void Advance() => _stepIndex++;

    private protected void RequireTimesteps()
    {
        if (NumInferenceSteps == 0)
            throw new InvalidOperationException($"{GetType().Name}: call SetTimesteps(n) before Step.");
    }

    /// <summary>The noise for a stochastic step: the given tensor (shape-checked) or a fresh draw.</summary>
    private protected Tensor DrawNoise(Tensor? noise, Generator? generator, Tensor like, out bool owned)
    {
        if (noise != null)
        {
            CheckSameShape(noise, like, "noise");
            owned = false;
            return noise;
        }
        var g = generator ?? DefaultGenerator ?? (_fallbackGenerator ??= new Generator((ulong)Random.Shared.NextInt64()));
        owned = true;
        return Tensor.Randn(g, like.Shape.ToArray());
    }

    /// <summary>Dynamic thresholding of x0 when configured, else clipping to [-range, range] when <paramref name="clip"/> is set.</summary>
    private protected void ProcessX0(Tensor x0, bool clip = false, double range = 1)
    {
        if (Options.Thresholding) DynamicThreshold(x0, Options.DynamicThresholdingRatio, Options.SampleMaxValue);
        else if (clip) ClampInPlace(x0.Span, (float)range);
    }

    /// <summary>Clamps in place to [-range, range].</summary>
    private protected static void ClampInPlace(Span<float> x, float range)
    {
        for (int i = 0; i < x.Length; i++) x[i] = Math.Clamp(x[i], -range, range);
    }

    /// <summary>
    /// Dynamic thresholding in place: per batch element s = clamp(quantile(|x|, ratio), 1, maxValue), x = clamp(x, -s, s) / s
    /// (Saharia et al. 2022, Sec. 2.3).
    /// </summary>
    private protected static void DynamicThreshold(Tensor x, double ratio, double maxValue)
    {
        int batch = x.Dim(0), per = x.Size / batch;
        var span = x.Span;
        var buf = new float[per];
        for (int b = 0; b < batch; b++)
        {
            var row = span.Slice(b * per, per);
            for (int i = 0; i < per; i++) buf[i] = MathF.Abs(row[i]);
            Array.Sort(buf);
            double pos = ratio * (per - 1);  // torch.quantile linear interpolation
            int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, per - 1);
            float q = (float)(buf[lo] + (pos - lo) * (buf[hi] - buf[lo]));
            float s = Math.Min(Math.Max(q, 1f), (float)maxValue);
            for (int i = 0; i < per; i++) row[i] = Math.Clamp(row[i], -s, s) / s;
        }
    }
}
