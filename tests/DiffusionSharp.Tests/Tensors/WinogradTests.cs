using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>Winograd F(2x2, 3x3) and F(4x4, 3x3) forward, data gradient and weight gradient against direct convolution in double.</summary>
public unsafe class WinogradTests(ITestOutputHelper output)
{
    // F(4x4, 3x3) transforms amplify float rounding to a few hundred ulps of the summed terms (worst seen 2.6e-5); a wrong
    // transform entry or tile offset gives errors of order one in these units.
    private const double Tol = 5e-5;

    // Direct references in double: y = conv(x, w) + b, gx = conv^T(gy, w), gw = corr(x, gy); each with the sum of |terms| as its scale.
    private static (double[] Y, double[] YAbs, double[] Gx, double[] GxAbs, double[] Gw, double[] GwAbs) Reference(ConvShape s, float[] x, float[] w, float[] b, float[] gy)
    {
        int N = s.N, C = s.Cin, H = s.H, W = s.W, Co = s.Cout, Ho = s.Ho, Wo = s.Wo, p = s.Pad;
        var y = new double[N * Co * Ho * Wo]; var ya = new double[y.Length];
        var gx = new double[x.Length]; var gxa = new double[x.Length];
        var gw = new double[w.Length]; var gwa = new double[w.Length];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < Co; o++)
                for (int oh = 0; oh < Ho; oh++)
                    for (int ow = 0; ow < Wo; ow++)
                    {
                        int yi = ((n * Co + o) * Ho + oh) * Wo + ow;
                        double acc = b[o], abs = Math.Abs(b[o]);
                        for (int c = 0; c < C; c++)
                            for (int i = 0; i < 3; i++)
                                for (int j = 0; j < 3; j++)
                                {
                                    int ih = oh - p + i, iw = ow - p + j;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    int xi = ((n * C + c) * H + ih) * W + iw, wi = ((o * C + c) * 3 + i) * 3 + j;
                                    double xv = x[xi], wv = w[wi], g = gy[yi];
                                    acc += xv * wv; abs += Math.Abs(xv * wv);
                                    gx[xi] += g * wv; gxa[xi] += Math.Abs(g * wv);
                                    gw[wi] += g * xv; gwa[wi] += Math.Abs(g * xv);
                                }
                        y[yi] = acc; ya[yi] = abs;
                    }
        return (y, ya, gx, gxa, gw, gwa);
    }

    // |got - expected| <= tol * (sum of |terms|): rounding of the transforms scales with the terms, not with the result.
    private static double Check(ReadOnlySpan<float> got, double[] expected, double[] scale, double tol, string what)
    {
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(got[i] - expected[i]), lim = tol * (scale[i] + 1e-3);
            if (!(err <= lim)) Assert.Fail($"{what} element {i}: got {got[i]:G8}, expected {expected[i]:G8} (err {err:G3}, limit {lim:G3}).");
            worst = Math.Max(worst, err / (scale[i] + 1e-3));
        }
        return worst;
    }

    private double Run(int n, int cin, int cout, int h, int w, int pad, int chunkTiles, int seed = 1)
    {
        var s = new ConvShape(n, cin, h, w, cout, 3, 3, 1, pad);
        Assert.True(Winograd.Supports(s), $"Winograd does not support {s}");
        var x = TestArrays.Normal(seed, n * cin * h * w);
        var wt = TestArrays.Normal(seed + 1, cout * cin * 9);
        var b = TestArrays.Normal(seed + 2, cout);
        var gy = TestArrays.Normal(seed + 3, n * cout * s.Ho * s.Wo);
        var r = Reference(s, x, wt, b, gy);
        // NaN-filled outputs: every element must be written.
        var y = new float[r.Y.Length]; Array.Fill(y, float.NaN);
        var gx = new float[x.Length]; Array.Fill(gx, float.NaN);
        var gw = new float[wt.Length]; Array.Fill(gw, float.NaN);
        double worst = 0;
        foreach (int m in new[] { 2, 4 })
        {
            Array.Fill(y, float.NaN); Array.Fill(gx, float.NaN); Array.Fill(gw, float.NaN);
            fixed (float* px = x, pw = wt, pb = b, pgy = gy, py = y, pgx = gx, pgw = gw)
            {
                Winograd.Forward(s, m, px, pw, pb, py, chunkTiles);
                Winograd.BackwardData(s, m, pw, pgy, pgx, chunkTiles);
                Winograd.BackwardWeight(s, m, px, pgy, pgw, chunkTiles);
            }
            string tag = $"F({m}x{m},3x3) n{n} c{cin}->{cout} {h}x{w} p{pad} chunk{chunkTiles}";
            double e1 = Check(y, r.Y, r.YAbs, Tol, tag + " y");
            double e2 = Check(gx, r.Gx, r.GxAbs, Tol, tag + " gx");
            double e3 = Check(gw, r.Gw, r.GwAbs, Tol, tag + " gw");
            worst = Math.Max(worst, Math.Max(e1, Math.Max(e2, e3)));
        }
        return worst;
    }

    [WinogradTheory]
    [InlineData(1, 1, 1, 1, 1, 1, 6)]
    [InlineData(2, 3, 5, 7, 6, 1, 6)]
    [InlineData(1, 8, 8, 4, 4, 0, 96)]
    [InlineData(3, 17, 9, 9, 13, 1, 6)]
    [InlineData(2, 16, 24, 8, 8, 2, 12)]
    [InlineData(2, 9, 17, 5, 11, 0, 6)]
    [InlineData(2, 5, 3, 3, 3, 0, 6)]
    [InlineData(1, 2, 3, 2, 9, 2, 6)]
    [InlineData(2, 33, 40, 16, 16, 1, 96)]
    [InlineData(3, 64, 32, 12, 10, 1, 30)]
    [InlineData(1, 16, 17, 3, 135, 1, 96)]   // a tile row longer than Winograd.OutputRun, odd width
    [InlineData(1, 17, 16, 32, 33, 1, 40)]   // planes of 1,024+ floats: staged 8 channels at a time down the rows, then a channel tail
    [InlineData(2, 24, 16, 34, 31, 2, 96)]
    public void MatchesDirectConvolution(int n, int cin, int cout, int h, int w, int pad, int chunkTiles)
    {
        double worst = Run(n, cin, cout, h, w, pad, chunkTiles);
        output.WriteLine($"worst |err| / sum|terms| = {worst:G3}");
    }

    [WinogradFact]
    public void EveryChannelTailAndImageSize()
    {
        // Channel counts 1..17 cover every 8-lane tail; sizes 1..9 every partial 2x2 and 4x4 tile.
        double worst = 0;
        for (int c = 1; c <= 17; c++) worst = Math.Max(worst, Run(1, c, 18 - c, 5, 6, 1, 6, seed: c));
        for (int hw = 1; hw <= 9; hw++)
            for (int pad = 0; pad <= 2; pad++)
                if (hw + 2 * pad >= 3) worst = Math.Max(worst, Run(2, 3, 4, hw, hw + 1, pad, 6, seed: 10 * hw + pad));
        output.WriteLine($"worst |err| / sum|terms| = {worst:G3}");
    }

    [Fact]
    public void ConvolutionRoutesWideLayersThroughWinograd()
    {
        var s = new ConvShape(2, 32, 8, 8, 32, 3, 3, 1, 1);
        Assert.Equal(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated, Winograd.Applies(s));
        Assert.False(Winograd.Applies(s with { Stride = 2 }));
        Assert.False(Winograd.Applies(s with { Kh = 1, Kw = 1, Pad = 0 }));
        Assert.False(Winograd.Applies(s with { Cin = 3 }));
    }
}

