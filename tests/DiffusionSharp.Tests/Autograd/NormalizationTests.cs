using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class NormalizationTests
{
    // Double reference group norm on [n, c, s].
    private static float[] RefGroupNorm(float[] x, int n, int c, int s, int groups, float[]? w, float[]? b, double eps)
    {
        var y = new float[x.Length];
        int cg = c / groups, m = cg * s;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < groups; g++)
            {
                int off = (i * c + g * cg) * s;
                double mu = 0; for (int k = 0; k < m; k++) mu += x[off + k];
                mu /= m;
                double v = 0; for (int k = 0; k < m; k++) v += (x[off + k] - mu) * (x[off + k] - mu);
                v /= m;
                for (int k = 0; k < m; k++)
                {
                    int ch = g * cg + k / s;
                    y[off + k] = (float)((x[off + k] - mu) / Math.Sqrt(v + eps) * (w?[ch] ?? 1) + (b?[ch] ?? 0));
                }
            }
        return y;
    }

    [Theory]
    [InlineData(2, 6, 3, 4, 3, true)]
    [InlineData(1, 8, 5, 5, 2, false)]
    [InlineData(3, 4, 2, 1, 4, true)]
    [InlineData(2, 64, 8, 8, 32, true)]
    [InlineData(4, 64, 32, 32, 32, true)]
    public void GroupNormForwardMatchesDoubleReference(int n, int c, int h, int w, int groups, bool affine)
    {
        var x = GradCheck.Rand(1, n, c, h, w).Mul(3f).Add(2f);  // offset mean checks the single-pass variance
        var wt = affine ? GradCheck.Rand(2, c) : null;
        var bt = affine ? GradCheck.Rand(3, c) : null;
        var y = x.GroupNorm(groups, wt, bt, 1e-5f);
        var expected = RefGroupNorm(x.ToArray(), n, c, h * w, groups, wt?.ToArray(), bt?.ToArray(), 1e-5);
        GradCheck.AssertClose(y.Span, expected, 2e-5, 1e-5, "groupnorm");
    }

    [Fact]
    public void GroupNormGradients()
    {
        GradCheck.Check(t => t[0].GroupNorm(2, t[1], t[2], 1e-5f),
            new[] { GradCheck.Rand(1, 2, 4, 3, 2), GradCheck.Rand(2, 4), GradCheck.Rand(3, 4) });
        GradCheck.Check(t => t[0].GroupNorm(3, null, null, 1e-5f), new[] { GradCheck.Rand(4, 2, 6, 5) });
        GradCheck.Check(t => t[0].GroupNorm(1, t[1], null, 1e-3f), new[] { GradCheck.Rand(5, 3, 2, 2, 2), GradCheck.Rand(6, 2) });
    }

    [Fact]
    public void ParallelNormsMatchSerialExactly()
    {
        // Work is split per (sample, group) / row with no shared accumulators, so results must not depend on the thread count.
        (float[] Y, float[] Gx, float[] Gw, float[] Gb) Run(int threads, bool layer)
        {
            int saved = DiffusionSharp.Runtime.Threading.Threads;
            DiffusionSharp.Runtime.Threading.Threads = threads;
            try
            {
                var x = GradCheck.Rand(1, 4, 64, 32, 32);
                var w = GradCheck.Rand(2, layer ? 32 : 64);
                var b = GradCheck.Rand(3, layer ? 32 : 64);
                x.RequiresGrad = w.RequiresGrad = b.RequiresGrad = true;
                var y = layer ? x.LayerNorm(w, b, 1e-5f) : x.GroupNorm(32, w, b, 1e-5f);
                y.Backward(GradCheck.Rand(4, 4, 64, 32, 32));
                return (y.ToArray(), x.Grad!.ToArray(), w.Grad!.ToArray(), b.Grad!.ToArray());
            }
            finally { DiffusionSharp.Runtime.Threading.Threads = saved; }
        }
        foreach (var layer in new[] { false, true })
        {
            var one = Run(1, layer);
            var two = Run(2, layer);
            Assert.Equal(one.Y, two.Y);
            Assert.Equal(one.Gx, two.Gx);
            if (layer)
            {
                // Layer norm sums weight/bias grads per thread chunk in double, then across chunks: equal to float rounding.
                GradCheck.AssertClose(two.Gw, one.Gw, 1e-5, 1e-6, "layernorm dw");
                GradCheck.AssertClose(two.Gb, one.Gb, 1e-5, 1e-6, "layernorm db");
            }
            else
            {
                Assert.Equal(one.Gw, two.Gw);
                Assert.Equal(one.Gb, two.Gb);
            }
        }
    }

    [Fact]
    public void GroupNormRejectsBadShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 6, 4).GroupNorm(4, null, null, 1e-5f));
        Assert.Contains("[2, 6, 4]", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 6, 4).GroupNorm(3, Tensor.Zeros(5), null, 1e-5f));
        Assert.Contains("[6]", ex.Message);
        Assert.Contains("[5]", ex.Message);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LayerNormForwardMatchesDoubleReference(bool affine)
    {
        int rows = 6, d = 37;
        var x = GradCheck.Rand(1, 2, 3, d).Add(1f);
        var wt = affine ? GradCheck.Rand(2, d) : null;
        var bt = affine ? GradCheck.Rand(3, d) : null;
        var y = x.LayerNorm(wt, bt, 1e-5f);
        // Layer norm over the last dim equals group norm of [rows, d, 1] with one group and per-channel affine.
        var expected = RefGroupNorm(x.ToArray(), rows, d, 1, 1, wt?.ToArray(), bt?.ToArray(), 1e-5);
        GradCheck.AssertClose(y.Span, expected, 2e-5, 1e-5, "layernorm");
    }

    [Fact]
    public void LayerNormGradients()
    {
        GradCheck.Check(t => t[0].LayerNorm(t[1], t[2], 1e-5f), new[] { GradCheck.Rand(1, 2, 3, 5), GradCheck.Rand(2, 5), GradCheck.Rand(3, 5) });
        GradCheck.Check(t => t[0].LayerNorm(null, null, 1e-5f), new[] { GradCheck.Rand(4, 4, 6) });
        GradCheck.Check(t => t[0].LayerNorm(null, t[1], 1e-5f), new[] { GradCheck.Rand(5, 4, 6), GradCheck.Rand(6, 6) });
    }

    [Fact]
    public void LayerNormRejectsBadWeight()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 6).LayerNorm(Tensor.Zeros(5), null, 1e-5f));
        Assert.Contains("[6]", ex.Message);
        Assert.Contains("[5]", ex.Message);
    }
}
