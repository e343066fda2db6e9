using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>Small-image convolutions (im2col into the GEMM's panels, filter rows split over threads) against a float64 definition.</summary>
public unsafe class PackedConvolutionTests
{
    // y[n, co, oh, ow] = b[co] + sum over ci, ki, kj of w[co, ci, ki, kj] x[n, ci, oh*st - pad + ki, ow*st - pad + kj], in float64;
    // also the sum of the terms' magnitudes, which bounds the float32 rounding error.
    internal static (double[] Y, double[] Abs) Reference(ConvShape s, float[] x, float[] w, float[]? b)
    {
        var y = new double[s.N * s.Cout * s.P];
        var abs = new double[y.Length];
        for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.Cout; co++)
        for (int oh = 0; oh < s.Ho; oh++)
        for (int ow = 0; ow < s.Wo; ow++)
        {
            double sum = b == null ? 0 : b[co], mag = Math.Abs(sum);
            for (int ci = 0; ci < s.Cin; ci++)
            for (int ki = 0; ki < s.Kh; ki++)
            for (int kj = 0; kj < s.Kw; kj++)
            {
                int ih = oh * s.Stride - s.Pad + ki, iw = ow * s.Stride - s.Pad + kj;
                if ((uint)ih >= (uint)s.H || (uint)iw >= (uint)s.W) continue;
                double t = (double)w[((co * s.Cin + ci) * s.Kh + ki) * s.Kw + kj] * x[((n * s.Cin + ci) * s.H + ih) * s.W + iw];
                sum += t; mag += Math.Abs(t);
            }
            int i = ((n * s.Cout + co) * s.Ho + oh) * s.Wo + ow;
            y[i] = sum; abs[i] = mag;
        }
        return (y, abs);
    }

    // Sums of at most 64 terms in registers, then added to C: within about 67 float32 roundings of the magnitudes.
    internal static void AssertClose(double[] expected, double[] abs, float[] got, string what)
    {
        for (int i = 0; i < got.Length; i++)
            Assert.True(Math.Abs(got[i] - expected[i]) <= 5e-6 * abs[i] + 1e-7, $"{what} [{i}]: {got[i]} vs {expected[i]}");
    }

    public static TheoryData<int, int, int> Shapes => new() { { 8, 1, 1 }, { 11, 2, 1 }, { 7, 1, 0 } };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryMicroKernelFamilyMatchesTheDefinition(int size, int stride, int pad)
    {
        var s = new ConvShape(1, 21, size, size + 2, 26, 3, 3, stride, pad);
        var x = TestArrays.Normal(1, s.Cin * s.H * s.W);
        var w = TestArrays.Normal(2, s.Cout * s.K);
        var b = TestArrays.Normal(3, s.Cout);
        var (expected, abs) = Reference(s, x, w, b);
        foreach (var kind in new[] { GemmKernel.Vector512, GemmKernel.Vector256, GemmKernel.Vector128, GemmKernel.Scalar })
        {
            if (!Gemm.IsSupported(kind)) continue;
            foreach (bool serial in new[] { true, false })
            {
                var y = new float[s.Cout * s.P];
                for (int co = 0; co < s.Cout; co++) Array.Fill(y, b[co], co * s.P, s.P);
                fixed (float* px = x, pw = w, py = y) Convolution.PackedForward(s, px, pw, py, accumulate: true, serial, kind);
                AssertClose(expected, abs, y, $"{kind} serial={serial}");
            }
        }
    }

    // Through the public forward: one image (filter rows over threads) and a batch (images over threads), with and without bias.
    [Theory]
    [InlineData(1, true)]
    [InlineData(3, false)]
    public void ForwardMatchesTheDefinition(int n, bool bias)
    {
        var s = new ConvShape(n, 19, 8, 8, 33, 3, 3, 1, 1);
        var x = TestArrays.Normal(4, s.N * s.Cin * s.H * s.W);
        var w = TestArrays.Normal(5, s.Cout * s.K);
        var b = bias ? TestArrays.Normal(6, s.Cout) : null;
        var (expected, abs) = Reference(s, x, w, b);
        var y = new float[s.N * s.Cout * s.P];
        int saved = Threading.Threads;
        Threading.Threads = 2;
        try { fixed (float* px = x, pw = w, pb = b, py = y) Convolution.Forward(s, px, pw, pb, py, ConvAlgorithm.Direct); }
        finally { Threading.Threads = saved; }
        AssertClose(expected, abs, y, $"batch {n}");
    }
}

/// <summary>Switches the process-wide GEMM micro-kernel, so it runs alone (other tests' bits depend on the kernel in use).</summary>
[CollectionDefinition("GEMM kernel alone", DisableParallelization = true)]
public sealed class GemmKernelAloneCollection;

/// <summary>One image through GEMMs split by 64-column panels over the threads, on every micro-kernel family.</summary>
[Collection("GEMM kernel alone")]
public unsafe class ColumnSplitConvolutionTests
{
    // One image through im2col/1x1 GEMMs wide enough to be split by 64-column panels over the threads: the definition on
    // every micro-kernel family, and the same bits as one thread on 2 and 3 threads.
    [Theory]
    [InlineData(61, 18, 9, 29, 1, 0)]    // 1x1, 261 pixels: panels of 64 plus a 5-column tail (3 threads: split by 6-row tiles)
    [InlineData(128, 64, 32, 32, 1, 0)]  // a U-Net shortcut at 32x32
    [InlineData(5, 14, 21, 20, 3, 1)]    // 3x3 over more pixels than the packed small-image path takes
    public void ColumnSplitOneImageMatchesTheDefinitionAndOneThread(int cin, int cout, int h, int w, int k, int pad)
    {
        var s = new ConvShape(1, cin, h, w, cout, k, k, 1, pad);
        var x = TestArrays.Normal(7, s.Cin * s.H * s.W);
        var wt = TestArrays.Normal(8, s.Cout * s.K);
        var b = TestArrays.Normal(9, s.Cout);
        var (expected, abs) = PackedConvolutionTests.Reference(s, x, wt, b);
        int saved = Threading.Threads;
        var savedKernel = Gemm.Kernel;
        try
        {
            foreach (var kind in new[] { GemmKernel.Vector512, GemmKernel.Vector256, GemmKernel.Vector128, GemmKernel.Scalar })
            {
                if (!Gemm.IsSupported(kind)) continue;
                Gemm.Kernel = kind;
                float[]? first = null;
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    Threading.Threads = threads;
                    var y = new float[s.Cout * s.P];
                    fixed (float* px = x, pw = wt, pb = b, py = y) Convolution.Forward(s, px, pw, pb, py, ConvAlgorithm.Direct, thin: false);
                    PackedConvolutionTests.AssertClose(expected, abs, y, $"{kind}, {threads} threads");
                    if (first == null) first = y;
                    else Assert.True(first.AsSpan().SequenceEqual(y), $"{kind}: {threads} threads differ from one");
                }
            }
        }
        finally { Threading.Threads = saved; Gemm.Kernel = savedKernel; }
    }

}
