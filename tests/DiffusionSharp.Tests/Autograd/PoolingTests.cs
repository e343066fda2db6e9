using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class PoolingTests
{
    [Fact]
    public void UpsampleRepeatsEachPixel()
    {
        var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 1, 1, 2, 3);
        var y = x.UpsampleNearest2x();
        Assert.Equal(new Shape(1, 1, 4, 6), y.Shape);
        Assert.Equal(new float[] { 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6 }, y.ToArray());
    }

    [Fact]
    public void AvgPoolAveragesBlocksAndDropsOddEdge()
    {
        var x = Tensor.FromArray(Enumerable.Range(0, 15).Select(v => (float)v).ToArray(), 1, 1, 3, 5);
        var y = x.AvgPool2x2();
        Assert.Equal(new Shape(1, 1, 1, 2), y.Shape);
        Assert.Equal(new float[] { (0 + 1 + 5 + 6) / 4f, (2 + 3 + 7 + 8) / 4f }, y.ToArray());
    }

    [Fact]
    public void Gradients()
    {
        GradCheck.Check(t => t[0].UpsampleNearest2x(), new[] { GradCheck.Rand(1, 2, 3, 2, 3) });
        GradCheck.Check(t => t[0].AvgPool2x2(), new[] { GradCheck.Rand(2, 2, 2, 4, 6) });
        GradCheck.Check(t => t[0].AvgPool2x2(), new[] { GradCheck.Rand(3, 1, 2, 5, 3) });
    }

    [Fact]
    public void RejectsNonNchw()
    {
        Assert.Contains("[2, 3]", Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3).AvgPool2x2()).Message);
        Assert.Contains("[2, 3, 4]", Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3, 4).UpsampleNearest2x()).Message);
    }
}
