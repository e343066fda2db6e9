using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Nn;

/// <summary>Config variants beyond the fixtures: AdaGN, BigGAN-style resnet up/down blocks, Fourier/learned time, class embeddings.</summary>
public class UNet2DModelVariantTests
{
    private static UNet2DConfig Micro => new()
    {
        SampleSize = 4, InChannels = 1, OutChannels = 1, BlockOutChannels = new[] { 4, 8 }, LayersPerBlock = 1,
        DownBlockTypes = new[] { "ResnetDownsampleBlock2D", "AttnDownBlock2D" }, UpBlockTypes = new[] { "ResnetUpsampleBlock2D", "AttnUpBlock2D" },
        NormNumGroups = 2, AttentionHeadDim = 4, ResnetTimeScaleShift = "scale_shift", TimeEmbeddingType = "fourier",
    };

    [Fact]
    public void BigGanBlocksAndScaleShiftHaveDiffusersNames()
    {
        var m = new UNet2DModel(Micro);
        var names = m.StateDict().Keys.ToHashSet();
        Assert.Contains("down_blocks.0.downsamplers.0.conv1.weight", names);        // resnet downsampler
        Assert.Contains("up_blocks.1.resnets.0.conv_shortcut.weight", names);
        Assert.Contains("up_blocks.0.upsamplers.0.time_emb_proj.weight", names);    // resnet upsampler
        Assert.Contains("time_proj.weight", names);                                  // Fourier frequencies
        Assert.DoesNotContain("mid_block.attentions.0.group_norm.weight", names);    // scale_shift mid attention has no norm
        Assert.Equal(new Shape(2 * 4, 16), m.DownBlocks[0].Resnets[0].TimeEmbProj!.Weight.Shape);  // [2C, temb]
        Assert.Equal(new Shape(16, 8), m.TimeEmbedding.Linear1.Weight.Shape);       // Fourier doubles the input
        Assert.False(m.TimeProjFourier!.Weight.RequiresGrad);
        Assert.DoesNotContain(m.TimeProjFourier.Weight, m.TrainableParameters());
    }

    [Fact]
    public void MicroUNetInputGradientMatchesFiniteDifferences()
    {
        var m = new UNet2DModel(Micro, new Generator(7));
        m.Eval();
        var sigma = Tensor.FromValues(0.7f, 3f);
        GradCheck.Check(t => m.Forward(t[0], sigma), new[] { GradCheck.Rand(8, 2, 1, 4, 4), m.UpBlocks[0].ResnetUpsampler!.Conv1.Bias! });
    }

    [Fact]
    public void FourierModelDividesByTheNoiseLevel()
    {
        var m = new UNet2DModel(Micro, new Generator(7));
        m.Eval();
        var x = GradCheck.Rand(8, 2, 1, 4, 4);
        var acts = new Dictionary<string, Tensor>();
        m.ActivationHook = (n, t) => acts[n] = t.Clone();
        var y = m.Forward(x, Tensor.FromValues(0.5f, 4f));
        var raw = acts["conv_out"].ToArray();
        var ys = y.ToArray();
        for (int i = 0; i < 16; i++) Assert.Equal(raw[i] / 0.5f, ys[i], 1e-5f);
        for (int i = 16; i < 32; i++) Assert.Equal(raw[i] / 4f, ys[i], 1e-5f);
    }

