using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>Small differentiable ops used only by the layers here.</summary>
internal static class NnOps
{
    /// <summary>
    /// Returns <paramref name="t"/>'s storage to the pool when no graph is being recorded (inference), unless it is one of
    /// <paramref name="keep"/>; with grad mode on, the graph still needs it and nothing happens.
    /// </summary>
    public static void Free(Tensor t, Tensor? keep = null, Tensor? keep2 = null)
    {
        if (Autograd.GradMode.Enabled || ReferenceEquals(t, keep) || ReferenceEquals(t, keep2)) return;
        t.Dispose();
    }

    /// <summary>
    /// Returns the values of <paramref name="t"/> to the pool once no backward function reads them (a sum's inputs, a
    /// dropout's input): without a graph it is disposed, with one it stays a graph node without storage.
    /// </summary>
    public static void Release(Tensor t) => t.ReleaseData();

    /// <summary>Zero-pads NCHW input by <paramref name="pad"/> rows at the bottom and columns at the right (F.pad (0, p, 0, p)).</summary>
    public static Tensor PadBottomRight(Tensor x, int pad)
    {
        int n = x.Dim(0), c = x.Dim(1), h = x.Dim(2), w = x.Dim(3), ho = h + pad, wo = w + pad;
        var y = Tensor.Zeros(n, c, ho, wo);
        var xs = x.Span;
        var ys = y.Span;
        for (int p = 0; p < n * c; p++)
            for (int i = 0; i < h; i++)
                xs.Slice((p * h + i) * w, w).CopyTo(ys.Slice((p * ho + i) * wo, w));
        y.Track(g =>
        {
            var gx = Tensor.Empty(x.Shape);
            var gs = g.Span;
            var gxs = gx.Span;
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < h; i++)
                    gs.Slice((p * ho + i) * wo, w).CopyTo(gxs.Slice((p * h + i) * w, w));
            x.AccumulateGrad(gx, owned: true);
        }, x);
        return y;
    }
}
