using System.Numerics.Tensors;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>
/// Training kernels of multi-head self-attention over the L = H*W positions of channel-major maps [N, C, L]: the forward of
/// <see cref="SpatialAttention"/> that also keeps [q; k; v] (q scaled), the softmax rows P and O, and its backward
/// (Vaswani et al. 2017, Eq. 1; softmax gradient dS = P . (dP - rowsum(dP . P))). Every product of one image runs serially,
/// one image per worker; the weight and bias gradients sum the images in a fixed number of groups, added in group order, so
/// their rounding does not depend on the thread count.
/// </summary>
internal static unsafe class SpatialAttentionTraining
{
    /// <summary>
    /// y[n] = attention of x[n] ([C, L] each) as <see cref="SpatialAttention.Forward"/>, keeping qkv [N, 3 inner, L] (the
    /// query rows scaled), p [N, heads, L, L] (softmax rows) and o [N, L, inner] (the heads' outputs) for the backward.
    /// </summary>
    public static void Forward(int n, int c, int l, int heads, int d, float scale, float* x, float* wqkv, float* bqkv,
        float* wo, float* bo, float* residual, float rescale, float* y, float* qkv, float* p, float* o)
    {
        int inner = heads * d, rows = 3 * inner;
        nint px = (nint)x, pw = (nint)wqkv, pb = (nint)bqkv, pwo = (nint)wo, pbo = (nint)bo, pr = (nint)residual, py = (nint)y;
        nint pq = (nint)qkv, pp = (nint)p, po = (nint)o;
        // the inference image pass, serial, with every head's softmax rows kept
        Threading.For(n, 1, (i0, i1) =>
        {
            for (int i = i0; i < i1; i++)
            {
                nint off = (nint)i * c * l;
                SpatialAttention.Image(c, l, heads, d, scale, (float*)px + off, (float*)pw, (float*)pb, (float*)pwo, (float*)pbo,
                    pr == 0 ? null : (float*)pr + off, rescale, (float*)py + off, (float*)pq + (nint)i * rows * l,
                    (float*)po + (nint)i * l * inner, (float*)pp + (nint)i * heads * l * l, parallel: false, keepScores: true);
            }
        });
    }

    /// <summary>
    /// Gradients of <see cref="Forward"/> given gy' = dL/dy / rescale [N, C, L]: gx = dL/dx (overwritten; null to skip),
    /// gwqkv [3 inner, C], gwo [C, inner], gbqkv [3 inner] and gbo [C] (overwritten; the biases null when absent).
    /// </summary>
    public static void Backward(int n, int c, int l, int heads, int d, float scale, float* x, float* wqkv, float* wo,
        float* qkv, float* p, float* o, float* gy, float* gx, float* gwqkv, float* gwo, float* gbqkv, float* gbo)
    {
        int inner = heads * d, rows = 3 * inner;
        int groups = Math.Min(n, Convolution.WeightPartials);
        // one partial per group: [gwqkv | gwo | gbqkv | gbo]
        int offWo = rows * c, offBq = offWo + c * inner, offBo = offBq + rows, size = offBo + c;
        var partials = new float[groups][];
        bool biased = gbqkv != null;
        nint px = (nint)x, pw = (nint)wqkv, pwo = (nint)wo, pq = (nint)qkv, pp = (nint)p, po = (nint)o, pg = (nint)gy, pgx = (nint)gx;
        try
        {
            Threading.For(groups, 1, (g0, g1) =>
            {
                var dot = TensorPool.Rent(inner * l, clear: false);
                var dp = TensorPool.Rent(l * l, clear: false);
                var dqkv = TensorPool.Rent(rows * l, clear: false);
                try
                {
                    fixed (float* pdot = dot, pdp = dp, pdq = dqkv)
                        for (int grp = g0; grp < g1; grp++)
                        {
                            var part = TensorPool.Rent(size, clear: false);
                            partials[grp] = part;
                            int i0 = (int)((long)n * grp / groups), i1 = (int)((long)n * (grp + 1) / groups);
                            fixed (float* pt = part)
                                for (int i = i0; i < i1; i++)
                                {
                                    nint off = (nint)i * c * l;
                                    Image(c, l, heads, d, scale, (float*)px + off, (float*)pw, (float*)pwo, (float*)pq + (nint)i * rows * l,
                                        (float*)pp + (nint)i * heads * l * l, (float*)po + (nint)i * l * inner, (float*)pg + off,
                                        pgx == 0 ? null : (float*)pgx + off, pt, pt + offWo, biased ? pt + offBq : null, pt + offBo, first: i == i0, pdot, pdp, pdq);
                                }
                        }
                }
                finally { TensorPool.Return(dot); TensorPool.Return(dp); TensorPool.Return(dqkv); }
            });
            // partials added in group order for every element, the elements split over the threads
            Threading.For(size, 1 << 14, (e0, e1) =>
            {
                var sum = partials[0].AsSpan(e0, e1 - e0);
                for (int i = 1; i < groups; i++) Elementwise.AddInPlace(sum, partials[i].AsSpan(e0, e1 - e0));
            });
            var total = partials[0].AsSpan();
            total[..offWo].CopyTo(new Span<float>(gwqkv, rows * c));
            total[offWo..offBq].CopyTo(new Span<float>(gwo, c * inner));
            if (gbqkv != null) total[offBq..offBo].CopyTo(new Span<float>(gbqkv, rows));
            if (gbo != null) total[offBo..size].CopyTo(new Span<float>(gbo, c));
        }
        finally
        {
            foreach (var part in partials) if (part != null) TensorPool.Return(part);
        }
    }

