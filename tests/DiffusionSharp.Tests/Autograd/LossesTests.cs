using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class LossesTests
{
    [Fact]
    public void MseMatchesDefinition()
    {
        var a = GradCheck.Rand(1, 3, 17);
        var b = GradCheck.Rand(2, 3, 17);
        double s = 0;
        var av = a.ToArray();
        var bv = b.ToArray();
        for (int i = 0; i < av.Length; i++) s += (av[i] - (double)bv[i]) * (av[i] - (double)bv[i]);
        Assert.Equal(s / av.Length, Tensor.MseLoss(a, b).Item(), 5);
        Assert.Equal(new Shape(), Tensor.MseLoss(a, b).Shape);
    }

    [Fact]
    public void MseGradient() => GradCheck.Check(t => Tensor.MseLoss(t[0], t[1]), new[] { GradCheck.Rand(1, 2, 5), GradCheck.Rand(2, 2, 5) });

    [Fact]
    public void MseShapeMismatchNamesBoth()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.MseLoss(Tensor.Zeros(2, 3), Tensor.Zeros(3, 2)));
        Assert.Contains("[2, 3]", ex.Message);
        Assert.Contains("[3, 2]", ex.Message);
    }
}