/// <summary>A fact that is reported as skipped where the CPU has no 256-bit vectors, which the Winograd kernels need.</summary>
public sealed class WinogradFactAttribute : FactAttribute
{
    public WinogradFactAttribute()
    {
        if (!System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) Skip = "the Winograd kernels need 256-bit vectors (AVX2); this CPU has none";
    }
}

/// <summary>A theory that is reported as skipped where the CPU has no 256-bit vectors, which the Winograd kernels need.</summary>
public sealed class WinogradTheoryAttribute : TheoryAttribute
{
    public WinogradTheoryAttribute()
    {
        if (!System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) Skip = "the Winograd kernels need 256-bit vectors (AVX2); this CPU has none";
    }
}

/// <summary>The F(2x2) and F(4x4) transforms on 512-bit vectors give the same bits as on 256-bit ones, and a batch-1 forward the same bits on any thread count.</summary>
public unsafe class WinogradWidthTests
{
    private static (float[] Y, float[] Gx, float[] Gw) Run(ConvShape s, int m, bool wide, int threads, int chunkTiles)
    {
        var x = TestArrays.Normal(1, s.N * s.Cin * s.H * s.W);
        var w = TestArrays.Normal(2, s.Cout * s.K);
        var b = TestArrays.Normal(3, s.Cout);
        var gy = TestArrays.Normal(4, s.N * s.Cout * s.P);
        var y = new float[gy.Length]; var gx = new float[x.Length]; var gw = new float[w.Length];
        bool savedWide = Winograd.Wide;
        int savedThreads = DiffusionSharp.Runtime.Threading.Threads;
        Winograd.Wide = wide;
        DiffusionSharp.Runtime.Threading.Threads = threads;
        try
        {
            fixed (float* px = x, pw = w, pb = b, pgy = gy, py = y, pgx = gx, pgw = gw)
            {
                Winograd.Forward(s, m, px, pw, pb, py, chunkTiles);
                Winograd.BackwardData(s, m, pw, pgy, pgx, chunkTiles);
                Winograd.BackwardWeight(s, m, px, pgy, pgw, chunkTiles);
            }
        }
        finally { Winograd.Wide = savedWide; DiffusionSharp.Runtime.Threading.Threads = savedThreads; }
        return (y, gx, gw);
    }

