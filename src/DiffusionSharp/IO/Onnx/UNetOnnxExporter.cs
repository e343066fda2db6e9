using System.Reflection;
using Module = DiffusionSharp.Nn.Module;
using DiffusionSharp.Nn;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.IO.Onnx;

/// <summary>
/// Writes a <see cref="UNet2DModel"/> as an ONNX graph (opset 17, float32, dynamic batch, height and width) with the input
/// and output names of diffusers' ONNX pipelines: <c>sample</c> [batch, C, H, W], <c>timestep</c> [batch] (float),
/// <c>class_labels</c> when the model is class conditional, and <c>out_sample</c>.
/// </summary>
public static class UNetOnnxExporter
{
    /// <summary>The opset the graph imports.</summary>
    public const int Opset = 17;
    /// <summary>Noisy image input [batch, in_channels, height, width], float32.</summary>
    public const string SampleInput = "sample";
    /// <summary>Timestep input [batch], float32 (fractional values allowed, as in <see cref="UNet2DModel.Forward(Tensor, Tensor, Tensor?)"/>).</summary>
    public const string TimestepInput = "timestep";
    /// <summary>
    /// Class input of conditional models: int64 [batch] for a class table (num_class_embeds), float32 [batch] for
    /// class_embed_type "timestep", float32 [batch, 4 * block_out_channels[0]] for "identity".
    /// </summary>
    public const string ClassLabelsInput = "class_labels";
    /// <summary>Output [batch, out_channels, height, width], float32.</summary>
    public const string Output = "out_sample";

    /// <summary>True when the exported graph has a <see cref="ClassLabelsInput"/> input.</summary>
    public static bool HasClassInput(UNet2DConfig config) => config.NumClassEmbeds is not null || config.ClassEmbedType is not null;

    /// <summary>Element type of the <see cref="ClassLabelsInput"/> input.</summary>
    public static OnnxDataType ClassInputType(UNet2DConfig config) =>
        config.ClassEmbedType is null ? OnnxDataType.Int64 : OnnxDataType.Float;

