using System.Text.Json;
using DiffusionSharp.IO;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Nn;

/// <summary>FromPretrained / SavePretrained: round trip, legacy attention names, F16 weights and error reporting.</summary>
public sealed class UNet2DModelPretrainedTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "ds-unet-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string WriteCheckpoint(string name, Dictionary<string, Tensor> weights, string? configJson = null, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("unet_tiny.json")));
        File.WriteAllText(Path.Combine(d, "config.json"), configJson ?? doc.RootElement.GetProperty("full_config").GetRawText());
        SafeTensors.Save(Path.Combine(d, "diffusion_pytorch_model.safetensors"), weights, dtype);
        return d;
    }

    private static Tensor Run(UNet2DModel m)
    {
        var fx = Fixtures.Load("unet_tiny.safetensors");
        using var _ = DiffusionSharp.Autograd.GradMode.NoGrad();
        return m.Forward(fx["x"], fx["t"]);
    }

    [Fact]
    public void FromPretrainedLoadsDiffusersLayoutAndMatchesUpstream()
    {
        var m = UNet2DModel.FromPretrained(WriteCheckpoint("tiny", UNetFixture.Weights("unet_tiny.safetensors")));
        Assert.False(m.Training);
        GradCheck.AssertClose(Run(m).Span, Fixtures.Load("unet_tiny.safetensors")["out"].Span, 1e-5, 1e-4, "out");
    }

    [Fact]
    public void SaveThenLoadRoundTripsConfigAndWeightsExactly()
    {
        var original = UNet2DModel.FromPretrained(WriteCheckpoint("tiny", UNetFixture.Weights("unet_tiny.safetensors")));
        var outDir = Path.Combine(_dir, "saved");
        original.SavePretrained(outDir);
        Assert.True(File.Exists(Path.Combine(outDir, "config.json")));
        var loaded = UNet2DModel.FromPretrained(outDir);
        Assert.Equal(original.Config.ToJson(), loaded.Config.ToJson());
        var a = original.StateDict();
        foreach (var (k, v) in loaded.StateDict()) Assert.Equal(a[k].ToArray(), v.ToArray());
        Assert.Equal(Run(original).ToArray(), Run(loaded).ToArray());
        // The written config is one diffusers reads: same keys as upstream's to_json_string for this model.
        using var saved = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "config.json")));
        using var upstream = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("unet_tiny.json")));
        var upstreamKeys = upstream.RootElement.GetProperty("full_config").EnumerateObject().Select(p => p.Name).OrderBy(x => x, StringComparer.Ordinal);
        Assert.Equal(upstreamKeys, saved.RootElement.EnumerateObject().Select(p => p.Name).OrderBy(x => x, StringComparer.Ordinal));
        Assert.Equal(1e-5, saved.RootElement.GetProperty("norm_eps").GetDouble(), 12);
    }

    [Fact]
    public void LegacyAttentionNamesAreRenamedOnLoad()
    {
        var legacy = new Dictionary<string, Tensor>();
        int renamed = 0;
        foreach (var (k, v) in UNetFixture.Weights("unet_tiny.safetensors"))
        {
            var n = k.Replace(".to_q.", ".query.").Replace(".to_k.", ".key.").Replace(".to_v.", ".value.").Replace(".to_out.0.", ".proj_attn.");
            if (n != k) renamed++;
            legacy[n] = v;
        }
        Assert.Equal(4 * 8, renamed);  // 4 attention layers (down 1, up 2, mid 1) x 4 linears x (weight, bias)
        var m = UNet2DModel.FromPretrained(WriteCheckpoint("legacy", legacy));
        GradCheck.AssertClose(Run(m).Span, Fixtures.Load("unet_tiny.safetensors")["out"].Span, 1e-5, 1e-4, "out");
    }

    [Fact]
    public void LegacyHubNamesOfDdpmCifar10MapToCurrentNames()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("ddpm_cifar10_32_keys.json")));
        var map = doc.RootElement.GetProperty("legacy_hub_names").GetProperty("current_to_legacy").EnumerateObject().ToList();
        Assert.NotEmpty(map);
        var state = map.ToDictionary(p => p.Value.GetString()!, _ => Tensor.Zeros(1));
        var converted = CheckpointNames.ConvertLegacy(state);
        Assert.Equal(map.Select(p => p.Name).OrderBy(x => x, StringComparer.Ordinal), converted.Keys.OrderBy(x => x, StringComparer.Ordinal));
        // Non-attention names pass through untouched (e.g. a resnet's conv named like a legacy key fragment).
        var other = CheckpointNames.ConvertLegacy(new Dictionary<string, Tensor> { ["down_blocks.0.resnets.0.conv1.weight"] = Tensor.Zeros(1) });
        Assert.Contains("down_blocks.0.resnets.0.conv1.weight", other.Keys);
    }

    [Fact]
    public void HalfPrecisionWeightsLoadWithinHalfRounding()
    {
        var w = UNetFixture.Weights("unet_tiny.safetensors");
        var m = UNet2DModel.FromPretrained(WriteCheckpoint("f16", w, dtype: SafeTensorDType.F16));
        foreach (var (k, v) in m.StateDict())
            for (int i = 0; i < v.Size; i++)
                Assert.True(Math.Abs(v.Span[i] - w[k].Span[i]) <= 1e-3 * Math.Abs(w[k].Span[i]) + 1e-7, $"{k}[{i}]");
    }

    [Fact]
    public void MalformedConfigReportsPathLineAndPosition()
    {
        var d = WriteCheckpoint("badjson", UNetFixture.Weights("unet_tiny.safetensors"), "{\n  \"in_channels\": 3,\n  \"out_channels\": ,\n}");
        var e = Assert.Throws<InvalidDataException>(() => UNet2DModel.FromPretrained(d));
        Assert.Contains(Path.Combine(d, "config.json"), e.Message);
        Assert.Contains("line 3", e.Message);
        Assert.Contains("position", e.Message);
    }

    [Fact]
    public void WronglyTypedConfigValueNamesTheKey()
    {
        var e = Assert.Throws<InvalidDataException>(() => UNet2DConfig.Parse("{\"block_out_channels\": \"32,64\"}", "cfg.json"));
        Assert.Contains("cfg.json", e.Message);
        Assert.Contains("block_out_channels", e.Message);
        var e2 = Assert.Throws<InvalidDataException>(() => UNet2DConfig.Parse("{\"_class_name\": \"UNet2DConditionModel\"}", "cfg.json"));
        Assert.Contains("UNet2DConditionModel", e2.Message);
    }

    [Fact]
    public void InconsistentConfigIsRejected()
    {
        var cfg = UNetFixture.ConfigOf("unet_tiny.json") with { UpBlockTypes = new[] { "UpBlock2D" } };
        var e = Assert.Throws<InvalidDataException>(() => new UNet2DModel(cfg));
        Assert.Contains("up_block_types", e.Message);
        var cfg2 = UNetFixture.ConfigOf("unet_tiny.json") with { DownBlockTypes = new[] { "DownBlock2D", "CrossAttnDownBlock2D" } };
        Assert.Contains("CrossAttnDownBlock2D", Assert.Throws<InvalidDataException>(() => new UNet2DModel(cfg2)).Message);
    }

    [Fact]
    public void MissingAndUnexpectedKeysAreNamed()
    {
        var w = UNetFixture.Weights("unet_tiny.safetensors");
        w.Remove("conv_out.bias");
        w["conv_out.extra"] = Tensor.Zeros(3);
        var d = WriteCheckpoint("keys", w);
        var e = Assert.Throws<InvalidDataException>(() => UNet2DModel.FromPretrained(d));
        Assert.Contains("missing", e.Message);
        Assert.Contains("'conv_out.bias'", e.Message);
        Assert.Contains("unexpected", e.Message);
        Assert.Contains("'conv_out.extra'", e.Message);
        Assert.Contains("diffusion_pytorch_model.safetensors", e.Message);
    }

    [Fact]
    public void ShapeMismatchNamesBothShapes()
    {
        var w = UNetFixture.Weights("unet_tiny.safetensors");
        w["conv_in.weight"] = Tensor.Zeros(32, 4, 3, 3);
        var e = Assert.Throws<InvalidDataException>(() => UNet2DModel.FromPretrained(WriteCheckpoint("shape", w)));
        Assert.Contains("conv_in.weight", e.Message);
        Assert.Contains("[32, 4, 3, 3]", e.Message);
        Assert.Contains("[32, 3, 3, 3]", e.Message);
    }

    [Fact]
    public void MissingFilesAreReported()
    {
        Assert.Throws<DirectoryNotFoundException>(() => UNet2DModel.FromPretrained(Path.Combine(_dir, "nope")));
        var d = WriteCheckpoint("noweights", UNetFixture.Weights("unet_tiny.safetensors"));
        File.Delete(Path.Combine(d, "diffusion_pytorch_model.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => UNet2DModel.FromPretrained(d));
        Assert.Contains("diffusion_pytorch_model.safetensors", e.Message);
    }
}