    [WinogradTheory]
    [InlineData(1, 16, 16, 8, 8, 1)]     // one 512-bit vector of channels
    [InlineData(2, 24, 40, 7, 9, 1)]     // 512-bit vectors plus a 256-bit tail, odd sizes (partial tiles)
    [InlineData(1, 33, 17, 5, 6, 0)]     // a padded tail lane inside the last 256-bit vector
    [InlineData(3, 64, 48, 10, 11, 2)]
    [InlineData(1, 24, 20, 5, 150, 1)]   // tile rows longer than Winograd.OutputRun
    public void WidthsAndThreadCountsGiveTheSameBits(int n, int cin, int cout, int h, int w, int pad)
    {
        var s = new ConvShape(n, cin, h, w, cout, 3, 3, 1, pad);
        foreach (int m in new[] { 2, 4 })
        {
        var narrow = Run(s, m, wide: false, threads: 1, chunkTiles: 96);
        Assert.Contains(narrow.Y, v => v != 0);
        // The forward and data gradient do not depend on the chunking either; the weight gradient's partial sums do (by design).
        foreach (var (wide, threads, chunk) in new[] { (true, 1, 96), (true, 2, 96), (false, 3, 96), (true, 8, 96), (true, 1, 12), (false, 2, 6) })
        {
            if (wide && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) continue;
            var other = Run(s, m, wide, threads, chunk);
            Assert.True(narrow.Y.AsSpan().SequenceEqual(other.Y), $"y differs: wide {wide}, {threads} threads, chunk {chunk}");
            Assert.True(narrow.Gx.AsSpan().SequenceEqual(other.Gx), $"gx differs: wide {wide}, {threads} threads, chunk {chunk}");
            if (chunk == 96) Assert.True(narrow.Gw.AsSpan().SequenceEqual(other.Gw), $"gw differs: wide {wide}, {threads} threads");
        }
        }
    }
}

