using DiffusionSharp.Nn;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Nn;

/// <summary>Module registration, state dicts, modes, and the small layers checked against analytic values and finite differences.</summary>
public class ModuleTests
{
    private sealed class Pair : Module
    {
        public Linear A { get; }
        public ModuleList<Linear> List { get; }
        public Tensor Scale { get; }
        public Pair()
        {
            Scale = RegisterParameter("scale", Tensor.Ones(2));
            A = RegisterModule("a", new Linear(3, 2));
            List = RegisterModule("list", new ModuleList<Linear>());
            List.Add(new Linear(2, 2, bias: false));
        }
        public void RegisterAgain() => RegisterParameter("scale", Tensor.Ones(1));
    }

    [Fact]
    public void NamesAreHierarchicalInRegistrationOrder()
    {
        var m = new Pair();
        Assert.Equal(new[] { "scale", "a.weight", "a.bias", "list.0.weight" }, m.NamedParameters().Select(p => p.Key));
        Assert.Equal(2 + 6 + 2 + 4, m.ParameterCount);
        Assert.All(m.Parameters(), p => Assert.True(p.RequiresGrad));
        Assert.Same(m.A.Weight, m.StateDict()["a.weight"]);
        Assert.Throws<ArgumentException>(() => m.RegisterAgain());
    }

    [Fact]
    public void LoadStateDictCopiesValuesAndStrictnessControlsMissingKeys()
    {
        var m = new Pair();
        var w = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        m.LoadStateDict(new Dictionary<string, Tensor> { ["a.weight"] = w }, strict: false);
        Assert.Equal(w.ToArray(), m.A.Weight.ToArray());
        Assert.NotSame(w, m.A.Weight);
        var e = Assert.Throws<InvalidDataException>(() => m.LoadStateDict(new Dictionary<string, Tensor> { ["a.weight"] = w }));
        Assert.Contains("'scale'", e.Message);
        Assert.Contains("'list.0.weight'", e.Message);
        // Shape mismatches are errors even when not strict, and name both shapes.
        var e2 = Assert.Throws<InvalidDataException>(() => m.LoadStateDict(new Dictionary<string, Tensor> { ["a.weight"] = Tensor.Zeros(3, 2) }, strict: false));
        Assert.Contains("[3, 2]", e2.Message);
        Assert.Contains("[2, 3]", e2.Message);
    }

    [Fact]
    public void TrainAndEvalReachEveryDescendant()
    {
        var m = new Pair();
        Assert.True(m.List[0].Training);
        m.Eval();
        Assert.All(m.NamedModules(), kv => Assert.False(kv.Value.Training));
        m.Train();
        Assert.All(m.NamedModules(), kv => Assert.True(kv.Value.Training));
    }

    [Fact]
    public void DropoutIsIdentityInEvalAndScalesKeptValuesInTraining()
    {
        var d = new Dropout(0.5f, new Generator(5));
        var x = Tensor.Ones(1000);
        var y = d.Forward(x).ToArray();
        Assert.All(y, v => Assert.True(v == 0f || Math.Abs(v - 2f) < 1e-6));
        Assert.InRange(y.Count(v => v == 0f), 400, 600);
        d.Eval();
        Assert.Equal(x.ToArray(), d.Forward(x).ToArray());
    }

    [Fact]
    public void LinearAndConvUsePyTorchDefaultInitBounds()
    {
        var l = new Linear(100, 50, generator: new Generator(1));
        float bound = 1f / MathF.Sqrt(100);
        Assert.All(l.Weight.ToArray(), v => Assert.InRange(v, -bound, bound));
        Assert.True(l.Weight.ToArray().Max() > 0.9f * bound);
        var c = new Conv2d(4, 8, 3, generator: new Generator(1));
        float cb = 1f / MathF.Sqrt(36);
        Assert.All(c.Bias!.ToArray(), v => Assert.InRange(v, -cb, cb));
    }

    [Fact]
    public void SinusoidalTimestepsMatchTheFormula()
    {
        foreach (var (flip, shift) in new[] { (true, 0f), (false, 1f) })
        {
            var ts = new Timesteps(8, flip, shift);
            var y = ts.Forward(Tensor.FromValues(0f, 3f, 999f)).ToArray();
            float[] t = { 0f, 3f, 999f };
            for (int b = 0; b < 3; b++)
                for (int i = 0; i < 4; i++)
                {
                    double arg = t[b] * Math.Exp(-Math.Log(10000) * i / (4 - shift));
                    double s = Math.Sin(arg), c = Math.Cos(arg);
                    Assert.Equal(flip ? c : s, y[b * 8 + i], 1e-3);
                    Assert.Equal(flip ? s : c, y[b * 8 + 4 + i], 1e-3);
                }
        }
        // Odd size: the last column is zero padding.
        var odd = new Timesteps(5, true, 0).Forward(Tensor.FromValues(7f)).ToArray();
        Assert.Equal(0f, odd[4]);
    }

