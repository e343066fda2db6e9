using System.Numerics.Tensors;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Multi-head self-attention over the H*W positions of <paramref name="normed"/> [N, C, H, W] as one recorded op: the
    /// diffusers spatial attention with to_q/to_k/to_v weights [inner, C] (biases all or none), to_out [C, inner] (+ bias),
    /// the query scaled by <paramref name="scale"/>, plus <paramref name="residual"/> when given, divided by
    /// <paramref name="rescale"/>. The backward reads the kept q/k/v, softmax rows and head outputs (no permute copies).
    /// </summary>
    internal static unsafe Tensor SpatialSelfAttention(Tensor normed, Tensor? residual, Tensor wq, Tensor? bq, Tensor wk, Tensor? bk,
        Tensor wv, Tensor? bv, Tensor wo, Tensor? bo, int heads, int dimHead, float scale, float rescale)
    {
        if (normed.Rank != 4) throw new ArgumentException($"Spatial attention expects [N, C, H, W], got {normed.Shape}.");
        int n = normed.Dim(0), c = normed.Dim(1), l = normed.Dim(2) * normed.Dim(3), inner = heads * dimHead, rows = 3 * inner;
        foreach (var w in new[] { wq, wk, wv }) w.ExpectShape(new Shape(inner, c), "attention projection weight");
        wo.ExpectShape(new Shape(c, inner), "attention output weight");
        residual?.ExpectShape(normed.Shape, "attention residual");
        bool biased = bq != null;
        if ((bk != null) != biased || (bv != null) != biased) throw new ArgumentException("Attention q/k/v projections must all have a bias or none.");
        foreach (var b in new[] { bq, bk, bv }) b?.ExpectShape(new Shape(inner), "attention projection bias");
        bo?.ExpectShape(new Shape(c), "attention output bias");
        var (wqkv, bqkv) = RentStackedQkv(wq, bq, wk, bk, wv, bv, inner, c);
        var qkv = TensorPool.Rent(n * rows * l, clear: false);
        var p = TensorPool.Rent(n * heads * l * l, clear: false);
        var o = TensorPool.Rent(n * l * inner, clear: false);
        var y = Empty(normed.Shape);
        fixed (float* px = normed.Storage, pw = wqkv, pb = bqkv, pwo = wo.Storage, pbo = bo?.Storage, pr = residual?.Storage, py = y.Storage,
               pq = qkv, pp = p, po = o)
            SpatialAttentionTraining.Forward(n, c, l, heads, dimHead, scale, px, pw, pb, pwo, pbo, pr, rescale, py, pq, pp, po);
        List<Tensor> inputs = [normed];
        if (residual != null) inputs.Add(residual);
        foreach (var t in new[] { wq, bq, wk, bk, wv, bv, wo, bo }) if (t != null) inputs.Add(t);
        void Free()
        {
            TensorPool.Return(wqkv); TensorPool.Return(qkv); TensorPool.Return(p); TensorPool.Return(o);
            if (bqkv != null) TensorPool.Return(bqkv);
        }
        bool tracked = y.Track(g =>
        {
            // y = (... + residual) / rescale: every path first divides the gradient by rescale.
            var gs = g;
            if (rescale != 1f)
            {
                gs = Empty(g.Shape);
                TensorPrimitives.Divide(g.Span, rescale, gs.Span);
            }
            var gx = normed.RequiresGrad ? Empty(normed.Shape) : null;
            var gwqkv = TensorPool.Rent(rows * c, clear: false);
            var gbqkv = biased ? TensorPool.Rent(rows, clear: false) : null;
            var gwo = Empty(wo.Shape);
            var gbo = bo != null ? Empty(bo.Shape) : null;
            try
            {
                fixed (float* px = normed.Storage, pw = wqkv, pwo = wo.Storage, pq = qkv, pp = p, po = o, pg = gs.Storage, pgx = gx?.Storage,
                       pgw = gwqkv, pgwo = gwo.Storage, pgb = gbqkv, pgbo = gbo?.Storage)
                    SpatialAttentionTraining.Backward(n, c, l, heads, dimHead, scale, px, pw, pwo, pq, pp, po, pg, pgx, pgw, pgwo, pgb, pgbo);
                if (gx != null) normed.AccumulateGrad(gx, owned: true);
                if (residual != null) residual.AccumulateGrad(gs, owned: false);
                Split(gwqkv, wq, wk, wv, inner * c);
                if (gbqkv != null) Split(gbqkv, bq!, bk!, bv!, inner);
                wo.AccumulateGrad(gwo, owned: true);
                if (gbo != null) bo!.AccumulateGrad(gbo, owned: true);
            }
            finally
            {
                if (!ReferenceEquals(gs, g)) gs.Dispose();
                TensorPool.Return(gwqkv);
                if (gbqkv != null) TensorPool.Return(gbqkv);
                Free();
            }
        }, [.. inputs]);
        if (!tracked) Free();
        return y;
    }

    // Hands the three stacked [len] gradients of q, k and v to their tensors.
    private static void Split(float[] stacked, Tensor a, Tensor b, Tensor c, int len)
    {
        int i = 0;
        foreach (var t in new[] { a, b, c })
        {
            if (t.RequiresGrad)
            {
                var g = Empty(t.Shape);
                stacked.AsSpan(i, len).CopyTo(g.Span);
                t.AccumulateGrad(g, owned: true);
            }
            i += len;
        }
    }

    /// <summary>Rents [wq; wk; wv] as one [3 * inner, C] block (and [bq; bk; bv] when biased), so q, k and v come from one GEMM; the caller returns both to the pool.</summary>
    private static (float[] Weights, float[]? Biases) RentStackedQkv(Tensor wq, Tensor? bq, Tensor wk, Tensor? bk, Tensor wv, Tensor? bv, int inner, int c)
    {
        var w = TensorPool.Rent(3 * inner * c, clear: false);
        wq.Span.CopyTo(w.AsSpan(0, inner * c));
        wk.Span.CopyTo(w.AsSpan(inner * c, inner * c));
        wv.Span.CopyTo(w.AsSpan(2 * inner * c, inner * c));
        if (bq == null) return (w, null);
        var b = TensorPool.Rent(3 * inner, clear: false);
        bq.Span.CopyTo(b.AsSpan(0, inner));
        bk!.Span.CopyTo(b.AsSpan(inner, inner));
        bv!.Span.CopyTo(b.AsSpan(2 * inner, inner));
        return (w, b);
    }
}
