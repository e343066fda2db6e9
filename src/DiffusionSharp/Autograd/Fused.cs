using System.Numerics.Tensors;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>a x + b y for same-shape x and y in one pass (the samplers' update); gradients a g and b g.</summary>
    public static Tensor Axpby(float a, Tensor x, float b, Tensor y)
    {
        var z = MapNew((xs, ys, d) =>
        {
            TensorPrimitives.Multiply(xs, a, d);
            TensorPrimitives.MultiplyAdd(ys, b, d, d);
        }, x, y);
        z.Track(g =>
        {
            if (x.RequiresGrad) x.AccumulateGrad(g.MapNew((s, d) => TensorPrimitives.Multiply(s, a, d)), owned: true);
            if (y.RequiresGrad) y.AccumulateGrad(g.MapNew((s, d) => TensorPrimitives.Multiply(s, b, d)), owned: true);
        }, x, y);
        return z;
    }

    /// <summary>x + w (y - x) elementwise: linear interpolation, with gradients (1 - w) g and w g.</summary>
    public static Tensor Lerp(Tensor x, Tensor y, float w) => Axpby(1f - w, x, w, y);

    /// <summary>Elementwise softplus log(1 + e^x), computed without overflow; its derivative is sigmoid(x).</summary>
    public Tensor Softplus()
    {
        var y = MapNew((xs, d) =>
        {
            for (int i = 0; i < xs.Length; i++) d[i] = xs[i] > 0 ? xs[i] + MathF.Log(1f + MathF.Exp(-xs[i])) : MathF.Log(1f + MathF.Exp(xs[i]));
        });
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew((xs, gs, d) =>
        {
            for (int i = 0; i < xs.Length; i++) d[i] = gs[i] / (1f + MathF.Exp(-xs[i]));
        }, x, g), owned: true), this);
        return y;
    }

    /// <summary>Elementwise choice: this where <paramref name="condition"/> is non-zero, else <paramref name="other"/>; gradients follow the choice.</summary>
    public Tensor Where(Tensor condition, Tensor other)
    {
        if (condition.Shape != Shape || other.Shape != Shape)
            throw new ArgumentException($"Where needs equal shapes, got {Shape}, condition {condition.Shape} and other {other.Shape}.");
        var y = Choose(condition, this, other);
        var x = this;
        y.Track(g =>
        {
            using var zero = Zeros(g.Shape);
            if (x.RequiresGrad) x.AccumulateGrad(Choose(condition, g, zero), owned: true);
            if (other.RequiresGrad) other.AccumulateGrad(Choose(condition, zero, g), owned: true);
        }, this, other);
        return y;
    }

    private static Tensor Choose(Tensor condition, Tensor a, Tensor b)
    {
        var y = Empty(a.Shape);
        ReadOnlySpan<float> c = condition.Span, sa = a.Span, sb = b.Span;
        var d = y.Span;
        for (int i = 0; i < d.Length; i++) d[i] = c[i] != 0 ? sa[i] : sb[i];
        return y;
    }

    /// <summary>A constant [B, 1, ..., 1] tensor holding one value per sample, broadcastable against <paramref name="like"/>.</summary>
    public static Tensor PerSample(ReadOnlySpan<double> values, Shape like)
    {
        if (like.Rank < 1 || like[0] != values.Length)
            throw new ArgumentException($"Expected {values.Length} per-sample values for batch shape {like}.");
        var dims = new int[like.Rank];
        Array.Fill(dims, 1);
        dims[0] = values.Length;
        var t = Empty(dims);
        var s = t.Span;
        for (int i = 0; i < values.Length; i++) s[i] = (float)values[i];
        return t;
    }

    /// <summary>Mean over every axis but the first: [B, ...] to [B].</summary>
    public Tensor MeanPerSample() => Rank < 2 ? Mul(1f) : Mean(Enumerable.Range(1, Rank - 1).ToArray());

    /// <summary>
    /// Multi-head self-attention over the H*W positions of <paramref name="normed"/> [N, C, H, W] for inference (no graph is
    /// recorded, so it is refused while gradients are recorded): the diffusers spatial attention with to_q/to_k/to_v weights
    /// [inner, C] (biases optional, all or none), to_out [C, inner], the query scaled by <paramref name="scale"/>, plus
    /// <paramref name="residual"/> when given, divided by <paramref name="rescale"/>.
    /// </summary>
    internal static unsafe Tensor SpatialAttentionInference(Tensor normed, Tensor? residual, Tensor wq, Tensor? bq, Tensor wk, Tensor? bk,
        Tensor wv, Tensor? bv, Tensor wo, Tensor? bo, int heads, int dimHead, float scale, float rescale)
    {
        if (Autograd.GradMode.Enabled) throw new InvalidOperationException("SpatialAttentionInference records no graph; call it inside GradMode.NoGrad().");
        if (normed.Rank != 4) throw new ArgumentException($"Spatial attention expects [N, C, H, W], got {normed.Shape}.");
        int n = normed.Dim(0), c = normed.Dim(1), l = normed.Dim(2) * normed.Dim(3), inner = heads * dimHead;
        foreach (var w in new[] { wq, wk, wv }) w.ExpectShape(new Shape(inner, c), "attention projection weight");
        wo.ExpectShape(new Shape(c, inner), "attention output weight");
        residual?.ExpectShape(normed.Shape, "attention residual");
        bool biased = bq != null;
        if ((bk != null) != biased || (bv != null) != biased) throw new ArgumentException("Attention q/k/v projections must all have a bias or none.");
        var (wqkv, bqkv) = RentStackedQkv(wq, bq, wk, bk, wv, bv, inner, c);
        var y = Empty(normed.Shape);
        try
        {
            if (bo != null) bo.ExpectShape(new Shape(c), "attention output bias");
            fixed (float* px = normed.Storage, pw = wqkv, pb = bqkv, pwo = wo.Storage, pbo = bo?.Storage, pr = residual?.Storage, py = y.Storage)
                SpatialAttention.Forward(n, c, l, heads, dimHead, scale, px, pw, pb, pwo, pbo, pr, rescale, py);
        }
        finally
        {
            TensorPool.Return(wqkv);
            if (bqkv != null) TensorPool.Return(bqkv);
        }
        return y;
    }
}
