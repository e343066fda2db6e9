using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>Geometry of a 2-D convolution over NCHW tensors with weight [Cout, Cin, kh, kw].</summary>
public readonly record struct ConvShape(int N, int Cin, int H, int W, int Cout, int Kh, int Kw, int Stride, int Pad)
{
    /// <summary>Output height.</summary>
    public int Ho => (H + 2 * Pad - Kh) / Stride + 1;
    /// <summary>Output width.</summary>
    public int Wo => (W + 2 * Pad - Kw) / Stride + 1;
    /// <summary>Rows of the im2col matrix (Cin * kh * kw).</summary>
    public int K => Cin * Kh * Kw;
    /// <summary>Output pixels per image.</summary>
    public int P => Ho * Wo;
    /// <summary>True when the convolution is a plain GEMM over pixels (1x1, stride 1, no padding).</summary>
    public bool IsPointwise => Kh == 1 && Kw == 1 && Stride == 1 && Pad == 0;
    /// <summary>Forward multiply-adds times two.</summary>
    public double ForwardFlops => 2.0 * N * Cout * K * P;
}

/// <summary>How <see cref="Convolution"/> computes 3x3 stride-1 layers with at least 16 input and output channels.</summary>
public enum ConvAlgorithm
{
    /// <summary>Winograd F(2x2, 3x3) with blocked channel sums: 2.25x fewer multiply-adds than direct convolution and a float32
    /// error no larger than PyTorch's direct convolution (README, Winograd accuracy); direct convolution where the batch has
    /// too few tiles to pay for the transforms. The default.</summary>
    Winograd2,
    /// <summary>Winograd F(4x4, 3x3): 4x fewer multiply-adds, but 4-10x PyTorch float32's error.</summary>
    Winograd4,
    /// <summary>Direct convolution (im2col and GEMM) for every layer: the plain float32 sum of products.</summary>
    Direct,
}

/// <summary>
/// Convolution kernels built on <see cref="Gemm"/>: per image Y = W [Cout x K] * col [K x P] with im2col,
/// backward data via W^T * dY and col2im, backward weight via dY * col^T; images are spread over threads.
/// </summary>
public static unsafe class Convolution
{
    /// <summary>Environment variable that sets the initial <see cref="Algorithm"/>: winograd2, winograd4 or direct.</summary>
    public const string AlgorithmVariable = "DIFFUSIONSHARP_CONV";

    private static ConvAlgorithm? _algorithm;

    /// <summary>
    /// The algorithm for 3x3 stride-1 layers (others always run direct); starts from <see cref="AlgorithmVariable"/>, else
    /// <see cref="ConvAlgorithm.Winograd2"/>. Process-wide: set it before running a model, not during.
    /// </summary>
    public static ConvAlgorithm Algorithm
    {
        get => _algorithm ??= ParseAlgorithm(Environment.GetEnvironmentVariable(AlgorithmVariable), AlgorithmVariable);
        set => _algorithm = value;
    }

