using System.Globalization;
using System.Text;
using System.Text.Json;

namespace DiffusionSharp.Nn.UNet;

/// <summary>
/// The architecture of a <see cref="UNet2DModel"/>, with diffusers' <c>config.json</c> key names and defaults.
/// Keys starting with '_' (such as _class_name) and keys not used by the architecture are ignored on reading.
/// </summary>
public sealed record UNet2DConfig
{
    /// <summary>Image height/width the model was trained at.</summary>
    public int? SampleSize { get; init; }
    /// <summary>Input channels.</summary>
    public int InChannels { get; init; } = 3;
    /// <summary>Output channels (2 x in for learned variance).</summary>
    public int OutChannels { get; init; } = 3;
    /// <summary>Map input x to 2x - 1 first.</summary>
    public bool CenterInputSample { get; init; }
    /// <summary>"positional", "fourier" or "learned".</summary>
    public string TimeEmbeddingType { get; init; } = "positional";
    /// <summary>downscale_freq_shift of the sinusoidal embedding.</summary>
    public int FreqShift { get; init; }
    /// <summary>Cosine half first in the sinusoidal embedding.</summary>
    public bool FlipSinToCos { get; init; } = true;
    /// <summary>Encoder block classes.</summary>
    public string[] DownBlockTypes { get; init; } = { "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D" };
    /// <summary>Decoder block classes.</summary>
    public string[] UpBlockTypes { get; init; } = { "AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D" };
    /// <summary>Channels per resolution.</summary>
    public int[] BlockOutChannels { get; init; } = { 224, 448, 672, 896 };
    /// <summary>Resnets per encoder block (decoder blocks get one more).</summary>
    public int LayersPerBlock { get; init; } = 2;
    /// <summary>output_scale_factor of the mid block.</summary>
    public float MidBlockScaleFactor { get; init; } = 1f;
    /// <summary>Padding of the stride-2 downsampling conv (0 pads bottom/right only).</summary>
    public int DownsamplePadding { get; init; } = 1;
    /// <summary>"conv" or "resnet" (AttnDownBlock2D).</summary>
    public string DownsampleType { get; init; } = "conv";
    /// <summary>"conv" or "resnet" (AttnUpBlock2D).</summary>
    public string UpsampleType { get; init; } = "conv";
    /// <summary>Dropout probability in the resnets.</summary>
    public float Dropout { get; init; }
    /// <summary>Activation name.</summary>
    public string ActFn { get; init; } = "silu";
    /// <summary>Channels per attention head (null: one head spanning all channels).</summary>
    public int? AttentionHeadDim { get; init; } = 8;
    /// <summary>Groups of every group norm.</summary>
    public int NormNumGroups { get; init; } = 32;
    /// <summary>Groups of the mid-block attention norm (null: norm_num_groups with default time shift, none with scale_shift).</summary>
    public int? AttnNormNumGroups { get; init; }
    /// <summary>Group norm epsilon.</summary>
    public float NormEps { get; init; } = 1e-5f;
    /// <summary>"default" or "scale_shift".</summary>
    public string ResnetTimeScaleShift { get; init; } = "default";
    /// <summary>Attention in the mid block.</summary>
    public bool AddAttention { get; init; } = true;
    /// <summary>null, "timestep" or "identity".</summary>
    public string? ClassEmbedType { get; init; }
    /// <summary>Number of classes for class conditioning (with class_embed_type null).</summary>
    public int? NumClassEmbeds { get; init; }
    /// <summary>Table size for the "learned" time embedding.</summary>
    public int? NumTrainTimesteps { get; init; }

