using DiffusionSharp.IO;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn.UNet;

/// <summary>
/// The 2-D U-Net of diffusers' <c>UNet2DModel</c> (DDPM, Ho et al. 2020; improved DDPM; NCSN++/ADM variants through config):
/// same module tree, state-dict names and numerics, so diffusers checkpoints load directly.
/// </summary>
public sealed class UNet2DModel : Module
{
    /// <summary>The architecture.</summary>
    public UNet2DConfig Config { get; }

    /// <summary>Input conv.</summary>
    public Conv2d ConvIn { get; }
    /// <summary>Sinusoidal timestep features (positional), or null.</summary>
    public Timesteps? TimeProjPositional { get; }
    /// <summary>Gaussian Fourier features of log t (fourier), or null.</summary>
    public GaussianFourierProjection? TimeProjFourier { get; }
    /// <summary>Learned per-timestep table (learned), or null.</summary>
    public Embedding? TimeProjLearned { get; }
    /// <summary>Timestep MLP.</summary>
    public TimestepEmbedding TimeEmbedding { get; }
    /// <summary>Class table (num_class_embeds), or null.</summary>
    public Embedding? ClassEmbeddingTable { get; }
    /// <summary>Class MLP over timestep features (class_embed_type "timestep"), or null.</summary>
    public TimestepEmbedding? ClassEmbeddingMlp { get; }
    /// <summary>Encoder blocks.</summary>
    public ModuleList<UNetDownBlock> DownBlocks { get; }
    /// <summary>Decoder blocks.</summary>
    public ModuleList<UNetUpBlock> UpBlocks { get; }
    /// <summary>Bottleneck.</summary>
    public UNetMidBlock2D MidBlock { get; }
    /// <summary>Output group norm.</summary>
    public GroupNorm ConvNormOut { get; }
    /// <summary>Output conv.</summary>
    public Conv2d ConvOut { get; }

    /// <summary>
    /// Called during <see cref="Forward(Tensor, Tensor, Tensor?)"/> with each top-level module's output, named as diffusers'
    /// forward hooks would be (time_proj, time_embedding, conv_in, down_blocks.i, mid_block, up_blocks.i, conv_norm_out, conv_out).
    /// Under no-grad the tensor's storage is recycled later in the pass: clone it to keep it.
    /// </summary>
    public Action<string, Tensor>? ActivationHook { get; set; }

