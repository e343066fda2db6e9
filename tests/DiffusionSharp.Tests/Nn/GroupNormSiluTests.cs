using DiffusionSharp.Autograd;
using DiffusionSharp.Nn;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Nn;

/// <summary>The fused group norm + SiLU of inference against a float64 definition and against the two recorded ops.</summary>
public class GroupNormSiluTests
{
    [Theory]
    [InlineData(2, 64, 5, 7, 16)]
    [InlineData(1, 32, 4, 4, 32)]
    [InlineData(3, 48, 3, 1, 8)]
    public void FusedMatchesFloat64Definition(int n, int c, int h, int w, int groups)
    {
        var gn = new GroupNorm(groups, c, 1e-6f);
        TestArrays.Normal(1, c).AsSpan().CopyTo(gn.Weight.Span);
        TestArrays.Normal(2, c).AsSpan().CopyTo(gn.Bias.Span);
        var xs = TestArrays.Normal(3 + c, n * c * h * w);
        for (int i = 0; i < xs.Length; i++) xs[i] = xs[i] * 3f + 0.5f;  // non-zero mean and variance
        var x = Tensor.FromArray(xs, n, c, h, w);
        float[] fused;
        using (GradMode.NoGrad()) fused = gn.ForwardSilu(x).ToArray();
        var twoOps = gn.Forward(x).Silu().ToArray();
        int l = h * w, cg = c / groups;
        float[] gw = gn.Weight.ToArray(), gb = gn.Bias.ToArray();
        for (int b = 0; b < n; b++)
            for (int g = 0; g < groups; g++)
            {
                double sum = 0, sq = 0;
                for (int i = (b * c + g * cg) * l; i < (b * c + (g + 1) * cg) * l; i++) sum += xs[i];
                double mean = sum / (cg * l);
                for (int i = (b * c + g * cg) * l; i < (b * c + (g + 1) * cg) * l; i++) sq += (xs[i] - mean) * (xs[i] - mean);
                double rstd = 1 / Math.Sqrt(sq / (cg * l) + 1e-6);
                for (int ch = g * cg; ch < (g + 1) * cg; ch++)
                    for (int p = 0; p < l; p++)
                    {
                        int i = (b * c + ch) * l + p;
                        double y = (xs[i] - mean) * rstd * gw[ch] + gb[ch];
                        double expected = y / (1 + Math.Exp(-y));
                        Assert.True(Math.Abs(fused[i] - expected) <= 2e-6 * Math.Max(1, Math.Abs(expected)), $"fused [{i}]: {fused[i]} vs float64 {expected}");
                        Assert.True(Math.Abs(fused[i] - twoOps[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected)), $"fused [{i}]: {fused[i]} vs norm then SiLU {twoOps[i]}");
                    }
            }
    }

    [Theory]
    [InlineData(2, 64, 5, 7, 16)]
    [InlineData(3, 24, 3, 1, 8)]
    [InlineData(1, 32, 1, 3, 16)]
    public void AddedTermMatchesAddingFirstAndFloat64(int n, int c, int h, int w, int groups)
    {
        var gn = new GroupNorm(groups, c, 1e-6f);
        TestArrays.Normal(11, c).AsSpan().CopyTo(gn.Weight.Span);
        TestArrays.Normal(12, c).AsSpan().CopyTo(gn.Bias.Span);
        var xs = TestArrays.Normal(13 + c, n * c * h * w);
        var adds = TestArrays.Normal(14 + c, n * c);
        for (int i = 0; i < adds.Length; i++) adds[i] = adds[i] * 2f + 0.25f;
        var x = Tensor.FromArray(xs, n, c, h, w);
        var a = Tensor.FromArray(adds, n, c);
        float[] fused, addedFirst;
        using (GradMode.NoGrad())
        {
            fused = gn.ForwardSilu(x, a).ToArray();
            addedFirst = gn.ForwardSilu(x + a.Reshape(n, c, 1, 1)).ToArray();
        }
        Assert.Equal(addedFirst, fused);  // the same float32 sum x + a, then the same statistics
        int l = h * w, cg = c / groups;
        float[] gw = gn.Weight.ToArray(), gb = gn.Bias.ToArray();
        for (int b = 0; b < n; b++)
            for (int g = 0; g < groups; g++)
            {
                double V(int i) => xs[i] + adds[i / l];   // the float32 sum, as defined
                int i0 = (b * c + g * cg) * l, i1 = (b * c + (g + 1) * cg) * l;
                double sum = 0, sq = 0;
                for (int i = i0; i < i1; i++) sum += V(i);
                double mean = sum / (cg * l);
                for (int i = i0; i < i1; i++) sq += (V(i) - mean) * (V(i) - mean);
                double rstd = 1 / Math.Sqrt(sq / (cg * l) + 1e-6);
                for (int i = i0; i < i1; i++)
                {
                    int ch = i / l % c;
                    double y = (V(i) - mean) * rstd * gw[ch] + gb[ch];
                    double expected = y / (1 + Math.Exp(-y));
                    Assert.True(Math.Abs(fused[i] - expected) <= 4e-6 * Math.Max(1, Math.Abs(expected)), $"fused [{i}]: {fused[i]} vs float64 {expected}");
                }
            }
        using (GradMode.NoGrad())
            Assert.Throws<ArgumentException>(() => gn.ForwardSilu(x, Tensor.Zeros(n, c + 1)));
    }

    [Fact]
    public void ResnetBlockInferenceMatchesRecordedPath()
    {
        var block = new ResnetBlock2D(32, 64, tembChannels: 16, groups: 8, generator: new Generator(4));
        block.Eval();
        var x = Tensor.FromArray(TestArrays.Normal(5, 2 * 32 * 6 * 6), 2, 32, 6, 6);
        var temb = Tensor.FromArray(TestArrays.Normal(6, 2 * 16), 2, 16);
        float[] fast;
        using (GradMode.NoGrad()) fast = block.Forward(x, temb).ToArray();
        var graph = block.Forward(x, temb).ToArray();
        double scale = graph.Max(Math.Abs);
        for (int i = 0; i < graph.Length; i++) Assert.True(Math.Abs(fast[i] - graph[i]) <= 1e-5 * scale, $"[{i}]: {fast[i]} vs {graph[i]}");
    }

    [Fact]
    public void FusedKernelRefusesRecordedGraph()
    {
        var gn = new GroupNorm(4, 8);
        var ex = Assert.Throws<InvalidOperationException>(() => Tensor.Zeros(1, 8, 2, 2).GroupNormSiluInference(4, gn.Weight, gn.Bias, gn.Eps));
        Assert.Contains("NoGrad", ex.Message);
    }
}
