using System.Text.Json;
using DiffusionSharp.Autograd;
using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion;

/// <summary>What to sample.</summary>
public sealed record SampleRequest
{
    /// <summary>Number of images.</summary>
    public int Count { get; init; } = 64;
    /// <summary>Model evaluations of the sampler (scheduler inference steps).</summary>
    public int Steps { get; init; } = 20;
    /// <summary>Seed of the initial noise and of every stochastic step.</summary>
    public ulong Seed { get; init; }
    /// <summary>Sampler name (see <see cref="DiffusionPipeline.SamplerNames"/>); <c>auto</c> picks the model's default (<see cref="DiffusionPipeline.DefaultSampler"/>).</summary>
    public string Sampler { get; init; } = SamplerRegistry.Auto;
    /// <summary>Class of every image; null cycles through the classes of a conditional model.</summary>
    public int? ClassLabel { get; init; }
    /// <summary>Classifier-free guidance scale (1 = plain conditional model).</summary>
    public double GuidanceScale { get; init; } = 1.0;
    /// <summary>Images per network call.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>DDIM eta (0 = deterministic).</summary>
    public double Eta { get; init; }
    /// <summary>This process's part of the work when <see cref="ShardCount"/> processes share it (see <see cref="ShardRange"/>).</summary>
    public int ShardIndex { get; init; }
    /// <summary>Processes sharing the work: each samples a contiguous run of whole batches, the same images one process makes.</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>The images [First, First + Count) that shard <see cref="ShardIndex"/> samples: batches b with b N / batches = index.</summary>
    public (int First, int Count) ShardRange
    {
        get
        {
            int batches = (Count + BatchSize - 1) / BatchSize;
            int b0 = (int)((long)batches * ShardIndex / ShardCount), b1 = (int)((long)batches * (ShardIndex + 1) / ShardCount);
            int first = Math.Min(Count, b0 * BatchSize), end = Math.Min(Count, b1 * BatchSize);
            return (first, end - first);
        }
    }
}

/// <summary>Raised when a NaN or infinity appears while sampling; the message names the step and the tensor.</summary>
public sealed class NonFiniteSampleException(string message) : InvalidOperationException(message);

/// <summary>
/// A trained U-Net with its noise schedule: samples images with any diffusers-style scheduler or k-diffusion sampler,
/// with optional class conditioning and classifier-free guidance.
/// </summary>
public sealed class DiffusionPipeline
{
    /// <summary>Names accepted by <see cref="SampleRequest.Sampler"/>: <c>auto</c> and every sampler's.</summary>
    public static readonly IReadOnlyList<string> SamplerNames = SamplerRegistry.Choices;

    /// <summary>The sampler <c>auto</c> stands for with this model (<see cref="SamplerRegistry.DefaultFor"/>).</summary>
    public string DefaultSampler => SamplerRegistry.DefaultFor(SchedulerConfig);

    /// <summary><paramref name="name"/>, or <see cref="DefaultSampler"/> for <c>auto</c>.</summary>
    public string ResolveSampler(string name) => name == SamplerRegistry.Auto ? DefaultSampler : name;

    /// <summary>Largest accepted <see cref="SampleRequest.Steps"/> (the k-samplers allocate one sigma per step).</summary>
    public const int MaxSteps = 100_000;

    /// <summary>Largest accepted <see cref="SampleRequest.Count"/>.</summary>
    public const int MaxCount = 1_000_000;

    /// <summary>The network.</summary>
    public UNet2DModel Unet { get; }
    /// <summary>The training-process config (diffusers scheduler_config.json keys).</summary>
    public SchedulerConfig SchedulerConfig { get; }
    /// <summary>Null-class label for classifier-free guidance, when the model was trained with one.</summary>
    public int? NullClass { get; }
    /// <summary>Class names in label order (may be empty).</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Wraps a model and its scheduler config (diffusers scheduler_config.json text).</summary>
    public DiffusionPipeline(UNet2DModel unet, string schedulerConfigJson, int? nullClass = null, IReadOnlyList<string>? classNames = null)
        : this(unet, SchedulerConfig.Parse(schedulerConfigJson), nullClass, classNames) { }