    /// <summary>Builds the model with random (PyTorch-default) initialisation from <paramref name="generator"/> (default seed 0).</summary>
    public UNet2DModel(UNet2DConfig config, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        var g = generator ?? new Generator(0);
        var ch = config.BlockOutChannels;
        int c0 = ch[0], tembDim = c0 * 4;

        ConvIn = RegisterModule("conv_in", new Conv2d(config.InChannels, c0, 3, padding: 1, generator: g));
        int timeInputDim = c0;
        switch (config.TimeEmbeddingType)
        {
            case "fourier":
                TimeProjFourier = RegisterModule("time_proj", new GaussianFourierProjection(c0, 16f, generator: g));
                timeInputDim = 2 * c0;
                break;
            case "positional":
                TimeProjPositional = RegisterModule("time_proj", new Timesteps(c0, config.FlipSinToCos, config.FreqShift));
                break;
            case "learned":
                TimeProjLearned = RegisterModule("time_proj", new Embedding(config.NumTrainTimesteps!.Value, c0, g));
                break;
        }
        TimeEmbedding = RegisterModule("time_embedding", new TimestepEmbedding(timeInputDim, tembDim, generator: g));
        if (config.ClassEmbedType is null && config.NumClassEmbeds is int nc)
            ClassEmbeddingTable = RegisterModule("class_embedding", new Embedding(nc, tembDim, g));
        else if (config.ClassEmbedType == "timestep")
            ClassEmbeddingMlp = RegisterModule("class_embedding", new TimestepEmbedding(timeInputDim, tembDim, generator: g));

        var shift = config.ResnetTimeScaleShift == "scale_shift" ? TimeEmbeddingNorm.ScaleShift : TimeEmbeddingNorm.Default;
        var rs = new ResnetSettings(tembDim, config.Dropout, config.NormNumGroups, config.NormEps, config.ActFn, shift);

        DownBlocks = RegisterModule("down_blocks", new ModuleList<UNetDownBlock>());
        int outCh = c0;
        for (int i = 0; i < ch.Length; i++)
        {
            int inCh = outCh;
            outCh = ch[i];
            bool last = i == ch.Length - 1;
            DownBlocks.Add(new UNetDownBlock(config.DownBlockTypes[i], config.LayersPerBlock, inCh, outCh, rs, !last,
                config.AttentionHeadDim ?? outCh, config.DownsamplePadding, config.DownsampleType, g));
        }

        // Registration order follows diffusers (up_blocks before mid_block), so state dicts list keys in the same order.
        UpBlocks = RegisterModule("up_blocks", new ModuleList<UNetUpBlock>());
        var rev = ch.Reverse().ToArray();
        outCh = rev[0];
        for (int i = 0; i < rev.Length; i++)
        {
            int prevOut = outCh;
            outCh = rev[i];
            int inCh = rev[Math.Min(i + 1, rev.Length - 1)];
            bool last = i == rev.Length - 1;
            UpBlocks.Add(new UNetUpBlock(config.UpBlockTypes[i], config.LayersPerBlock + 1, inCh, prevOut, outCh, rs, !last,
                config.AttentionHeadDim ?? outCh, config.UpsampleType, g));
        }

        int? attnGroups = config.AttnNormNumGroups ?? (shift == TimeEmbeddingNorm.Default ? config.NormNumGroups : null);
        MidBlock = RegisterModule("mid_block", new UNetMidBlock2D(ch[^1], rs with { OutputScaleFactor = config.MidBlockScaleFactor },
            config.AttentionHeadDim ?? ch[^1], attnGroups, config.AddAttention, 1, g));

        ConvNormOut = RegisterModule("conv_norm_out", new GroupNorm(config.NormNumGroups, c0, config.NormEps));
        ConvOut = RegisterModule("conv_out", new Conv2d(c0, config.OutChannels, 3, padding: 1, generator: g));
    }

    /// <summary>Sets the random source of every dropout layer (for reproducible training).</summary>
    public void SetDropoutGenerator(Generator generator)
    {
        foreach (var (_, m) in NamedModules())
            if (m is Dropout d) d.Generator = generator;
    }

    /// <summary>Predicts the model output (e.g. noise) for x [N, C, H, W] at one timestep shared by the batch.</summary>
    public Tensor Forward(Tensor x, float timestep, Tensor? classLabels = null) => Forward(x, Tensor.FromValues(timestep), classLabels);

