using System.Diagnostics;
using System.Text.Json;
using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.IO;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Optim;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Training;

/// <summary>Raised when the loss becomes NaN or infinite; the weights of the last checkpoint are kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>Numbers from one optimizer step.</summary>
public readonly record struct TrainStepResult(long Step, double Loss, double LearningRate, double GradNorm);

/// <summary>
/// Trains a UNet2DModel on an image data set with a diffusion objective. Every random stream (timesteps and noise,
/// dropout, label dropout, data order) is a counter-based generator whose position is checkpointed, so a resumed run
/// continues bit-exactly.
/// </summary>
public sealed class Trainer
{
    /// <summary>Name of the checkpoint folder inside the output directory.</summary>
    public const string CheckpointDir = "checkpoint";

    private readonly Generator _noiseGen, _dropoutGen, _labelGen;
    private readonly Tensor[] _params;
    private readonly LinearWarmup _schedule;
    private readonly ICommunicator _comm;
    private readonly int _shardFirst, _shardCount, _micro;
    private readonly TreeNode _tree;
    private MicroBatchTree? _sum;
    private GradientReducer? _reducer;
    private readonly Diffusion.Losses.EdmLoss? _edm;

    /// <summary>Run settings.</summary>
    public TrainOptions Options { get; }
    /// <summary>Where checkpoints, metrics, samples and the exported model go.</summary>
    public string OutputDir { get; }
    /// <summary>The network being trained.</summary>
    public UNet2DModel Model { get; }
    /// <summary>The training process (betas, losses).</summary>
    public GaussianDiffusion Diffusion { get; }
    /// <summary>The optimizer.</summary>
    public Adam Optimizer { get; }
    /// <summary>EMA of the weights (null when disabled).</summary>
    public Ema? Ema { get; }
    /// <summary>The batch source.</summary>
    public DataLoader Loader { get; }
    /// <summary>Number of classes of the data set (labels 0..K-1; K is the null class of a conditional model).</summary>
    public int NumClasses { get; }
    /// <summary>Class names, when the data set has them.</summary>
    public IReadOnlyList<string> ClassNames { get; }
    /// <summary>The settings stored in the checkpoint a resumed run started from (null for a new run).</summary>
    public TrainOptions? StoredOptions { get; private init; }

    /// <summary>Optimizer steps done.</summary>
    public long Step { get; private set; }
    /// <summary>The ranks training this model together (a single process unless launched by mpirun).</summary>
    public ICommunicator Communicator => _comm;
    /// <summary>True on the rank that writes logs, metrics, sample grids and checkpoints (rank 0).</summary>
    public bool IsRoot => _comm.Rank == 0;
    /// <summary>The gradient all-reduce of a data-parallel run (null in a single process or before the first step).</summary>
    public GradientReducer? Reducer => _reducer;
    /// <summary>Images of every global batch this rank computes (whole micro-batches).</summary>
    public int ShardImages => _shardCount;
    /// <summary>Size of the gradient all-reduce buckets of a data-parallel run.</summary>
    public long GradientBucketBytes { get; set; } = 8L << 20;

    private static readonly JsonSerializerOptions IndentedJson = new() { WriteIndented = true };

