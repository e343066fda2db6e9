using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>The float32 exp and the in-place softmax rows of inference attention against float64 definitions, on every vector width.</summary>
public unsafe class AttentionSoftmaxTests
{
    private static readonly int[] Widths = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? new[] { 512, 256, 0 }
        : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? new[] { 256, 0 } : new[] { 0 };

    [Fact]
    public void FastExpIsWithinThreeTenthsOfAMillionthOfMathExpOnEveryWidth()
    {
        // Every width computes each lane alike: the vector results equal the scalar ones bit for bit.
        var xs = new float[4096];
        for (int i = 0; i < xs.Length; i++) xs[i] = -87f + 175f * i / (xs.Length - 1);
        xs[7] = 0f; xs[8] = -1e-30f; xs[9] = 1e-8f; xs[10] = 0.3465736f; xs[11] = -0.3465736f;
        fixed (float* px = xs)
            for (int i = 0; i < xs.Length; i += 16)
            {
                var v512 = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? FastExp.Exp(System.Runtime.Intrinsics.Vector512.Load(px + i)) : default;
                var v256 = System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? FastExp.Exp(System.Runtime.Intrinsics.Vector256.Load(px + i)) : default;
                for (int k = 0; k < 16; k++)
                {
                    float x = xs[i + k], got = FastExp.Exp(x);
                    double expected = Math.Exp(x);
                    Assert.True(Math.Abs(got - expected) <= 3e-7 * expected, $"exp({x:R}) = {got:R}, expected {expected:R}");
                    if (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) Assert.Equal(got, v512[k]);
                    if (k < 8 && System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) Assert.Equal(got, v256[k]);
                }
            }
        Assert.Equal(1f, FastExp.Exp(0f));
        Assert.True(FastExp.Exp(-1000f) is > 0f and < 1.2e-38f);   // clamped: tiny, never garbage
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(15)]
    [InlineData(16)]
    [InlineData(17)]
    [InlineData(33)]
    [InlineData(100)]
    [InlineData(256)]
    [InlineData(1031)]
    public void AttentionRowMatchesFloat64SoftmaxOnEveryWidth(int len)
    {
        var x = TestArrays.Normal(len, len);
        for (int i = 0; i < len; i++) x[i] *= 6f;
        if (len > 3) x[len / 2] = -200f;   // an exp far below the others
        double max = x.Max(v => (double)v), sum = x.Sum(v => Math.Exp(v - max));
        int saved = SoftmaxKernels.AttentionWidth;
        try
        {
            foreach (int w in Widths)
            {
                SoftmaxKernels.AttentionWidth = w;
                var row = (float[])x.Clone();
                fixed (float* p = row) SoftmaxKernels.AttentionRow(p, len);
                // exp within 3e-7, the float32 sum of len terms within (len - 1) units of 6e-8 (the bound of recursive summation)
                double tol = 5e-7 + (len - 1) * 6e-8;
                for (int i = 0; i < len; i++)
                {
                    double expected = Math.Exp(x[i] - max) / sum;
                    Assert.True(Math.Abs(row[i] - expected) <= tol * expected + 1e-30, $"width {w}, [{i}]: {row[i]:R} vs {expected:R}");
                }
            }
        }
        finally { SoftmaxKernels.AttentionWidth = saved; }
    }
}
