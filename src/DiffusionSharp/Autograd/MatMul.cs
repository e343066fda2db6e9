using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Matrix product. <paramref name="a"/> is [..., m, k] and <paramref name="b"/> is [..., k, n] (batch dimensions
    /// broadcast) or [k, n] (shared by every batch entry). Result [..., m, n].
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b)
    {
        if (a.Rank < 2 || b.Rank < 2)
            throw new ArgumentException($"MatMul needs operands of rank >= 2 ([..., m, k] x [..., k, n]), got {a.Shape} and {b.Shape}.");
        int m = a.Dim(-2), k = a.Dim(-1), n = b.Dim(-1);
        if (b.Dim(-2) != k)
            throw new ArgumentException($"MatMul inner dimensions differ: {a.Shape} x {b.Shape} (k = {k} vs {b.Dim(-2)}).");

        if (b.Rank == 2) return MatMulShared(a, b, m, k, n);

        // General batched case: broadcast the batch dimensions explicitly (Expand's backward sums them back).
        var ba = new Shape(a.Shape.Dims[..^2].ToArray());
        var bb = new Shape(b.Shape.Dims[..^2].ToArray());
        Shape batch;
        try { batch = Shape.Broadcast(ba, bb); }
        catch (ArgumentException) { throw new ArgumentException($"MatMul batch dimensions of {a.Shape} and {b.Shape} cannot be broadcast together."); }
        var bd = batch.ToArray();
        var ae = a.Expand(new Shape([.. bd, m, k]));
        var be = b.Expand(new Shape([.. bd, k, n]));
        int count = batch.Size;
        var y = Empty(new Shape([.. bd, m, n]));
        BatchedGemm(count, false, false, m, n, k, ae.Storage, m * k, k, be.Storage, k * n, n, y.Storage, m * n, n, 0f);
        y.Track(g =>
        {
            if (ae.RequiresGrad)
            {
                var ga = Empty(ae.Shape);
                BatchedGemm(count, false, true, m, k, n, g.Storage, m * n, n, be.Storage, k * n, n, ga.Storage, m * k, k, 0f);
                ae.AccumulateGrad(ga, owned: true);
            }
            if (be.RequiresGrad)
            {
                var gb = Empty(be.Shape);
                BatchedGemm(count, true, false, k, n, m, ae.Storage, m * k, k, g.Storage, m * n, n, gb.Storage, k * n, n, 0f);
                be.AccumulateGrad(gb, owned: true);
            }
        }, ae, be);
        return y;
    }

    // a [..., m, k] x b [k, n]: one GEMM over all rows of a.
    private static Tensor MatMulShared(Tensor a, Tensor b, int m, int k, int n)
    {
        int rows = LeadingSize(a.Shape);
        var dims = a.Shape.ToArray();
        dims[^1] = n;
        var y = Empty(new Shape(dims));
        Gemm.Sgemm(false, false, rows, n, k, 1f, a.Storage, Math.Max(k, 1), b.Storage, Math.Max(n, 1), 0f, y.Storage, Math.Max(n, 1));
        y.Track(g =>
        {
            if (a.RequiresGrad)
            {
                var ga = Empty(a.Shape);
                Gemm.Sgemm(false, true, rows, k, n, 1f, g.Storage, Math.Max(n, 1), b.Storage, Math.Max(n, 1), 0f, ga.Storage, Math.Max(k, 1));
                a.AccumulateGrad(ga, owned: true);
            }
            if (b.RequiresGrad)
            {
                var gb = Empty(b.Shape);
                Gemm.Sgemm(true, false, k, n, rows, 1f, a.Storage, Math.Max(k, 1), g.Storage, Math.Max(n, 1), 0f, gb.Storage, Math.Max(n, 1));
                b.AccumulateGrad(gb, owned: true);
            }
        }, a, b);
        return y;
    }

    // count independent GEMMs at fixed strides; many small products run one per thread, large ones use the parallel GEMM.
    private static unsafe void BatchedGemm(int count, bool tA, bool tB, int m, int n, int k,
        float[] a, int strideA, int lda, float[] b, int strideB, int ldb, float[] c, int strideC, int ldc, float beta)
    {
        if (count == 0 || m == 0 || n == 0) return;
        lda = Math.Max(lda, 1); ldb = Math.Max(ldb, 1); ldc = Math.Max(ldc, 1);
        double work = (double)m * n * k;
        fixed (float* pa0 = a, pb0 = b, pc0 = c)
        {
            nint pa = (nint)pa0, pb = (nint)pb0, pc = (nint)pc0;
            if (count >= 2 * Threading.Threads || work < 1 << 18)
            {
                Threading.For(count, work < 1 << 14 ? Math.Max(1, (1 << 14) / (int)Math.Max(1, work)) : 1, (s, e) =>
                {
                    for (int i = s; i < e; i++)
                        Gemm.SgemmSerial(tA, tB, m, n, k, 1f, (float*)pa + (nint)i * strideA, lda, (float*)pb + (nint)i * strideB, ldb,
                            beta, (float*)pc + (nint)i * strideC, ldc);
                });
            }
            else
            {
                for (int i = 0; i < count; i++)
                    Gemm.Sgemm(tA, tB, m, n, k, 1f, pa0 + (nint)i * strideA, lda, pb0 + (nint)i * strideB, ldb, beta, pc0 + (nint)i * strideC, ldc);
            }
        }
    }

    // Product of all but the last dimension.
    private static int LeadingSize(Shape s)
    {
        int r = 1;
        for (int i = 0; i < s.Rank - 1; i++) r *= s[i];
        return r;
    }

    /// <summary>Fully connected layer y = x W^T + b with <paramref name="w"/> [out, in] (PyTorch layout), x [..., in], b [out].</summary>
    public static Tensor Linear(Tensor x, Tensor w, Tensor? b)
    {
        if (w.Rank != 2) throw new ArgumentException($"Linear weight must be [out, in], got {w.Shape}.");
        int outF = w.Dim(0), inF = w.Dim(1);
        if (x.Rank < 1 || x.Dim(-1) != inF)
            throw new ArgumentException($"Linear input must be [..., {inF}] for weight {w.Shape}, got {x.Shape}.");
        if (b != null && (b.Rank != 1 || b.Dim(0) != outF))
            throw new ArgumentException($"Linear bias must be [{outF}], got {b.Shape}.");
        int rows = LeadingSize(x.Shape);
        var dims = x.Shape.ToArray();
        dims[^1] = outF;
        var y = Empty(new Shape(dims));
        float beta = 0f;
        if (b != null && rows > 0)
        {
            // Bias is fused by seeding C with it and accumulating (beta = 1).
            var ys = y.Span;
            var bs = b.Span;
            for (int r = 0; r < rows; r++) bs.CopyTo(ys.Slice(r * outF, outF));
            beta = 1f;
        }
        Gemm.Sgemm(false, true, rows, outF, inF, 1f, x.Storage, Math.Max(inF, 1), w.Storage, Math.Max(inF, 1), beta, y.Storage, Math.Max(outF, 1));
        Tensor[] inputs = b == null ? [x, w] : [x, w, b];
        y.Track(g =>
        {
            if (x.RequiresGrad)
            {
                var gx = Empty(x.Shape);
                Gemm.Sgemm(false, false, rows, inF, outF, 1f, g.Storage, Math.Max(outF, 1), w.Storage, Math.Max(inF, 1), 0f, gx.Storage, Math.Max(inF, 1));
                x.AccumulateGrad(gx, owned: true);
            }
            if (w.RequiresGrad)
            {
                var gw = Empty(w.Shape);
                Gemm.Sgemm(true, false, outF, inF, rows, 1f, g.Storage, Math.Max(outF, 1), x.Storage, Math.Max(inF, 1), 0f, gw.Storage, Math.Max(inF, 1));
                w.AccumulateGrad(gw, owned: true);
            }
            if (b != null && b.RequiresGrad)
            {
                var gb = Zeros(b.Shape);
                Convolution.SumRows(g.Span, rows, outF, gb.Span);
                b.AccumulateGrad(gb, owned: true);
            }
        }, inputs);
        return y;
    }
}
