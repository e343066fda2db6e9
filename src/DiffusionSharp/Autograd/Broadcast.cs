namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>Materialises this tensor broadcast to <paramref name="shape"/> (NumPy rules). Backward: sum back to this shape.</summary>
    public Tensor Expand(Shape shape)
    {
        if (shape == Shape) return this;
        var check = Shape.Broadcast(Shape, shape);
        if (check != shape) throw new ArgumentException($"Cannot expand shape {Shape} to {shape}.");
        var y = Empty(shape);
        ExpandKernel(Span, Shape, y.Span, shape);
        var x = this;
        y.Track(g => x.AccumulateGrad(g.SumTo(x.Shape), owned: true), this);
        return y;
    }

    /// <summary>Sums this tensor down to a shape it was broadcast from (no autograd; used by backward passes).</summary>
    internal Tensor SumTo(Shape shape)
    {
        if (shape == Shape) return Clone();
        var y = Zeros(shape);
        SumToKernel(Span, Shape, y.Span, shape);
        return y;
    }

    // Source strides aligned to the destination rank, 0 where the source dimension is broadcast.
    private static int[] BroadcastStrides(Shape src, Shape dst)
    {
        int r = dst.Rank, off = r - src.Rank;
        var st = new int[r];
        var s = src.Strides();
        for (int i = 0; i < r; i++)
            st[i] = i < off || src[i - off] == 1 ? 0 : s[i - off];
        return st;
    }

    private static void ExpandKernel(ReadOnlySpan<float> src, Shape srcShape, Span<float> dst, Shape dstShape)
    {
        var st = BroadcastStrides(srcShape, dstShape);
        int r = dstShape.Rank;
        if (r == 0) { dst[0] = src[0]; return; }
        int inner = dstShape[r - 1], innerStride = st[r - 1];
        var idx = new int[r];
        int outer = dstShape.Size / Math.Max(inner, 1);
        int o = 0;
        for (int k = 0; k < outer; k++)
        {
            int s = 0;
            for (int d = 0; d < r - 1; d++) s += idx[d] * st[d];
            var row = dst.Slice(o, inner);
            if (innerStride == 0) row.Fill(src[s]);
            else src.Slice(s, inner).CopyTo(row);
            o += inner;
            for (int d = r - 2; d >= 0; d--) { if (++idx[d] < dstShape[d]) break; idx[d] = 0; }
        }
    }

    private static void SumToKernel(ReadOnlySpan<float> src, Shape srcShape, Span<float> dst, Shape dstShape)
    {
        var st = BroadcastStrides(dstShape, srcShape);
        int r = srcShape.Rank;
        if (r == 0) { dst[0] += src[0]; return; }
        int inner = srcShape[r - 1], innerStride = st[r - 1];
        var idx = new int[r];
        int outer = srcShape.Size / Math.Max(inner, 1);
        int o = 0;
        for (int k = 0; k < outer; k++)
        {
            int s = 0;
            for (int d = 0; d < r - 1; d++) s += idx[d] * st[d];
            var row = src.Slice(o, inner);
            if (innerStride == 0)
            {
                double acc = 0;
                foreach (var v in row) acc += v;
                dst[s] += (float)acc;
            }
            else Kernels.Elementwise.AddInPlace(dst.Slice(s, inner), row);
            o += inner;
            for (int d = r - 2; d >= 0; d--) { if (++idx[d] < srcShape[d]) break; idx[d] = 0; }
        }
    }
}
