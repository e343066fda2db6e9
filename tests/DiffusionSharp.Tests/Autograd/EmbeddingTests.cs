using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class EmbeddingTests
{
    [Fact]
    public void PicksRows()
    {
        var w = Tensor.FromArray(new float[] { 0, 1, 10, 11, 20, 21 }, 3, 2);
        var y = Tensor.Embedding(w, new[] { 2, 0, 2 });
        Assert.Equal(new Shape(3, 2), y.Shape);
        Assert.Equal(new float[] { 20, 21, 0, 1, 20, 21 }, y.ToArray());
    }

    [Fact]
    public void GradientScattersAndAccumulatesRepeats()
    {
        GradCheck.Check(t => Tensor.Embedding(t[0], new[] { 1, 3, 1, 0 }), new[] { GradCheck.Rand(1, 5, 3) });
        var w = GradCheck.Rand(2, 4, 2);
        w.RequiresGrad = true;
        Tensor.Embedding(w, new[] { 1, 1, 3 }).SumAll().Backward();
        Assert.Equal(new float[] { 0, 0, 2, 2, 0, 0, 1, 1 }, w.Grad!.ToArray());
    }

    [Fact]
    public void RejectsBadIndex()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => Tensor.Embedding(Tensor.Zeros(3, 2), new[] { 0, 3 }));
        Assert.Contains("3", ex.Message);
        Assert.Contains("[3, 2]", ex.Message);
    }
}