    private Trainer(TrainOptions options, string outputDir, IDataset data, IReadOnlyList<string> classNames, UNet2DConfig cfg, ICommunicator? comm,
        IReadOnlyDictionary<string, Tensor>? initialWeights = null)
    {
        _comm = comm ?? SingleProcess.Instance;
        if (options.MicroBatch < 1) throw new ArgumentException($"The micro-batch must be at least 1 image, got {options.MicroBatch}.");
        int micro = Math.Min(options.MicroBatch, options.BatchSize), leaves = (options.BatchSize + micro - 1) / micro;
        if (_comm.Size > leaves)
            throw new ArgumentException($"--batch {options.BatchSize} in micro-batches of {micro} gives {leaves} micro-batches for {_comm.Size} ranks; every rank needs at least one (lower --micro-batch).");
        // rank r of 2^L ranks holds node (L, r) of the micro-batch tree, a subtree of the one-process sum; other N hold equal runs
        int lo = (int)((long)leaves * _comm.Rank / _comm.Size), hi = (int)((long)leaves * (_comm.Rank + 1) / _comm.Size);
        _tree = (_comm.Size & (_comm.Size - 1)) == 0
            ? new TreeNode(leaves, 0, System.Numerics.BitOperations.Log2((uint)_comm.Size), _comm.Rank)
            : new TreeNode(hi - lo, lo, 0, 0);
        _shardFirst = _tree.Lo * micro;
        _shardCount = Math.Min(_tree.Hi * micro, options.BatchSize) - _shardFirst;
        _micro = micro;
        Options = options;
        OutputDir = outputDir;
        ClassNames = classNames;
        NumClasses = Math.Max(classNames.Count, 1);
        var seed = options.Seed;
        Model = new UNet2DModel(cfg, new Generator(seed * 4 + 1));
        if (initialWeights != null) Model.LoadStateDict(initialWeights, strict: true);  // before the optimizer and the EMA copy them
        _noiseGen = new Generator(seed * 4 + 2);
        _dropoutGen = new Generator(seed * 4 + 3);
        _labelGen = new Generator(seed * 4 + 4);
        Model.SetDropoutGenerator(_dropoutGen);
        Model.Train();
        var noise = options.NoiseSchedule();
        noise.Validate("training options");
        Diffusion = new GaussianDiffusion(noise.Betas(),
            options.VPrediction ? PredictionType.VPrediction : PredictionType.Epsilon,
            options.Objective == TrainObjective.Hybrid ? ModelVarianceType.LearnedRange : ModelVarianceType.FixedSmall,
            options.Objective == TrainObjective.Hybrid ? DiffusionLossType.Hybrid : DiffusionLossType.Simple)
        {
            MinSnrGamma = options.Objective == TrainObjective.MinSnr ? options.MinSnrGamma : null,
        };
        if (options.Objective == TrainObjective.Edm)
        {
            if (options.VPrediction) throw new ArgumentException("The EDM objective trains the F of its own preconditioning; drop --v-prediction.");
            _edm = new Diffusion.Losses.EdmLoss(options.EdmPMean, options.EdmPStd, options.EdmSigmaData);
            if (!(options.EdmPStd >= 0 && double.IsFinite(options.EdmPMean) && options.EdmSigmaData > 0))
                throw new ArgumentOutOfRangeException(nameof(options), $"EDM needs a finite P_mean, P_std >= 0 and sigma_data > 0; got {options.EdmPMean}, {options.EdmPStd}, {options.EdmSigmaData}.");
        }
        _params = Model.Parameters().ToArray();
        Optimizer = new Adam(_params, options.LearningRate);
        _schedule = new LinearWarmup(options.LearningRate, options.WarmupSteps,
            options.LrSchedule == LrSchedule.Cosine ? AfterWarmup.Cosine : AfterWarmup.Constant, Math.Max(options.Steps, options.WarmupSteps));
        Ema = options.EmaStd is double std ? new Ema(_params, 1.0) { PowerGamma = Ema.GammaFromSigmaRel(std) }
            : options.EmaDecay > 0 ? new Ema(_params, options.EmaDecay) : null;
        Loader = new DataLoader(data, options.BatchSize, seed * 4, shuffle: true, randomFlip: options.RandomFlip);
        foreach (var p in _params) _comm.Broadcast(p.Span);  // every rank starts from rank 0's weights
    }

    /// <summary>The model config implied by the options and the data (channels, size, classes, variance channels).</summary>
    public static UNet2DConfig BuildConfig(TrainOptions options, IDataset data) =>
        FitToData(options.InitFrom != null ? UNet2DConfig.Load(Path.Combine(InitFolder(options.InitFrom), "config.json"))
            : options.ModelConfigPath != null ? UNet2DConfig.Load(options.ModelConfigPath) : UNet2DModel.PresetConfig(options.Preset), options, data);

    /// <summary>
    /// The diffusers UNet folder that <see cref="TrainOptions.InitFrom"/> names: the folder itself when it holds config.json and
    /// diffusion_pytorch_model.safetensors, else its unet/ (an exported model or a run folder).
    /// </summary>
    public static string InitFolder(string path)
    {
        static bool IsUnet(string d) => File.Exists(Path.Combine(d, "config.json")) && File.Exists(Path.Combine(d, "diffusion_pytorch_model.safetensors"));
        if (IsUnet(path)) return path;
        if (IsUnet(Path.Combine(path, "unet"))) return Path.Combine(path, "unet");
        throw new DirectoryNotFoundException(Directory.Exists(path)
            ? $"--init {path}: neither a diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) nor a model or run folder with one in unet/."
            : $"--init {path}: folder not found.");
    }

