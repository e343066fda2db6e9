using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class ShapeOpsTests
{
    private static Tensor Iota(params int[] shape)
    {
        var t = Tensor.Empty(shape);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = i;
        return t;
    }

    [Fact]
    public void ReshapeInfersMinusOneAndSharesStorage()
    {
        var x = Iota(2, 3, 4);
        var y = x.Reshape(4, -1);
        Assert.Equal(new Shape(4, 6), y.Shape);
        Assert.Equal(x.ToArray(), y.ToArray());
        x.Span[5] = 100f;
        Assert.Equal(100f, y.Span[5]);
        var v = x.View(-1);
        Assert.Equal(new Shape(24), v.Shape);
        x.Dispose();
        Assert.Equal(100f, v.Span[5]);  // the view keeps the storage alive
    }

    [Fact]
    public void ReshapeMismatchNamesBothShapes()
    {
        var x = Tensor.Zeros(2, 3);
        var ex = Assert.Throws<ArgumentException>(() => x.Reshape(4, 2));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, 2]", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => x.Reshape(4, -1));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, -1]", ex.Message);
        Assert.Throws<ArgumentException>(() => x.Reshape(-1, -1));
    }

    [Fact]
    public void ReshapeGradient()
    {
        GradCheck.Check(t => t[0].Reshape(3, -1).Exp(), new[] { GradCheck.Rand(1, 2, 6) });
    }

    [Fact]
    public void PermuteMatchesIndexFormula()
    {
        var x = Iota(2, 3, 4, 5);
        var y = x.Permute(2, 0, 3, 1);
        Assert.Equal(new Shape(4, 2, 5, 3), y.Shape);
        var ys = y.ToArray();
        for (int a = 0; a < 4; a++) for (int b = 0; b < 2; b++) for (int c = 0; c < 5; c++) for (int d = 0; d < 3; d++)
            Assert.Equal(((b * 3 + d) * 4 + a) * 5 + c, ys[((a * 2 + b) * 5 + c) * 3 + d]);
    }

    private static IEnumerable<int[]> Permutations(int n)
    {
        if (n == 0) { yield return Array.Empty<int>(); yield break; }
        foreach (var p in Permutations(n - 1))
            for (int k = 0; k <= p.Length; k++)
            {
                var q = new List<int>(p);
                q.Insert(k, n - 1);
                yield return q.ToArray();
            }
    }

    [Theory]
    [InlineData(new[] { 2, 3, 4, 5 })]
    [InlineData(new[] { 2, 1, 4, 3 })]
    [InlineData(new[] { 1, 3, 1, 5 })]
    [InlineData(new[] { 3, 40, 1, 37 })]
    public void EveryPermutationMatchesIndexFormula(int[] dims)
    {
        var x = Iota(dims);
        var st = new Shape(dims).Strides();
        foreach (var p in Permutations(dims.Length))
        {
            var y = x.Permute(p).ToArray();
            var od = p.Select(a => dims[a]).ToArray();
            var idx = new int[4];
            for (int k = 0; k < y.Length; k++)
            {
                int src = 0;
                for (int i = 0; i < 4; i++) src += idx[i] * st[p[i]];
                if (y[k] != src) Assert.Fail($"perm [{string.Join(",", p)}] of [{string.Join(",", dims)}]: element {k} is {y[k]}, expected {src}.");
                for (int i = 3; i >= 0; i--) { if (++idx[i] < od[i]) break; idx[i] = 0; }
            }
        }
    }

    [Fact]
    public void LargeSingleMatrixTransposeSplitsBands()
    {
        int rows = 400, cols = 401;  // above 2 * ParallelMap.Grain elements
        Assert.True(rows * cols >= 2 * DiffusionSharp.Tensors.Kernels.ParallelMap.Grain);
        var x = Iota(rows, cols);
        var y = x.Transpose(0, 1).ToArray();
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++)
            if (y[c * rows + r] != r * cols + c) Assert.Fail($"({r}, {c})");
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 45, 70)]
    [InlineData(2, 33, 31)]
    [InlineData(2, 64, 40)]
    [InlineData(1, 8, 8)]
    [InlineData(2, 17, 72)]
    public void TransposeLastTwoMatchesIndexFormula(int b, int r, int c)
    {
        var x = Iota(b, r, c);
        var y = x.Transpose(-1, -2).ToArray();
        for (int i = 0; i < b; i++) for (int j = 0; j < r; j++) for (int k = 0; k < c; k++)
            Assert.Equal((i * r + j) * c + k, y[(i * c + k) * r + j]);
    }

    [Fact]
    public void PermuteAndTransposeGradients()
    {
        GradCheck.Check(t => t[0].Permute(1, 2, 0), new[] { GradCheck.Rand(2, 2, 3, 4) });
        GradCheck.Check(t => t[0].Transpose(0, 2), new[] { GradCheck.Rand(3, 2, 3, 4) });
        GradCheck.Check(t => t[0].Transpose(-1, -2), new[] { GradCheck.Rand(4, 2, 3, 4) });
    }

    [Fact]
    public void PermuteRejectsBadAxes()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3).Permute(0, 0));
        Assert.Contains("[2, 3]", ex.Message);
    }

    [Fact]
    public void ConcatForwardAndGradient()
    {
        var a = Iota(2, 1, 3);
        var b = Iota(2, 2, 3).Add(100f);
        var y = Tensor.Concat(new[] { a, b }, 1);
        Assert.Equal(new Shape(2, 3, 3), y.Shape);
        Assert.Equal(new float[] { 0, 1, 2, 100, 101, 102, 103, 104, 105, 3, 4, 5, 106, 107, 108, 109, 110, 111 }, y.ToArray());
        GradCheck.Check(t => Tensor.Concat(new[] { t[0], t[1], t[2] }, -1),
            new[] { GradCheck.Rand(1, 2, 3), GradCheck.Rand(2, 2, 1), GradCheck.Rand(3, 2, 4) });
        GradCheck.Check(t => Tensor.Concat(new[] { t[0], t[1] }, 0), new[] { GradCheck.Rand(1, 2, 3), GradCheck.Rand(2, 1, 3) });
    }

    [Theory]
    [InlineData(1)]   // one image: copied whole on one thread
    [InlineData(5)]   // above the fork threshold: images split over the threads
    [InlineData(37)]
    public void LargeConcatAndAddMatchElementByElement(int n)
    {
        // a U-Net skip concat's shape, [n, 64 + 48, 16, 16]
        var a = Iota(n, 64, 16, 16);
        var b = Iota(n, 48, 16, 16).Add(0.5f);
        var y = Tensor.Concat(new[] { a, b }, 1);
        float[] ya = y.ToArray(), aa = a.ToArray(), ba = b.ToArray();
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 112; c++)
                for (int p = 0; p < 256; p++)
                {
                    float want = c < 64 ? aa[(i * 64 + c) * 256 + p] : ba[(i * 48 + c - 64) * 256 + p];
                    Assert.Equal(want, ya[(i * 112 + c) * 256 + p]);
                }
        var s = Tensor.Add(a, a.Mul(0.25f)).ToArray();
        for (int i = 0; i < aa.Length; i++) Assert.Equal(aa[i] + aa[i] * 0.25f, s[i]);
    }

    [Fact]
    public void ConcatMismatchNamesBothShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Concat(new[] { Tensor.Zeros(2, 3), Tensor.Zeros(3, 3) }, 1));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[3, 3]", ex.Message);
    }

    [Fact]
    public void NarrowForwardAndGradient()
    {
        var x = Iota(2, 5, 2);
        var y = x.Narrow(1, 1, 3);
        Assert.Equal(new Shape(2, 3, 2), y.Shape);
        Assert.Equal(new float[] { 2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17 }, y.ToArray());
        GradCheck.Check(t => t[0].Narrow(-1, 2, 2), new[] { GradCheck.Rand(1, 3, 5) });
        GradCheck.Check(t => t[0].Narrow(0, 1, 1), new[] { GradCheck.Rand(1, 3, 5) });
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => x.Narrow(1, 4, 2));
        Assert.Contains("[2, 5, 2]", ex.Message);
    }
}