    [Fact]
    public void GaussianFourierProjectionMatchesTheFormula()
    {
        var p = new GaussianFourierProjection(4, 16f, generator: new Generator(2));
        Assert.False(p.Weight.RequiresGrad);
        var y = p.Forward(Tensor.FromValues(0.5f, 20f)).ToArray();
        var w = p.Weight.ToArray();
        float[] sigma = { 0.5f, 20f };
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 4; i++)
            {
                double arg = Math.Log(sigma[b]) * w[i] * 2 * Math.PI;
                Assert.Equal(Math.Sin(arg), y[b * 8 + i], 2e-3);
                Assert.Equal(Math.Cos(arg), y[b * 8 + 4 + i], 2e-3);
            }
    }

    [Fact]
    public void DownsampleWithPaddingZeroPadsOnlyBottomAndRight()
    {
        var d = new Downsample2D(1, true, 1, padding: 0);
        d.Conv!.Weight.Span.Fill(1f);
        d.Conv.Bias!.Span.Fill(0f);
        var y = d.Forward(Tensor.Ones(1, 1, 4, 4)).ToArray();
        // Windows start at rows/cols 0 and 2; the second one overlaps the zero row/column: 9, 6, 6, 4.
        Assert.Equal(new[] { 9f, 6f, 6f, 4f }, y);
        var sym = new Downsample2D(1, true, 1, padding: 1);
        sym.Conv!.Weight.Span.Fill(1f);
        sym.Conv.Bias!.Span.Fill(0f);
        Assert.Equal(new[] { 4f, 6f, 6f, 9f }, sym.Forward(Tensor.Ones(1, 1, 4, 4)).ToArray());
    }

    [Fact]
    public void PaddedDownsampleGradientMatchesFiniteDifferences()
    {
        var d = new Downsample2D(2, true, 3, padding: 0, generator: new Generator(4));
        GradCheck.Check(t => d.Forward(t[0]), new[] { GradCheck.Rand(1, 1, 2, 5, 5), d.Conv!.Weight });
    }

    [Theory]
    [InlineData(TimeEmbeddingNorm.Default, false, false, 4)]
    [InlineData(TimeEmbeddingNorm.Default, false, false, 6)]
    [InlineData(TimeEmbeddingNorm.ScaleShift, false, false, 4)]
    [InlineData(TimeEmbeddingNorm.Default, true, false, 4)]
    [InlineData(TimeEmbeddingNorm.ScaleShift, false, true, 4)]
    public void ResnetBlockGradientsMatchFiniteDifferences(TimeEmbeddingNorm norm, bool up, bool down, int cout)
    {
        var g = new Generator(11);
        var block = new ResnetBlock2D(4, cout, tembChannels: 3, groups: 2, eps: 1e-5f, timeEmbeddingNorm: norm, outputScaleFactor: 2f,
            up: up, down: down, generator: g);
        var x = GradCheck.Rand(2, 2, 4, 4, 4);
        var temb = GradCheck.Rand(3, 2, 3);
        GradCheck.Check(t => block.Forward(t[0], t[1]), new[] { x, temb, block.TimeEmbProj!.Weight, block.Conv1.Weight, block.Norm2.Weight });
        var y = block.Forward(x, temb);
        int s = up ? 8 : down ? 2 : 4;
        Assert.Equal(new Shape(2, cout, s, s), y.Shape);
        Assert.Equal(cout != 4, block.ConvShortcut != null);
    }

    [Fact]
    public void ScaleShiftWithZeroProjectionEqualsDefaultWithZeroProjection()
    {
        var a = new ResnetBlock2D(4, 4, 3, groups: 2, timeEmbeddingNorm: TimeEmbeddingNorm.ScaleShift, generator: new Generator(1));
        var b = new ResnetBlock2D(4, 4, 3, groups: 2, timeEmbeddingNorm: TimeEmbeddingNorm.Default, generator: new Generator(2));
        foreach (var (k, v) in a.StateDict())
            if (!k.StartsWith("time_emb_proj", StringComparison.Ordinal)) v.Span.CopyTo(b.StateDict()[k].Span);
        a.TimeEmbProj!.Weight.Span.Clear(); a.TimeEmbProj.Bias!.Span.Clear();
        b.TimeEmbProj!.Weight.Span.Clear(); b.TimeEmbProj.Bias!.Span.Clear();
        var x = GradCheck.Rand(5, 1, 4, 4, 4);
        var temb = GradCheck.Rand(6, 1, 3);
        Assert.Equal(8, a.TimeEmbProj.OutFeatures);
        GradCheck.AssertClose(a.Forward(x, temb).Span, b.Forward(x, temb).Span, 1e-6, 1e-6, "scale_shift vs default");
        // A nonzero shift must change the output.
        a.TimeEmbProj.Bias.Span[5] = 1f;
        Assert.True(UNetFixture.MaxAbs(a.Forward(x, temb).Span, b.Forward(x, temb).Span) > 1e-3);
    }

    [Fact]
    public void AttentionGradientsMatchFiniteDifferences()
    {
        var attn = new Attention(4, heads: 2, dimHead: 2, normNumGroups: 2, rescaleOutputFactor: 1.5f, generator: new Generator(3));
        GradCheck.Check(t => attn.Forward(t[0]), new[] { GradCheck.Rand(9, 2, 4, 3, 3), attn.ToQ.Weight, attn.ToV.Bias!, attn.ToOut.Weight });
    }

    [Fact]
    public void LayersRejectWrongInputShapes()
    {
        Assert.Contains("[..., 3]", Assert.Throws<ArgumentException>(() => new Linear(3, 2).Forward(Tensor.Zeros(2, 4))).Message);
        Assert.Contains("[N, 4, H, W]", Assert.Throws<ArgumentException>(() => new Conv2d(4, 2, 3).Forward(Tensor.Zeros(1, 3, 5, 5))).Message);
        Assert.Throws<ArgumentException>(() => new GroupNorm(3, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Embedding(4, 2).Forward(new[] { 4 }));
    }
}
