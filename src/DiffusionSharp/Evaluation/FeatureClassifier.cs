using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionSharp.Autograd;
using DiffusionSharp.IO;
using DiffusionSharp.Nn;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Evaluation;

/// <summary>Architecture and provenance of a <see cref="FeatureClassifier"/>, stored as the folder's <c>config.json</c>.</summary>
public sealed record ClassifierConfig
{
    /// <summary>The architecture tag written to config.json.</summary>
    public const string ArchitectureName = "DiffusionSharpFeatureClassifier";

    /// <summary>Architecture tag; loading refuses other values.</summary>
    [JsonPropertyName("architecture")] public string Architecture { get; init; } = ArchitectureName;

    /// <summary>Height and width of the input images.</summary>
    [JsonPropertyName("image_size")] public int ImageSize { get; init; } = 28;

    /// <summary>Input channels (1 gray, 3 RGB).</summary>
    [JsonPropertyName("in_channels")] public int InChannels { get; init; } = 1;

    /// <summary>Output channels of each 3x3 convolution; every one after the first halves the resolution (stride 2).</summary>
    [JsonPropertyName("channels")] public int[] Channels { get; init; } = [32, 64, 128];

    /// <summary>Width of the penultimate layer: the feature vector used for FID, precision and recall.</summary>
    [JsonPropertyName("feature_dim")] public int FeatureDim { get; init; } = 128;

    /// <summary>Number of classes.</summary>
    [JsonPropertyName("num_classes")] public int NumClasses { get; init; } = 10;

    /// <summary>Class names by label (may be empty).</summary>
    [JsonPropertyName("class_names")] public string[] ClassNames { get; init; } = [];

    /// <summary>The data set it was trained on (as given to <c>--data</c>).</summary>
    [JsonPropertyName("dataset")] public string? Dataset { get; init; }

    /// <summary>Accuracy on the data set's test split after training (null when not measured).</summary>
    [JsonPropertyName("test_accuracy")] public double? TestAccuracy { get; init; }

    /// <summary>Number of test images the accuracy was measured on.</summary>
    [JsonPropertyName("test_images")] public int? TestImages { get; init; }

    /// <summary>Optimizer steps trained.</summary>
    [JsonPropertyName("train_steps")] public int TrainSteps { get; init; }

    /// <summary>Images per training batch.</summary>
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; }

    /// <summary>A reminder of what the features are (not Inception-v3).</summary>
    [JsonPropertyName("note")] public string Note { get; init; } =
        "Small CNN trained by DiffusionSharp; FID computed in its feature space is NOT comparable to Inception-v3 FID.";

    /// <summary>Checks the sizes and returns this.</summary>
    public ClassifierConfig Validate(string source = "classifier config")
    {
        if (Architecture != ArchitectureName) throw new InvalidDataException($"{source}: architecture is '{Architecture}', expected '{ArchitectureName}'.");
        if (ImageSize is < 4 or > MaxImageSize) throw new InvalidDataException($"{source}: image_size must be in 4..{MaxImageSize}, got {ImageSize}.");
        if (InChannels is not (1 or 3)) throw new InvalidDataException($"{source}: in_channels must be 1 or 3, got {InChannels}.");
        if (Channels is null || Channels.Length is 0 or > MaxLayers || Channels.Any(c => c is < 1 or > MaxWidth))
            throw new InvalidDataException($"{source}: channels must be a list of 1..{MaxLayers} widths in 1..{MaxWidth}.");
        if (FeatureDim is < 1 or > MaxWidth) throw new InvalidDataException($"{source}: feature_dim must be in 1..{MaxWidth}, got {FeatureDim}.");
        if (NumClasses is < 2 or > MaxClasses) throw new InvalidDataException($"{source}: num_classes must be in 2..{MaxClasses}, got {NumClasses}.");
        return this;
    }

    /// <summary>Largest accepted image_size.</summary>
    public const int MaxImageSize = 4096;
    /// <summary>Largest accepted convolution width and feature_dim.</summary>
    public const int MaxWidth = 4096;
    /// <summary>Largest accepted number of convolution layers.</summary>
    public const int MaxLayers = 16;
    /// <summary>Largest accepted num_classes.</summary>
    public const int MaxClasses = 100_000;

    /// <summary>The network's parameter count, computed without allocating it.</summary>
    public long ParameterCount
    {
        get
        {
            long n = 0, c = InChannels;
            foreach (var o in Channels)
            {
                n += c * o * 9 + o + 2L * o;  // 3x3 convolution and bias, GroupNorm scale and shift
                c = o;
            }
            return n + c * FeatureDim + FeatureDim + (long)FeatureDim * NumClasses + NumClasses;
        }
    }
}