/// <summary>Inference keeps transformed filters: the same bits as transforming on every call, and a changed filter is seen.</summary>
public unsafe class WinogradFilterCacheTests
{
    [WinogradFact]
    public void ReusedFiltersGiveTheSameBitsAndFollowInPlaceChanges()
    {
        var s = new ConvShape(1, 24, 9, 7, 40, 3, 3, 1, 1);
        var x = TestArrays.Normal(7, s.Cin * s.H * s.W);
        var w = TestArrays.Normal(8, s.Cout * s.K);
        var b = TestArrays.Normal(9, s.Cout);
        float[] Forward(bool reuse)
        {
            var y = new float[s.Cout * s.P];
            fixed (float* px = x, pw = w, pb = b, py = y) Winograd.Forward(s, 2, px, pw, pb, py, reuseFilters: reuse);
            return y;
        }
        var fresh = Forward(false);
        Assert.Equal(fresh, Forward(true));   // transformed and stored
        Assert.Equal(fresh, Forward(true));   // taken from the store
        foreach (int i in new[] { 0, w.Length / 2, w.Length - 1 })
        {
            w[i] += 0.5f;                     // an in-place change, as loading weights into the same tensor makes
            var changed = Forward(false);
            Assert.NotEqual(fresh, changed);
            Assert.Equal(changed, Forward(true));
            fresh = changed;
        }
    }

    [WinogradFact]
    public void FrozenWeightsCompareOncePerScopeAndChangesBetweenScopesAreSeen()
    {
        var s = new ConvShape(1, 24, 9, 7, 40, 3, 3, 1, 1);
        var x = TestArrays.Normal(17, s.Cin * s.H * s.W);
        var w = TestArrays.Normal(18, s.Cout * s.K);
        float[] Forward(bool reuse)
        {
            var y = new float[s.Cout * s.P];
            fixed (float* px = x, pw = w, py = y) Winograd.Forward(s, 2, px, pw, null, py, reuseFilters: reuse);
            return y;
        }
        var before = Forward(false);
        using (Convolution.FrozenWeights())
        {
            Assert.Equal(before, Forward(true));
            w[5] += 0.5f;                          // a change the scope's contract forbids: its later calls keep the filters they checked
            Assert.Equal(before, Forward(true));
            using (Convolution.FrozenWeights()) Assert.Equal(before, Forward(true));   // a nested scope joins the outer one
        }
        var after = Forward(false);
        Assert.NotEqual(before, after);
        Assert.Equal(after, Forward(true));        // outside a scope every call compares
        w[w.Length - 1] -= 0.25f;                  // changed between calls outside a scope
        var changed = Forward(false);
        Assert.NotEqual(after, changed);
        Assert.Equal(changed, Forward(true));
        using (Convolution.FrozenWeights())
        {
            w[0] += 1f;                            // changed before the scope's first call: that call compares and sees it
            var fresh = Forward(false);
            Assert.NotEqual(changed, fresh);
            Assert.Equal(fresh, Forward(true));
            Assert.Equal(fresh, Forward(true));
        }
        // another thread's frozen scope does not skip this thread's comparisons
        using (Convolution.FrozenWeights())
        {
            Assert.Equal(Forward(false), Forward(true));
            w[1] += 1f;
            float[]? other = null;
            var t = new Thread(() => other = Forward(true));
            t.Start(); t.Join();
            Assert.Equal(Forward(false), other);
        }
    }
}

/// <summary>The weight gradient's last step gw = G^T dU G gives the same bits with 8, 4 and 1 output channels per vector, and
/// matches G^T dU G written out in double from the transform matrices.</summary>
public unsafe class WinogradFilterGradientTests
{
    // G of F(2,3) and F(4,3) (Lavin and Gray 2016), rows = the m+2 transformed taps.
    private static double[,] G(int m) => m == 2
        ? new double[,] { { 1, 0, 0 }, { 0.5, 0.5, 0.5 }, { 0.5, -0.5, 0.5 }, { 0, 0, 1 } }
        : new double[,] { { 0.25, 0, 0 }, { -1.0 / 6, -1.0 / 6, -1.0 / 6 }, { -1.0 / 6, 1.0 / 6, -1.0 / 6 }, { 1.0 / 24, 1.0 / 12, 1.0 / 6 }, { 1.0 / 24, -1.0 / 12, 1.0 / 6 }, { 0, 0, 1 } };