    [Fact]
    public void AttnBlocksWithResnetSamplingLearnedTimeAndTimestepClassEmbedding()
    {
        var cfg = Micro with
        {
            DownBlockTypes = new[] { "AttnDownBlock2D", "DownBlock2D" }, UpBlockTypes = new[] { "AttnUpBlock2D", "UpBlock2D" },
            DownsampleType = "resnet", UpsampleType = "resnet", ResnetTimeScaleShift = "default", TimeEmbeddingType = "learned",
            NumTrainTimesteps = 10, ClassEmbedType = "timestep", CenterInputSample = true, AddAttention = false,
        };
        var m = new UNet2DModel(cfg, new Generator(3));
        m.Eval();
        var names = m.StateDict().Keys.ToHashSet();
        Assert.Contains("down_blocks.0.downsamplers.0.norm1.weight", names);
        Assert.Contains("up_blocks.0.upsamplers.0.conv2.weight", names);
        Assert.Contains("time_proj.weight", names);
        Assert.Contains("class_embedding.linear_2.weight", names);
        Assert.DoesNotContain(names, n => n.StartsWith("mid_block.attentions", StringComparison.Ordinal));
        Assert.True(m.TimeProjLearned!.Weight.RequiresGrad);
        var x = GradCheck.Rand(4, 2, 1, 4, 4);
        var y1 = m.Forward(x, Tensor.FromValues(1f, 9f), Tensor.FromValues(0f, 1f));
        var y2 = m.Forward(x, Tensor.FromValues(1f, 9f), Tensor.FromValues(2f, 1f));
        Assert.Equal(new Shape(2, 1, 4, 4), y1.Shape);
        // Only the first image's class changed.
        Assert.True(UNetFixture.MaxAbs(y1.Span[..16], y2.Span[..16]) > 1e-5);
        Assert.Equal(y1.Span[16..].ToArray(), y2.Span[16..].ToArray());
        GradCheck.Check(t => m.Forward(t[0], Tensor.FromValues(1f, 9f), Tensor.FromValues(0f, 1f)), new[] { x, m.ClassEmbeddingMlp!.Linear1.Weight });
    }

    [Fact]
    public void ClassLabelsMustMatchTheModel()
    {
        var uncond = new UNet2DModel(Micro);
        Assert.Contains("no class embedding", Assert.Throws<ArgumentException>(() => uncond.Forward(Tensor.Zeros(1, 1, 4, 4), 1f, Tensor.FromValues(1f))).Message);
        var cond = new UNet2DModel(Micro with { NumClassEmbeds = 3 });
        Assert.Contains("classLabels must be given", Assert.Throws<ArgumentException>(() => cond.Forward(Tensor.Zeros(1, 1, 4, 4), 1f)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => cond.Forward(Tensor.Zeros(1, 1, 4, 4), 1f, Tensor.FromValues(3f)));
        Assert.Contains("[N, 1, H, W]", Assert.Throws<ArgumentException>(() => cond.Forward(Tensor.Zeros(1, 3, 4, 4), 1f, Tensor.FromValues(0f))).Message);
        Assert.Contains("divisible by 2", Assert.Throws<ArgumentException>(() => cond.Forward(Tensor.Zeros(1, 1, 5, 5), 1f, Tensor.FromValues(0f))).Message);
        Assert.Contains("timesteps", Assert.Throws<ArgumentException>(() => cond.Forward(Tensor.Zeros(2, 1, 4, 4), Tensor.FromValues(1f, 2f, 3f), Tensor.FromValues(0f, 1f))).Message);
    }

    [Fact]
    public void InferenceRecyclesBuffersWithoutChangingResults()
    {
        foreach (var cfg in new[] { Micro, Micro with { ResnetTimeScaleShift = "default", DownsamplePadding = 0, TimeEmbeddingType = "positional" } })
        {
            var m = new UNet2DModel(cfg, new Generator(5));
            m.Eval();
            var x = GradCheck.Rand(6, 2, 1, 4, 4);
            var t = Tensor.FromValues(0.5f, 2f);
            var withGraph = m.Forward(x, t).ToArray();
            float[] noGrad, again;
            using (DiffusionSharp.Autograd.GradMode.NoGrad())
            {
                noGrad = m.Forward(x, t).ToArray();
                again = m.Forward(x, t).ToArray();
            }
            // inference attention takes its softmax exp from FastExp (within 3e-7 of the graph path's), everything else the same sums
            double scale = withGraph.Max(Math.Abs);
            for (int i = 0; i < withGraph.Length; i++) Assert.True(Math.Abs(withGraph[i] - noGrad[i]) <= 2e-6 * scale, $"[{i}]: {noGrad[i]} vs graph {withGraph[i]}");
            Assert.Equal(noGrad, again);
            Assert.Equal(GradCheck.Rand(6, 2, 1, 4, 4).ToArray(), x.ToArray());  // the input is never recycled
        }
    }
}