/// <summary>
/// A small CNN classifier whose penultimate layer supplies the features for FID, precision and recall on a data set that
/// Inception-v3 does not fit (e.g. 28x28 gray Fashion-MNIST): 3x3 convolutions with GroupNorm and SiLU (stride 2 after the
/// first), global average pooling, a SiLU feature layer, and a linear head.
/// </summary>
public sealed class FeatureClassifier : Module
{
    /// <summary>File name of the weights inside a classifier folder.</summary>
    public const string WeightsFile = "model.safetensors";

    /// <summary>File name of the configuration inside a classifier folder.</summary>
    public const string ConfigFile = "config.json";

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    private readonly ModuleList<Conv2d> _convs;
    private readonly ModuleList<GroupNorm> _norms;
    private readonly Linear _features;
    private readonly Linear _head;

    /// <summary>The architecture and metadata.</summary>
    public ClassifierConfig Config { get; internal set; }

    /// <summary>Builds a freshly initialised classifier.</summary>
    public FeatureClassifier(ClassifierConfig config, Generator? generator = null)
    {
        Config = config.Validate();
        var g = generator ?? new Generator(0);
        _convs = RegisterModule("convs", new ModuleList<Conv2d>());
        _norms = RegisterModule("norms", new ModuleList<GroupNorm>());
        int c = config.InChannels;
        for (int i = 0; i < config.Channels.Length; i++)
        {
            int o = config.Channels[i];
            _convs.Add(new Conv2d(c, o, 3, stride: i == 0 ? 1 : 2, padding: 1, generator: g));
            _norms.Add(new GroupNorm(o % 8 == 0 ? 8 : 1, o));
            c = o;
        }
        _features = RegisterModule("features", new Linear(c, config.FeatureDim, generator: g));
        _head = RegisterModule("head", new Linear(config.FeatureDim, config.NumClasses, generator: g));
    }

    /// <summary>Feature dimension (width of the penultimate layer).</summary>
    public int FeatureDim => Config.FeatureDim;

    /// <summary>The penultimate-layer features [N, FeatureDim] of images x [N, C, S, S] in [-1, 1].</summary>
    public Tensor Features(Tensor x)
    {
        if (x.Rank != 4 || x.Dim(1) != Config.InChannels || x.Dim(2) != Config.ImageSize || x.Dim(3) != Config.ImageSize)
            throw new ArgumentException($"The classifier takes images [N, {Config.InChannels}, {Config.ImageSize}, {Config.ImageSize}], got {x.Shape}.");
        var h = x;
        for (int i = 0; i < _convs.Count; i++)
        {
            var conv = _convs[i].Forward(h);
            if (i > 0) NnOps.Free(h);
            var norm = _norms[i].Forward(conv);
            NnOps.Free(conv);
            h = norm.Silu();
            NnOps.Free(norm);
        }
        var pooled = h.Mean([2, 3]);
        NnOps.Free(h);
        var f = _features.Forward(pooled);
        NnOps.Free(pooled);
        var y = f.Silu();
        NnOps.Free(f);
        return y;
    }

    /// <summary>Class logits [N, NumClasses] of images x [N, C, S, S].</summary>
    public Tensor Forward(Tensor x)
    {
        var f = Features(x);
        var y = _head.Forward(f);
        NnOps.Free(f);
        return y;
    }

    /// <summary>Logits from already computed features [N, FeatureDim].</summary>
    public Tensor Head(Tensor features) => _head.Forward(features);

    /// <summary>Fails with a clear message when images of <paramref name="channels"/> x <paramref name="size"/> x <paramref name="size"/> (from <paramref name="what"/>) do not fit.</summary>
    public void EnsureAccepts(int channels, int size, string what)
    {
        if (channels != Config.InChannels || size != Config.ImageSize)
            throw new InvalidDataException(
                $"The classifier takes {Config.InChannels}x{Config.ImageSize}x{Config.ImageSize} images (channels x height x width), " +
                $"but {what} has {channels}x{size}x{size}. Train a classifier for that image size and channel count with `diffusion train-classifier`.");
    }