    /// <summary>
    /// Predicts the model output for x [N, in_channels, H, W] at <paramref name="timesteps"/> ([N], [1] or scalar; fractional
    /// values are allowed). <paramref name="classLabels"/> ([N], integer-valued) is required exactly when the model is class conditional.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor timesteps, Tensor? classLabels = null)
    {
        var cfg = Config;
        if (x.Rank != 4 || x.Dim(1) != cfg.InChannels)
            throw new ArgumentException($"UNet2DModel expects input [N, {cfg.InChannels}, H, W], got {x.Shape}.");
        int n = x.Dim(0), levels = cfg.BlockOutChannels.Length;
        int factor = 1 << (levels - 1);
        if (x.Dim(2) % factor != 0 || x.Dim(3) % factor != 0)
            throw new ArgumentException($"UNet2DModel with {levels} levels needs H and W divisible by {factor}, got {x.Shape}.");
        if (cfg.CenterInputSample) x = x * 2f - 1f;

        var t = BroadcastTimesteps(timesteps, n);
        Tensor tFeat = TimeProjPositional != null ? TimeProjPositional.Forward(t)
            : TimeProjFourier != null ? TimeProjFourier.Forward(t)
            : TimeProjLearned!.Forward(t);
        ActivationHook?.Invoke("time_proj", tFeat);
        var emb = TimeEmbedding.Forward(tFeat);
        ActivationHook?.Invoke("time_embedding", emb);

        bool conditional = ClassEmbeddingTable != null || ClassEmbeddingMlp != null || cfg.ClassEmbedType == "identity";
        if (conditional)
        {
            if (classLabels is null) throw new ArgumentException("This UNet2DModel is class conditional: classLabels must be given.");
            Tensor classEmb;
            if (ClassEmbeddingTable != null)
            {
                if (classLabels.Size != n) throw new ArgumentException($"classLabels must have {n} entries (one per image), got {classLabels.Shape}.");
                classEmb = ClassEmbeddingTable.Forward(classLabels);
            }
            else if (ClassEmbeddingMlp != null)
            {
                if (classLabels.Size != n) throw new ArgumentException($"classLabels must have {n} entries (one per image), got {classLabels.Shape}.");
                var cFeat = TimeProjPositional != null ? TimeProjPositional.Forward(classLabels.Reshape(n))
                    : TimeProjFourier != null ? TimeProjFourier.Forward(classLabels.Reshape(n))
                    : TimeProjLearned!.Forward(classLabels.Reshape(n));
                classEmb = ClassEmbeddingMlp.Forward(cFeat);
            }
            else
            {
                if (classLabels.Shape != emb.Shape) throw new ArgumentException($"Identity class embedding expects classLabels of shape {emb.Shape}, got {classLabels.Shape}.");
                classEmb = classLabels;
            }
            emb = emb + classEmb;
        }
        else if (classLabels is not null)
            throw new ArgumentException("classLabels were given but this UNet2DModel has no class embedding (num_class_embeds / class_embed_type unset).");

        var h = ConvIn.Forward(x);
        ActivationHook?.Invoke("conv_in", h);
        var skips = new List<Tensor> { h };
        for (int i = 0; i < DownBlocks.Count; i++)
        {
            h = DownBlocks[i].Forward(h, emb, skips);
            ActivationHook?.Invoke($"down_blocks.{i}", h);
        }
        h = MidBlock.Forward(h, emb);
        ActivationHook?.Invoke("mid_block", h);
        for (int i = 0; i < UpBlocks.Count; i++)
        {
            h = UpBlocks[i].Forward(h, skips, emb);
            ActivationHook?.Invoke($"up_blocks.{i}", h);
        }
        var normed = ConvNormOut.Forward(h);
        NnOps.Free(h);
        ActivationHook?.Invoke("conv_norm_out", normed);
        var act = normed.Silu();
        NnOps.Free(normed);
        h = ConvOut.Forward(act);
        NnOps.Free(act);
        ActivationHook?.Invoke("conv_out", h);
        // Fourier (NCSN++) models predict the score scaled by sigma; diffusers divides by sigma here.
        if (cfg.TimeEmbeddingType != "fourier") return h;
        var scaled = h / t.Reshape(n, 1, 1, 1);
        NnOps.Free(h);
        return scaled;
    }

    private static Tensor BroadcastTimesteps(Tensor timesteps, int n)
    {
        if (timesteps.Size == n && timesteps.Rank <= 1) return timesteps.Rank == 1 ? timesteps : timesteps.Reshape(n);
        if (timesteps.Size == 1) return Tensor.Full(new Shape(n), timesteps.Span[0]);
        throw new ArgumentException($"timesteps must have 1 or {n} entries (batch {n}), got {timesteps.Shape}.");
    }

    /// <summary>Forward FLOPs for one image of size h x w (2 per multiply-add; convs, linears and attention matmuls).</summary>
    public double ForwardFlopsPerImage(int height, int width)
    {
        var x = Tensor.Zeros(1, Config.InChannels, height, width);
        return FlopCounter.Count(this, x);
    }

    /// <summary>Builds one of the benchmark presets: "ddpm-small" (1x32x32, 6.47 M params) or "ddpm-cifar" (3x32x32, 35.7 M).</summary>
    public static UNet2DModel Preset(string name, Generator? generator = null) => new(PresetConfig(name), generator);

