using DiffusionSharp.Autograd;
using DiffusionSharp.Nn;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

/// <summary>The recorded group norm + SiLU (with its broadcast [N, C] term) against finite differences and against the
/// separate recorded ops, and a resnet block's training path against the same block written with the separate ops.</summary>
public class GroupNormSiluGradTests
{
    [Theory]
    [InlineData(2, 6, 5, 7, 3, true)]   // 35 pixels: 512-, 256-, 128-bit and scalar tails
    [InlineData(1, 4, 1, 3, 2, false)]
    [InlineData(3, 2, 2, 2, 1, true)]
    public void GradientsMatchFiniteDifferences(int n, int c, int h, int w, int groups, bool add)
    {
        var x = GradCheck.Rand(1, n, c, h, w);
        var wt = GradCheck.Rand(2, c);
        var bt = GradCheck.Rand(3, c);
        var a = GradCheck.Rand(4, n, c);
        var inputs = add ? new[] { x, wt, bt, a } : new[] { x, wt, bt };
        GradCheck.Check(t => t[0].GroupNormSilu(groups, t[1], t[2], 1e-5f, add ? t[3] : null), inputs, eps: 1e-2, atol: 3e-3, rtol: 2e-2);
    }

    [Theory]
    [InlineData(2, 64, 7, 7, 16)]
    [InlineData(2, 32, 28, 28, 16)]
    [InlineData(3, 12, 5, 5, 4)]
    [InlineData(1, 6, 1, 3, 3)]
    public void ValuesAndGradientsMatchSeparateOps(int n, int c, int h, int w, int groups)
    {
        var xs = TestArrays.Normal(5 + c, n * c * h * w);
        for (int i = 0; i < xs.Length; i++) xs[i] = xs[i] * 2f + 0.3f;
        var ws = TestArrays.Normal(6, c);
        var bs = TestArrays.Normal(7, c);
        var adds = TestArrays.Normal(8, n * c);
        var gy = TestArrays.Normal(9, xs.Length);
        (float[] y, float[] gx, float[] gw, float[] gb, float[] ga) Run(bool fused)
        {
            var x = Tensor.FromArray((float[])xs.Clone(), n, c, h, w);
            var wt = Tensor.FromArray((float[])ws.Clone(), c);
            var bt = Tensor.FromArray((float[])bs.Clone(), c);
            var a = Tensor.FromArray((float[])adds.Clone(), n, c);
            foreach (var t in new[] { x, wt, bt, a }) t.RequiresGrad = true;
            var y = fused ? x.GroupNormSilu(groups, wt, bt, 1e-6f, a) : (x + a.Reshape(n, c, 1, 1)).GroupNorm(groups, wt, bt, 1e-6f).Silu();
            var values = y.ToArray();
            y.Backward(Tensor.FromArray((float[])gy.Clone(), n, c, h, w));
            return (values, x.Grad!.ToArray(), wt.Grad!.ToArray(), bt.Grad!.ToArray(), a.Grad!.ToArray());
        }
        var f = Run(true);
        var s = Run(false);
        GradCheck.AssertClose(f.y, s.y, 1e-6, 1e-6, "y");  // the same float32 sums; SiLU's vector and scalar exp may differ in the last bit
        GradCheck.AssertClose(f.gx, s.gx, 1e-5, 1e-5, "dx");
        GradCheck.AssertClose(f.gw, s.gw, 1e-4, 1e-5, "dw");
        GradCheck.AssertClose(f.gb, s.gb, 1e-4, 1e-5, "db");
        GradCheck.AssertClose(f.ga, s.ga, 1e-4, 1e-5, "d(added term)");
    }

    [Fact]
    public void GradientOfTheAddedTermAloneMatchesSeparateOps()
    {
        // x needs no gradient, the added term does: dx is still formed to sum it
        var x = Tensor.FromArray(TestArrays.Normal(20, 2 * 8 * 9), 2, 8, 3, 3);
        var a = Tensor.FromArray(TestArrays.Normal(21, 16), 2, 8);
        a.RequiresGrad = true;
        x.GroupNormSilu(4, null, null, 1e-5f, a).SumAll().Backward();
        var fused = a.Grad!.ToArray();
        a.ZeroGrad();
        (x + a.Reshape(2, 8, 1, 1)).GroupNorm(4, null, null, 1e-5f).Silu().SumAll().Backward();
        GradCheck.AssertClose(fused, a.Grad!.ToArray(), 1e-5, 1e-5, "d(added term)");
        Assert.Null(x.Grad);
    }

    [Fact]
    public void ResnetBlockTrainingPathMatchesSeparateOps()
    {
        var block = new ResnetBlock2D(32, 48, tembChannels: 16, groups: 8, generator: new Generator(4));
        var x = Tensor.FromArray(TestArrays.Normal(5, 2 * 32 * 6 * 5), 2, 32, 6, 5);
        var temb = Tensor.FromArray(TestArrays.Normal(6, 2 * 16), 2, 16);
        var gy = Tensor.FromArray(TestArrays.Normal(7, 2 * 48 * 6 * 5), 2, 48, 6, 5);
        var ps = block.Parameters().ToArray();
        var y = block.Forward(x, temb);
        var fast = y.ToArray();
        y.Backward(gy);
        var fastGrads = ps.Select(p => p.Grad!.ToArray()).ToArray();
        foreach (var p in ps) p.ZeroGrad();
        // the block written with the separate ops: norm, SiLU, conv, + projected time embedding, norm, SiLU, conv, + shortcut
        var h = block.Conv1.Forward(block.Norm1.Forward(x).Silu());
        h = h + block.TimeEmbProj!.Forward(temb.Silu()).Reshape(2, 48, 1, 1);
        h = block.Conv2.Forward(block.Norm2.Forward(h).Silu());
        var yRef = block.ConvShortcut!.Forward(x) + h;
        var slow = yRef.ToArray();
        yRef.Backward(gy);
        double scale = slow.Max(Math.Abs);
        for (int i = 0; i < slow.Length; i++) Assert.True(Math.Abs(fast[i] - slow[i]) <= 1e-5 * scale, $"y[{i}]: {fast[i]} vs {slow[i]}");
        for (int k = 0; k < ps.Length; k++)
        {
            var r = ps[k].Grad!.ToArray();
            double gs = Math.Max(r.Max(Math.Abs), 1e-3);
            for (int i = 0; i < r.Length; i++)
                Assert.True(Math.Abs(fastGrads[k][i] - r[i]) <= 1e-4 * gs, $"parameter {k} {ps[k].Shape} [{i}]: {fastGrads[k][i]} vs {r[i]}");
        }
    }
}
