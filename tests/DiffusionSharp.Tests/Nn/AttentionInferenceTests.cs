using DiffusionSharp.Autograd;
using DiffusionSharp.Nn;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Nn;

/// <summary>The inference kernel of spatial attention against a float64 definition and against the recorded-graph path.</summary>
public class AttentionInferenceTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 2)]
    [InlineData(3, 2)]
    [InlineData(2, 3)]
    [InlineData(1, 2, 24, 23)]   // a single image large enough that its bias fills and residual add split over the threads
    public void InferenceMatchesFloat64DefinitionAndGraphPath(int n, int threads, int h = 4, int w = 6)
    {
        const int c = 64, heads = 2, d = 32;
        var attn = new Attention(c, heads, d, normNumGroups: 16, eps: 1e-5f, rescaleOutputFactor: 2f, generator: new Generator(3));
        attn.Eval();
        // non-trivial norm affine parameters
        TestArrays.Normal(7, c).AsSpan().CopyTo(attn.GroupNorm!.Weight.Span);
        TestArrays.Normal(8, c).AsSpan().CopyTo(attn.GroupNorm.Bias.Span);
        var x = Tensor.FromArray(TestArrays.Normal(9 + n, n * c * h * w), n, c, h, w);
        int saved = Threading.Threads;
        float[] fast, graph;
        try
        {
            Threading.Threads = threads;
            using (GradMode.NoGrad()) fast = attn.Forward(x).ToArray();
            graph = attn.Forward(x).ToArray();
        }
        finally { Threading.Threads = saved; }
        var reference = Reference(attn, x.ToArray(), n, c, h * w);
        double scale = reference.Max(Math.Abs);
        for (int i = 0; i < reference.Length; i++)
        {
            Assert.True(Math.Abs(fast[i] - reference[i]) <= 2e-6 * scale, $"inference [{i}]: {fast[i]} vs float64 {reference[i]}");
            Assert.True(Math.Abs(graph[i] - reference[i]) <= 2e-6 * scale, $"graph [{i}]: {graph[i]} vs float64 {reference[i]}");
        }
    }

    [Fact]
    public void FlopCountIncludesTheProjections()
    {
        // ddpm-small's 3.170 GFLOP per 32x32 image (README; PyTorch's profiler counts the same network alike), of which the five
        // 16x16 attention layers' projections are 5 * 4 * 2 * 256 * 128 * 128 flops.
        var net = UNet2DModel.Preset("ddpm-small", new Generator(0));
        double gflop = net.ForwardFlopsPerImage(32, 32) / 1e9;
        Assert.InRange(gflop, 3.1695, 3.1705);
    }

    [Fact]
    public void InferenceKernelRefusesRecordedGraph()
    {
        var attn = new Attention(32, 1, 32, normNumGroups: null, generator: new Generator(1));
        var x = Tensor.Zeros(1, 32, 2, 2);
        var ex = Assert.Throws<InvalidOperationException>(() => Tensor.SpatialAttentionInference(x, x, attn.ToQ.Weight, attn.ToQ.Bias,
            attn.ToK.Weight, attn.ToK.Bias, attn.ToV.Weight, attn.ToV.Bias, attn.ToOut.Weight, attn.ToOut.Bias, 1, 32, 1f, 1f));
        Assert.Contains("NoGrad", ex.Message);
    }

    // Group norm, softmax(q k^T / sqrt(d)) v per head, output projection, residual and rescale, all in double.
    private static double[] Reference(Attention a, float[] x, int n, int c, int l)
    {
        int heads = a.Heads, d = a.DimHead, inner = heads * d, groups = a.GroupNorm!.NumGroups, cg = c / groups;
        float[] gw = a.GroupNorm.Weight.ToArray(), gb = a.GroupNorm.Bias.ToArray();
        float[] wq = a.ToQ.Weight.ToArray(), wk = a.ToK.Weight.ToArray(), wv = a.ToV.Weight.ToArray(), wo = a.ToOut.Weight.ToArray();
        float[] bq = a.ToQ.Bias!.ToArray(), bk = a.ToK.Bias!.ToArray(), bv = a.ToV.Bias!.ToArray(), bo = a.ToOut.Bias!.ToArray();
        var y = new double[n * c * l];
        for (int b = 0; b < n; b++)
        {
            var hn = new double[l, c];
            for (int g = 0; g < groups; g++)
            {
                double sum = 0, sq = 0;
                for (int ch = g * cg; ch < (g + 1) * cg; ch++)
                    for (int p = 0; p < l; p++) sum += x[(b * c + ch) * l + p];
                double mean = sum / (cg * l);
                for (int ch = g * cg; ch < (g + 1) * cg; ch++)
                    for (int p = 0; p < l; p++) { double e = x[(b * c + ch) * l + p] - mean; sq += e * e; }
                double rstd = 1 / Math.Sqrt(sq / (cg * l) + a.GroupNorm.Eps);
                for (int ch = g * cg; ch < (g + 1) * cg; ch++)
                    for (int p = 0; p < l; p++) hn[p, ch] = (x[(b * c + ch) * l + p] - mean) * rstd * gw[ch] + gb[ch];
            }
            double[,] Proj(float[] w, float[] bias)
            {
                var r = new double[l, inner];
                for (int p = 0; p < l; p++)
                    for (int o = 0; o < inner; o++)
                    {
                        double s = bias[o];
                        for (int ch = 0; ch < c; ch++) s += hn[p, ch] * w[o * c + ch];
                        r[p, o] = s;
                    }
                return r;
            }
            var q = Proj(wq, bq); var k = Proj(wk, bk); var v = Proj(wv, bv);
            var o2 = new double[l, inner];
            for (int hh = 0; hh < heads; hh++)
                for (int i = 0; i < l; i++)
                {
                    var s = new double[l];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < l; j++)
                    {
                        double dot = 0;
                        for (int e = 0; e < d; e++) dot += q[i, hh * d + e] * k[j, hh * d + e];
                        s[j] = dot / Math.Sqrt(d);
                        max = Math.Max(max, s[j]);
                    }
                    double z = 0;
                    for (int j = 0; j < l; j++) { s[j] = Math.Exp(s[j] - max); z += s[j]; }
                    for (int e = 0; e < d; e++)
                    {
                        double acc = 0;
                        for (int j = 0; j < l; j++) acc += s[j] / z * v[j, hh * d + e];
                        o2[i, hh * d + e] = acc;
                    }
                }
            for (int ch = 0; ch < c; ch++)
                for (int p = 0; p < l; p++)
                {
                    double s = bo[ch];
                    for (int e = 0; e < inner; e++) s += o2[p, e] * wo[ch * inner + e];
                    y[(b * c + ch) * l + p] = (s + x[(b * c + ch) * l + p]) / a.RescaleOutputFactor;
                }
        }
        return y;
    }
}