    // What the network predicts is not in its config.json but in the scheduler config beside it (a model or run folder):
    // fine-tuning an EDM network as an epsilon one, or an epsilon one as v, starts from weights that answer another question.
    private static void CheckInitObjective(string unetFolder, TrainOptions options)
    {
        var path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(unetFolder))!, "scheduler", "scheduler_config.json");
        if (!File.Exists(path)) return;
        SchedulerConfig config;
        PredictionType? prediction;
        try
        {
            config = SchedulerConfig.Load(path);
            prediction = config.Contains("prediction_type") ? config.Bind<SchedulerOptions>().PredictionType : null;
        }
        // the scheduler config only informs this check; the weights were read and checked above
        catch (Exception e) when (e is FormatException or NotSupportedException or ArgumentException) { return; }
        string? cls = config.ClassName;
        string at = $"--init {options.InitFrom}", hint = $" (to fine-tune it as another objective anyway, pass --init {unetFolder} itself)";
        bool edm = EdmOptions.Describes(config);
        if (edm && options.Objective != TrainObjective.Edm)
            throw new InvalidDataException($"{at}: the model was trained with --objective edm ({path} is {cls}); pass --objective edm{hint}.");
        if (!edm && cls != null && options.Objective == TrainObjective.Edm)
            throw new InvalidDataException($"{at}: the model was not trained with --objective edm ({path} is {cls}); drop --objective edm{hint}.");
        if (!edm && prediction == PredictionType.VPrediction && !options.VPrediction)
            throw new InvalidDataException($"{at}: the model predicts v ({path}); add --v-prediction{hint}.");
        if (!edm && prediction == PredictionType.Epsilon && options.VPrediction)
            throw new InvalidDataException($"{at}: the model predicts epsilon ({path}); drop --v-prediction{hint}.");
    }

    // The sizes the data and objective impose must be the pretrained network's: say which differs, and how to fix it.
    private static void CheckInitFits(UNet2DConfig stored, UNet2DConfig fitted, string folder, TrainOptions options)
    {
        string at = $"--init {folder}";
        if (stored.InChannels != fitted.InChannels)
            throw new InvalidDataException($"{at}: the model takes {stored.InChannels}-channel images; the data set's have {fitted.InChannels}.");
        if (stored.OutChannels != fitted.OutChannels)
            throw new InvalidDataException($"{at}: the model outputs {stored.OutChannels} channels; the {options.Objective} objective on this data needs {fitted.OutChannels} (--objective hybrid learns variances and doubles the image channels).");
        if (stored.NumClassEmbeds != fitted.NumClassEmbeds)
            throw new InvalidDataException(stored.NumClassEmbeds is not int sc
                ? $"{at}: the model is unconditional; drop --class-conditional."
                : fitted.NumClassEmbeds is not int fc
                    ? $"{at}: the model is class-conditional ({sc - 1} classes and the null class); add --class-conditional."
                    : $"{at}: the model has {sc - 1} classes (and the null class); the data set has {fc - 1}.");
    }

    // The architecture from a config or preset, with the sizes the data set and the objective impose.
    private static UNet2DConfig FitToData(UNet2DConfig cfg, TrainOptions options, IDataset data)
    {
        int classes = data is InMemoryImageDataset m ? Math.Max(m.ClassNames.Count, 1) : 1;
        return cfg with
        {
            SampleSize = data.Size,
            InChannels = data.Channels,
            OutChannels = options.Objective == TrainObjective.Hybrid ? 2 * data.Channels : data.Channels,
            NumClassEmbeds = options.ClassConditional ? classes + 1 : null,
            NumTrainTimesteps = options.NumTrainTimesteps,
            Dropout = options.Dropout is double p ? (float)p : cfg.Dropout,
        };
    }

    /// <summary>Starts a new run writing into <paramref name="outputDir"/>.</summary>
    public static Trainer Create(TrainOptions options, string outputDir, IDataset data, ICommunicator? comm = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), $"Batch size must be at least 1, got {options.BatchSize}.");
        if (options.Steps < 1) throw new ArgumentOutOfRangeException(nameof(options), $"Steps must be at least 1, got {options.Steps}.");
        if (options.NumTrainTimesteps is < 2 or > MaxTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(options), $"NumTrainTimesteps must be in 2..{MaxTrainTimesteps}, got {options.NumTrainTimesteps}.");
        var cfg = BuildConfig(options, data);
        Dictionary<string, Tensor>? init = null;
        if (options.InitFrom != null)
        {
            var folder = InitFolder(options.InitFrom);
            var pretrained = UNet2DModel.FromPretrained(folder);  // checks the weights against the config, and that they are finite
            CheckInitFits(pretrained.Config, cfg, options.InitFrom, options);
            if (folder != options.InitFrom) CheckInitObjective(folder, options);  // a UNet folder named itself is taken as asked
            init = pretrained.StateDict();
        }
        Directory.CreateDirectory(outputDir);
        return new Trainer(options, outputDir, data, ClassNamesOf(data), cfg, comm, init);
    }

    /// <summary>Largest accepted number of diffusion steps T (tables of T doubles are built from it).</summary>
    public const int MaxTrainTimesteps = 100_000;

    private static IReadOnlyList<string> ClassNamesOf(IDataset data) =>
        data is InMemoryImageDataset m && m.ClassNames.Count > 0 ? m.ClassNames : new[] { "all" };

    /// <summary>Name of the file that completes a checkpoint folder (written last).</summary>
    public const string StateFile = "trainer_state.json";

    /// <summary>True when <paramref name="outputDir"/> holds a complete checkpoint to resume from.</summary>
    public static bool HasCheckpoint(string outputDir) => CheckpointStore.FindLoadable(outputDir, StateFile) != null;

    /// <summary>True when <paramref name="outputDir"/> holds anything of an earlier run (a checkpoint folder, complete or not, or metrics).</summary>
    public static bool HasPreviousRun(string outputDir) =>
        CheckpointStore.AnyExists(outputDir) || File.Exists(Path.Combine(outputDir, "metrics.jsonl"));

    /// <summary>Deletes an earlier run's checkpoints, metrics, loss curve and sample grids from <paramref name="outputDir"/>.</summary>
    public static void DeletePreviousRun(string outputDir)
    {
        CheckpointStore.DeleteAll(outputDir);
        foreach (var f in new[] { "metrics.jsonl", "loss.png" }) File.Delete(Path.Combine(outputDir, f));
        var samples = Path.Combine(outputDir, "samples");
        if (Directory.Exists(samples)) Directory.Delete(samples, recursive: true);
    }

    /// <summary>
    /// Resumes the run in <paramref name="outputDir"/> from its checkpoint; <paramref name="steps"/> optionally raises the total.
    /// The data set must be the one the run was started with.
    /// </summary>
    public static Trainer Resume(string outputDir, IDataset data, long? steps = null, ICommunicator? comm = null)
    {
        string dir = CheckpointStore.FindLoadable(outputDir, StateFile)
            ?? throw new FileNotFoundException($"No checkpoint to resume in {outputDir} (expected {Path.Combine(outputDir, CheckpointDir, StateFile)}).");
        var statePath = Path.Combine(dir, StateFile);
        var state = IO.JsonFile.Read<TrainerState>(statePath, "trainer state");
        if (state.Options == null || state.ModelConfig == null || state.DataLoader == null)
            throw new InvalidDataException($"{statePath}: not a valid trainer state (Options, ModelConfig or DataLoader missing).");
        if (state.Step < 0 || state.Options.Steps < 1 || state.Options.BatchSize < 1 || state.Options.NumTrainTimesteps is < 2 or > MaxTrainTimesteps)
            throw new InvalidDataException($"{statePath}: out-of-range Step, Options.Steps, Options.BatchSize or Options.NumTrainTimesteps.");
        var options = steps is long s ? state.Options with { Steps = s } : state.Options;
        // the architecture stored in the checkpoint is the truth: the config file it came from may have moved or changed
        var stored = UNet2DConfig.Parse(state.ModelConfig, statePath + " (ModelConfig)");
        stored.Validate(statePath + " (ModelConfig)");
        var cfg = FitToData(stored, options, data);
        if (cfg.ToJson() != state.ModelConfig)
            throw new InvalidDataException($"{statePath}: the checkpoint was made for another model config or data set (channels/size/classes differ).");
        var t = new Trainer(options, outputDir, data, ClassNamesOf(data), cfg, comm) { StoredOptions = state.Options };
        t.Model.LoadStateDict(SafeTensors.Load(Path.Combine(dir, "model.safetensors")), strict: true);
        t.Optimizer.LoadStateDict(SafeTensors.Load(Path.Combine(dir, "optimizer.safetensors")));
        if (t.Ema != null) t.Ema.LoadStateDict(SafeTensors.Load(Path.Combine(dir, "ema.safetensors")));
        t.Step = state.Step;
        t._noiseGen.Offset = state.NoiseOffset;
        t._dropoutGen.Offset = state.DropoutOffset;
        t._labelGen.Offset = state.LabelOffset;
        t.Loader.Restore(DataLoaderState.FromJson(state.DataLoader));
        if (t.IsRoot) t.TrimMetrics();
        t.CheckRanksAgree("resumed step", t.Step);
        return t;
    }

    /// <summary>Runs one optimizer step on the next batch.</summary>
    public TrainStepResult TrainStep()
    {
        using var scope = TensorScope.Begin();  // every activation, saved buffer and intermediate gradient returns to the pool here
        // Every draw is indexed by the sample's place in the global batch, so a rank's shard sees exactly the values
        // one process training the whole batch would (one counter block per timestep and per label-dropout draw).
        int B = Options.BatchSize, first = _shardFirst;
        using var batch = Loader.Next(first, _shardCount);
        int b = batch.Images.Dim(0);
        var t = new int[b];
        var sigmas = new double[_edm != null ? b : 0];
        ulong tStart = _noiseGen.Offset;
        _noiseGen.Offset = tStart + (ulong)first;
        Span<float> z = stackalloc float[1];
        for (int i = 0; i < b; i++)
        {
            if (_edm == null) { t[i] = _noiseGen.NextInt(Diffusion.NumTimesteps); continue; }
            _noiseGen.Normal(z);  // one counter block per sample, as a timestep draw
            sigmas[i] = _edm.SigmaFromNormal(z[0]);
        }
        _noiseGen.Offset = tStart + (ulong)B;
        float[]? lv = null;
        if (Options.ClassConditional)
        {
            lv = new float[b];
            ulong lStart = _labelGen.Offset;
            _labelGen.Offset = lStart + (ulong)first;
            for (int i = 0; i < b; i++)
                lv[i] = _labelGen.NextDouble() < Options.ClassDropout ? NumClasses : batch.Labels[i];  // null class for CFG
            _labelGen.Offset = lStart + (ulong)B;
        }
        double lr = _schedule.LearningRateAt(Step);
        Optimizer.LearningRate = lr;
        if (_comm.Size > 1) _reducer ??= new GradientReducer(_comm, _params, GradientBucketBytes);
        _sum ??= new MicroBatchTree(_params);
        ulong noiseStart = _noiseGen.Offset, dropoutStart = _dropoutGen.Offset;
        double value = 0;
        // The gradient of the global batch's mean loss: per micro-batch, (sum of its per-sample losses) / B, added in the fixed tree.
        _sum.Run(_tree, (m, hook) =>
        {
            using var micro = TensorScope.Begin();
            int g0 = m * _micro, n = Math.Min(B, g0 + _micro) - g0, local = g0 - first;
            using var x0 = batch.Images.Narrow(0, local, n);
            _noiseGen.Offset = noiseStart;
            _noiseGen.BatchShard = (g0, n, B);
            using var noise = Tensor.Randn(_noiseGen, x0.Shape.ToArray());
            _noiseGen.BatchShard = null;
            _dropoutGen.Offset = dropoutStart;
            _dropoutGen.BatchShard = (g0, n, B);
            using var labels = lv == null ? null : Tensor.FromArray(lv.AsSpan(local, n).ToArray(), n);
            var perSample = _edm != null
                ? _edm.Losses(new Diffusion.Samplers.EdmDenoiser((x, c) => Model.Forward(x, c, labels), _edm.SigmaData), x0, sigmas.AsSpan(local, n).ToArray(), noise)
                : Diffusion.TrainingLosses((x, ts) => Model.Forward(x, ts, labels), x0, t.AsSpan(local, n).ToArray(), noise).Loss;
            _dropoutGen.BatchShard = null;
            var loss = perSample.SumAll() * (1f / B);
            value += loss.Item();
            loss.Backward(releaseIntermediates: true, onLeafGradReady: hook);
            loss.Dispose();
        }, _reducer == null ? null : _reducer.OnGradReady);
        _reducer?.Finish();  // summed gradients of the global batch: the same optimizer step on every rank
        if (_comm.Size > 1)
        {
            var global = new[] { value };
            _comm.AllReduceSum(global);  // every rank sees the same loss, so every rank stops together on NaN
            value = global[0];
        }
        if (!double.IsFinite(value))
        {
            Model.ZeroGrad();
            throw new TrainingDivergedException($"Loss became {value} at step {Step + 1}; stopping. " + (HasCheckpoint(OutputDir)
                ? $"The last checkpoint in {Path.Combine(OutputDir, CheckpointDir)} is kept."
                : "No checkpoint was written yet; lower --lr or raise --warmup and start again."));
        }
        double norm = Options.GradClip > 0 ? GradClip.ClipGlobalNorm(_params, Options.GradClip) : double.NaN;
        Optimizer.Step();
        Optimizer.ZeroGrad();
        Ema?.Step(_params);
        Step++;
        return new TrainStepResult(Step, value, lr, norm);
    }

    /// <summary>
    /// Trains until <see cref="TrainOptions.Steps"/> or cancellation, writing metrics, checkpoints and sample grids.
    /// On cancellation a checkpoint is written before returning.
    /// </summary>
    public void Run(CancellationToken cancel, Action<TrainStepResult, double>? onStep = null, Action<string>? onEvent = null)
    {
        var metricsPath = Path.Combine(OutputDir, "metrics.jsonl");
        var sw = Stopwatch.StartNew();
        long imagesSince = 0;
        bool stop = false;
        while (Step < Options.Steps && !(stop = AnyRank(cancel.IsCancellationRequested)))
        {
            var r = TrainStep();
            imagesSince += Options.BatchSize;
            double ips = imagesSince / Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
            onStep?.Invoke(r, ips);
            if (Options.LogEvery > 0 && r.Step % Options.LogEvery == 0)
            {
                if (IsRoot) File.AppendAllText(metricsPath, JsonSerializer.Serialize(new { step = r.Step, loss = r.Loss, lr = r.LearningRate, grad_norm = double.IsNaN(r.GradNorm) ? (double?)null : r.GradNorm, images_per_s = ips, total_steps = Options.Steps, batch_size = Options.BatchSize }) + "\n");
                sw.Restart();
                imagesSince = 0;
            }
            if (Options.CheckpointEvery > 0 && r.Step % Options.CheckpointEvery == 0 && r.Step < Options.Steps)
            {
                SaveCheckpoint();
                onEvent?.Invoke($"checkpoint at step {r.Step}");
            }
            if (Options.SampleEvery > 0 && r.Step % Options.SampleEvery == 0 && IsRoot)
            {
                var path = SaveSampleGrid();
                onEvent?.Invoke($"samples at step {r.Step}: {path}");
            }
        }
        SaveCheckpoint();
        onEvent?.Invoke(stop ? $"interrupted: checkpoint at step {Step}" : $"finished: checkpoint at step {Step}");
    }

    /// <summary>
    /// Writes the checkpoint (weights, EMA, optimizer, step, every random stream's position) atomically: into a temporary
    /// folder first, then swapped in by renames. Also exports the EMA weights as a diffusers model folder and a loss-curve PNG.
    /// </summary>
    public void SaveCheckpoint()
    {
        var ranks = GatherRankStates();  // collective: every rank calls SaveCheckpoint at the same step
        if (!IsRoot) return;
        var state = new TrainerState(Step, Options, Model.Config.ToJson(), _noiseGen.Offset, _dropoutGen.Offset, _labelGen.Offset, Loader.State.ToJson(),
            _comm.Size, ranks);
        CheckpointStore.Save(OutputDir, StateFile, JsonSerializer.Serialize(state, IndentedJson), tmp =>
        {
            SafeTensors.Save(Path.Combine(tmp, "model.safetensors"), Model.StateDict());
            SafeTensors.Save(Path.Combine(tmp, "optimizer.safetensors"), Optimizer.StateDict());
            if (Ema != null) SafeTensors.Save(Path.Combine(tmp, "ema.safetensors"), Ema.StateDict());
        });
        ExportModel(OutputDir);
        WriteLossCurve();
    }

    // After a resume, metrics lines past the checkpoint's step (and a line cut short by a crash) would repeat: keep the rest.
    private void TrimMetrics()
    {
        var path = Path.Combine(OutputDir, "metrics.jsonl");
        if (!File.Exists(path)) return;
        var kept = new List<string>();
        bool changed = false;
        foreach (var line in File.ReadLines(path))
        {
            if (MetricsStep(line) is long step && step <= Step) kept.Add(line);
            else changed = true;
        }
        if (!changed) return;
        var tmp = path + ".tmp";
        File.WriteAllLines(tmp, kept);
        File.Move(tmp, path, overwrite: true);
    }

    // The step of one metrics line, or null for a line that is not a complete JSON object with a step.
    private static long? MetricsStep(string line)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("step", out var s) && s.TryGetInt64(out long v) ? v : null;
        }
        catch (JsonException) { return null; }
    }

    /// <summary>
    /// Writes a sampling-ready model folder: <c>unet/</c> (EMA weights when enabled, diffusers layout),
    /// <c>scheduler/scheduler_config.json</c> and <c>model_info.json</c> (class names, null class), through
    /// <see cref="ModelFolderWriter"/> so a crash part-way leaves the previous export loadable.
    /// </summary>
    public void ExportModel(string directory, bool half = false) => ModelFolderWriter.Write(directory, stage => WriteModelFiles(stage, half));

    private void WriteModelFiles(string directory, bool half)
    {
        Ema?.Store(_params);
        Ema?.CopyTo(_params);
        try
        {
            var unetDir = Path.Combine(directory, "unet");
            Model.SavePretrained(unetDir);
            if (half)
                SafeTensors.Save(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors"), Model.StateDict(), SafeTensorDType.F16,
                    new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            Ema?.Restore(_params);
        }
        var schedDir = Path.Combine(directory, "scheduler");
        Directory.CreateDirectory(schedDir);
        File.WriteAllText(Path.Combine(schedDir, "scheduler_config.json"), SchedulerConfigJson() + "\n");
        File.WriteAllText(Path.Combine(directory, "model_info.json"), JsonSerializer.Serialize(new ModelInfo(
            ClassNames.ToArray(), Options.ClassConditional ? NumClasses : null, Options.Data, Step), IndentedJson) + "\n");
    }

    /// <summary>The diffusers DDPMScheduler config of the training process: its betas are the ones trained with.</summary>
    public string SchedulerConfigJson()
    {
        var noise = Options.NoiseSchedule();
        var cfg = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["_class_name"] = Options.Objective == TrainObjective.Edm ? "EDMEulerScheduler" : "DDPMScheduler",
            ["_diffusers_version"] = "0.30.3",
            ["beta_end"] = noise.BetaEnd,
            ["beta_schedule"] = DiffusionSharp.Diffusion.Schedules.ConfigNames.Name(noise.BetaSchedule),
            ["beta_start"] = noise.BetaStart,
            ["trained_betas"] = noise.TrainedBetas,
            ["rescale_betas_zero_snr"] = noise.RescaleBetasZeroSnr,
            ["clip_sample"] = true,
            ["dynamic_thresholding_ratio"] = 0.995,
            ["num_train_timesteps"] = Options.NumTrainTimesteps,
            ["prediction_type"] = Options.VPrediction ? "v_prediction" : "epsilon",
            ["sample_max_value"] = 1.0,
            // pixel-space models: keep x0 predictions in [-1, 1] in every scheduler that supports it (Saharia et al. 2022, dynamic thresholding)
            ["thresholding"] = true,
            ["variance_type"] = Options.Objective == TrainObjective.Hybrid ? "learned_range" : "fixed_small",
        };
        if (Options.Objective == TrainObjective.Edm)
        {
            // diffusers EDMEulerScheduler keys: prediction_type epsilon is its name for the F of D = c_skip x + c_out F
            var edm = new EdmOptions { SigmaData = Options.EdmSigmaData };
            cfg["sigma_min"] = edm.SigmaMin;
            cfg["sigma_max"] = edm.SigmaMax;
            cfg["sigma_data"] = edm.SigmaData;
            cfg["sigma_schedule"] = "karras";
            cfg["rho"] = edm.Rho;
            cfg["final_sigmas_type"] = "zero";
        }
        return JsonSerializer.Serialize(cfg, IndentedJson);
    }

    /// <summary>Samples a grid with the EMA weights and writes <c>samples/step_N.png</c>; returns its path.</summary>
    public string SaveSampleGrid(int count = 16, int steps = 20)
    {
        var dir = Path.Combine(OutputDir, "samples");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, $"step_{Step:D7}.png");
        Ema?.Store(_params);
        Ema?.CopyTo(_params);
        Model.Eval();
        try
        {
            var pipe = new DiffusionPipeline(Model, SchedulerConfigJson(),
                Options.ClassConditional ? NumClasses : null, ClassNames);
            using var images = pipe.Sample(new SampleRequest { Count = count, Steps = steps, Seed = 1234 });
            ImageGrid.Save(path, images, nrow: (int)Math.Ceiling(Math.Sqrt(count)));
        }
        finally
        {
            Model.Train();
            Ema?.Restore(_params);
        }
        return path;
    }

    private void WriteLossCurve()
    {
        var metricsPath = Path.Combine(OutputDir, "metrics.jsonl");
        if (!File.Exists(metricsPath)) return;
        var xs = new List<double>();
        var ys = new List<double>();
        foreach (var line in File.ReadLines(metricsPath))
        {
            if (MetricsStep(line) is not long step) continue;  // a line cut short by a crash is not plotted
            using var doc = JsonDocument.Parse(line);
            if (!doc.RootElement.TryGetProperty("loss", out var loss) || loss.ValueKind != JsonValueKind.Number) continue;
            xs.Add(step);
            ys.Add(loss.GetDouble());
        }
        if (xs.Count < 2) return;
        var plot = new LinePlot { Title = "training loss", XLabel = "step", YLabel = "loss" };
        plot.Add("loss", xs, ys);
        plot.Save(Path.Combine(OutputDir, "loss.png"));
    }

    private sealed record TrainerState(long Step, TrainOptions Options, string ModelConfig, ulong NoiseOffset, ulong DropoutOffset, ulong LabelOffset, string DataLoader,
        int WorldSize = 1, RankState[]? Ranks = null);

    /// <summary>
    /// One rank's place in the run: its shard of every global batch and the positions of its random streams and data order.
    /// The streams are indexed by global sample, so every rank's positions are the same; a checkpoint records them all.
    /// </summary>
    private sealed record RankState(int Rank, int ShardFirst, int ShardCount, ulong NoiseOffset, ulong DropoutOffset, ulong LabelOffset,
        int LoaderEpoch, int LoaderIndex, ulong LoaderOffset);

    private const int RankFields = 9;

    // All ranks' states on every rank (an all-reduce of a zero-filled table in which each rank fills its own row).
    private RankState[] GatherRankStates()
    {
        var ls = Loader.State;
        var table = new double[_comm.Size * RankFields];
        double[] mine = [_comm.Rank, _shardFirst, _shardCount, _noiseGen.Offset, _dropoutGen.Offset, _labelGen.Offset, ls.Epoch, ls.Index, ls.GeneratorOffset];
        mine.CopyTo(table, _comm.Rank * RankFields);
        _comm.AllReduceSum(table);
        var states = new RankState[_comm.Size];
        for (int r = 0; r < _comm.Size; r++)
        {
            var v = table.AsSpan(r * RankFields, RankFields);
            states[r] = new RankState((int)v[0], (int)v[1], (int)v[2], (ulong)v[3], (ulong)v[4], (ulong)v[5], (int)v[6], (int)v[7], (ulong)v[8]);
            if (states[r] with { Rank = 0, ShardFirst = 0, ShardCount = 0 } != states[0] with { Rank = 0, ShardFirst = 0, ShardCount = 0 })
                throw new InvalidOperationException($"Rank {r}'s random streams or data order ({states[r]}) differ from rank 0's ({states[0]}); the ranks no longer train the same global batches.");
        }
        return states;
    }

    // Throws on every rank when the ranks hold different values of a quantity that must agree.
    private void CheckRanksAgree(string what, long value)
    {
        if (_comm.Size == 1) return;
        var mm = new double[_comm.Size];
        mm[_comm.Rank] = value;
        _comm.AllReduceSum(mm);
        if (mm.Any(x => x != value))
            throw new InvalidOperationException($"The ranks disagree on the {what}: {string.Join(", ", mm.Select((x, r) => $"rank {r}: {x}"))}.");
    }

    // True on every rank when any rank's flag is set (so all ranks stop at the same step).
    private bool AnyRank(bool flag)
    {
        if (_comm.Size == 1) return flag;
        var v = new[] { flag ? 1.0 : 0.0 };
        _comm.AllReduceSum(v);
        return v[0] > 0;
    }
}

/// <summary>What a trained model folder says about its classes (written beside unet/ and scheduler/).</summary>
/// <param name="ClassNames">Names of the classes, in label order.</param>
/// <param name="NullClass">The label meaning "no class" for classifier-free guidance, when the model is conditional.</param>
/// <param name="Data">The data set it was trained on.</param>
/// <param name="Steps">Optimizer steps it was trained for.</param>
public sealed record ModelInfo(string[] ClassNames, int? NullClass, string Data, long Steps);