    /// <summary>Writes the model to <paramref name="path"/> (through a temporary file, so a failed export leaves no partial file).</summary>
    public static void Export(UNet2DModel model, string path)
    {
        var bytes = ToBytes(model);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full);
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var tmp = full + ".tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, full, overwrite: true);
    }

    /// <summary>The serialized ONNX ModelProto of <paramref name="model"/> (its current weights, evaluation mode).</summary>
    public static byte[] ToBytes(UNet2DModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var w = new Writer(model);
        var version = typeof(UNetOnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0";
        return w.Build(version);
    }

    private sealed class Writer
    {
        private readonly UNet2DModel _m;
        private readonly OnnxGraphBuilder _g = new();
        private readonly Dictionary<Module, string> _names = new(ReferenceEqualityComparer.Instance);

        public Writer(UNet2DModel m)
        {
            _m = m;
            foreach (var (name, mod) in m.NamedModules()) _names.TryAdd(mod, name);
        }

        private string W(Module m, string param, Tensor t, params long[] dims) => _g.Weight($"{_names[m]}.{param}", t.Span, dims);

        public byte[] Build(string version)
        {
            var cfg = _m.Config;
            _g.Input(SampleInput, OnnxDataType.Float, "batch", cfg.InChannels, "height", "width");
            _g.Input(TimestepInput, OnnxDataType.Float, "batch");
            string? classIn = null;
            if (HasClassInput(cfg))
            {
                classIn = ClassLabelsInput;
                if (cfg.ClassEmbedType == "identity")
                    _g.Input(ClassLabelsInput, OnnxDataType.Float, "batch", 4 * cfg.BlockOutChannels[0]);
                else
                    _g.Input(ClassLabelsInput, ClassInputType(cfg), "batch");
            }
            _g.Output(Output, OnnxDataType.Float, "batch", cfg.OutChannels, "height", "width");

            string x = SampleInput;
            if (cfg.CenterInputSample) x = Add(Mul(x, _g.Scalar(2f)), _g.Scalar(-1f));

            string t = TimestepInput;
            string tFeat = TimeFeatures(t);
            string emb = Mlp(_m.TimeEmbedding, tFeat);
            if (classIn != null)
            {
                string classEmb = _m.ClassEmbeddingTable != null
                    ? _g.Op("Gather", new[] { W(_m.ClassEmbeddingTable, "weight", _m.ClassEmbeddingTable.Weight,
                        _m.ClassEmbeddingTable.NumEmbeddings, _m.ClassEmbeddingTable.EmbeddingDim), classIn }, ("axis", 0L))
                    : _m.ClassEmbeddingMlp != null ? Mlp(_m.ClassEmbeddingMlp, TimeFeatures(classIn))
                    : classIn;
                emb = Add(emb, classEmb);
            }

            var h = Conv(_m.ConvIn, x);
            var skips = new List<string> { h };
            foreach (var block in _m.DownBlocks.Items)
            {
                for (int i = 0; i < block.Resnets.Count; i++)
                {
                    h = Resnet(block.Resnets[i], h, emb);
                    if (block.Attentions != null) h = Attention(block.Attentions[i], h);
                    skips.Add(h);
                }
                if (block.ConvDownsampler != null) { h = Downsample(block.ConvDownsampler, h); skips.Add(h); }
                else if (block.ResnetDownsampler != null) { h = Resnet(block.ResnetDownsampler, h, emb); skips.Add(h); }
            }

            var mid = _m.MidBlock;
            h = Resnet(mid.Resnets[0], h, emb);
            for (int i = 1; i < mid.Resnets.Count; i++)
            {
                if (mid.Attentions != null) h = Attention(mid.Attentions[i - 1], h);
                h = Resnet(mid.Resnets[i], h, emb);
            }

            foreach (var block in _m.UpBlocks.Items)
            {
                for (int i = 0; i < block.Resnets.Count; i++)
                {
                    var skip = skips[^1];
                    skips.RemoveAt(skips.Count - 1);
                    h = Resnet(block.Resnets[i], _g.Op("Concat", new[] { h, skip }, ("axis", 1L)), emb);
                    if (block.Attentions != null) h = Attention(block.Attentions[i], h);
                }
                if (block.ConvUpsampler != null) h = Upsample(block.ConvUpsampler, h);
                else if (block.ResnetUpsampler != null) h = Resnet(block.ResnetUpsampler, h, emb);
            }

            h = Conv(_m.ConvOut, Silu(GroupNorm(_m.ConvNormOut, h)));
            // Fourier (NCSN++) models predict the score scaled by sigma; diffusers divides by sigma.
            if (cfg.TimeEmbeddingType == "fourier")
                h = _g.Op("Div", new[] { h, _g.Op("Reshape", new[] { t, _g.Int64s(-1, 1, 1, 1) }) });
            _g.Identity(h, Output);
            return _g.ToModel("unet", Opset, version,
                $"DiffusionSharp UNet2DModel export: {cfg.InChannels}->{cfg.OutChannels} channels, blocks {string.Join("/", cfg.BlockOutChannels)}");
        }

        private string Add(string a, string b) => _g.Op("Add", new[] { a, b });
        private string Mul(string a, string b) => _g.Op("Mul", new[] { a, b });
        private string Silu(string x) => Mul(x, _g.Op("Sigmoid", new[] { x }));

        private string Act(string name, string x) => name switch
        {
            "silu" or "swish" => Silu(x),
            // Exact GELU: x * (1 + erf(x / sqrt 2)) / 2.
            "gelu" => Mul(Mul(x, _g.Scalar(0.5f)), Add(_g.Op("Erf", new[] { Mul(x, _g.Scalar((float)(1 / Math.Sqrt(2)))) }), _g.Scalar(1f))),
            _ => throw new NotSupportedException($"ONNX export: activation '{name}' is not supported."),
        };

        private string TimeFeatures(string t)
        {
            if (_m.TimeProjPositional is { } p)
            {
                int half = p.NumChannels / 2;
                // Same float32 frequencies as Timesteps.Forward: exp(-ln(10000) i / (half - shift)).
                var freq = new float[half];
                float negLog = (float)-Math.Log(10000.0), denom = half - p.DownscaleFreqShift;
                for (int i = 0; i < half; i++) freq[i] = (float)Math.Exp((float)(negLog * (float)i) / denom);
                var arg = Mul(_g.Op("Reshape", new[] { t, _g.Int64s(-1, 1) }), _g.Weight(_g.Fresh("time_freq"), freq, 1, half));
                if (p.Scale != 1f) arg = Mul(_g.Scalar(p.Scale), arg);
                var sin = _g.Op("Sin", new[] { arg });
                var cos = _g.Op("Cos", new[] { arg });
                return _g.Op("Concat", p.FlipSinToCos ? new[] { cos, sin } : new[] { sin, cos }, ("axis", 1L));
            }
            if (_m.TimeProjFourier is { } f)
            {
                int e = f.Weight.Size;
                var v = f.Log ? _g.Op("Log", new[] { t }) : t;
                var arg = Mul(Mul(Mul(_g.Op("Reshape", new[] { v, _g.Int64s(-1, 1) }), W(f, "weight", f.Weight, 1, e)), _g.Scalar(2f)), _g.Scalar(MathF.PI));
                var sin = _g.Op("Sin", new[] { arg });
                var cos = _g.Op("Cos", new[] { arg });
                return _g.Op("Concat", f.FlipSinToCos ? new[] { cos, sin } : new[] { sin, cos }, ("axis", 1L));
            }
            var table = _m.TimeProjLearned!;
            var idx = _g.Op("Cast", new[] { t }, ("to", (long)OnnxDataType.Int64));
            return _g.Op("Gather", new[] { W(table, "weight", table.Weight, table.NumEmbeddings, table.EmbeddingDim), idx }, ("axis", 0L));
        }

        private string Mlp(TimestepEmbedding mlp, string x) => Linear(mlp.Linear2, Silu(Linear(mlp.Linear1, x)));

        /// <summary>x [..., in] W^T + b, with W stored transposed as [in, out].</summary>
        private string Linear(Linear l, string x)
        {
            int o = l.OutFeatures, i = l.InFeatures;
            var wt = new float[i * o];
            var ws = l.Weight.Span;
            for (int r = 0; r < o; r++)
                for (int c = 0; c < i; c++) wt[c * o + r] = ws[r * i + c];
            var y = _g.Op("MatMul", new[] { x, _g.Weight($"{_names[l]}.weight_t", wt, i, o) });
            return l.Bias is { } b ? Add(y, W(l, "bias", b, o)) : y;
        }

        private string Conv(Conv2d c, string x, long[]? pads = null)
        {
            long p = c.Padding;
            var inputs = new List<string> { x, W(c, "weight", c.Weight, c.OutChannels, c.InChannels, c.KernelSize, c.KernelSize) };
            if (c.Bias is { } b) inputs.Add(W(c, "bias", b, c.OutChannels));
            return _g.Op("Conv", inputs.ToArray(), ("kernel_shape", new long[] { c.KernelSize, c.KernelSize }),
                ("strides", new long[] { c.Stride, c.Stride }), ("pads", pads ?? new[] { p, p, p, p }));
        }

        /// <summary>GroupNorm as InstanceNormalization over [N, groups, C/groups * H * W], then the per-channel affine.</summary>
        private string GroupNorm(GroupNorm gn, string x)
        {
            int g = gn.NumGroups, c = gn.NumChannels;
            var grouped = _g.Op("Reshape", new[] { x, _g.Int64s(0, g, -1) });
            var ones = _g.Weight(_g.Fresh("gn_ones"), Enumerable.Repeat(1f, g).ToArray(), g);
            var zeros = _g.Weight(_g.Fresh("gn_zeros"), new float[g], g);
            var normed = _g.Op("InstanceNormalization", new[] { grouped, ones, zeros }, ("epsilon", gn.Eps));
            var back = _g.Op("Reshape", new[] { normed, _g.Op("Shape", new[] { x }) });
            return Add(Mul(back, W(gn, "weight", gn.Weight, c, 1, 1)), W(gn, "bias", gn.Bias, c, 1, 1));
        }

        private string Resnet(ResnetBlock2D r, string x, string temb)
        {
            var input = x;
            var h = Act(ActName(r), GroupNorm(r.Norm1, x));
            if (r.Upsample != null) { h = UpsampleNearest(h); input = UpsampleNearest(input); }
            else if (r.Downsample != null) { h = AvgPool(h); input = AvgPool(input); }
            h = Conv(r.Conv1, h);
            string? t = null;
            if (r.TimeEmbProj != null)
                t = Linear(r.TimeEmbProj, r.SkipTimeAct ? temb : Act(ActName(r), temb));
            int c = r.OutChannels;
            if (r.TimeEmbeddingNorm == TimeEmbeddingNorm.ScaleShift)
            {
                var parts = _g.Op("Split", new[] { t!, _g.Int64s(c, c) }, 2, ("axis", 1L));
                var scale = _g.Op("Reshape", new[] { parts[0], _g.Int64s(0, c, 1, 1) });
                var shift = _g.Op("Reshape", new[] { parts[1], _g.Int64s(0, c, 1, 1) });
                h = Add(Mul(GroupNorm(r.Norm2, h), Add(scale, _g.Scalar(1f))), shift);
            }
            else
            {
                if (t != null) h = Add(h, _g.Op("Reshape", new[] { t, _g.Int64s(0, c, 1, 1) }));
                h = GroupNorm(r.Norm2, h);
            }
            h = Conv(r.Conv2, Act(ActName(r), h));
            if (r.ConvShortcut != null) input = Conv(r.ConvShortcut, input);
            var y = Add(input, h);
            return r.OutputScaleFactor == 1f ? y : _g.Op("Div", new[] { y, _g.Scalar(r.OutputScaleFactor) });
        }

        private string ActName(ResnetBlock2D _) => _m.Config.ActFn;

        private string Attention(Attention a, string x)
        {
            int c = a.QueryDim, heads = a.Heads, d = a.DimHead, inner = heads * d;
            var normed = a.GroupNorm != null ? GroupNorm(a.GroupNorm, x) : x;
            var seq = _g.Op("Transpose", new[] { _g.Op("Reshape", new[] { normed, _g.Int64s(0, c, -1) }) }, ("perm", new long[] { 0, 2, 1 }));
            string Heads(Linear l, long[] perm) => _g.Op("Transpose",
                new[] { _g.Op("Reshape", new[] { Linear(l, seq), _g.Int64s(0, -1, heads, d) }) }, ("perm", perm));
            // softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, Eq. 1), q scaled first as in Attention.Forward.
            var q = Mul(Heads(a.ToQ, new long[] { 0, 2, 1, 3 }), _g.Scalar(1f / MathF.Sqrt(d)));
            var kt = Heads(a.ToK, new long[] { 0, 2, 3, 1 });
            var v = Heads(a.ToV, new long[] { 0, 2, 1, 3 });
            var p = _g.Op("Softmax", new[] { _g.Op("MatMul", new[] { q, kt }) }, ("axis", -1L));
            var merged = _g.Op("Reshape", new[] {
                _g.Op("Transpose", new[] { _g.Op("MatMul", new[] { p, v }) }, ("perm", new long[] { 0, 2, 1, 3 })), _g.Int64s(0, -1, inner) });
            var proj = Linear(a.ToOut, merged);
            var y = _g.Op("Reshape", new[] { _g.Op("Transpose", new[] { proj }, ("perm", new long[] { 0, 2, 1 })), _g.Op("Shape", new[] { x }) });
            if (a.ResidualConnection) y = Add(y, x);
            return a.RescaleOutputFactor == 1f ? y : _g.Op("Div", new[] { y, _g.Scalar(a.RescaleOutputFactor) });
        }

        private string Downsample(Downsample2D ds, string x)
        {
            if (ds.Conv == null) return AvgPool(x);
            // Padding 0: diffusers pads one row and column at the bottom/right first.
            return ds.Conv.Padding != 0 ? Conv(ds.Conv, x) : Conv(ds.Conv, x, new long[] { 0, 0, 1, 1 });
        }

        private string Upsample(Upsample2D us, string x)
        {
            var y = UpsampleNearest(x);
            return us.Conv == null ? y : Conv(us.Conv, y);
        }

        private string UpsampleNearest(string x)
        {
            var scales = _g.Weight(_g.Fresh("scales"), new[] { 1f, 1f, 2f, 2f }, 4);
            return _g.Op("Resize", new[] { x, "", scales }, ("mode", "nearest"),
                ("coordinate_transformation_mode", "asymmetric"), ("nearest_mode", "floor"));
        }

        private string AvgPool(string x) =>
            _g.Op("AveragePool", new[] { x }, ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 }));
    }
}