    /// <summary>Wraps a model and its parsed scheduler config; the noise-process settings are validated here.</summary>
    public DiffusionPipeline(UNet2DModel unet, SchedulerConfig schedulerConfig, int? nullClass = null, IReadOnlyList<string>? classNames = null)
    {
        Unet = unet;
        SchedulerConfig = schedulerConfig;
        NoiseOptions = schedulerConfig.Bind<SchedulerOptions>();
        if (EdmOptions.Describes(schedulerConfig))
        {
            Edm = schedulerConfig.Bind<EdmOptions>();
            _vpSigmas = Schedules.BetaSchedules.SigmasFromAlphasCumprod(new DDPMScheduler(schedulerConfig).AlphasCumprod.ToArray());
        }
        NullClass = nullClass;
        ClassNames = classNames ?? Array.Empty<string>();
    }

    /// <summary>
    /// Loads a model folder: either a pipeline folder (<c>unet/</c>, <c>scheduler/scheduler_config.json</c>, optional
    /// <c>model_info.json</c>) or a bare UNet folder (then the DDPM linear schedule is assumed).
    /// </summary>
    public static DiffusionPipeline FromPretrained(string directory)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Model folder not found: {directory}");
        string unetDir = Directory.Exists(Path.Combine(directory, "unet")) ? Path.Combine(directory, "unet") : directory;
        var unet = UNet2DModel.FromPretrained(unetDir);
        var schedPath = Path.Combine(directory, "scheduler", "scheduler_config.json");
        var config = File.Exists(schedPath) ? SchedulerConfig.Load(schedPath) : SchedulerConfig.Parse("{\"_class_name\": \"DDPMScheduler\"}");
        int? nullClass = null;
        string[] names = Array.Empty<string>();
        var infoPath = Path.Combine(directory, "model_info.json");
        if (File.Exists(infoPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(infoPath));
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"{infoPath}: expected a JSON object, found {doc.RootElement.ValueKind}.");
                int embeds = unet.Config.NumClassEmbeds ?? 0;
                if (doc.RootElement.TryGetProperty(nameof(NullClass), out var nc) && nc.ValueKind != JsonValueKind.Null)
                {
                    if (nc.ValueKind != JsonValueKind.Number || !nc.TryGetInt32(out int v))
                        throw new InvalidDataException($"{infoPath}: NullClass must be an integer or null, found {nc.GetRawText()}.");
                    // the null class is the extra embedding row after the real classes
                    if (v < 1 || v >= embeds)
                        throw new InvalidDataException($"{infoPath}: NullClass {v} must be in 1..{embeds - 1} (the U-Net has num_class_embeds {embeds}).");
                    nullClass = v;
                }
                if (doc.RootElement.TryGetProperty(nameof(ClassNames), out var cn) && cn.ValueKind != JsonValueKind.Null)
                {
                    if (cn.ValueKind != JsonValueKind.Array || cn.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
                        throw new InvalidDataException($"{infoPath}: ClassNames must be an array of strings.");
                    names = cn.EnumerateArray().Select(e => e.GetString()!).ToArray();
                    if (embeds > 0 && names.Length > embeds)
                        throw new InvalidDataException($"{infoPath}: {names.Length} ClassNames but the U-Net has only num_class_embeds {embeds}.");
                }
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{infoPath}: not valid JSON (line {e.LineNumber}, position {e.BytePositionInLine}): {e.Message}", e);
            }
        }
        return new DiffusionPipeline(unet, config, nullClass, names);
    }

    /// <summary>Builds the diffusers-style scheduler <paramref name="name"/> over this model's training schedule.</summary>
    public Scheduler CreateScheduler(string name, double eta = 0)
    {
        var resolved = ResolveSampler(name);
        var create = SamplerRegistry.Get(resolved).CreateScheduler
            ?? throw new ArgumentException($"'{resolved}'{(resolved != name ? $" ({name} for this model)" : "")} is a k-diffusion sampler, not a scheduler.");
        return create(SchedulerConfig, eta);
    }

    /// <summary>
    /// The training process as a <see cref="GaussianDiffusion"/> respaced to <paramref name="steps"/> evenly spaced steps
    /// (improved DDPM Sec. 4), from the same typed settings the DDPM scheduler reads (trained betas and rescaling included).
    /// </summary>
    public GaussianDiffusion CreateGaussianDiffusion(int steps)
    {
        var o = SchedulerConfig.Bind<DdpmOptions>();
        int T = o.NumTrainTimesteps;
        if (steps < 1 || steps > T) throw new ArgumentOutOfRangeException(nameof(steps), $"Steps must be in 1..{T}, got {steps}.");
        var variance = o.VarianceType switch
        {
            VarianceKind.FixedLarge or VarianceKind.FixedLargeLog => ModelVarianceType.FixedLarge,
            VarianceKind.Learned => ModelVarianceType.Learned,
            VarianceKind.LearnedRange => ModelVarianceType.LearnedRange,
            _ => ModelVarianceType.FixedSmall,
        };
        var full = new GaussianDiffusion(o.Betas(), o.PredictionType, variance);
        return steps == T ? full : full.Respace(Schedules.DiffusionBetas.SpaceTimesteps(T, steps.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    /// <summary>The noise process and prediction type the model was trained with.</summary>
    public SchedulerOptions NoiseOptions { get; }

    /// <summary>The EDM preconditioning of the network, when the scheduler config names an EDM scheduler (else null).</summary>
    public EdmOptions? Edm { get; }

    private readonly double[] _vpSigmas = [];

    /// <summary>The network as a <see cref="DenoiserModel"/> for one class label per image (or none).</summary>
    public DenoiserModel Denoiser(int? classLabel = null, double guidanceScale = 1.0)
    {
        bool conditional = Unet.Config.NumClassEmbeds is int;
        if (conditional && classLabel == null && NullClass == null)
            throw new ArgumentException("This model is class conditional: give a class.");
        if (!conditional && classLabel != null) throw new ArgumentException("This model is not class conditional; drop the class label.");
        if (!conditional) return (x, t) => Scoped(() => Model(x, t, null));
        float label = classLabel ?? NullClass!.Value;
        double scale = classLabel != null ? guidanceScale : 1.0;  // the null class itself is never guided
        return (x, t) => Scoped(() => Guided(x, t, Enumerable.Repeat(label, x.Dim(0)).ToArray(), scale));
    }

    // Without a recorded graph only the output of a network call is needed afterwards: the rest goes back to the pool.
    private static Tensor Scoped(Func<Tensor> call)
    {
        if (GradMode.Enabled) return call();
        using var scope = TensorScope.Begin();
        return scope.Keep(call());
    }

    /// <summary>
    /// Reads an image (PNG, JPEG, BMP, GIF, TIFF, WebP; EXIF orientation applied, alpha dropped) and fits it to the model:
    /// center crop and resize to sample_size, channels converted; [1, C, S, S] in [-1, 1].
    /// </summary>
    public Tensor LoadImage(string path)
    {
        int s = Unet.Config.SampleSize ?? 32;
        var img = IO.ImageFile.Load(path, new IO.ImageLoadOptions { Size = s }).ConvertChannels(Unet.Config.InChannels);
        var chw = img.ToTensor();
        var x = chw.Reshape(1, Unet.Config.InChannels, s, s).Clone();
        chw.Dispose();
        return x;
    }

    private bool LearnedVariance => Unet.Config.OutChannels == 2 * Unet.Config.InChannels;

    /// <summary>
    /// Samples <see cref="SampleRequest.Count"/> images [N, C, H, W] in [-1, 1] (only the shard's <see cref="SampleRequest.ShardRange"/> when it is shared). <paramref name="progress"/> receives
    /// (model evaluations done, total); <paramref name="predictedX0"/> receives the current batch's prediction of x_0 after
    /// each step (valid only during the call).
    /// </summary>
    public Tensor Sample(SampleRequest request, Action<int, int>? progress = null, Action<Tensor>? predictedX0 = null)
    {
        if (request.Count < 1) throw new ArgumentOutOfRangeException(nameof(request), $"Count must be at least 1, got {request.Count}.");
        if (request.Count > MaxCount) throw new ArgumentOutOfRangeException(nameof(request), $"Count must be at most {MaxCount}, got {request.Count}.");
        if (request.Steps < 1 || request.Steps > MaxSteps) throw new ArgumentOutOfRangeException(nameof(request), $"Steps must be in 1..{MaxSteps}, got {request.Steps}.");
        if (request.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(request), $"Batch size must be at least 1, got {request.BatchSize}.");
        if (!double.IsFinite(request.GuidanceScale)) throw new ArgumentOutOfRangeException(nameof(request), $"Guidance scale must be a finite number, got {request.GuidanceScale}.");
        if (!double.IsFinite(request.Eta) || request.Eta < 0) throw new ArgumentOutOfRangeException(nameof(request), $"Eta must be a finite number >= 0, got {request.Eta}.");
        request = request with { Sampler = ResolveSampler(request.Sampler) };
        SamplerRegistry.Get(request.Sampler);
        bool conditional = Unet.Config.NumClassEmbeds is int;
        if (!conditional && request.ClassLabel != null) throw new ArgumentException("This model is not class conditional; drop the class label.");
        if (request.GuidanceScale != 1.0 && NullClass == null)
            throw new ArgumentException("Classifier-free guidance needs a model trained with a null class (class dropout); use guidance scale 1.");
        int numClasses = NullClass ?? Unet.Config.NumClassEmbeds ?? 0;
        if (request.ShardCount < 1 || request.ShardIndex < 0 || request.ShardIndex >= request.ShardCount)
            throw new ArgumentOutOfRangeException(nameof(request), $"Shard {request.ShardIndex} of {request.ShardCount} does not exist.");
        var (shardFirst, shardCount) = request.ShardRange;
        if (shardCount == 0) throw new ArgumentException($"Shard {request.ShardIndex} of {request.ShardCount} has no batch of {request.BatchSize} among {request.Count} images; use fewer processes or a smaller batch.");
        if (request.ClassLabel is int lab && (lab < 0 || lab >= numClasses))
            throw new ArgumentOutOfRangeException(nameof(request), $"Class {lab} is out of range; the model has classes 0..{numClasses - 1}.");

        using var _ = GradMode.NoGrad();
        using var frozen = Tensors.Kernels.Convolution.FrozenWeights();  // the weights stay fixed over every step of the sampling loop
        Unet.Eval();
        var gen = new Generator(request.Seed);
        int c = Unet.Config.InChannels, s = Unet.Config.SampleSize ?? 32;
        var chunks = new List<Tensor>();
        int done = 0, perChunkCalls = 0, totalCalls = 0;
        for (int start = 0; start < request.Count; start += request.BatchSize)
        {
            int n = Math.Min(request.BatchSize, request.Count - start);
            if (start < shardFirst || start >= shardFirst + shardCount)
            {
                gen.Offset += (ulong)(((long)n * c * s * s + 3) / 4);  // another shard's initial noise: skip it as drawing it would
                continue;
            }
            float[]? labels = null;
            if (conditional)
            {
                labels = new float[n];
                for (int i = 0; i < n; i++) labels[i] = request.ClassLabel ?? (start + i) % numClasses;
            }
            var noise = Tensor.Randn(gen, n, c, s, s);
            var chunkGen = new Generator(request.Seed + 1 + (ulong)start);
            chunks.Add(SampleChunk(request, noise, labels, chunkGen, predictedX0, calls =>
            {
                perChunkCalls = calls.total;
                totalCalls = perChunkCalls * ((shardCount + request.BatchSize - 1) / request.BatchSize);
                progress?.Invoke(done + calls.done, totalCalls);
            }));
            done += perChunkCalls;
        }
        if (chunks.Count == 1) return chunks[0];
        var all = Tensor.Concat(chunks, 0);
        foreach (var ch in chunks) ch.Dispose();
        return all;
    }

    /// <summary>Wall time spent inside the network's forward passes since the pipeline was created (sampling, editing, denoisers).</summary>
    public TimeSpan NetworkTime => TimeSpan.FromTicks(_networkTicks);

    /// <summary>Number of network forward passes since the pipeline was created.</summary>
    public long NetworkCalls => _networkCalls;

    private long _networkTicks, _networkCalls;

    /// <summary>
    /// When set, replaces <c>Unet.Forward(x, timesteps [N], classLabels [N] or null)</c> in every network call: runs the
    /// same model through another runtime (e.g. the ONNX export in ONNX Runtime) to check a deployment end to end.
    /// </summary>
    public Func<Tensor, Tensor, Tensor?, Tensor>? NetworkOverride { get; set; }

    // The model output in the scheduler's discrete-time convention: the network itself, or the epsilon view of an EDM denoiser.
    private Tensor Model(Tensor x, Tensor timesteps, Tensor? labels) => Edm == null ? Network(x, timesteps, labels)
        : new EdmDenoiser((xin, cNoise) => Network(xin, cNoise, labels), Edm.SigmaData).EpsilonFromVp(x, timesteps, _vpSigmas);

    private Tensor Network(Tensor x, Tensor timesteps, Tensor? labels)
    {
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        var y = NetworkOverride != null ? NetworkOverride(x, timesteps, labels) : Unet.Forward(x, timesteps, labels);
        Interlocked.Add(ref _networkTicks, System.Diagnostics.Stopwatch.GetElapsedTime(t0).Ticks);
        Interlocked.Increment(ref _networkCalls);
        return y;
    }

    // One network evaluation; only its output outlives the scope, every activation returns to the pool.
    private Tensor Eval(Tensor x, double t, float[]? labels, double scale) => Scoped(() =>
    {
        var ts = Tensor.Full(new Shape(x.Dim(0)), (float)t);
        return labels == null ? Model(x, ts, null) : Guided(x, ts, labels, scale, Model);
    });

    // One conditional evaluation, guided when scale != 1: eps = eps_u + w (eps_c - eps_u) (Ho and Salimans 2022, Eq. 6);
    // affine in the network output, so guiding F of an EDM model guides D and its epsilon view alike.
    private Tensor Guided(Tensor x, Tensor timesteps, float[] labels, double scale, Func<Tensor, Tensor, Tensor?, Tensor>? model = null)
    {
        int n = x.Dim(0);
        model ??= Model;
        if (scale == 1.0 || NullClass == null) return model(x, timesteps, Tensor.FromArray(labels, n));
        using var both = Tensor.Concat(new[] { x, x }, 0);
        using var t2 = Tensor.Concat(new[] { timesteps.Expand(new Shape(n)), timesteps.Expand(new Shape(n)) }, 0);
        var lv = new float[2 * n];
        for (int i = 0; i < n; i++) { lv[i] = labels[i]; lv[n + i] = NullClass.Value; }
        using var o = model(both, t2, Tensor.FromArray(lv, 2 * n));
        using var cond = o.Narrow(0, 0, n);
        using var unc = o.Narrow(0, n, n);
        return unc + (cond - unc) * (float)scale;
    }

    private Tensor MeanChannels(Tensor output)
    {
        if (!LearnedVariance) return output;
        var m = output.Narrow(1, 0, Unet.Config.InChannels);
        output.Dispose();
        return m;
    }

    /// <summary>
    /// Steps the sampler will run for <paramref name="steps"/> requested: a discrete-time scheduler has at most
    /// num_train_timesteps distinct steps, so more are capped there; the k-samplers run any number.
    /// </summary>
    public int ChainSteps(string sampler, int steps) =>
        SamplerRegistry.Get(ResolveSampler(sampler)).RunK != null ? steps : Math.Min(steps, NoiseOptions.NumTrainTimesteps);

    // A NaN/Inf stops sampling at the first step that shows it, before any image is written.
    private static void CheckFinite(Tensor t, string what)
    {
        var span = t.Span;
        for (int i = 0; i < span.Length; i++)
            if (!float.IsFinite(span[i]))
                throw new NonFiniteSampleException($"Sampling produced {span[i]} in {what}; check the model weights, scheduler_config.json and the guidance/eta options.");
    }

    private Tensor SampleChunk(SampleRequest req, Tensor noise, float[]? labels, Generator gen, Action<Tensor>? predictedX0, Action<(int done, int total)> progress)
    {
        var info = SamplerRegistry.Get(req.Sampler);
        if (info.RunK != null) return SampleK(info, req, noise, labels, gen, predictedX0, progress);
        var sched = info.CreateScheduler!(SchedulerConfig, req.Eta);
        sched.SetTimesteps(ChainSteps(req.Sampler, req.Steps));
        var ts = sched.Timesteps;
        var x = noise * (float)sched.InitNoiseSigma;
        noise.Dispose();
        bool keepVariance = sched is DDPMScheduler d && d.Settings.VarianceType is VarianceKind.Learned or VarianceKind.LearnedRange;
        for (int i = 0; i < ts.Count; i++)
        {
            using var xin = sched.ScaleModelInput(x, ts[i]);
            var output = Eval(xin, ts[i], labels, req.GuidanceScale);
            if (!keepVariance) output = MeanChannels(output);
            CheckFinite(output, $"the model output at step {i + 1} of {ts.Count} (t = {ts[i]})");
            var r = sched.Step(output, ts[i], x, generator: gen);
            output.Dispose();
            x.Dispose();
            x = r.PrevSample;
            CheckFinite(x, $"the sample after step {i + 1} of {ts.Count} (t = {ts[i]}, {req.Sampler} update)");
            progress((i + 1, ts.Count));
            predictedX0?.Invoke(r.PredOriginalSample);
            r.PredOriginalSample.Dispose();
        }
        return x.Clamp(-1f, 1f);
    }

    private Tensor SampleK(SamplerInfo info, SampleRequest req, Tensor noise, float[]? labels, Generator gen, Action<Tensor>? predictedX0, Action<(int done, int total)> progress)
    {
        int calls = 0;
        int total = info.ModelCalls(req.Steps);
        Func<Tensor, double, Tensor> checkedCall(Func<Tensor, double, Tensor> call) => (x, t) =>
        {
            CheckFinite(x, $"the sample entering network call {calls + 1} of {total} (t = {t:G4}, {req.Sampler} update)");
            var o = call(x, t);
            CheckFinite(o, $"the model output at network call {calls + 1} of {total} (t = {t:G4})");
            progress((Math.Min(++calls, total), total));
            return o;
        };
        Func<Tensor, double, Tensor> denoise;
        double[] sigmas;
        if (Edm != null)
        {
            // the k-samplers run directly over the EDM denoiser, on its own sigma schedule (Karras et al. 2022, Eq. 5)
            var net = labels == null ? (Func<Tensor, Tensor, Tensor>)((xin, c) => Network(xin, c, null)) : (xin, c) => Guided(xin, c, labels, req.GuidanceScale, Network);
            denoise = checkedCall((xs, sigma) => Scoped(() => new EdmDenoiser(net, Edm.SigmaData).Denoise(xs, sigma)));
            sigmas = Edm.Sigmas(req.Steps);
        }
        else
        {
            var denoiser = DiscreteTimeDenoiser.FromScheduler(new EulerDiscreteScheduler(SchedulerConfig),
                checkedCall((x, t) => MeanChannels(Eval(x, t, labels, req.GuidanceScale))));
            denoise = denoiser.Denoise;
            sigmas = denoiser.GetSigmas(req.Steps);
        }
        var x = noise * (float)sigmas[0];
        noise.Dispose();
        Func<Tensor, double, Tensor> d = predictedX0 == null ? denoise : (xs, sigma) =>
        {
            var x0 = denoise(xs, sigma);  // D(x; sigma) is the x_0 prediction (Karras et al. 2022, Eq. 2)
            predictedX0(x0);
            return x0;
        };
        var result = info.RunK!(d, x, sigmas, gen);
        x.Dispose();
        CheckFinite(result, $"the final sample ({req.Sampler}, {req.Steps} steps)");
        var clamped = result.Clamp(-1f, 1f);
        result.Dispose();
        return clamped;
    }
}
