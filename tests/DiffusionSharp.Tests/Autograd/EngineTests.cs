using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class EngineTests
{
    private static (Tensor W, Tensor B, Tensor Hidden, Tensor Act, Tensor Loss) Build(Generator g)
    {
        var x = Tensor.Randn(g, 2, 3, 6, 6);
        var w = Tensor.Randn(g, 4, 3, 3, 3); w.RequiresGrad = true;
        var b = Tensor.Randn(g, 4); b.RequiresGrad = true;
        var h = Tensor.Conv2d(x, w, b, padding: 1);
        var a = h.Silu();
        var loss = (a * a).MeanAll();
        return (w, b, h, a, loss);
    }

    [Fact]
    public void ReleasingIntermediatesGivesTheSameGradientsAndFreesTheGraph()
    {
        var (w1, b1, h1, a1, l1) = Build(new Generator(3));
        l1.Backward();
        var (w2, b2, h2, a2, l2) = Build(new Generator(3));
        l2.Backward(releaseIntermediates: true);
        Assert.Equal(w1.Grad!.ToArray(), w2.Grad!.ToArray());
        Assert.Equal(b1.Grad!.ToArray(), b2.Grad!.ToArray());
        Assert.False(h1.IsDisposed || a1.IsDisposed);
        Assert.True(h2.IsDisposed && a2.IsDisposed, "intermediates keep their storage after Backward(releaseIntermediates: true)");
        Assert.Throws<ObjectDisposedException>(() => h2.ToArray());
        Assert.False(l2.IsDisposed || w2.IsDisposed || b2.IsDisposed, "the root and the leaves must survive");
        Assert.Equal(l1.Item(), l2.Item());
    }
}
