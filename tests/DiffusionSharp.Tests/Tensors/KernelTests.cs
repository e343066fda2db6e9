using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>Every vector kernel at every length 0..256 (so every 512/256/128-bit body and scalar tail runs) against double references.</summary>
public class KernelTests
{
    private const int MaxLen = 256;

    // Random data with a one-element offset so vector loads are unaligned.
    private static float[] Data(int seed, int n, float scale = 4f)
    {
        var a = new float[n + 1];
        new Generator((ulong)seed).Normal(a);
        for (int i = 0; i < a.Length; i++) a[i] *= scale;
        return a;
    }

    private static void Close(double expected, float actual, double atol, double rtol, string what)
    {
        if (!(Math.Abs(actual - expected) <= atol + rtol * Math.Abs(expected)))
            Assert.Fail($"{what}: got {actual:G9}, expected {expected:G9}.");
    }

    private static void CheckUnary<TOp>(Func<double, double> reference, double atol, double rtol) where TOp : struct, IUnaryOperator
    {
        var x = Data(1, MaxLen);
        for (int n = 0; n <= MaxLen; n++)
        {
            var dst = new float[n + 2];
            dst[n + 1] = 12345f;  // guard
            Elementwise.Unary<TOp>(x.AsSpan(1, n), dst.AsSpan(1, n));
            for (int i = 0; i < n; i++) Close(reference(x[1 + i]), dst[1 + i], atol, rtol, $"{typeof(TOp).Name} n={n} i={i}");
            Assert.Equal(12345f, dst[n + 1]);
        }
    }