    // One image: accumulates (first: sets) its weight and bias gradients into the group's partials and writes gx.
    private static void Image(int c, int l, int heads, int d, float scale, float* x, float* wqkv, float* wo, float* qkv, float* p,
        float* o, float* g, float* gx, float* gwqkv, float* gwo, float* gbqkv, float* gbo, bool first, float* dot, float* dp, float* dqkv)
    {
        int inner = heads * d, rows = 3 * inner;
        float beta = first ? 0f : 1f;
        // db_o (+)= row sums of g; dW_o (+)= g O; dO^T = W_o^T g [inner, L].
        for (int r = 0; r < c; r++)
        {
            float s = TensorPrimitives.Sum(new ReadOnlySpan<float>(g + (nint)r * l, l));
            gbo[r] = first ? s : gbo[r] + s;
        }
        Gemm.SgemmSerial(false, false, c, inner, l, 1f, g, l, o, inner, beta, gwo, inner);
        Gemm.SgemmSerial(true, false, inner, l, c, 1f, wo, inner, g, l, 0f, dot, l);
        for (int h = 0; h < heads; h++)
        {
            float* dOh = dot + (nint)h * d * l, ph = p + (nint)h * l * l;
            float* qt = qkv + (nint)h * d * l, kt = qt + (nint)inner * l, vt = kt + (nint)inner * l;
            float* dq = dqkv + (nint)h * d * l, dk = dq + (nint)inner * l, dv = dk + (nint)inner * l;
            // dP = dO_h v_h^T [L, L]; dv_h = dO_h^T P [d, L].
            Gemm.SgemmSerial(true, false, l, l, d, 1f, dOh, l, vt, l, 0f, dp, l);
            Gemm.SgemmSerial(false, false, d, l, l, 1f, dOh, l, ph, l, 0f, dv, l);
            // dS = P . (dP - rowsum(dP . P)), in place of dP.
            for (int r = 0; r < l; r++)
            {
                var row = new Span<float>(dp + (nint)r * l, l);
                var pr = new ReadOnlySpan<float>(ph + (nint)r * l, l);
                float rs = TensorPrimitives.Dot(row, pr);
                TensorPrimitives.Subtract(row, rs, row);
                TensorPrimitives.Multiply(row, pr, row);
            }
            // S = (s q_h)^T k_h: d(q_h) = s k_h dS^T, d(k_h) = (s q_h) dS.
            Gemm.SgemmSerial(false, true, d, l, l, scale, kt, l, dp, l, 0f, dq, l);
            Gemm.SgemmSerial(false, false, d, l, l, 1f, qt, l, dp, l, 0f, dk, l);
        }
        if (gbqkv != null)
            for (int r = 0; r < rows; r++)
            {
                float s = TensorPrimitives.Sum(new ReadOnlySpan<float>(dqkv + (nint)r * l, l));
                gbqkv[r] = first ? s : gbqkv[r] + s;
            }
        // dW_qkv (+)= d[q; k; v] X^T; dX = W_qkv^T d[q; k; v].
        Gemm.SgemmSerial(false, true, rows, c, l, 1f, dqkv, l, x, l, beta, gwqkv, c);
        if (gx != null) Gemm.SgemmSerial(true, false, c, l, rows, 1f, wqkv, c, dqkv, l, 0f, gx, l);
    }
}
