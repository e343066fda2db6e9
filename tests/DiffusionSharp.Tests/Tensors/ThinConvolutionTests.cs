using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>
/// The direct kernels of few-channel layers (conv_in, conv_out) against a float64 convolution written out from its
/// definition and against the im2col path, at every row width around the vector lengths, with bit-identical results for
/// every thread count.
/// </summary>
public unsafe class ThinConvolutionTests
{
    // y, gx, gw of cross-correlation in double, from the definition.
    private static (double[] Y, double[] Gx, double[] Gw) Reference(ConvShape s, float[] x, float[] w, float[] b, float[] gy)
    {
        var y = new double[s.N * s.Cout * s.P];
        var gx = new double[x.Length];
        var gw = new double[w.Length];
        for (int n = 0; n < s.N; n++)
            for (int co = 0; co < s.Cout; co++)
                for (int oh = 0; oh < s.Ho; oh++)
                    for (int ow = 0; ow < s.Wo; ow++)
                    {
                        int yi = ((n * s.Cout + co) * s.Ho + oh) * s.Wo + ow;
                        double acc = b[co];
                        for (int ci = 0; ci < s.Cin; ci++)
                            for (int ki = 0; ki < s.Kh; ki++)
                                for (int kj = 0; kj < s.Kw; kj++)
                                {
                                    int ih = oh * s.Stride - s.Pad + ki, iw = ow * s.Stride - s.Pad + kj;
                                    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                    int xi = ((n * s.Cin + ci) * s.H + ih) * s.W + iw, wi = ((co * s.Cin + ci) * s.Kh + ki) * s.Kw + kj;
                                    acc += (double)w[wi] * x[xi];
                                    gx[xi] += (double)w[wi] * gy[yi];
                                    gw[wi] += (double)x[xi] * gy[yi];
                                }
                        y[yi] = acc;
                    }
        return (y, gx, gw);
    }

    private static (float[] Y, float[] Gx, float[] Gw) Run(ConvShape s, float[] x, float[] w, float[] b, float[] gy, bool thin, int threads)
    {
        var y = new float[s.N * s.Cout * s.P];
        var gx = new float[x.Length];
        var gw = new float[w.Length];
        var gb = new float[s.Cout];
        int saved = Threading.Threads;
        Threading.Threads = threads;
        try
        {
            fixed (float* px = x, pw = w, pb = b, pgy = gy, py = y, pgx = gx, pgw = gw, pgb = gb)
            {
                Convolution.Forward(s, px, pw, pb, py, ConvAlgorithm.Direct, thin);
                Convolution.Backward(s, px, pw, pgy, pgx, pgw, pgb, ConvAlgorithm.Direct, thin);
            }
        }
        finally { Threading.Threads = saved; }
        return (y, gx, gw);
    }

    private static void Close(string what, float[] got, double[] expected, double scale)
    {
        for (int i = 0; i < got.Length; i++)
            if (!(Math.Abs(got[i] - expected[i]) <= 2e-6 * scale + 2e-6 * Math.Abs(expected[i])))
                Assert.Fail($"{what}[{i}] = {got[i]}, expected {expected[i]}");
    }

    [Theory]
    [InlineData(2, 1, 5, 3, 1)]    // conv_in: one channel in
    [InlineData(2, 3, 7, 3, 1)]    // RGB in
    [InlineData(2, 9, 1, 3, 1)]    // conv_out: one channel out
    [InlineData(3, 20, 6, 3, 1)]   // learned-variance conv_out: 6 out, more channels than one summation block
    [InlineData(1, 2, 3, 3, 0)]
    [InlineData(2, 1, 4, 3, 2)]
    [InlineData(1, 2, 3, 5, 2)]
    [InlineData(1, 70, 1, 1, 0)]   // 1x1 with padding 0 is pointwise: stays on GEMM
    public void MatchesFloat64DefinitionAndIm2ColAtEveryWidth(int n, int cin, int cout, int k, int pad)
    {
        for (int width = 1; width <= 19; width++)
        {
            var s = new ConvShape(n, cin, 5, width, cout, k, k, 1, pad);
            if (s.Ho < 1 || s.Wo < 1) continue;
            Assert.Equal(!s.IsPointwise, ThinConvolution.Applies(s));
            int seed = 10 * width + cin;
            var x = TestArrays.Normal(seed, s.N * s.Cin * s.H * s.W);
            var w = TestArrays.Normal(seed + 1, s.Cout * s.K);
            var b = TestArrays.Normal(seed + 2, s.Cout);
            var gy = TestArrays.Normal(seed + 3, s.N * s.Cout * s.P);
            var thin = Run(s, x, w, b, gy, thin: true, threads: 2);
            var im2col = Run(s, x, w, b, gy, thin: false, threads: 2);
            var r = Reference(s, x, w, b, gy);
            double sx = Math.Sqrt(s.K), sw = Math.Sqrt(s.N * s.P), sg = Math.Sqrt(s.Cout * s.Kh * s.Kw);
            string at = $"{s} width {width}";
            Close($"thin y {at}", thin.Y, r.Y, sx);
            Close($"thin gx {at}", thin.Gx, r.Gx, sg);
            Close($"thin gw {at}", thin.Gw, r.Gw, sw);
            Close($"im2col y {at}", im2col.Y, r.Y, sx);
            Close($"im2col gx {at}", im2col.Gx, r.Gx, sg);
            Close($"im2col gw {at}", im2col.Gw, r.Gw, sw);
        }
    }

    [Fact]
    public void ResultsDoNotDependOnTheThreadCount()
    {
        foreach (var s in new[] { new ConvShape(5, 1, 11, 21, 16, 3, 3, 1, 1), new ConvShape(3, 24, 9, 17, 1, 3, 3, 1, 1) })
        {
            var x = TestArrays.Normal(1, s.N * s.Cin * s.H * s.W);
            var w = TestArrays.Normal(2, s.Cout * s.K);
            var b = TestArrays.Normal(3, s.Cout);
            var gy = TestArrays.Normal(4, s.N * s.Cout * s.P);
            var one = Run(s, x, w, b, gy, thin: true, threads: 1);
            Assert.Contains(one.Gw, v => v != 0);
            foreach (int threads in new[] { 2, 3, 8 })
            {
                var other = Run(s, x, w, b, gy, thin: true, threads: threads);
                Assert.Equal(one.Y, other.Y);
                Assert.Equal(one.Gx, other.Gx);
                Assert.Equal(one.Gw, other.Gw);
            }
        }
    }
}
