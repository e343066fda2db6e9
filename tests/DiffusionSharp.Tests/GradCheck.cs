using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests;

/// <summary>Finite-difference gradient checks: central differences of a scalar function, accumulated in double.</summary>
public static class GradCheck
{
    /// <summary>
    /// Checks d f(inputs) / d input for every input against central differences.
    /// f must build a fresh graph from the inputs on each call and return a tensor; its elements are summed with fixed random weights.
    /// </summary>
    public static void Check(Func<Tensor[], Tensor> f, Tensor[] inputs, double eps = 1e-2, double atol = 2e-3, double rtol = 2e-2, int seed = 7)
    {
        foreach (var t in inputs) { t.RequiresGrad = true; t.ZeroGrad(); }
        var y = f(inputs);
        var w = Tensor.Randn(new Generator((ulong)seed), y.Shape.ToArray());
        var wv = w.ToArray();
        var loss = (y * w).SumAll();
        loss.Backward();
        for (int k = 0; k < inputs.Length; k++)
        {
            var x = inputs[k];
            Assert.NotNull(x.Grad);
            Assert.Equal(x.Shape, x.Grad!.Shape);
            var analytic = x.Grad.ToArray();
            var data = x.Span;
            for (int i = 0; i < x.Size; i++)
            {
                float orig = data[i];
                data[i] = (float)(orig + eps);
                double fp = WeightedSum(f, inputs, wv);
                data[i] = (float)(orig - eps);
                double fm = WeightedSum(f, inputs, wv);
                data[i] = orig;
                double num = (fp - fm) / (2 * eps);
                double err = Math.Abs(num - analytic[i]);
                if (err > atol + rtol * Math.Abs(num))
                    Assert.Fail($"Input {k} {x.Shape} element {i}: analytic {analytic[i]:G6} vs numeric {num:G6}.");
            }
        }
    }

    private static double WeightedSum(Func<Tensor[], Tensor> f, Tensor[] inputs, float[] w)
    {
        using var _ = DiffusionSharp.Autograd.GradMode.NoGrad();
        var y = f(inputs).ToArray();
        double s = 0;
        for (int i = 0; i < y.Length; i++) s += (double)y[i] * w[i];
        return s;
    }

    /// <summary>Random input of the given shape.</summary>
    public static Tensor Rand(int seed, params int[] shape) => Tensor.Randn(new Generator((ulong)seed), shape);

    /// <summary>Asserts |a-b| &lt;= atol + rtol*|b| elementwise.</summary>
    public static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs((double)actual[i] - expected[i]);
            if (!(err <= atol + rtol * Math.Abs(expected[i])))
                Assert.Fail($"{what} element {i}: got {actual[i]:G8}, expected {expected[i]:G8} (err {err:G3}).");
        }
    }
}
