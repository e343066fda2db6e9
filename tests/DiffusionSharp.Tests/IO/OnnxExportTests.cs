using DiffusionSharp.Autograd;
using DiffusionSharp.IO.Onnx;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tests.Nn;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Tensor = DiffusionSharp.Tensors.Tensor;
using Xunit;

namespace DiffusionSharp.Tests.IO;

/// <summary>The exported ONNX graph, run by ONNX Runtime, matches our forward pass.</summary>
public sealed class OnnxExportTests
{
    private static UNet2DModel FromFixture(params string[] files)
    {
        var m = new UNet2DModel(UNetFixture.ConfigOf(files[^1].Replace(".safetensors", ".json")));
        m.LoadStateDict(UNetFixture.Weights(files), strict: true);
        m.Eval();
        return m;
    }

    /// <summary>Runs the exported model in ONNX Runtime on x, t (and class labels) and returns out_sample.</summary>
    internal static float[] RunOrt(byte[] onnx, UNet2DModel m, Tensor x, float[] t, float[]? classLabels)
    {
        using var session = new InferenceSession(onnx);
        Assert.Equal(new[] { UNetOnnxExporter.SampleInput, UNetOnnxExporter.TimestepInput }
            .Concat(classLabels != null ? new[] { UNetOnnxExporter.ClassLabelsInput } : Array.Empty<string>()), session.InputMetadata.Keys);
        Assert.Equal(new[] { UNetOnnxExporter.Output }, session.OutputMetadata.Keys);
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.SampleInput, new DenseTensor<float>(x.ToArray(), x.Shape.ToArray())),
            NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.TimestepInput, new DenseTensor<float>(t, new[] { t.Length })),
        };
        if (classLabels != null)
        {
            int n = x.Dim(0);
            if (UNetOnnxExporter.ClassInputType(m.Config) == OnnxDataType.Int64)
                inputs.Add(NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.ClassLabelsInput,
                    new DenseTensor<long>(classLabels.Select(c => (long)c).ToArray(), new[] { n })));
            else
                inputs.Add(NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.ClassLabelsInput,
                    new DenseTensor<float>(classLabels, classLabels.Length == n ? new[] { n } : new[] { n, classLabels.Length / n })));
        }
        using var results = session.Run(inputs);
        var o = results.Single();
        Assert.Equal(UNetOnnxExporter.Output, o.Name);
        var ot = o.AsTensor<float>();
        Assert.Equal(new[] { x.Dim(0), m.Config.OutChannels, x.Dim(2), x.Dim(3) }, ot.Dimensions.ToArray());
        return ot.ToArray();
    }

    private static void AssertMatches(UNet2DModel m, Tensor x, float[] t, float[]? classLabels)
    {
        Tensor ours;
        using (GradMode.NoGrad())
            ours = m.Forward(x, Tensor.FromValues(t), classLabels == null ? null
                : classLabels.Length == x.Dim(0) ? Tensor.FromValues(classLabels) : Tensor.FromArray(classLabels, x.Dim(0), classLabels.Length / x.Dim(0)));
        var ort = RunOrt(UNetOnnxExporter.ToBytes(m), m, x, t, classLabels);
        double rel = UNetFixture.MaxRelToMax(ort, ours.Span);
        Assert.True(rel <= 1e-4, $"ONNX Runtime vs ours: max |diff| / max |ours| = {rel:E2}");
        Assert.Contains(ours.Span.ToArray(), v => v != 0f);
    }

    private static Tensor RandomInput(int n, int c, int h, int w, ulong seed) => Tensor.Randn(new Generator(seed), n, c, h, w);

    [Fact]
    public void TinyUNetFixtureMatchesOnnxRuntimeAtTwoBatchSizes()
    {
        var m = FromFixture("unet_tiny.safetensors");
        var fx = Fixtures.Load("unet_tiny.safetensors");
        int n = fx["x"].Dim(0);
        var t = fx["t"].Size == n ? fx["t"].ToArray() : Enumerable.Repeat(fx["t"].Span[0], n).ToArray();
        AssertMatches(m, fx["x"], t, null);
        // Dynamic batch and size: a different batch and resolution through the same graph.
        AssertMatches(m, RandomInput(3, 3, 8, 12, 5), new[] { 0f, 417.5f, 999f }, null);
    }

    [Fact]
    public void ClassConditionalTinyUNetFixtureMatchesOnnxRuntime()
    {
        var m = FromFixture("unet_tiny.safetensors", "unet_tiny_class.safetensors");
        var fx = Fixtures.Load("unet_tiny_class.safetensors");
        var x = fx.TryGetValue("x", out var fxX) ? fxX : Fixtures.Load("unet_tiny.safetensors")["x"];
        int n = x.Dim(0);
        var labels = fx["class_labels"].ToArray();
        var t = Enumerable.Range(0, n).Select(i => 10f + 300f * i).ToArray();
        AssertMatches(m, x, t, labels.Length == n ? labels : Enumerable.Range(0, n).Select(i => (float)(i % 10)).ToArray());
    }

    [Fact]
    public void BundledModelMatchesOnnxRuntime()
    {
        var dir = FindBundledUNet();
        var m = UNet2DModel.FromPretrained(dir);
        AssertMatches(m, RandomInput(2, 1, 28, 28, 3), new[] { 999f, 20f }, new[] { 7f, 10f });
    }

    public static TheoryData<string> Variants => new() { "scale_shift_learned_sigma", "fourier_resnet_updown", "learned_time_gelu_center", "class_timestep", "class_identity", "downsample_padding_0" };

    [Theory]
    [MemberData(nameof(Variants))]
    public void ConfigVariantsMatchOnnxRuntime(string variant)
    {
        var baseCfg = UNetFixture.ConfigOf("unet_tiny.json") with { Dropout = 0f };
        var cfg = variant switch
        {
            "scale_shift_learned_sigma" => baseCfg with { ResnetTimeScaleShift = "scale_shift", OutChannels = 6, NumClassEmbeds = 4 },
            "fourier_resnet_updown" => baseCfg with
            {
                TimeEmbeddingType = "fourier", DownBlockTypes = new[] { "ResnetDownsampleBlock2D", "AttnDownBlock2D" },
                UpBlockTypes = new[] { "AttnUpBlock2D", "ResnetUpsampleBlock2D" }, MidBlockScaleFactor = 1.414f,
            },
            "learned_time_gelu_center" => baseCfg with { TimeEmbeddingType = "learned", NumTrainTimesteps = 1000, ActFn = "gelu", CenterInputSample = true },
            "class_timestep" => baseCfg with { ClassEmbedType = "timestep" },
            "class_identity" => baseCfg with { ClassEmbedType = "identity" },
            "downsample_padding_0" => baseCfg with { DownsamplePadding = 0, AddAttention = false },
            _ => throw new ArgumentException(variant),
        };
        var m = new UNet2DModel(cfg, new Generator(11));
        m.Eval();
        var x = RandomInput(2, cfg.InChannels, 16, 16, 9);
        float[] t = variant == "fourier_resnet_updown" ? new[] { 0.5f, 20f } : new[] { 3f, 871f };
        float[]? labels = variant switch
        {
            "scale_shift_learned_sigma" => new[] { 3f, 0f },
            "class_timestep" => new[] { 2f, 9f },
            "class_identity" => Tensor.Randn(new Generator(4), 2, 4 * cfg.BlockOutChannels[0]).ToArray(),
            _ => null,
        };
        AssertMatches(m, x, t, labels);
    }

    /// <summary>models/fashion-mnist/unet, searched upwards from the test binaries (it is also copied next to the tool).</summary>
    internal static string FindBundledUNet()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "models", "fashion-mnist", "unet");
            if (Directory.Exists(p)) return p;
        }
        throw new DirectoryNotFoundException("models/fashion-mnist/unet not found above " + AppContext.BaseDirectory);
    }
}