    [WinogradTheory]
    [InlineData(2, 13, 3)]    // 8 + 4 + 1 output channels: every width and the scalar tail
    [InlineData(4, 13, 5)]
    [InlineData(4, 16, 2)]
    [InlineData(4, 3, 7)]     // fewer output channels than one 256-bit run
    [InlineData(2, 37, 1)]
    public void EveryWidthGivesTheSameBitsAsTheDoubleDefinition(int m, int cout, int cin)
    {
        int a = m + 2, xi = a * a;
        var du = TestArrays.Normal(7, xi * cin * cout);
        var g = G(m);
        var byWidth = new List<float[]>();
        foreach (int lanes in new[] { 1, 4, 8 })
        {
            if (lanes == 8 && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) continue;
            var gw = new float[cout * cin * 9];
            fixed (float* pdu = du, pgw = gw) Winograd.FilterGradient(pdu, cout, cin, m, pgw, lanes);
            byWidth.Add(gw);
        }
        foreach (var other in byWidth.Skip(1)) Assert.True(byWidth[0].AsSpan().SequenceEqual(other), "the widths differ");
        // planes one cache line further apart than a plane (as the weight gradient lays them out): the same bits
        int plane = cin * cout, stride = plane + 16;
        var padded = new float[xi * stride];
        for (int k = 0; k < xi; k++) Array.Copy(du, k * plane, padded, k * stride, plane);
        var gwPadded = new float[cout * cin * 9];
        fixed (float* pdu = padded, pgw = gwPadded) Winograd.FilterGradient(pdu, cout, cin, m, pgw, 8, stride);
        Assert.True(byWidth[0].AsSpan().SequenceEqual(gwPadded), "padded planes differ");
        var got = byWidth[0];
        for (int co = 0; co < cout; co++)
            for (int ci = 0; ci < cin; ci++)
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++)
                    {
                        // gw[i][j] = sum_{r,k} G[r][i] dU[r][k] G[k][j], dU[r][k] = du[(r a + k)][ci][co]
                        double want = 0, scale = 0;
                        for (int r = 0; r < a; r++)
                            for (int k = 0; k < a; k++)
                            {
                                double term = g[r, i] * du[((r * a + k) * cin + ci) * cout + co] * g[k, j];
                                want += term; scale += Math.Abs(term);
                            }
                        float v = got[(co * cin + ci) * 9 + i * 3 + j];
                        Assert.True(Math.Abs(v - want) <= 1e-6 * scale + 1e-30, $"m {m} [{co},{ci},{i},{j}]: {v} vs {want}");
                    }
    }
}

/// <summary>Both gradients from one staging of gy: the same bits as the data and weight gradients computed apart.</summary>
public unsafe class WinogradSharedBackwardTests
{
    [WinogradTheory]
    [InlineData(2, 2, 16, 24, 8, 8, 1)]
    [InlineData(4, 3, 24, 17, 7, 9, 1)]    // partial tiles, a channel tail
    [InlineData(4, 1, 33, 40, 14, 14, 1)]
    [InlineData(2, 2, 20, 16, 5, 6, 0)]    // padding 0 and 2 take the separate passes
    [InlineData(4, 1, 16, 16, 6, 5, 2)]
    public void SharedStagingGivesTheSameBitsAsSeparatePasses(int m, int n, int cin, int cout, int h, int w, int pad)
    {
        var s = new ConvShape(n, cin, h, w, cout, 3, 3, 1, pad);
        var x = TestArrays.Normal(1, s.N * s.Cin * s.H * s.W);
        var wt = TestArrays.Normal(2, s.Cout * s.K);
        var gy = TestArrays.Normal(3, s.N * s.Cout * s.P);
        var gx1 = new float[x.Length]; var gw1 = new float[wt.Length];
        var gx2 = new float[x.Length]; var gw2 = new float[wt.Length];
        fixed (float* px = x, pw = wt, pgy = gy, pgx1 = gx1, pgw1 = gw1, pgx2 = gx2, pgw2 = gw2)
        {
            Winograd.BackwardData(s, m, pw, pgy, pgx1, 12);
            Winograd.BackwardWeight(s, m, px, pgy, pgw1, 12);
            Winograd.Backward(s, m, px, pw, pgy, pgx2, pgw2, 12);
        }
        Assert.Contains(gx1, v => v != 0);
        Assert.Contains(gw1, v => v != 0);
        Assert.True(gx1.AsSpan().SequenceEqual(gx2), "gx differs");
        Assert.True(gw1.AsSpan().SequenceEqual(gw2), "gw differs");
    }
}
