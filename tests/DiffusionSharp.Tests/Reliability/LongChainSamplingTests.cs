using DiffusionSharp.Diffusion;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Reliability;

/// <summary>Every sampler at as many steps as training timesteps, and twice as many, gives finite images that are not all black.</summary>
public class LongChainSamplingTests
{
    // One 4x4 gray level, 4 channels: cheap enough for 2000 network calls per sampler.
    internal static DiffusionPipeline TinyPipeline(string schedulerJson = """{"_class_name": "DDPMScheduler", "thresholding": true, "clip_sample": true}""")
    {
        var cfg = new UNet2DConfig
        {
            SampleSize = 4, InChannels = 1, OutChannels = 1, BlockOutChannels = new[] { 4 }, DownBlockTypes = new[] { "DownBlock2D" },
            UpBlockTypes = new[] { "UpBlock2D" }, LayersPerBlock = 1, NormNumGroups = 2, AddAttention = false, AttentionHeadDim = null,
        };
        var unet = new UNet2DModel(cfg, new Generator(7));
        return new DiffusionPipeline(unet, schedulerJson);
    }

    public static TheoryData<string, int> Cases()
    {
        var d = new TheoryData<string, int>();
        foreach (var s in DiffusionPipeline.SamplerNames) { d.Add(s, 1000); d.Add(s, 2000); }
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LongChainsGiveFiniteNonBlackImages(string sampler, int steps)
    {
        var pipe = TinyPipeline();
        using var img = pipe.Sample(new SampleRequest { Count = 1, Steps = steps, Sampler = sampler, Seed = 3 });
        var v = img.Span.ToArray();
        Assert.All(v, x => Assert.True(float.IsFinite(x)));
        Assert.True(v.Max() > -0.99f, $"{sampler} at {steps} steps gave an all-black image (max {v.Max()})");
    }
}
