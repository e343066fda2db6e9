using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class ArithmeticTests
{
    [Theory]
    [InlineData(new[] { 2, 3 }, new[] { 2, 3 })]
    [InlineData(new[] { 2, 3 }, new[] { 3 })]
    [InlineData(new[] { 2, 1, 4 }, new[] { 3, 1 })]
    [InlineData(new int[0], new[] { 2, 2 })]
    public void BinaryOpsMatchFiniteDifferences(int[] sa, int[] sb)
    {
        var a = GradCheck.Rand(1, sa);
        var b = GradCheck.Rand(2, sb);
        var bs = b.Span;
        for (int i = 0; i < bs.Length; i++) bs[i] = 1.5f + Math.Abs(bs[i]);  // keep Div away from 0
        GradCheck.Check(t => t[0] + t[1], new[] { a, b });
        GradCheck.Check(t => t[0] - t[1], new[] { a, b });
        GradCheck.Check(t => t[0] * t[1], new[] { a, b });
        GradCheck.Check(t => t[0] / t[1], new[] { a, b });
    }

    [Fact]
    public void BroadcastForwardMatchesHandComputed()
    {
        var a = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var b = Tensor.FromArray(new float[] { 10, 20, 30 }, 3);
        Assert.Equal(new float[] { 11, 22, 33, 14, 25, 36 }, (a + b).ToArray());
        var c = Tensor.FromArray(new float[] { 2, 3 }, 2, 1);
        Assert.Equal(new float[] { 2, 4, 6, 12, 15, 18 }, (a * c).ToArray());
    }

    [Fact]
    public void IncompatibleShapesNameBoth()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2, 3) + Tensor.Zeros(4));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[4]", ex.Message);
    }
}