    private static void CheckBinary<TOp>(Func<double, double, double> reference, double atol, double rtol) where TOp : struct, IBinaryOperator
    {
        var x = Data(2, MaxLen);
        var y = Data(3, MaxLen);
        for (int n = 0; n <= MaxLen; n++)
        {
            var dst = new float[n + 2];
            dst[n + 1] = 12345f;
            Elementwise.Binary<TOp>(x.AsSpan(1, n), y.AsSpan(1, n), dst.AsSpan(1, n));
            for (int i = 0; i < n; i++) Close(reference(x[1 + i], y[1 + i]), dst[1 + i], atol, rtol, $"{typeof(TOp).Name} n={n} i={i}");
            Assert.Equal(12345f, dst[n + 1]);
        }
    }

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    [Fact] public void Sigmoid_() => CheckUnary<SigmoidOp>(Sigmoid, 1e-7, 1e-6);
    [Fact] public void Silu() => CheckUnary<SiluOp>(x => x * Sigmoid(x), 1e-7, 1e-6);
    [Fact]
    public void SiluAndItsGradientSaturateAndAgreeAcrossWidths()
    {
        // e^-x saturates below -88: SiLU is -0 there (the limit), its gradient 0; NaN stays NaN; widths give the same bits
        float[] xs = { -1e30f, float.NegativeInfinity, -100f, -88.5f, -88f, -87.9f, -20f, -1f, -0f, 0f, 1e-3f, 1f, 20f, 88.5f, 1e30f, float.PositiveInfinity, float.NaN };
        Assert.Equal(-0f, SiluOp.Invoke(-1e30f));
        Assert.True(float.IsNegative(SiluOp.Invoke(-100f)) && SiluOp.Invoke(-100f) == 0f);
        Assert.Equal(0f, SiluGradOp.Invoke(-1e30f, 1f));
        Assert.Equal(float.PositiveInfinity, SiluOp.Invoke(float.PositiveInfinity));
        Assert.Equal(1e30f, SiluOp.Invoke(1e30f));
        Assert.True(float.IsNaN(SiluOp.Invoke(float.NaN)) && float.IsNaN(SiluGradOp.Invoke(float.NaN, 1f)));
        Assert.InRange(SiluOp.Invoke(-87.9f), -1e-36f, 0f);
        foreach (var x in xs)
        {
            float s = SiluOp.Invoke(x), g = SiluGradOp.Invoke(x, 0.5f);
            Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(SiluOp.Invoke(System.Runtime.Intrinsics.Vector128.Create(x))[1]));
            Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(SiluOp.Invoke(System.Runtime.Intrinsics.Vector256.Create(x))[5]));
            Assert.Equal(BitConverter.SingleToInt32Bits(s), BitConverter.SingleToInt32Bits(SiluOp.Invoke(System.Runtime.Intrinsics.Vector512.Create(x))[11]));
            var half = 0.5f;
            Assert.Equal(BitConverter.SingleToInt32Bits(g), BitConverter.SingleToInt32Bits(SiluGradOp.Invoke(System.Runtime.Intrinsics.Vector128.Create(x), System.Runtime.Intrinsics.Vector128.Create(half))[2]));
            Assert.Equal(BitConverter.SingleToInt32Bits(g), BitConverter.SingleToInt32Bits(SiluGradOp.Invoke(System.Runtime.Intrinsics.Vector256.Create(x), System.Runtime.Intrinsics.Vector256.Create(half))[6]));
            Assert.Equal(BitConverter.SingleToInt32Bits(g), BitConverter.SingleToInt32Bits(SiluGradOp.Invoke(System.Runtime.Intrinsics.Vector512.Create(x), System.Runtime.Intrinsics.Vector512.Create(half))[13]));
            if (float.IsFinite(x) && x > -88f)
            {
                double d = x / (1 + Math.Exp(-(double)x)), sd = 1 / (1 + Math.Exp(-(double)x));
                Assert.InRange(Math.Abs(s - d), 0, 1e-7 + 1e-6 * Math.Abs(d));
                Assert.InRange(Math.Abs(g - 0.5 * sd * (1 + x * (1 - sd))), 0, 1e-6 + 1e-5 * Math.Abs(0.5 * sd * (1 + x * (1 - sd))));
            }
        }
    }

    [Fact] public void Gelu() => CheckUnary<GeluOp>(x => x * ReferenceMath.Phi(x), 1e-7, 1e-6);
    [Fact] public void Neg() => CheckUnary<NegOp>(x => -x, 0, 0);

    [Fact] public void SiluGrad() => CheckBinary<SiluGradOp>((x, g) => g * Sigmoid(x) * (1 + x * (1 - Sigmoid(x))), 1e-6, 1e-5);
    [Fact] public void SigmoidGrad() => CheckBinary<SigmoidGradOp>((y, g) => g * (double)y * (1 - (double)y), 1e-6, 1e-5);
    [Fact] public void TanhGrad() => CheckBinary<TanhGradOp>((y, g) => g * (1 - (double)y * y), 1e-5, 1e-5);
    [Fact] public void GeluGrad() => CheckBinary<GeluGradOp>((x, g) => g * (ReferenceMath.Phi(x) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI)), 1e-6, 1e-5);
    [Fact] public void AbsGrad() => CheckBinary<AbsGradOp>((x, g) => Math.Sign(x) * g, 0, 0);
    [Fact] public void SquaredDifference() => CheckBinary<SquaredDifferenceOp>((x, y) => (x - y) * (x - y), 1e-6, 1e-6);
    [Fact] public void AddSubMulDiv()
    {
        CheckBinary<AddOp>((x, y) => x + y, 1e-6, 1e-7);
        CheckBinary<SubOp>((x, y) => x - y, 1e-6, 1e-7);
        CheckBinary<MulOp>((x, y) => x * y, 1e-6, 1e-7);
        CheckBinary<DivOp>((x, y) => x / y, 1e-6, 1e-6);
    }

    [Fact]
    public void ScaleShift()
    {
        var x = Data(4, MaxLen);
        for (int n = 0; n <= MaxLen; n++)
        {
            var dst = new float[n];
            Affine.ScaleShift(x.AsSpan(1, n), -1.75f, 0.5f, dst);
            for (int i = 0; i < n; i++) Close(-1.75 * x[1 + i] + 0.5, dst[i], 1e-6, 1e-6, $"n={n} i={i}");
        }
    }

    [Fact]
    public void CombineAndExpShiftSum()
    {
        var x = Data(9, MaxLen);
        var y = Data(10, MaxLen);
        for (int n = 0; n <= MaxLen; n++)
        {
            var dst = new float[n];
            Affine.Combine(x.AsSpan(1, n), 0.75f, y.AsSpan(1, n), -1.25f, 0.5f, dst);
            for (int i = 0; i < n; i++) Close(0.75 * x[1 + i] - 1.25 * y[1 + i] + 0.5, dst[i], 1e-6, 1e-6, $"combine n={n} i={i}");
            float sum = Affine.ExpShiftSum(x.AsSpan(1, n), 2f, dst);
            double refSum = 0;
            for (int i = 0; i < n; i++)
            {
                double e = Math.Exp(x[1 + i] - 2f);  // the shift is applied in float, as in softmax
                refSum += e;
                Close(e, dst[i], 1e-30, 3e-7, $"exp n={n} i={i}");
            }
            Close(refSum, sum, 1e-30, 1e-6, $"exp sum n={n}");
        }
    }

    [Fact]
    public void MaskKernels()
    {
        var x = Data(13, MaxLen, 1f);
        var g = Data(14, MaxLen, 1f);
        for (int n = 0; n <= MaxLen; n++)
        {
            var d = new float[n];
            Affine.PassInside(x.AsSpan(1, n), g.AsSpan(1, n), -0.5f, 0.5f, d);
            for (int i = 0; i < n; i++) Assert.Equal(x[1 + i] >= -0.5f && x[1 + i] <= 0.5f ? g[1 + i] : 0f, d[i]);
        }
    }

    [Fact]
    public void DropoutKernelsOnEveryWidth()
    {
        var x = Data(15, MaxLen, 1f);
        var u = Data(16, MaxLen, 1f);
        var g = Data(17, MaxLen, 1f);
        for (int i = 0; i < MaxLen; i++) u[i] = Math.Abs(u[i]) % 1f;
        u[3] = 0.25f;  // exactly p: kept
        int saved = Affine.DropoutWidth;
        try
        {
            foreach (int w in new[] { 512, 256, 0 })
            {
                Affine.DropoutWidth = w;
                for (int n = 0; n <= MaxLen; n++)
                {
                    var y = new float[n];
                    var keep = Enumerable.Repeat((byte)0xA5, (n + 7) / 8 + 1).ToArray();  // stale bits must be overwritten
                    Affine.DropoutForward(x.AsSpan(1, n), u.AsSpan(1, n), 0.25f, 4f / 3f, y, keep);
                    var d = new float[n];
                    Affine.DropoutBackward(g.AsSpan(1, n), keep, 4f / 3f, d);
                    for (int i = 0; i < n; i++)
                    {
                        bool k = u[1 + i] >= 0.25f;
                        Assert.Equal(x[1 + i] * (k ? 4f / 3f : 0f), y[i]);
                        Assert.Equal(k, ((keep[i >> 3] >> (i & 7)) & 1) != 0);
                        Assert.Equal(g[1 + i] * (k ? 4f / 3f : 0f), d[i]);
                    }
                    if (n % 8 == 0) Assert.Equal((byte)0xA5, keep[n / 8]);  // nothing written past the mask
                }
            }
        }
        finally { Affine.DropoutWidth = saved; }
    }

    [Fact]
    public void PairKernels()
    {
        var x = Data(11, 2 * MaxLen);
        var y = Data(12, 2 * MaxLen);
        for (int n = 0; n <= MaxLen; n++)
        {
            var rep = new float[2 * n];
            PoolKernels.RepeatPairs(x.AsSpan(1, n), rep);
            for (int i = 0; i < n; i++) { Assert.Equal(x[1 + i], rep[2 * i]); Assert.Equal(x[1 + i], rep[2 * i + 1]); }
            var d = new float[n + 1];
            d[n] = 99f;
            PoolKernels.PairSum2(x.AsSpan(1, 2 * n), y.AsSpan(1, 2 * n), d.AsSpan(0, n), 0.25f);
            for (int i = 0; i < n; i++)
                Close(0.25 * ((double)x[1 + 2 * i] + x[2 + 2 * i] + y[1 + 2 * i] + y[2 + 2 * i]), d[i], 1e-6, 1e-6, $"pairsum n={n} i={i}");
            Assert.Equal(99f, d[n]);
        }
    }

    [Fact]
    public void Reductions()
    {
        var x = Data(5, MaxLen);
        var y = Data(6, MaxLen);
        for (int n = 0; n <= MaxLen; n++)
        {
            var xs = x.AsSpan(1, n);
            var ys = y.AsSpan(1, n);
            double s = 0, q = 0, d = 0;
            for (int i = 0; i < n; i++) { s += xs[i]; q += (double)xs[i] * xs[i]; d += (double)xs[i] * ys[i]; }
            Assert.Equal(s, Reduce.Sum(xs), 9);
            var (s2, q2) = Reduce.SumAndSquares(xs);
            Assert.Equal(s, s2, 9);
            Assert.Equal(q, q2, 8);
            Assert.Equal(d, Reduce.Dot(xs, ys), 9);
            var (s3, d3) = Reduce.SumAndDot(xs, ys);
            Assert.Equal(s, s3, 9);
            Assert.Equal(d, d3, 9);
            double sd = 0;
            for (int i = 0; i < n; i++) sd += ((double)xs[i] - ys[i]) * ((double)xs[i] - ys[i]);
            Assert.Equal(sd, Reduce.SquaredDistance(xs, ys), 8);
            var acc = new double[n];
            for (int i = 0; i < n; i++) acc[i] = i;
            Reduce.AccumulateInto(acc, xs);
            for (int i = 0; i < n; i++) Assert.Equal(i + (double)xs[i], acc[i]);
        }
    }

    [Fact]
    public void SoftmaxRows()
    {
        var x = Data(7, MaxLen, 3f);
        var g = Data(8, MaxLen, 1f);
        for (int n = 1; n <= MaxLen; n++)
        {
            var xs = x.AsSpan(1, n);
            double max = double.NegativeInfinity, z = 0;
            for (int i = 0; i < n; i++) max = Math.Max(max, xs[i]);
            for (int i = 0; i < n; i++) z += Math.Exp(xs[i] - max);
            var p = new double[n];
            for (int i = 0; i < n; i++) p[i] = Math.Exp(xs[i] - max) / z;
            var y = new float[n];
            var ly = new float[n];
            SoftmaxKernels.Row(xs, y, log: false);
            SoftmaxKernels.Row(xs, ly, log: true);
            for (int i = 0; i < n; i++)
            {
                Close(p[i], y[i], 1e-7, 1e-5, $"softmax n={n} i={i}");
                Close(Math.Log(p[i]), ly[i], 2e-6, 1e-6, $"logsoftmax n={n} i={i}");
            }
            // backward: softmax gx = p (g - sum g p); log-softmax gx = g - p sum g
            double dot = 0, sg = 0;
            for (int i = 0; i < n; i++) { dot += g[1 + i] * p[i]; sg += g[1 + i]; }
            var gx = new float[n];
            var lgx = new float[n];
            SoftmaxKernels.RowBackward(y, g.AsSpan(1, n), gx, log: false);
            SoftmaxKernels.RowBackward(ly, g.AsSpan(1, n), lgx, log: true);
            for (int i = 0; i < n; i++)
            {
                Close(p[i] * (g[1 + i] - dot), gx[i], 1e-6, 1e-4, $"softmax grad n={n} i={i}");
                Close(g[1 + i] - p[i] * sg, lgx[i], 1e-5, 1e-4, $"logsoftmax grad n={n} i={i}");
            }
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2 * ParallelMap.Grain - 1)]
    [InlineData(2 * ParallelMap.Grain + 17)]
    [InlineData(3 * ParallelMap.Grain + 5)]
    public void ParallelMapCoversEveryElementOnce(int n)
    {
        var x = new float[n + 5];
        for (int i = 0; i < x.Length; i++) x[i] = i % 1000 - 500;
        var y = new float[n + 5];
        y[n] = 7f;
        ParallelMap.Unary<NegOp>(x, y, n);
        Assert.Equal(-1, FirstMismatch(n, i => -x[i], y));
        Assert.Equal(7f, y[n]);
        var z = new float[n];
        ParallelMap.Binary<AddOp>(x, x, z, n);
        Assert.Equal(-1, FirstMismatch(n, i => 2 * x[i], z));
        var e = new float[n];
        ParallelMap.Map((a, d) => System.Numerics.Tensors.TensorPrimitives.Abs(a, d), x, e, n);
        Assert.Equal(-1, FirstMismatch(n, i => Math.Abs(x[i]), e));
    }

    private static int FirstMismatch(int n, Func<int, float> expected, float[] actual)
    {
        for (int i = 0; i < n; i++) if (expected(i) != actual[i]) return i;
        return -1;
    }
}
