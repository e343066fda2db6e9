using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>
/// Inference kernel of multi-head self-attention over the L = H*W positions of channel-major maps [N, C, L], without
/// permute copies: per image [q; k; v]^T = W_qkv X + b (one GEMM, 3 inner x L), per head S = (s q_h)^T k_h,
/// P = softmax(S) by rows, O_h = P v_h^T (L x d), then Y = (W_o O^T + b_o + residual) / rescale (Vaswani et al. 2017, Eq. 1).
/// </summary>
internal static unsafe class SpatialAttention
{
    /// <summary>
    /// y[n] = attention of x[n] ([C, L] each). wqkv is [3 inner, C] (query, key, value rows), bqkv [3 inner] or null; wo
    /// [C, inner], bo [C] or null; the query is scaled by <paramref name="scale"/> after its bias; residual [N, C, L] or null.
    /// </summary>
    public static void Forward(int n, int c, int l, int heads, int d, float scale, float* x, float* wqkv, float* bqkv,
        float* wo, float* bo, float* residual, float rescale, float* y)
    {
        int inner = heads * d;
        nint px = (nint)x, pw = (nint)wqkv, pb = (nint)bqkv, pwo = (nint)wo, pbo = (nint)bo, pr = (nint)residual, py = (nint)y;
        // Many images: one image per worker, every GEMM serial; fewer images than threads: the work inside each image is split.
        bool perImage = n >= Threading.Threads;
        Threading.ForDynamic(n, perImage ? 1 : int.MaxValue, (i0, i1) =>
        {
            var qkv = TensorPool.Rent(3 * inner * l, clear: false);
            var o = TensorPool.Rent(l * inner, clear: false);
            var s = perImage ? TensorPool.Rent(l * l, clear: false) : null;
            try
            {
                fixed (float* pq = qkv, po = o, ps = s)
                {
                    for (int i = i0; i < i1; i++)
                    {
                        nint off = (nint)i * c * l;
                        Image(c, l, heads, d, scale, (float*)px + off, (float*)pw, (float*)pb, (float*)pwo, (float*)pbo,
                            pr == 0 ? null : (float*)pr + off, rescale, (float*)py + off, pq, po, ps, parallel: !perImage);
                    }
                }
            }
            finally
            {
                TensorPool.Return(qkv); TensorPool.Return(o);
                if (s != null) TensorPool.Return(s);
            }
        });
    }

    /// <summary>
    /// One image: y = attention of x [C, L], with [q; k; v] (the query rows scaled) left in qkv [3 inner, L] and the heads'
    /// outputs in o [L, inner]. Serial unless <paramref name="parallel"/>; with <paramref name="keepScores"/> (serial only) each
    /// head's softmax rows stay in scores [heads, L, L] for a backward, else one [L, L] buffer is reused.
    /// </summary>
    internal static void Image(int c, int l, int heads, int d, float scale, float* x, float* wqkv, float* bqkv, float* wo, float* bo,
        float* residual, float rescale, float* y, float* qkv, float* o, float* scores, bool parallel, bool keepScores = false)
    {
        if (parallel && keepScores) throw new ArgumentException("Kept attention scores need the serial path.");
        int inner = heads * d, rows = 3 * inner;
        // [q; k; v]^T = W_qkv X (+ b seeded into C, as Linear does).
        float beta = bqkv != null ? 1f : 0f;
        nint pq = (nint)qkv, po = (nint)o, pbq = (nint)bqkv, py = (nint)y, pbo = (nint)bo, pres = (nint)residual;
        if (bqkv != null)
            Rows(parallel, rows, l, (r0, r1) => { for (int r = r0; r < r1; r++) new Span<float>((float*)pq + (nint)r * l, l).Fill(((float*)pbq)[r]); });
        Gemm(parallel, false, false, rows, l, c, wqkv, c, x, l, beta, qkv, l);
        Rows(parallel, inner, l, (r0, r1) =>
        {
            var qs = new Span<float>((float*)pq + (nint)r0 * l, (r1 - r0) * l);
            System.Numerics.Tensors.TensorPrimitives.Multiply(qs, scale, qs);
        });
        void Heads(int h0, int h1, float* s)
        {
            for (int h = h0; h < h1; h++)
            {
                float* qt = (float*)pq + (nint)h * d * l, kt = qt + (nint)inner * l, vt = kt + (nint)inner * l;
                float* sh = keepScores ? s + (nint)h * l * l : s;
                // S = q_h k_h^T from the d x L transposed blocks; softmax over each row; O_h = P v_h (v_h^T read transposed).
                DiffusionSharp.Tensors.Kernels.Gemm.SgemmSerial(true, false, l, l, d, 1f, qt, l, kt, l, 0f, sh, l);
                for (int r = 0; r < l; r++) SoftmaxKernels.AttentionRow(sh + (nint)r * l, l);
                DiffusionSharp.Tensors.Kernels.Gemm.SgemmSerial(false, true, l, d, l, 1f, sh, l, vt, l, 0f, (float*)po + (nint)h * d, inner);
            }
        }
        if (!parallel) Heads(0, heads, scores);
        else
            Threading.For(heads, 1, (h0, h1) =>
            {
                var sb = TensorPool.Rent(l * l, clear: false);
                try { fixed (float* ps = sb) Heads(h0, h1, ps); }
                finally { TensorPool.Return(sb); }
            });
        // Y = W_o O^T + b_o, then + residual and / rescale in the same order as the graph path.
        beta = bo != null ? 1f : 0f;
        if (bo != null)
            Rows(parallel, c, l, (r0, r1) => { for (int r = r0; r < r1; r++) new Span<float>((float*)py + (nint)r * l, l).Fill(((float*)pbo)[r]); });
        Gemm(parallel, false, true, c, l, inner, wo, inner, o, inner, beta, y, l);
        if (residual != null || rescale != 1f)
            Rows(parallel, c, l, (r0, r1) =>
            {
                var ys = new Span<float>((float*)py + (nint)r0 * l, (r1 - r0) * l);
                if (pres != 0) System.Numerics.Tensors.TensorPrimitives.Add(ys, new ReadOnlySpan<float>((float*)pres + (nint)r0 * l, (r1 - r0) * l), ys);
                if (rescale != 1f) System.Numerics.Tensors.TensorPrimitives.Divide(ys, rescale, ys);
            });
    }

    // body(r0, r1) over rows [0, rows) of length l: split over the threads when this image's work is (a single image), else inline.
    private static void Rows(bool parallel, int rows, int l, Action<int, int> body)
    {
        if (parallel) Threading.For(rows, Math.Max(1, ParallelMap.Grain / Math.Max(1, l)), body);
        else body(0, rows);
    }

    private static void Gemm(bool parallel, bool tA, bool tB, int m, int n, int k, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        if (parallel) DiffusionSharp.Tensors.Kernels.Gemm.Sgemm(tA, tB, m, n, k, 1f, a, lda, b, ldb, beta, c, ldc);
        else DiffusionSharp.Tensors.Kernels.Gemm.SgemmSerial(tA, tB, m, n, k, 1f, a, lda, b, ldb, beta, c, ldc);
    }
}