    /// <summary>The config of a benchmark preset (same architecture as the PyTorch peer's presets).</summary>
    public static UNet2DConfig PresetConfig(string name) => name switch
    {
        "ddpm-small" => new UNet2DConfig
        {
            SampleSize = 32, InChannels = 1, OutChannels = 1, BlockOutChannels = new[] { 64, 128, 128 },
            DownBlockTypes = new[] { "DownBlock2D", "AttnDownBlock2D", "DownBlock2D" },
            UpBlockTypes = new[] { "UpBlock2D", "AttnUpBlock2D", "UpBlock2D" },
            LayersPerBlock = 2, AttentionHeadDim = 32, NormNumGroups = 32, Dropout = 0.1f,
        },
        "ddpm-cifar" => new UNet2DConfig
        {
            SampleSize = 32, InChannels = 3, OutChannels = 3, BlockOutChannels = new[] { 128, 256, 256, 256 },
            DownBlockTypes = new[] { "DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D" },
            UpBlockTypes = new[] { "UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D" },
            LayersPerBlock = 2, AttentionHeadDim = null, NormNumGroups = 32, Dropout = 0.1f,
        },
        _ => throw new ArgumentException($"Unknown U-Net preset '{name}'; expected one of: {string.Join(", ", PresetNames)}."),
    };

    /// <summary>Names accepted by <see cref="Preset"/>.</summary>
    public static readonly IReadOnlyList<string> PresetNames = new[] { "ddpm-small", "ddpm-cifar" };

    /// <summary>
    /// Loads <c>config.json</c> and <c>diffusion_pytorch_model.safetensors</c> from <paramref name="directory"/>
    /// (diffusers layout, F32/F16/BF16 weights; legacy attention names query/key/value/proj_attn are renamed).
    /// </summary>
    public static UNet2DModel FromPretrained(string directory)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Model directory not found: {directory}");
        var cfgPath = Path.Combine(directory, "config.json");
        var wPath = Path.Combine(directory, "diffusion_pytorch_model.safetensors");
        if (!File.Exists(wPath))
            throw new FileNotFoundException($"Weights not found: {wPath} (only the safetensors format is supported).", wPath);
        var cfg = UNet2DConfig.Load(cfgPath);
        // a config that describes a far larger network than the weights hold is refused before that network is allocated
        long stored = SafeTensors.ReadHeader(wPath).Tensors.Sum(e => e.ElementCount);
        if (cfg.ApproxConvParameters > 2.0 * stored + 1e6)
            throw new InvalidDataException($"{cfgPath} describes a network of at least {cfg.ApproxConvParameters:G3} parameters but {wPath} holds {stored:N0} values; they do not belong together.");
        var model = new UNet2DModel(cfg);
        var state = CheckpointNames.ConvertLegacy(SafeTensors.Load(wPath));
        try
        {
            model.LoadStateDict(state, strict: true);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{wPath} does not fit {cfgPath}: {e.Message}", e);
        }
        // a NaN/Inf weight only shows up as a black or meaningless image later: refuse it here, naming the tensor
        foreach (var (name, t) in model.StateDict())
            foreach (var v in t.Span)
                if (!float.IsFinite(v)) throw new InvalidDataException($"{wPath}: tensor '{name}' holds {v}; the weights are corrupt.");
        model.Eval();
        return model;
    }

    /// <summary>Writes <c>config.json</c> and <c>diffusion_pytorch_model.safetensors</c> (F32) into <paramref name="directory"/>.</summary>
    public void SavePretrained(string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), Config.ToJson() + "\n");
        SafeTensors.Save(Path.Combine(directory, "diffusion_pytorch_model.safetensors"), StateDict(),
            SafeTensorDType.F32, new Dictionary<string, string> { ["format"] = "pt" });
    }
}

/// <summary>Renames checkpoint keys from older diffusers versions to the current names.</summary>
public static class CheckpointNames
{
    private static readonly (string Old, string New)[] LegacyAttention =
    {
        (".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0."),
    };

    /// <summary>
    /// Maps pre-0.14 attention names (<c>attentions.i.query/key/value/proj_attn</c>) to <c>to_q/to_k/to_v/to_out.0</c>;
    /// other keys pass through unchanged.
    /// </summary>
    public static Dictionary<string, Tensor> ConvertLegacy(IReadOnlyDictionary<string, Tensor> state)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (key, t) in state)
        {
            var name = key;
            if (name.Contains("attentions."))
                foreach (var (o, nw) in LegacyAttention)
                {
                    int at = name.LastIndexOf(o, StringComparison.Ordinal);
                    if (at >= 0) { name = name[..at] + nw + name[(at + o.Length)..]; break; }
                }
            if (!result.TryAdd(name, t))
                throw new InvalidDataException($"Checkpoint has both '{key}' and another key mapping to '{name}'.");
        }
        return result;
    }
}
