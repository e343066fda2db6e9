using System.Text.Json;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Nn;

/// <summary>One ddpm-cifar10-32 model shared by the architecture tests (35.7 M parameters are slow to initialise).</summary>
public sealed class DdpmCifar10Model
{
    public UNet2DModel Model { get; } = new(UNet2DConfig.Load(Fixtures.PathOf("ddpm_cifar10_32_config.json")));
}

/// <summary>Architecture checks against diffusers' google/ddpm-cifar10-32 key list and the PyTorch peer's presets.</summary>
public class UNet2DModelArchitectureTests(DdpmCifar10Model cifar) : IClassFixture<DdpmCifar10Model>
{
    [Fact]
    public void DdpmCifar10ConfigBuildsExactlyTheDiffusersKeysAndShapes()
    {
        var model = cifar.Model;
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("ddpm_cifar10_32_keys.json")));
        var expected = doc.RootElement.GetProperty("keys").EnumerateArray()
            .Select(k => (Name: k.GetProperty("name").GetString()!, Shape: k.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray()))
            .ToList();
        var actual = model.NamedParameters().ToList();
        Assert.Equal(328, expected.Count);
        // Same names in the same (registration) order, with the same shapes.
        Assert.Equal(expected.Select(e => e.Name), actual.Select(a => a.Key));
        for (int i = 0; i < expected.Count; i++)
            Assert.True(new Shape(expected[i].Shape) == actual[i].Value.Shape, $"{expected[i].Name}: expected {new Shape(expected[i].Shape)}, got {actual[i].Value.Shape}");
        Assert.Equal(35_746_307, model.ParameterCount);
        Assert.Equal(doc.RootElement.GetProperty("total_parameters").GetInt64(), model.ParameterCount);
    }

    [Fact]
    public void DdpmCifar10ConfigValuesAreRead()
    {
        var c = UNet2DConfig.Load(Fixtures.PathOf("ddpm_cifar10_32_config.json"));
        Assert.Equal(new[] { 128, 256, 256, 256 }, c.BlockOutChannels);
        Assert.Null(c.AttentionHeadDim);
        Assert.False(c.FlipSinToCos);
        Assert.Equal(1, c.FreqShift);
        Assert.Equal(0, c.DownsamplePadding);
        Assert.Equal(1e-6f, c.NormEps);
        Assert.Equal(new[] { "UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D" }, c.UpBlockTypes);
    }

    [Fact]
    public void DdpmCifar10ForwardKeepsShapeAndUsesOneHeadPerAttention()
    {
        var model = cifar.Model;
        Assert.Equal(1, model.DownBlocks[1].Attentions![0].Heads);
        Assert.Equal(256, model.DownBlocks[1].Attentions![0].DimHead);
        // downsample_padding 0: the stride-2 conv has no padding (the input is padded bottom/right instead).
        Assert.Equal(0, model.DownBlocks[0].ConvDownsampler!.Conv!.Padding);
        model.Eval();
        using var _ = DiffusionSharp.Autograd.GradMode.NoGrad();
        // 8x8 is the smallest input the three downsamplings allow; it exercises every block at 1/16 the cost of 32x32.
        var y = model.Forward(Tensor.Randn(new Generator(3), 1, 3, 8, 8), 10f);
        Assert.Equal(new Shape(1, 3, 8, 8), y.Shape);
        Assert.All(y.ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    // Expected counts come from the peer script's own constructor (tools/count_peer_unet_params.py on shared/peer/torch_unet.py).
    [Theory]
    [InlineData("ddpm-small", 6_469_889L)]
    public void PresetsHaveThePeerParameterCounts(string preset, long expected)
    {
        var model = UNet2DModel.Preset(preset);
        Assert.Equal(expected, model.ParameterCount);
    }

    [Fact]
    public void CifarPresetMatchesThePeerCountAndTheHubArchitecture()
    {
        // The peer's ddpm-cifar differs from the hub config only in eps/sinusoid/padding settings, which carry no parameters.
        var preset = UNet2DModel.PresetConfig("ddpm-cifar");
        var hub = cifar.Model.Config;
        Assert.Equal(hub.BlockOutChannels, preset.BlockOutChannels);
        Assert.Equal(hub.DownBlockTypes, preset.DownBlockTypes);
        Assert.Equal(hub.UpBlockTypes, preset.UpBlockTypes);
        Assert.Equal(hub.AttentionHeadDim, preset.AttentionHeadDim);
        Assert.Equal(hub.LayersPerBlock, preset.LayersPerBlock);
        Assert.Equal(35_746_307L, cifar.Model.ParameterCount);
    }

    [Fact]
    public void UnknownPresetIsRejectedWithTheKnownNames()
    {
        var e = Assert.Throws<ArgumentException>(() => UNet2DModel.PresetConfig("ddpm-huge"));
        Assert.Contains("ddpm-small", e.Message);
        Assert.Contains("ddpm-cifar", e.Message);
    }

    [Fact]
    public void LearnedVarianceDoublesOutputChannels()
    {
        var cfg = UNetFixture.ConfigOf("unet_tiny.json") with { OutChannels = 6 };
        var model = new UNet2DModel(cfg);
        Assert.Equal(new Shape(6, 32, 3, 3), model.ConvOut.Weight.Shape);
        using var _ = DiffusionSharp.Autograd.GradMode.NoGrad();
        var y = model.Forward(Tensor.Zeros(1, 3, 16, 16), 3f);
        Assert.Equal(new Shape(1, 6, 16, 16), y.Shape);
    }
}