    /// <summary>
    /// Features of <paramref name="count"/> images, fed in batches by <paramref name="load"/>(start, n, dest [n, C, S, S]).
    /// Returns row-major [count, FeatureDim] doubles. <paramref name="progress"/> receives (images done, total).
    /// </summary>
    public double[] ExtractFeatures(int count, Action<int, int, Tensor> load, int batchSize = 256, Action<int, int>? progress = null)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"Batch size must be at least 1, got {batchSize}.");
        var result = new double[(long)count * FeatureDim];
        using var _ = GradMode.NoGrad();
        Eval();
        int c = Config.InChannels, s = Config.ImageSize;
        for (int start = 0; start < count; start += batchSize)
        {
            int n = Math.Min(batchSize, count - start);
            using var x = Tensor.Empty(n, c, s, s);
            load(start, n, x);
            using var f = Features(x);
            var span = f.Span;
            for (int i = 0; i < span.Length; i++) result[(long)start * FeatureDim + i] = span[i];
            progress?.Invoke(start + n, count);
        }
        return result;
    }

    /// <summary>Features of images [N, C, S, S] (row-major [N, FeatureDim] doubles).</summary>
    public double[] ExtractFeatures(Tensor images, int batchSize = 256, Action<int, int>? progress = null)
    {
        if (images.Rank != 4) throw new ArgumentException($"Expected images [N, C, H, W], got {images.Shape}.");
        EnsureAccepts(images.Dim(1), images.Dim(2), $"the images of shape {images.Shape}");
        if (images.Dim(2) != images.Dim(3)) throw new ArgumentException($"Expected square images, got {images.Shape}.");
        int per = images.Size / Math.Max(1, images.Dim(0));
        return ExtractFeatures(images.Dim(0), (start, n, dest) => images.Span.Slice(start * per, n * per).CopyTo(dest.Span), batchSize, progress);
    }

    /// <summary>Features of the first <paramref name="count"/> items of <paramref name="data"/>.</summary>
    public double[] ExtractFeatures(Data.IDataset data, int count, int batchSize = 256, Action<int, int>? progress = null)
    {
        EnsureAccepts(data.Channels, data.Size, "the data set");
        if (count < 0 || count > data.Count) throw new ArgumentOutOfRangeException(nameof(count), $"The data set has {data.Count} items; asked for {count}.");
        int per = data.Channels * data.Size * data.Size;
        return ExtractFeatures(count, (start, n, dest) =>
        {
            var span = dest.Span;
            for (int i = 0; i < n; i++) data.Load(start + i, span.Slice(i * per, per));
        }, batchSize, progress);
    }

    /// <summary>Writes <see cref="WeightsFile"/> (F32) and <see cref="ConfigFile"/> into <paramref name="directory"/>.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        SafeTensors.Save(Path.Combine(directory, WeightsFile), StateDict(), SafeTensorDType.F32,
            new Dictionary<string, string> { ["format"] = "pt", ["architecture"] = ClassifierConfig.ArchitectureName });
        File.WriteAllText(Path.Combine(directory, ConfigFile), JsonSerializer.Serialize(Config, JsonOptions) + "\n");
    }

    /// <summary>Loads a classifier folder written by <see cref="Save"/>.</summary>
    public static FeatureClassifier Load(string directory)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Classifier folder not found: {directory}");
        var cfgPath = Path.Combine(directory, ConfigFile);
        var weights = Path.Combine(directory, WeightsFile);
        if (!File.Exists(cfgPath)) throw new FileNotFoundException($"{directory} is not a classifier folder: {ConfigFile} is missing (make one with `diffusion train-classifier`).", cfgPath);
        if (!File.Exists(weights)) throw new FileNotFoundException($"{directory}: {WeightsFile} is missing.", weights);
        var cfg = IO.JsonFile.Read<ClassifierConfig>(cfgPath, "classifier configuration").Validate(cfgPath);
        // the sizes must match the weights file before the network is allocated
        long stored = SafeTensors.ReadHeader(weights).Tensors.Sum(e => e.ElementCount);
        if (cfg.ParameterCount != stored)
            throw new InvalidDataException($"{cfgPath} describes a classifier of {cfg.ParameterCount:N0} parameters but {weights} holds {stored:N0} values; they do not belong together.");
        var model = new FeatureClassifier(cfg);
        try { model.LoadStateDict(SafeTensors.Load(weights)); }
        catch (Exception e) when (e is ArgumentException or InvalidDataException) { throw new InvalidDataException($"{weights} does not fit {cfgPath}: {e.Message}", e); }
        model.Eval();
        return model;
    }
}
