using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

/// <summary>The fused sampler and loss ops: values against their definitions, gradients against finite differences.</summary>
public class FusedTests
{
    private static Tensor R(ulong seed, params int[] shape) => Tensor.Randn(new Generator(seed), shape);

    [Fact]
    public void AxpbyAndLerpMatchTheirDefinitions()
    {
        var x = R(1, 3, 5); var y = R(2, 3, 5);
        var z = Tensor.Axpby(0.3f, x, -1.7f, y);
        var l = Tensor.Lerp(x, y, 0.25f);
        for (int i = 0; i < x.Size; i++)
        {
            Assert.Equal(0.3 * x.Span[i] - 1.7 * y.Span[i], z.Span[i], 5);
            Assert.Equal(x.Span[i] + 0.25 * (y.Span[i] - x.Span[i]), l.Span[i], 5);
        }
        GradCheck.Check(t => Tensor.Axpby(0.3f, t[0], -1.7f, t[1]), [R(3, 2, 4), R(4, 2, 4)]);
    }

    [Fact]
    public void SoftplusIsStableAndDifferentiates()
    {
        var x = Tensor.FromArray(new[] { -100f, -2f, 0f, 3f, 100f }, 5);
        var y = x.Softplus().ToArray();
        double[] expected = [Math.Exp(-100), Math.Log(1 + Math.Exp(-2)), Math.Log(2), Math.Log(1 + Math.Exp(3)), 100];
        for (int i = 0; i < 5; i++) Assert.Equal(expected[i], y[i], 5);
        GradCheck.Check(t => t[0].Softplus(), [R(5, 7)]);
    }

    [Fact]
    public void WhereChoosesAndRoutesGradients()
    {
        var c = Tensor.FromArray(new[] { 1f, 0f, 1f, 0f }, 4);
        var a = Tensor.FromArray(new[] { 1f, 2f, 3f, 4f }, 4);
        var b = Tensor.FromArray(new[] { -1f, -2f, -3f, -4f }, 4);
        Assert.Equal(new[] { 1f, -2f, 3f, -4f }, a.Where(c, b).ToArray());
        GradCheck.Check(t => t[0].Where(c, t[1]), [R(6, 4), R(7, 4)]);
    }

    [Fact]
    public void PerSampleValuesBroadcastAndMeanPerSampleReduces()
    {
        var x = R(8, 2, 3, 4);
        var scaled = x * Tensor.PerSample([2.0, -1.0], x.Shape);
        Assert.Equal(new Shape(2, 1, 1), Tensor.PerSample([2.0, -1.0], x.Shape).Shape);
        Assert.Equal(2 * x.Span[5], scaled.Span[5], 6);
        Assert.Equal(-x.Span[12 + 5], scaled.Span[12 + 5], 6);
        var m = x.MeanPerSample().ToArray();
        Assert.Equal(x.ToArray().Take(12).Average(), m[0], 5);
        GradCheck.Check(t => t[0].MeanPerSample(), [R(9, 2, 3)]);
    }
}
