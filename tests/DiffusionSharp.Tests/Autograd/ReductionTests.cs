using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class ReductionTests
{
    // Double reference: reduce a row-major array over flagged axes.
    private static (double[] Sum, int Count) RefSum(float[] x, int[] dims, bool[] red)
    {
        int r = dims.Length;
        var outDims = dims.Select((d, i) => red[i] ? 1 : d).ToArray();
        int outSize = outDims.Aggregate(1, (a, b) => a * b);
        var sums = new double[outSize];
        var idx = new int[r];
        for (int k = 0; k < x.Length; k++)
        {
            int o = 0;
            for (int d = 0; d < r; d++) o = o * outDims[d] + (red[d] ? 0 : idx[d]);
            sums[o] += x[k];
            for (int d = r - 1; d >= 0; d--) { if (++idx[d] < dims[d]) break; idx[d] = 0; }
        }
        int count = 1;
        for (int d = 0; d < r; d++) if (red[d]) count *= dims[d];
        return (sums, count);
    }

    public static TheoryData<int[], int[]> Cases => new()
    {
        { new[] { 3, 4, 5 }, new[] { 0 } },
        { new[] { 3, 4, 5 }, new[] { 1 } },
        { new[] { 3, 4, 5 }, new[] { -1 } },
        { new[] { 3, 4, 5 }, new[] { 0, 2 } },
        { new[] { 2, 3, 4, 5 }, new[] { 0, 2, 3 } },
        { new[] { 2, 1, 4, 5 }, new[] { 1, 2 } },
        { new[] { 3, 4, 37 }, new[] { 0, 1, 2 } },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SumMeanVarMatchDoubleReference(int[] dims, int[] axes)
    {
        var x = GradCheck.Rand(5, dims);
        var xs = x.ToArray();
        var red = new bool[dims.Length];
        foreach (var a in axes) red[a < 0 ? a + dims.Length : a] = true;
        var (sum, count) = RefSum(xs, dims, red);
        var expectShape = dims.Where((d, i) => !red[i]).ToArray();
        var keepShape = dims.Select((d, i) => red[i] ? 1 : d).ToArray();

        var s = x.Sum(axes);
        Assert.Equal(new Shape(expectShape), s.Shape);
        GradCheck.AssertClose(s.Span, sum.Select(v => (float)v).ToArray(), 1e-5, 1e-6, "sum");
        Assert.Equal(new Shape(keepShape), x.Sum(axes, keepDim: true).Shape);
        GradCheck.AssertClose(x.Mean(axes).Span, sum.Select(v => (float)(v / count)).ToArray(), 1e-6, 1e-6, "mean");

        // Var: mean of squared deviations (two-pass in double).
        var dev = new double[sum.Length];
        var idx = new int[dims.Length];
        for (int k = 0; k < xs.Length; k++)
        {
            int o = 0;
            for (int d = 0; d < dims.Length; d++) o = o * keepShape[d] + (red[d] ? 0 : idx[d]);
            double m = sum[o] / count, dv = xs[k] - m;
            dev[o] += dv * dv;
            for (int d = dims.Length - 1; d >= 0; d--) { if (++idx[d] < dims[d]) break; idx[d] = 0; }
        }
        GradCheck.AssertClose(x.Var(axes).Span, dev.Select(v => (float)(v / count)).ToArray(), 1e-6, 1e-5, "var");
        GradCheck.AssertClose(x.Var(axes, keepDim: true, unbiased: true).Span, dev.Select(v => (float)(v / (count - 1))).ToArray(), 1e-6, 1e-5, "var unbiased");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Gradients(int[] dims, int[] axes)
    {
        if (dims.Aggregate(1, (a, b) => a * b) > 100) dims = dims.Select(d => Math.Min(d, 3)).ToArray();
        GradCheck.Check(t => t[0].Sum(axes), new[] { GradCheck.Rand(1, dims) });
        GradCheck.Check(t => t[0].Mean(axes, keepDim: true), new[] { GradCheck.Rand(2, dims) });
        GradCheck.Check(t => t[0].Var(axes), new[] { GradCheck.Rand(3, dims) });
        GradCheck.Check(t => t[0].Var(axes, unbiased: true), new[] { GradCheck.Rand(4, dims) });
    }

    [Fact]
    public void AllReductions()
    {
        var x = GradCheck.Rand(9, 4, 33);
        double s = x.ToArray().Sum(v => (double)v);
        Assert.Equal(s, x.SumAll().Item(), 4);
        Assert.Equal(s / x.Size, x.MeanAll().Item(), 5);
        Assert.Equal(new Shape(), x.MeanAll().Shape);
        GradCheck.Check(t => t[0].SumAll(), new[] { GradCheck.Rand(1, 3, 4) });
        GradCheck.Check(t => t[0].MeanAll(), new[] { GradCheck.Rand(2, 3, 4) });
    }

    [Fact]
    public void LongSumKeepsPrecision()
    {
        // 2^24 + many ones: float accumulation would stall at 2^24.
        var x = Tensor.Full(new Shape(1 << 20), 1f);
        x.Span[0] = 16777216f;
        Assert.InRange(x.SumAll().Item(), 16777216.0 + (1 << 20) - 2, 16777216.0 + (1 << 20));  // exact up to float rounding
    }

    [Fact]
    public void BadAxesAreReported()
    {
        var x = Tensor.Zeros(2, 3);
        Assert.Contains("[2, 3]", Assert.Throws<ArgumentOutOfRangeException>(() => x.Sum(new[] { 2 })).Message);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => x.Sum(new[] { 1, -1 })).Message);
    }
}