    /// <summary>Reads a diffusers <c>config.json</c>; errors name the file, and line/position for malformed JSON.</summary>
    public static UNet2DConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"UNet config not found: {path}", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config JSON text; <paramref name="source"/> names it in error messages.</summary>
    public static UNet2DConfig Parse(string json, string source = "config")
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON at line {(e.LineNumber ?? 0) + 1}, position {(e.BytePositionInLine ?? 0) + 1}: {e.Message}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new InvalidDataException($"{source}: expected a JSON object at the top level, found {root.ValueKind}.");
            if (root.TryGetProperty("_class_name", out var cls) && cls.ValueKind == JsonValueKind.String && cls.GetString() != "UNet2DModel")
                throw new InvalidDataException($"{source}: _class_name is '{cls.GetString()}', expected 'UNet2DModel'.");
            var r = new Reader(root, source);
            var d = new UNet2DConfig();
            var cfg = new UNet2DConfig
            {
                SampleSize = r.IntOrNull("sample_size", d.SampleSize),
                InChannels = r.Int("in_channels", d.InChannels),
                OutChannels = r.Int("out_channels", d.OutChannels),
                CenterInputSample = r.Bool("center_input_sample", d.CenterInputSample),
                TimeEmbeddingType = r.String("time_embedding_type", d.TimeEmbeddingType),
                FreqShift = r.Int("freq_shift", d.FreqShift),
                FlipSinToCos = r.Bool("flip_sin_to_cos", d.FlipSinToCos),
                DownBlockTypes = r.Strings("down_block_types", d.DownBlockTypes),
                UpBlockTypes = r.Strings("up_block_types", d.UpBlockTypes),
                BlockOutChannels = r.Ints("block_out_channels", d.BlockOutChannels),
                LayersPerBlock = r.Int("layers_per_block", d.LayersPerBlock),
                MidBlockScaleFactor = r.Float("mid_block_scale_factor", d.MidBlockScaleFactor),
                DownsamplePadding = r.Int("downsample_padding", d.DownsamplePadding),
                DownsampleType = r.String("downsample_type", d.DownsampleType),
                UpsampleType = r.String("upsample_type", d.UpsampleType),
                Dropout = r.Float("dropout", d.Dropout),
                ActFn = r.String("act_fn", d.ActFn),
                AttentionHeadDim = r.IntOrNull("attention_head_dim", d.AttentionHeadDim),
                NormNumGroups = r.Int("norm_num_groups", d.NormNumGroups),
                AttnNormNumGroups = r.IntOrNull("attn_norm_num_groups", d.AttnNormNumGroups),
                NormEps = r.Float("norm_eps", d.NormEps),
                ResnetTimeScaleShift = r.String("resnet_time_scale_shift", d.ResnetTimeScaleShift),
                AddAttention = r.Bool("add_attention", d.AddAttention),
                ClassEmbedType = r.StringOrNull("class_embed_type", d.ClassEmbedType),
                NumClassEmbeds = r.IntOrNull("num_class_embeds", d.NumClassEmbeds),
                NumTrainTimesteps = r.IntOrNull("num_train_timesteps", d.NumTrainTimesteps),
            };
            cfg.Validate(source);
            return cfg;
        }
    }

    /// <summary>The config as diffusers-compatible JSON (sorted keys, as diffusers writes them).</summary>
    public string ToJson()
    {
        var fields = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["_class_name"] = "UNet2DModel",
            ["_diffusers_version"] = "0.30.3",
            ["act_fn"] = ActFn,
            ["add_attention"] = AddAttention,
            ["attention_head_dim"] = AttentionHeadDim,
            ["attn_norm_num_groups"] = AttnNormNumGroups,
            ["block_out_channels"] = BlockOutChannels,
            ["center_input_sample"] = CenterInputSample,
            ["class_embed_type"] = ClassEmbedType,
            ["down_block_types"] = DownBlockTypes,
            ["downsample_padding"] = DownsamplePadding,
            ["downsample_type"] = DownsampleType,
            ["dropout"] = Dropout,
            ["flip_sin_to_cos"] = FlipSinToCos,
            ["freq_shift"] = FreqShift,
            ["in_channels"] = InChannels,
            ["layers_per_block"] = LayersPerBlock,
            ["mid_block_scale_factor"] = MidBlockScaleFactor,
            ["norm_eps"] = NormEps,
            ["norm_num_groups"] = NormNumGroups,
            ["num_class_embeds"] = NumClassEmbeds,
            ["num_train_timesteps"] = NumTrainTimesteps,
            ["out_channels"] = OutChannels,
            ["resnet_time_scale_shift"] = ResnetTimeScaleShift,
            ["sample_size"] = SampleSize,
            ["time_embedding_type"] = TimeEmbeddingType,
            ["up_block_types"] = UpBlockTypes,
            ["upsample_type"] = UpsampleType,
        };
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            foreach (var (k, v) in fields)
            {
                w.WritePropertyName(k);
                switch (v)
                {
                    case null: w.WriteNullValue(); break;
                    case string s: w.WriteStringValue(s); break;
                    case bool b: w.WriteBooleanValue(b); break;
                    case int i: w.WriteNumberValue(i); break;
                    // Shortest round-trip form so 1e-6 stays 1e-06-like rather than 9.99999997e-07.
                    case float f: w.WriteRawValue(FormatFloat(f)); break;
                    case int[] a: w.WriteStartArray(); foreach (var x in a) w.WriteNumberValue(x); w.WriteEndArray(); break;
                    case string[] a: w.WriteStartArray(); foreach (var x in a) w.WriteStringValue(x); w.WriteEndArray(); break;
                    default: throw new InvalidOperationException($"Unhandled config value type {v.GetType()}.");
                }
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static string FormatFloat(float f)
    {
        var s = f.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') || s.Contains('e') ? s : s + ".0";
    }

    /// <summary>Largest accepted layers_per_block.</summary>
    public const int MaxLayersPerBlock = 64;
    /// <summary>Largest accepted number of resolutions (entries of block_out_channels).</summary>
    public const int MaxBlocks = 16;
    /// <summary>Largest accepted channel count of any block or of the input/output.</summary>
    public const int MaxChannels = 8192;
    /// <summary>Largest accepted sample_size.</summary>
    public const int MaxSampleSize = 4096;
    /// <summary>Largest accepted num_train_timesteps of a learned time embedding.</summary>
    public const int MaxTrainTimesteps = 100_000;
    /// <summary>Largest accepted num_class_embeds.</summary>
    public const int MaxClassEmbeds = 1_000_000;
    /// <summary>Largest accepted (estimated) parameter count: 1e9 float32 weights are 4 GB.</summary>
    public const double MaxParameters = 1e9;

    /// <summary>A lower estimate of the parameter count: the 3x3 convolutions of the resnets (two each, layers_per_block per encoder block, one more per decoder block).</summary>
    public double ApproxConvParameters => BlockOutChannels.Sum(c => (2.0 * LayersPerBlock + 1) * 2 * 9 * (double)c * c);

    /// <summary>Checks internal consistency, throwing with <paramref name="source"/> (the file) and the offending keys and values.</summary>
    public void Validate(string source = "UNet2DModel config")
    {
        void Fail(string m) => throw new InvalidDataException($"{source}: invalid UNet2DModel config: " + m);
        int n = BlockOutChannels.Length;
        if (n == 0) Fail("block_out_channels is empty.");
        if (DownBlockTypes.Length != n) Fail($"down_block_types has {DownBlockTypes.Length} entries but block_out_channels has {n}.");
        if (UpBlockTypes.Length != n) Fail($"up_block_types has {UpBlockTypes.Length} entries but block_out_channels has {n}.");
        if (InChannels <= 0 || OutChannels <= 0) Fail($"in_channels ({InChannels}) and out_channels ({OutChannels}) must be positive.");
        if (LayersPerBlock <= 0 || LayersPerBlock > MaxLayersPerBlock) Fail($"layers_per_block must be in 1..{MaxLayersPerBlock}, got {LayersPerBlock}.");
        if (n > MaxBlocks) Fail($"block_out_channels has {n} entries; at most {MaxBlocks} are supported.");
        if (InChannels > MaxChannels || OutChannels > MaxChannels) Fail($"in_channels ({InChannels}) and out_channels ({OutChannels}) must be at most {MaxChannels}.");
        if (NormNumGroups <= 0) Fail($"norm_num_groups must be positive, got {NormNumGroups}.");
        if (AttnNormNumGroups is <= 0) Fail($"attn_norm_num_groups must be positive or null, got {AttnNormNumGroups}.");
        if (AttentionHeadDim is <= 0) Fail($"attention_head_dim must be positive or null, got {AttentionHeadDim}.");
        if (SampleSize is <= 0 or > MaxSampleSize) Fail($"sample_size must be in 1..{MaxSampleSize}, got {SampleSize}.");
        if (!(NormEps > 0) || !float.IsFinite(NormEps)) Fail($"norm_eps must be a finite number > 0, got {NormEps}.");
        if (!(Dropout >= 0 && Dropout < 1)) Fail($"dropout must be in [0, 1), got {Dropout}.");
        if (!float.IsFinite(MidBlockScaleFactor)) Fail($"mid_block_scale_factor must be finite, got {MidBlockScaleFactor}.");
        if (NumTrainTimesteps is <= 0 or > MaxTrainTimesteps) Fail($"num_train_timesteps must be in 1..{MaxTrainTimesteps}, got {NumTrainTimesteps}.");
        if (NumClassEmbeds > MaxClassEmbeds) Fail($"num_class_embeds must be at most {MaxClassEmbeds}, got {NumClassEmbeds}.");
        foreach (var c in BlockOutChannels)
        {
            if (c <= 0 || c > MaxChannels) Fail($"block_out_channels entry {c} is not in 1..{MaxChannels}.");
            if (c % NormNumGroups != 0) Fail($"block_out_channels entry {c} is not a positive multiple of norm_num_groups {NormNumGroups}.");
            if (AttnNormNumGroups is int ag && c % ag != 0) Fail($"block_out_channels entry {c} is not a multiple of attn_norm_num_groups {ag}.");
        }
        for (int i = 0; i < n && AttentionHeadDim is int hd; i++)
        {
            bool attn = DownBlockTypes.Length == n && UpBlockTypes.Length == n && (DownBlockTypes[i].StartsWith("Attn", StringComparison.Ordinal)
                || UpBlockTypes[n - 1 - i].StartsWith("Attn", StringComparison.Ordinal) || (i == n - 1 && AddAttention));
            if (attn && BlockOutChannels[i] < hd) Fail($"attention_head_dim {hd} is larger than the {BlockOutChannels[i]} channels of an attention block (no whole head fits).");
        }
        // each resnet holds two 3x3 convolutions; the encoder has layers_per_block and the decoder one more per resolution
        double approxParams = ApproxConvParameters;
        if (approxParams > MaxParameters) Fail($"block_out_channels and layers_per_block give about {approxParams:G3} parameters; at most {MaxParameters:G3} are supported.");
        if (TimeEmbeddingType is not ("positional" or "fourier" or "learned"))
            Fail($"time_embedding_type '{TimeEmbeddingType}' is not supported (expected positional, fourier or learned).");
        if (TimeEmbeddingType == "learned" && NumTrainTimesteps is null) Fail("time_embedding_type 'learned' needs num_train_timesteps.");
        if (ResnetTimeScaleShift is not ("default" or "scale_shift"))
            Fail($"resnet_time_scale_shift '{ResnetTimeScaleShift}' is not supported (expected default or scale_shift).");
        if (ClassEmbedType is not (null or "timestep" or "identity"))
            Fail($"class_embed_type '{ClassEmbedType}' is not supported (expected null, timestep or identity).");
        if (NumClassEmbeds is <= 0) Fail($"num_class_embeds must be positive, got {NumClassEmbeds}.");
        if (!Activations.Supported.Contains(ActFn)) Fail($"act_fn '{ActFn}' is not supported (expected one of {string.Join(", ", Activations.Supported)}).");
        foreach (var t in DownBlockTypes)
            if (t is not ("DownBlock2D" or "AttnDownBlock2D" or "ResnetDownsampleBlock2D")) Fail($"down block type '{t}' is not supported.");
        foreach (var t in UpBlockTypes)
            if (t is not ("UpBlock2D" or "AttnUpBlock2D" or "ResnetUpsampleBlock2D")) Fail($"up block type '{t}' is not supported.");
    }

    private sealed class Reader(JsonElement root, string source)
    {
        private JsonElement? Get(string key) => root.TryGetProperty(key, out var v) ? v : null;

        private InvalidDataException Bad(string key, string expected, JsonElement v) =>
            new($"{source}: '{key}' must be {expected}, found {v.ValueKind} {Truncate(v.GetRawText())}.");

        private static string Truncate(string s) => s.Length > 60 ? s[..60] + "..." : s;

        public int Int(string key, int def)
        {
            var v = Get(key);
            if (v is null) return def;
            var e = v.Value;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i)) return i;
            if (e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            throw Bad(key, "an integer", e);
        }

        public int? IntOrNull(string key, int? def)
        {
            var v = Get(key);
            if (v is null) return def;
            return v.Value.ValueKind == JsonValueKind.Null ? null : Int(key, 0);
        }

        public float Float(string key, float def)
        {
            var v = Get(key);
            if (v is null) return def;
            if (v.Value.ValueKind == JsonValueKind.Number) return (float)v.Value.GetDouble();
            throw Bad(key, "a number", v.Value);
        }

        public bool Bool(string key, bool def)
        {
            var v = Get(key);
            if (v is null) return def;
            return v.Value.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Bad(key, "true or false", v.Value),
            };
        }

        public string String(string key, string def) => StringOrNull(key, def) ?? throw Bad(key, "a string", Get(key)!.Value);

        public string? StringOrNull(string key, string? def)
        {
            var v = Get(key);
            if (v is null) return def;
            return v.Value.ValueKind switch
            {
                JsonValueKind.String => v.Value.GetString(),
                JsonValueKind.Null => null,
                _ => throw Bad(key, "a string or null", v.Value),
            };
        }

        public int[] Ints(string key, int[] def)
        {
            var v = Get(key);
            if (v is null) return def;
            if (v.Value.ValueKind != JsonValueKind.Array) throw Bad(key, "an array of integers", v.Value);
            return v.Value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i) ? i : throw Bad(key, "an array of integers", v.Value)).ToArray();
        }

        public string[] Strings(string key, string[] def)
        {
            var v = Get(key);
            if (v is null) return def;
            if (v.Value.ValueKind != JsonValueKind.Array) throw Bad(key, "an array of strings", v.Value);
            return v.Value.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad(key, "an array of strings", v.Value)).ToArray();
        }
    }
}
