using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>
/// Convolution gradients summed over the batch (the weight gradient) must not change their float32 rounding with the
/// thread count, or the gradient of a training step would depend on the machine's cores and on the split of a batch
/// over data-parallel ranks.
/// </summary>
public unsafe class ConvDeterminismTests
{
    private static (float[] Gx, float[] Gw, float[] Gb) Backward(ConvShape s, ConvAlgorithm algorithm, int threads)
    {
        var x = TestArrays.Normal(1, s.N * s.Cin * s.H * s.W);
        var w = TestArrays.Normal(2, s.Cout * s.K);
        var gy = TestArrays.Normal(3, s.N * s.Cout * s.P);
        var gx = new float[x.Length];
        var gw = new float[w.Length];
        var gb = new float[s.Cout];
        int saved = Threading.Threads;
        Threading.Threads = threads;
        try
        {
            fixed (float* px = x, pw = w, pgy = gy, pgx = gx, pgw = gw, pgb = gb)
                Convolution.Backward(s, px, pw, pgy, pgx, pgw, pgb, algorithm);
        }
        finally { Threading.Threads = saved; }
        return (gx, gw, gb);
    }

    [Theory]
    [InlineData(ConvAlgorithm.Direct, 8, 1)]
    [InlineData(ConvAlgorithm.Direct, 13, 0)]
    [InlineData(ConvAlgorithm.Winograd2, 8, 1)]
    [InlineData(ConvAlgorithm.Winograd2, 13, 1)]
    [InlineData(ConvAlgorithm.Winograd4, 5, 1)]
    public void GradientsDoNotDependOnTheThreadCount(ConvAlgorithm algorithm, int n, int pad)
    {
        var s = new ConvShape(n, 16, 12, 12, 24, 3, 3, 1, pad);
        var one = Backward(s, algorithm, 1);
        foreach (int threads in new[] { 2, 3, 8 })
        {
            var other = Backward(s, algorithm, threads);
            Assert.Equal(one.Gw, other.Gw);
            Assert.Equal(one.Gx, other.Gx);
            Assert.Equal(one.Gb, other.Gb);
        }
        Assert.Contains(one.Gw, v => v != 0);
    }

    // A single image splits its output channels over the threads (one fork per product): each output's sum keeps its order.
    [Theory]
    [InlineData(ConvAlgorithm.Direct, 3, 1, 1)]
    [InlineData(ConvAlgorithm.Direct, 1, 1, 0)]
    [InlineData(ConvAlgorithm.Direct, 3, 2, 1)]
    [InlineData(ConvAlgorithm.Winograd2, 3, 1, 1)]
    public void SingleImageForwardDoesNotDependOnTheThreadCount(ConvAlgorithm algorithm, int k, int stride, int pad)
    {
        var s = new ConvShape(1, 40, 13, 15, 70, k, k, stride, pad);
        var x = TestArrays.Normal(1, s.Cin * s.H * s.W);
        var w = TestArrays.Normal(2, s.Cout * s.K);
        var b = TestArrays.Normal(3, s.Cout);
        float[] Forward(int threads)
        {
            var y = new float[s.Cout * s.P];
            int saved = Threading.Threads;
            Threading.Threads = threads;
            try { fixed (float* px = x, pw = w, pb = b, py = y) Convolution.Forward(s, px, pw, pb, py, algorithm); }
            finally { Threading.Threads = saved; }
            return y;
        }
        var one = Forward(1);
        Assert.Contains(one, v => v != 0);
        foreach (int threads in new[] { 2, 3, 8 }) Assert.Equal(one, Forward(threads));
    }
}
