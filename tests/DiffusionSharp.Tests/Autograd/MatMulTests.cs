using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class MatMulTests
{
    private static double[] NaiveMatMul(float[] a, float[] b, int batch, int m, int k, int n, bool shareB)
    {
        var y = new double[batch * m * n];
        for (int t = 0; t < batch; t++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double acc = 0;
                    for (int p = 0; p < k; p++) acc += (double)a[(t * m + i) * k + p] * b[(shareB ? 0 : t * k * n) + p * n + j];
                    y[(t * m + i) * n + j] = acc;
                }
        return y;
    }

    [Theory]
    [InlineData(1, 5, 7, 3, false)]
    [InlineData(3, 8, 70, 65, false)]
    [InlineData(4, 9, 20, 33, true)]
    public void ForwardMatchesNaive(int batch, int m, int k, int n, bool shareB)
    {
        var a = GradCheck.Rand(1, batch, m, k);
        var b = shareB ? GradCheck.Rand(2, k, n) : GradCheck.Rand(2, batch, k, n);
        var y = Tensor.MatMul(a, b);
        Assert.Equal(new Shape(batch, m, n), y.Shape);
        var r = NaiveMatMul(a.ToArray(), b.ToArray(), batch, m, k, n, shareB);
        GradCheck.AssertClose(y.Span, r.Select(v => (float)v).ToArray(), 1e-4, 1e-4, "MatMul");
    }

    [Fact]
    public void GradientsMatchFiniteDifferences()
    {
        GradCheck.Check(t => Tensor.MatMul(t[0], t[1]), new[] { GradCheck.Rand(3, 4, 5), GradCheck.Rand(4, 5, 3) });
        GradCheck.Check(t => Tensor.MatMul(t[0], t[1]), new[] { GradCheck.Rand(5, 2, 3, 4), GradCheck.Rand(6, 2, 4, 3) });
        GradCheck.Check(t => Tensor.MatMul(t[0], t[1]), new[] { GradCheck.Rand(7, 2, 3, 4), GradCheck.Rand(8, 4, 2) });
        // Broadcast batch: [2, 1, 3, 4] x [3, 4, 2] -> [2, 3, 3, 2].
        GradCheck.Check(t => Tensor.MatMul(t[0], t[1]), new[] { GradCheck.Rand(9, 2, 1, 3, 4), GradCheck.Rand(10, 3, 4, 2) });
    }

    [Fact]
    public void LinearMatchesNaiveAndFiniteDifferences()
    {
        var x = GradCheck.Rand(1, 2, 3, 5);
        var w = GradCheck.Rand(2, 4, 5);
        var b = GradCheck.Rand(3, 4);
        var y = Tensor.Linear(x, w, b);
        Assert.Equal(new Shape(2, 3, 4), y.Shape);
        var xs = x.ToArray(); var ws = w.ToArray(); var bs = b.ToArray();
        var r = new float[2 * 3 * 4];
        for (int i = 0; i < 6; i++)
            for (int o = 0; o < 4; o++)
            {
                double acc = bs[o];
                for (int p = 0; p < 5; p++) acc += (double)xs[i * 5 + p] * ws[o * 5 + p];
                r[i * 4 + o] = (float)acc;
            }
        GradCheck.AssertClose(y.Span, r, 1e-5, 1e-5, "Linear");
        GradCheck.Check(t => Tensor.Linear(t[0], t[1], t[2]), new[] { x, w, b });
        GradCheck.Check(t => Tensor.Linear(t[0], t[1], null), new[] { GradCheck.Rand(4, 3, 6), GradCheck.Rand(5, 2, 6) });
    }

    [Fact]
    public void ShapeErrorsNameTheShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.MatMul(Tensor.Zeros(2, 3), Tensor.Zeros(4, 5)));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4, 5]", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Tensor.Linear(Tensor.Zeros(2, 3), Tensor.Zeros(4, 5), null));
        Assert.Contains("[4, 5]", ex.Message);
    }
}