    /// <summary>Parses winograd2 | winograd4 | direct (case-insensitive; null or empty: winograd2); <paramref name="source"/> names the setting in errors.</summary>
    public static ConvAlgorithm ParseAlgorithm(string? value, string source) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "winograd2" => ConvAlgorithm.Winograd2,
        "winograd4" => ConvAlgorithm.Winograd4,
        "direct" => ConvAlgorithm.Direct,
        _ => throw new ArgumentException($"{source} must be winograd2, winograd4 or direct, got '{value}'."),
    };

    /// <summary>
    /// Declares that no convolution weight changes on this thread until the returned scope is disposed (a sampling loop):
    /// inference convolutions then compare each layer's filters with the copy their cached Winograd transform was made from
    /// only at the layer's first call in the scope, not at every call. Writing a weight inside the scope is not allowed (the
    /// change may go unseen until the scope ends); the first call after the scope compares again. Nested scopes join the outermost.
    /// </summary>
    public static IDisposable FrozenWeights() => Winograd.FreezeFilters();

    private static long _flopsK, _directFlopsK;

    /// <summary>Floating-point operations the convolution GEMMs have executed in this process (Winograd counted by its own GEMMs).</summary>
    public static double ExecutedFlops => Interlocked.Read(ref _flopsK) * 1e3;

    /// <summary>The same convolutions counted as direct convolution (2 Cout Cin kh kw per output pixel and pass).</summary>
    public static double DirectFlops => Interlocked.Read(ref _directFlopsK) * 1e3;

    private static void Count(double executed, double direct)
    {
        Interlocked.Add(ref _flopsK, (long)(executed / 1e3));
        Interlocked.Add(ref _directFlopsK, (long)(direct / 1e3));
    }

    // Winograd tile for s under the current algorithm, or 0 for direct convolution.
    private static int WinogradTile(in ConvShape s, ConvAlgorithm algorithm) => algorithm switch
    {
        ConvAlgorithm.Direct => 0,
        _ when !Winograd.Applies(s) => 0,
        ConvAlgorithm.Winograd4 => 4,
        // Below MinTiles2 tiles the weight transform and packing outweigh the 2.25x fewer multiply-adds (one 8x8 image).
        _ => (long)s.N * ((s.Ho + 1) / 2) * ((s.Wo + 1) / 2) >= MinTiles2 ? 2 : 0,
    };

    /// <summary>Fewest F(2x2) output tiles (over the batch) for which <see cref="ConvAlgorithm.Winograd2"/> beats direct convolution.</summary>
    internal const int MinTiles2 = 32;

    /// <summary>y[N, Cout, Ho, Wo] = conv(x, w) + bias.</summary>
    public static void Forward(in ConvShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> y) =>
        Forward(s, x, w, bias, y, reuseFilters: false);

    /// <summary>As <see cref="Forward(in ConvShape, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float})"/>;
    /// with <paramref name="reuseFilters"/> (inference) Winograd layers keep their transformed filters for later calls with the same filters.</summary>
    internal static void Forward(in ConvShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> y, bool reuseFilters)
    {
        Check(s, x.Length, w.Length, y.Length, "y");
        if (!bias.IsEmpty && bias.Length != s.Cout) throw new ArgumentException($"Conv bias must have {s.Cout} elements, got {bias.Length}.");
        fixed (float* px = x, pw = w, pb = bias, py = y)
            Forward(s, px, pw, bias.IsEmpty ? null : pb, py, Algorithm, reuseFilters: reuseFilters);
    }

    private static void Check(in ConvShape s, int xLen, int wLen, int yLen, string yName)
    {
        if (s.Ho < 1 || s.Wo < 1) throw new ArgumentException($"Conv output would be empty: input {s.H}x{s.W}, kernel {s.Kh}x{s.Kw}, stride {s.Stride}, padding {s.Pad}.");
        long nx = (long)s.N * s.Cin * s.H * s.W, nw = (long)s.Cout * s.K, ny = (long)s.N * s.Cout * s.P;
        if (xLen < nx || wLen < nw || yLen < ny)
            throw new ArgumentException($"Conv buffers too small: x {xLen}/{nx}, w {wLen}/{nw}, {yName} {yLen}/{ny}.");
    }

    // Images per worker chunk: spread over threads when the batch can keep them busy, else parallelise inside GEMM.
    private static bool BatchParallel(in ConvShape s) => s.N >= Threading.Threads && Threading.Threads > 1;

    /// <summary>Partial sums of a weight gradient over the batch (images per partial: N / this, rounded); independent of the thread count.</summary>
    internal const int WeightPartials = 8;

    /// <summary>Size target of one im2col chunk in floats (about half an L2); any value gives the same results.</summary>
    internal static int ChunkTargetFloats = 96 * 1024;

    // Output rows per im2col chunk: the chunk's column matrix stays in L2 and holds at least one 64-pixel GEMM tile when it can.
    internal static int ChunkRows(in ConvShape s)
    {
        int rows = Math.Clamp(ChunkTargetFloats / Math.Max(1, s.K * s.Wo), 1, s.Ho);
        int align = 64 / (int)System.Numerics.BigInteger.GreatestCommonDivisor(64, s.Wo);
        if (rows < align) rows = Math.Min(align, s.Ho);
        else rows -= rows % align;
        return rows;
    }

    // thin: false keeps few-channel layers on im2col too (tests compare the two direct paths).
    internal static void Forward(ConvShape s, float* x, float* w, float* bias, float* y, ConvAlgorithm algorithm, bool thin = true, bool reuseFilters = false)
    {
        int tile = WinogradTile(s, algorithm);
        if (tile > 0) { Count(Winograd.GemmFlops(s, tile), s.ForwardFlops); Winograd.Forward(s, tile, x, w, bias, y, reuseFilters: reuseFilters); return; }
        Count(s.ForwardFlops, s.ForwardFlops);
        if (thin && ThinConvolution.Applies(s)) { ThinConvolution.Forward(s, x, w, bias, y); return; }
        int K = s.K, P = s.P, Cout = s.Cout, Wo = s.Wo;
        int rows = ChunkRows(s);
        nint px = (nint)x, pw = (nint)w, pb = (nint)bias, py = (nint)y;
        bool batch = BatchParallel(s);
        Threading.ForDynamic(s.N, batch ? 1 : int.MaxValue, (n0, n1) =>
        {
            float[]? colBuf = s.IsPointwise ? null : TensorPool.Rent(K * rows * Wo, clear: false);
            try
            {
                fixed (float* col = colBuf)
                {
                    for (int n = n0; n < n1; n++)
                    {
                        float* xn = (float*)px + (nint)n * s.Cin * s.H * s.W;
                        float* yn = (float*)py + (nint)n * Cout * P;
                        float beta = 0f;
                        if (pb != 0)
                        {
                            // Bias is fused: C starts as the bias and the GEMM accumulates onto it.
                            for (int co = 0; co < Cout; co++) new Span<float>(yn + (nint)co * P, P).Fill(((float*)pb)[co]);
                            beta = 1f;
                        }
                        if (s.IsPointwise) { MmForward(batch, Cout, P, K, (float*)pw, xn, P, beta, yn, P); continue; }
                        if (P <= PackedMaxPixels) { PackedForward(s, xn, (float*)pw, yn, beta != 0f, batch, Gemm.KernelFor(P)); continue; }
                        for (int oh0 = 0; oh0 < s.Ho; oh0 += rows)
                        {
                            int oh1 = Math.Min(s.Ho, oh0 + rows), L = (oh1 - oh0) * Wo;
                            if (batch) Im2Col(s, xn, col, oh0, oh1);
                            else Im2ColParallel(s, xn, col, oh0, oh1);
                            MmForward(batch, Cout, L, K, (float*)pw, col, L, beta, yn + oh0 * Wo, P);
                        }
                    }
                }
            }
            finally { if (colBuf != null) TensorPool.Return(colBuf); }
        });
    }

    /// <summary>
    /// Gradients of the convolution: gx = conv^T(gy, w) (overwritten), gw (overwritten), gb = sum of gy (overwritten).
    /// Pass an empty span to skip a gradient.
    /// </summary>
    public static void Backward(in ConvShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> gy,
        Span<float> gx, Span<float> gw, Span<float> gb)
    {
        Check(s, x.Length, w.Length, gy.Length, "gy");
        if (!gx.IsEmpty && gx.Length < (long)s.N * s.Cin * s.H * s.W) throw new ArgumentException($"Conv grad_input too small: {gx.Length}.");
        if (!gw.IsEmpty && gw.Length < (long)s.Cout * s.K) throw new ArgumentException($"Conv grad_weight too small: {gw.Length}.");
        if (!gb.IsEmpty && gb.Length < s.Cout) throw new ArgumentException($"Conv grad_bias too small: {gb.Length}.");
        fixed (float* px = x, pw = w, pgy = gy, pgx = gx, pgw = gw, pgb = gb)
            Backward(s, px, pw, pgy, gx.IsEmpty ? null : pgx, gw.IsEmpty ? null : pgw, gb.IsEmpty ? null : pgb, Algorithm);
    }

    internal static void Backward(ConvShape s, float* x, float* w, float* gy, float* gx, float* gw, float* gb, ConvAlgorithm algorithm, bool thin = true)
    {
        int K = s.K, P = s.P, Cout = s.Cout, inSize = s.Cin * s.H * s.W;
        if (gb != null)
        {
            new Span<float>(gb, Cout).Clear();
            for (int n = 0; n < s.N; n++) SumRows(new ReadOnlySpan<float>(gy + (nint)n * Cout * P, Cout * P), Cout, P, new Span<float>(gb, Cout), accumulate: true, columns: false);
        }
        if (gx == null && gw == null) return;
        if (s.N == 0) { if (gw != null) new Span<float>(gw, Cout * K).Clear(); return; }
        int tile = WinogradTile(s, algorithm);
        if (tile > 0)
        {
            if (gx != null) Count(Winograd.GemmFlops(new ConvShape(s.N, s.Cout, s.Ho, s.Wo, s.Cin, 3, 3, 1, 2 - s.Pad), tile), s.ForwardFlops);
            if (gw != null) Count(Winograd.GemmFlops(s, tile), s.ForwardFlops);
            Winograd.Backward(s, tile, x, w, gy, gx, gw);
            return;
        }
        double passes = (gx != null ? 1 : 0) + (gw != null ? 1 : 0);
        Count(passes * s.ForwardFlops, passes * s.ForwardFlops);
        if (thin && ThinConvolution.Applies(s))
        {
            if (gx != null) ThinConvolution.BackwardData(s, w, gy, gx);
            if (gw != null) ThinConvolution.BackwardWeight(s, x, gy, gw);
            return;
        }
        // the images are summed in a fixed number of partials (not one per thread), so dW's float32 rounding does not depend on the thread count
        int chunks = Math.Min(s.N, WeightPartials);
        bool batch = chunks >= Threading.Threads && Threading.Threads > 1;
        // Each chunk accumulates dW^T [K x Cout] = sum_n col_n [K x P] * dY_n^T [P x Cout] (or dW = dY * col^T when K < Cout):
        // the larger operand is read in place as the GEMM's A and only the smaller one gets a transposed pack.
        var partial = new float[chunks][];
        nint px = (nint)x, pw = (nint)w, pgy = (nint)gy, pgx = (nint)gx;
        bool wantW = gw != null;
        // The GEMM packs its B operand transposed; pack whichever of col (K rows) and dY (Cout rows) is smaller.
        bool wNatural = K < Cout;
        int rows = ChunkRows(s), Wo = s.Wo;
        // W^T [K x Cout] once, so the data-gradient GEMM reads its A operand in place.
        float[]? wtBuf = gx != null ? TensorPool.Rent(K * Cout, clear: false) : null;
        nint pwt = 0;
        var wtHandle = wtBuf != null ? System.Runtime.InteropServices.GCHandle.Alloc(wtBuf, System.Runtime.InteropServices.GCHandleType.Pinned) : default;
        if (wtBuf != null)
        {
            pwt = wtHandle.AddrOfPinnedObject();
            Transpose(w, Cout, K, (float*)pwt);
        }
        try
        {
            Threading.For(chunks, 1, (c0, c1) =>
            {
                for (int c = c0; c < c1; c++)
                {
                    int n0 = (int)((long)s.N * c / chunks), n1 = (int)((long)s.N * (c + 1) / chunks);
                    float[]? colBuf = s.IsPointwise ? null : TensorPool.Rent(K * rows * Wo, clear: false);
                    float[]? gwT = wantW ? TensorPool.Rent(K * Cout, clear: false) : null;
                    partial[c] = gwT!;
                    fixed (float* col = colBuf, gwt = gwT)
                    {
                        for (int n = n0; n < n1; n++)
                        {
                            float* xn = (float*)px + (nint)n * inSize;
                            float* gyn = (float*)pgy + (nint)n * Cout * P;
                            float* gxn = pgx != 0 ? (float*)pgx + (nint)n * inSize : null;
                            if (s.IsPointwise)
                            {
                                if (gxn != null) Mm(batch, false, false, K, P, Cout, (float*)pwt, Cout, gyn, P, 0f, gxn, P);
                                if (wantW)
                            {
                                if (wNatural) Mm(batch, false, true, Cout, K, P, gyn, P, xn, P, n == n0 ? 0f : 1f, gwt, K);
                                else Mm(batch, false, true, K, Cout, P, xn, P, gyn, P, n == n0 ? 0f : 1f, gwt, Cout);
                            }
                                continue;
                            }
                            if (gxn != null) new Span<float>(gxn, inSize).Clear();
                            for (int oh0 = 0; oh0 < s.Ho; oh0 += rows)
                            {
                                int oh1 = Math.Min(s.Ho, oh0 + rows), L = (oh1 - oh0) * Wo;
                                float* gyc = gyn + oh0 * Wo;
                                if (wantW)
                                {
                                    Im2Col(s, xn, col, oh0, oh1);
                                    float bw = n == n0 && oh0 == 0 ? 0f : 1f;
                                if (wNatural) Mm(batch, false, true, Cout, K, L, gyc, P, col, L, bw, gwt, K);
                                else Mm(batch, false, true, K, Cout, L, col, L, gyc, P, bw, gwt, Cout);
                                }
                                if (gxn != null)
                                {
                                    Mm(batch, false, false, K, L, Cout, (float*)pwt, Cout, gyc, P, 0f, col, L);
                                    Col2Im(s, col, gxn, oh0, oh1);
                                }
                            }
                        }
                    }
                    if (colBuf != null) TensorPool.Return(colBuf);
                }
            });
        }
        finally
        {
            if (wtBuf != null) { wtHandle.Free(); TensorPool.Return(wtBuf); }
        }
        if (wantW)
        {
            var sum = partial[0].AsSpan(0, K * Cout);
            for (int c = 1; c < chunks; c++)
            {
                Elementwise.AddInPlace(sum, partial[c].AsSpan(0, K * Cout));
                TensorPool.Return(partial[c]);
            }
            if (wNatural) sum.CopyTo(new Span<float>(gw, K * Cout));
            else fixed (float* st = sum) Transpose(st, K, Cout, gw);
            TensorPool.Return(partial[0]);
        }
    }

    // dst [cols x rows] = src [rows x cols]^T, in cache-sized blocks.
    private static void Transpose(float* src, int rows, int cols, float* dst)
    {
        const int B = 32;
        for (int i0 = 0; i0 < rows; i0 += B)
            for (int j0 = 0; j0 < cols; j0 += B)
            {
                int i1 = Math.Min(rows, i0 + B), j1 = Math.Min(cols, j0 + B);
                for (int i = i0; i < i1; i++)
                    for (int j = j0; j < j1; j++) dst[(nint)j * rows + i] = src[(nint)i * cols + j];
            }
    }

    // C [m x n] = W [m x k] B [k x n] + beta C. Inside a batch-parallel worker it runs serially; otherwise the output rows
    // are split over the threads once, each running every k block (one fork per product instead of one per k block). Each
    // element's sum runs in the same order either way, so the result does not depend on the thread count.
    // Column chunks of a split GEMM are whole multiples of the widest micro-kernel tile, so every C tile is the same as unsplit.
    private const int ColumnSplit = 64;

    private static void MmForward(bool serial, int m, int n, int k, float* w, float* b, int ldb, float beta, float* c, int ldc)
    {
        int units = (m + 5) / 6, chunks = Math.Min(Threading.Threads, units);
        if (serial || chunks <= 1 || (double)m * n * k < 1 << 17) { Mm(true, false, false, m, n, k, w, k, b, ldb, beta, c, ldc); return; }
        nint pw = (nint)w, pb = (nint)b, pc = (nint)c;
        int panels = n / ColumnSplit;
        if (panels >= 2 * Threading.Threads)
        {
            // Wide and short (a 1x1 layer of one image): each thread takes whole 64-column panels with every filter row, so each
            // packs only its own columns (split by rows, every thread packed all of them); the same blocked sums per element.
            int threads = Threading.Threads;
            Threading.For(threads, 1, (t0, t1) =>
            {
                for (int t = t0; t < t1; t++)
                {
                    int c0 = ColumnSplit * (int)((long)panels * t / threads), c1 = t == threads - 1 ? n : ColumnSplit * (int)((long)panels * (t + 1) / threads);
                    Mm(true, false, false, m, c1 - c0, k, (float*)pw, k, (float*)pb + c0, ldb, beta, (float*)pc + c0, ldc);
                }
            });
            return;
        }
        Threading.For(chunks, 1, (t0, t1) =>
        {
            for (int t = t0; t < t1; t++)
            {
                int r0 = 6 * (int)((long)units * t / chunks), r1 = Math.Min(m, 6 * (int)((long)units * (t + 1) / chunks));
                if (r1 > r0) Mm(true, false, false, r1 - r0, n, k, (float*)pw + (nint)r0 * k, k, (float*)pb, ldb, beta, (float*)pc + (nint)r0 * ldc, ldc);
            }
        });
    }

    /// <summary>Most output pixels per image for which <see cref="PackedForward"/> replaces the im2col chunks (small layers only).</summary>
    internal const int PackedMaxPixels = 256;

    // One small image (kind: the micro-kernel family): im2col written straight into the micro-kernel's column panels, then each thread multiplies its own
    // block of filter rows (read in place) by the shared panels, each C tile taking all its k blocks while in L1; the same
    // blocked sums as Mm, without re-packing the filters and the columns for every 64-term block.
    internal static void PackedForward(in ConvShape s, float* x, float* w, float* y, bool accumulate, bool serial, GemmKernel kind)
    {
        int K = s.K, P = s.P, Cout = s.Cout;
        int nr = Gemm.PanelWidth(kind, P), panels = (P + nr - 1) / nr;
        var buf = TensorPool.Rent(K * P + panels * nr * K + 16, clear: false);
        try
        {
            fixed (float* pb0 = buf)
            {
                float* col = pb0, packed = (float*)(((nint)(pb0 + K * P) + 63) & ~(nint)63);
                ConvShape sh = s;
                nint px = (nint)x, pc = (nint)col, pp = (nint)packed, pw = (nint)w, py = (nint)y;
                int kk = sh.Kh * sh.Kw;
                Action<int, int> unfold = (c0, c1) =>
                {
                    Im2Col(sh, (float*)px, (float*)pc, 0, sh.Ho, c0, c1);
                    Gemm.PackPanelRows(kind, (float*)pc, P, K, P, c0 * kk, c1 * kk, (float*)pp);
                };
                if (serial) unfold(0, s.Cin);
                else Threading.For(s.Cin, Math.Max(1, 4096 / Math.Max(1, kk * P)), unfold);
                int mr = Gemm.TileRows(kind, P), units = (Cout + mr - 1) / mr, chunks = serial ? 1 : Math.Min(Threading.Threads, units);
                Action<int, int> multiply = (t0, t1) =>
                {
                    for (int t = t0; t < t1; t++)
                    {
                        int r0 = mr * (int)((long)units * t / chunks), r1 = Math.Min(Cout, mr * (int)((long)units * (t + 1) / chunks));
                        if (r1 > r0)
                            Gemm.BlockedPacked(kind, r1 - r0, P, K, SumBlock, (float*)pw + (nint)r0 * K, K, (float*)pp, accumulate, (float*)py + (nint)r0 * P, P);
                    }
                };
                if (chunks <= 1) multiply(0, 1);
                else Threading.For(chunks, 1, multiply);
            }
        }
        finally { TensorPool.Return(buf); }
    }

    /// <summary>Long sums (over Cin*kh*kw, Cout or pixels) run in blocks of this many terms, each summed in registers and then added to C.</summary>
    internal const int SumBlock = 64;

    // C = op(A) op(B) + beta C with blocked summation over k (keeps the float32 error of long sums near PyTorch's).
    private static void Mm(bool serial, bool tA, bool tB, int m, int n, int k, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        for (int p = 0; p < Math.Max(k, 1); p += SumBlock)
        {
            int kb = Math.Min(SumBlock, k - p);
            float* ap = tA ? a + (nint)p * lda : a + p, bp = tB ? b + p : b + (nint)p * ldb;
            float bt = p == 0 ? beta : 1f;
            if (serial) Gemm.SgemmSerial(tA, tB, m, n, kb, 1f, ap, lda, bp, ldb, bt, c, ldc);
            else Gemm.Sgemm(tA, tB, m, n, kb, 1f, ap, lda, bp, ldb, bt, c, ldc);
        }
    }

    /// <summary>Unfolds output rows [oh0, oh1) of one image [Cin, H, W] into col [Cin*kh*kw, (oh1-oh0)*Wo] (zeros where the window hits padding).</summary>
    internal static void Im2Col(in ConvShape s, float* x, float* col, int oh0, int oh1) => Im2Col(s, x, col, oh0, oh1, 0, s.Cin);

    // Im2Col of one image with its input channels split over the threads (a single image's GEMM is split too, so the serial
    // unfolding would otherwise be a large share of a small layer).
    private static void Im2ColParallel(ConvShape s, float* x, float* col, int oh0, int oh1)
    {
        nint px = (nint)x, pc = (nint)col;
        int grain = Math.Max(1, 4096 / Math.Max(1, s.Kh * s.Kw * (oh1 - oh0) * s.Wo));
        Threading.For(s.Cin, grain, (c0, c1) => Im2Col(s, (float*)px, (float*)pc, oh0, oh1, c0, c1));
    }

    // Rows of input channels [c0, c1) only.
    private static void Im2Col(in ConvShape s, float* x, float* col, int oh0, int oh1, int c0, int c1)
    {
        int H = s.H, W = s.W, Wo = s.Wo, st = s.Stride, pad = s.Pad, P = (oh1 - oh0) * Wo;
        for (int c = c0; c < c1; c++)
        {
            float* xc = x + (nint)c * H * W;
            for (int ki = 0; ki < s.Kh; ki++)
            {
                for (int kj = 0; kj < s.Kw; kj++)
                {
                    float* row = col + (nint)((c * s.Kh + ki) * s.Kw + kj) * P;
                    // Output columns whose input column lies inside the image.
                    int owLo = Math.Max(0, (pad - kj + st - 1) / st);
                    int owHi = Math.Min(Wo, (W - 1 + pad - kj) / st + 1);
                    if (owHi < owLo) owHi = owLo;
                    for (int oh = oh0; oh < oh1; oh++)
                    {
                        float* dst = row + (oh - oh0) * Wo;
                        int ih = oh * st - pad + ki;
                        if ((uint)ih >= (uint)H) { new Span<float>(dst, Wo).Clear(); continue; }
                        float* src = xc + ih * W - pad + kj;
                        for (int ow = 0; ow < owLo; ow++) dst[ow] = 0f;
                        if (st == 1) new ReadOnlySpan<float>(src + owLo, owHi - owLo).CopyTo(new Span<float>(dst + owLo, owHi - owLo));
                        else for (int ow = owLo; ow < owHi; ow++) dst[ow] = src[ow * st];
                        for (int ow = owHi; ow < Wo; ow++) dst[ow] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>Adds col [Cin*kh*kw, (oh1-oh0)*Wo] for output rows [oh0, oh1) back into one image gradient [Cin, H, W].</summary>
    internal static void Col2Im(in ConvShape s, float* col, float* x, int oh0, int oh1)
    {
        int H = s.H, W = s.W, Wo = s.Wo, st = s.Stride, pad = s.Pad, P = (oh1 - oh0) * Wo;
        for (int c = 0; c < s.Cin; c++)
        {
            float* xc = x + (nint)c * H * W;
            for (int ki = 0; ki < s.Kh; ki++)
            {
                for (int kj = 0; kj < s.Kw; kj++)
                {
                    float* row = col + (nint)((c * s.Kh + ki) * s.Kw + kj) * P;
                    int owLo = Math.Max(0, (pad - kj + st - 1) / st);
                    int owHi = Math.Min(Wo, (W - 1 + pad - kj) / st + 1);
                    for (int oh = oh0; oh < oh1; oh++)
                    {
                        int ih = oh * st - pad + ki;
                        if ((uint)ih >= (uint)H) continue;
                        float* src = row + (oh - oh0) * Wo;
                        float* dst = xc + ih * W - pad + kj;
                        if (st == 1)
                        {
                            if (owHi > owLo) Elementwise.AddInPlace(new Span<float>(dst + owLo, owHi - owLo), new ReadOnlySpan<float>(src + owLo, owHi - owLo));
                        }
                        else for (int ow = owLo; ow < owHi; ow++) dst[ow * st] += src[ow];
                    }
                }
            }
        }
    }

    /// <summary>sum[j] (+)= sum over the rows of a [rows x cols] matrix (columns: true) or sum[i] (+)= row sums (columns: false).</summary>
    internal static void SumRows(ReadOnlySpan<float> a, int rows, int cols, Span<float> sum, bool accumulate = false, bool columns = true)
    {
        if (columns)
        {
            if (!accumulate) sum.Slice(0, cols).Clear();
            for (int r = 0; r < rows; r++) Elementwise.AddInPlace(sum.Slice(0, cols), a.Slice(r * cols, cols));
        }
        else
        {
            for (int r = 0; r < rows; r++)
            {
                float v = System.Numerics.Tensors.TensorPrimitives.Sum(a.Slice(r * cols, cols));
                sum[r] = accumulate ? sum[r] + v : v;
            }
        }
    }
}
