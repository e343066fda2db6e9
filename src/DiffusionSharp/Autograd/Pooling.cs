using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    private void ExpectNchw(string op)
    {
        if (Rank != 4) throw new ArgumentException($"{op} expects an NCHW tensor of rank 4, got shape {Shape}.");
    }

    /// <summary>Nearest-neighbour 2x upsampling of NCHW: [N, C, H, W] to [N, C, 2H, 2W]. Backward sums each 2x2 block.</summary>
    public Tensor UpsampleNearest2x()
    {
        ExpectNchw("UpsampleNearest2x");
        int n = Shape[0], c = Shape[1], h = Shape[2], w = Shape[3];
        var y = Empty(n, c, 2 * h, 2 * w);
        PoolKernels.Upsample2x(Storage, y.Storage, n * c, h, w);
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            PoolKernels.Sum2x2(g.Storage, gx.Storage, n * c, h, w, 1f);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>2x2 average pooling with stride 2 of NCHW: [N, C, H, W] to [N, C, H/2, W/2] (an odd last row/column is dropped).</summary>
    public Tensor AvgPool2x2()
    {
        ExpectNchw("AvgPool2x2");
        int n = Shape[0], c = Shape[1], h = Shape[2], w = Shape[3];
        int ho = h / 2, wo = w / 2;
        var y = Empty(n, c, ho, wo);
        PoolKernels.Pool2x2(Storage, y.Storage, n * c, h, w);
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            PoolKernels.Pool2x2Backward(g.Storage, gx.Storage, n * c, h, w);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }
}
