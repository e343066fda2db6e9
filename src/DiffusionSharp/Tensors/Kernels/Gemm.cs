using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>Which register-blocked micro-kernel family <see cref="Gemm"/> uses.</summary>
public enum GemmKernel
{
    /// <summary>AVX-512: 6x64 tile in 24 zmm accumulators (6x32 for products at most 32 columns wide).</summary>
    Vector512,
    /// <summary>AVX2 + FMA: 6x16 tile in 12 ymm accumulators.</summary>
    Vector256,
    /// <summary>128-bit vectors (SSE, NEON): 4x8 tile.</summary>
    Vector128,
    /// <summary>Portable scalar 4x4 tile.</summary>
    Scalar,
}

/// <summary>
/// Single-precision general matrix multiply C = alpha * op(A) * op(B) + beta * C on row-major data,
/// with panel packing, L1/L2 cache blocking and a register-blocked SIMD micro-kernel (Goto/BLIS scheme).
/// </summary>
public static unsafe class Gemm
{
    private sealed class Config
    {
        public readonly GemmKernel Kind;
        public readonly int MR, NR, KC, L2Floats;
        public readonly delegate*<int, float*, nint, nint, float*, float*, nint, float, float, void> Kernel;
        // full tiles of a blocked sum (BlockedTile) in one call, where the family has such a kernel
        public readonly delegate*<int, int, float*, nint, nint, float*, float*, nint, bool, void> Blocked;

        public Config(GemmKernel kind, int mr, int nr, int kc, int l2Floats, delegate*<int, float*, nint, nint, float*, float*, nint, float, float, void> kernel,
            delegate*<int, int, float*, nint, nint, float*, float*, nint, bool, void> blocked = null)
        {
            Kind = kind; MR = mr; NR = nr; KC = kc; L2Floats = l2Floats; Kernel = kernel; Blocked = blocked;
        }
    }

    /// <summary>
    /// Environment variable that sets the initial <see cref="Kernel"/>: avx512, avx2, vector128 or scalar (e.g. avx2 to measure
    /// the AVX2 kernel on an AVX-512 machine). Unset or empty: <see cref="Best"/>.
    /// </summary>
    public const string KernelVariable = "DIFFUSIONSHARP_GEMM";

    private static volatile Config? _cfg;

    // Read on first use, so a bad variable is reported as an error naming it rather than a type initialiser failure.
    private static Config Current => _cfg ??= ConfigFor(Initial());

    private static GemmKernel Initial()
    {
        var kind = ParseKernel(Environment.GetEnvironmentVariable(KernelVariable), KernelVariable);
        if (!IsSupported(kind)) throw new PlatformNotSupportedException($"{KernelVariable}={Environment.GetEnvironmentVariable(KernelVariable)}: the {kind} GEMM kernel is not accelerated on this machine (best: {Best()}).");
        return kind;
    }

    /// <summary>Parses avx512 | avx2 | vector128 | scalar (case-insensitive; null or empty: <see cref="Best"/>); <paramref name="source"/> names the setting in errors.</summary>
    public static GemmKernel ParseKernel(string? value, string source) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" => Best(),
        "avx512" or "vector512" => GemmKernel.Vector512,
        "avx2" or "vector256" => GemmKernel.Vector256,
        "vector128" or "sse" or "neon" => GemmKernel.Vector128,
        "scalar" => GemmKernel.Scalar,
        _ => throw new ArgumentException($"{source} must be avx512, avx2, vector128 or scalar, got '{value}'."),
    };

    /// <summary>The best micro-kernel this machine accelerates.</summary>
    public static GemmKernel Best()
    {
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported) return GemmKernel.Vector512;
        if (Vector256.IsHardwareAccelerated && Fma.IsSupported) return GemmKernel.Vector256;
        if (Vector128.IsHardwareAccelerated) return GemmKernel.Vector128;
        return GemmKernel.Scalar;
    }

    /// <summary>Whether this machine can run <paramref name="kind"/>.</summary>
    public static bool IsSupported(GemmKernel kind) => kind switch
    {
        GemmKernel.Vector512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported,
        GemmKernel.Vector256 => Vector256.IsHardwareAccelerated && Fma.IsSupported,
        GemmKernel.Vector128 => Vector128.IsHardwareAccelerated,
        _ => true,
    };

    /// <summary>The micro-kernel in use (initially from <see cref="KernelVariable"/>, else <see cref="Best"/>); settable (to a supported one) to compare or test the fallbacks.</summary>
    public static GemmKernel Kernel
    {
        get => Current.Kind;
        set
        {
            if (!IsSupported(value)) throw new PlatformNotSupportedException($"GEMM kernel {value} is not accelerated on this machine.");
            _cfg = ConfigFor(value);
        }
    }

    // KC*MR floats of A stay in L1 while the KC x NC block of B (at most L2Floats) streams from L2; tuned on Zen-class AVX-512 cores.
    private static Config ConfigFor(GemmKernel kind) => kind switch
    {
        GemmKernel.Vector512 => new Config(kind, 6, 64, 512, 128 * 1024, &Kernel512x6x64, &Blocked512x6x64),
        GemmKernel.Vector256 => new Config(kind, 6, 16, 320, 160 * 1024, &Kernel256x6x16, &Blocked256x6x16),
        GemmKernel.Vector128 => new Config(kind, 4, 8, 320, 160 * 1024, &Kernel128x4x8),
        _ => new Config(kind, 4, 4, 320, 160 * 1024, &KernelScalar4x4),
    };

    /// <summary>Floating-point operations of an m x n x k product (2mnk).</summary>
    public static double Flops(int m, int n, int k) => 2.0 * m * n * k;

    /// <summary>
    /// C[m x n] = alpha * op(A) * op(B) + beta * C, row-major. op(A) is m x k: A is m x k (row stride lda) or, when
    /// <paramref name="transA"/>, k x m. op(B) is k x n: B is k x n (row stride ldb) or, when <paramref name="transB"/>, n x k.
    /// With beta = 0 the old contents of C are ignored (may be NaN).
    /// </summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"GEMM sizes must be non-negative, got m={m} n={n} k={k}.");
        if (m == 0 || n == 0) return;
        if (k > 0)
        {
            CheckOperand("A", transA ? k : m, transA ? m : k, a.Length, lda);
            CheckOperand("B", transB ? n : k, transB ? k : n, b.Length, ldb);
        }
        CheckOperand("C", m, n, c.Length, ldc);
        fixed (float* pa = a, pb = b, pc = c)
            Sgemm(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    }

    private static void CheckOperand(string name, int rows, int cols, int length, int ld)
    {
        if (ld < Math.Max(1, cols)) throw new ArgumentException($"GEMM: leading dimension of {name} is {ld} but its rows hold {cols} elements.");
        long need = (long)(rows - 1) * ld + cols;
        if (length < need) throw new ArgumentException($"GEMM: {name} ({rows} x {cols}, ld {ld}) needs {need} elements, got {length}.");
    }

    /// <summary>Pointer form of <see cref="Sgemm(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int)"/>; no bounds checks.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Run(ForShape(n), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel: true);

    private static readonly Config? Narrow = IsSupported(GemmKernel.Vector256) ? ConfigFor(GemmKernel.Vector256) : null;

    // The AVX-512 family's 32-wide tile (same arithmetic per element as the 64-wide one).
    private static readonly Config? Half512 = IsSupported(GemmKernel.Vector512) ? new Config(GemmKernel.Vector512, 6, 32, 512, 128 * 1024, &Kernel512x6x32, &Blocked512x6x32) : null;

    // A 64-wide tile would be mostly padding for narrow C: up to 24 columns the 16-wide AVX2 tile wastes less, up to 32 the
    // 32-wide AVX-512 tile (attention's P v per head) wastes nothing.
    private static Config ForShape(int n)
    {
        var cfg = Current;
        if (cfg.Kind != GemmKernel.Vector512) return cfg;
        if (n <= 24 && Narrow != null) return Narrow;
        return n <= 32 && Half512 != null ? Half512 : cfg;
    }

    /// <summary>GEMM with an explicit micro-kernel family (tests and benchmarks of the fallbacks).</summary>
    public static void Sgemm(GemmKernel kernel, bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        if (!IsSupported(kernel)) throw new PlatformNotSupportedException($"GEMM kernel {kernel} is not accelerated on this machine.");
        if (m < 0 || n < 0 || k < 0) throw new ArgumentException($"GEMM sizes must be non-negative, got m={m} n={n} k={k}.");
        if (m == 0 || n == 0) return;
        if (k > 0)
        {
            CheckOperand("A", transA ? k : m, transA ? m : k, a.Length, lda);
            CheckOperand("B", transB ? n : k, transB ? k : n, b.Length, ldb);
        }
        CheckOperand("C", m, n, c.Length, ldc);
        fixed (float* pa = a, pb = b, pc = c)
            Run(ConfigFor(kernel), transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, parallel: true);
    }

    /// <summary>Single-threaded GEMM, for callers that already parallelise (e.g. over a batch).</summary>
    public static void SgemmSerial(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
        => Run(ForShape(n), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, parallel: false);

    [ThreadStatic] private static bool t_inWorker;

    private static void Run(Config cfg, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool parallel)
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0 || alpha == 0f) { ScaleC(m, n, beta, c, ldc); return; }
        if (n == 1 && !transA && (transB || ldb == 1)) { Gemv(m, k, alpha, a, lda, b, beta, c, ldc); return; }
        if (m == 1 && !transB) { RowTimesMatrix(n, k, alpha, a, transA ? lda : 1, b, ldb, beta, c); return; }
        // A few rows times a transposed B (a linear layer x W^T at batch 1-4): dot products with B's contiguous rows, where
        // packing B would take longer than the product itself.
        if (m <= SmallRows && transB && (!transA || (m == 1 && lda == 1)))
        {
            for (int i = 0; i < m; i++) Gemv(n, k, alpha, b, ldb, a + (nint)i * lda, beta, c + (nint)i * ldc, 1);
            return;
        }
        int threads = Threading.Threads;
        double work = (double)m * n * k;
        if (!parallel || threads <= 1 || t_inWorker || work < 1 << 18)
        {
            Serial(cfg, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        // Split into tile-aligned chunks; each worker packs its own panels. Splitting N duplicates no packing when A is
        // read in place, so it is preferred when N has enough (balanced) NR-wide panels.
        int unitsM = (m + cfg.MR - 1) / cfg.MR, unitsN = (n + cfg.NR - 1) / cfg.NR;
        bool splitN = !transA && (unitsN >= 4 * threads || (unitsN >= threads && unitsN % threads == 0));
        bool splitM = !splitN && (unitsM >= threads || unitsM >= unitsN);
        int units = splitM ? unitsM : unitsN;
        int chunks = Math.Min(threads, units);
        if (chunks <= 1)
        {
            Serial(cfg, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        nint pa = (nint)a, pb = (nint)b, pc = (nint)c;
        int unit = splitM ? cfg.MR : cfg.NR;
        Threading.For(chunks, 1, (t0, t1) =>
        {
            bool prev = t_inWorker;
            t_inWorker = true;
            try
            {
                for (int t = t0; t < t1; t++)
                {
                    int u0 = (int)((long)units * t / chunks), u1 = (int)((long)units * (t + 1) / chunks);
                    int s = u0 * unit, e = Math.Min(splitM ? m : n, u1 * unit);
                    if (e <= s) continue;
                    float* A = (float*)pa, B = (float*)pb, C = (float*)pc;
                    if (splitM)
                        Serial(cfg, transA, transB, e - s, n, k, alpha, transA ? A + s : A + (nint)s * lda, lda, B, ldb, beta, C + (nint)s * ldc, ldc);
                    else
                        Serial(cfg, transA, transB, m, e - s, k, alpha, A, lda, transB ? B + (nint)s * ldb : B + s, ldb, beta, C + s, ldc);
                }
            }
            finally { t_inWorker = prev; }
        });
    }

    /// <summary>Most rows of op(A) for which a product with a transposed B runs as dot products with B's rows.</summary>
    internal const int SmallRows = 4;

    // n = 1: one dot product per row of A against the contiguous column of B (a tile would be 1/NR useful).
    private static void Gemv(int m, int k, float alpha, float* a, int lda, float* b, float beta, float* c, int ldc)
    {
        var bs = new ReadOnlySpan<float>(b, k);
        for (int i = 0; i < m; i++)
        {
            float d = alpha * System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>(a + (nint)i * lda, k), bs);
            float* ci = c + (nint)i * ldc;
            *ci = beta == 0f ? d : d + beta * *ci;
        }
    }

    // m = 1: C row = beta * C row + sum_p (alpha * A[0, p]) * B row p, as vector axpys over the rows of B.
    private static void RowTimesMatrix(int n, int k, float alpha, float* a, int strideA, float* b, int ldb, float beta, float* c)
    {
        var cr = new Span<float>(c, n);
        if (beta == 0f) cr.Clear();
        else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(cr, beta, cr);
        for (int p = 0; p < k; p++)
        {
            float ap = alpha * a[(nint)p * strideA];
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b + (nint)p * ldb, n), ap, cr, cr);
        }
    }

    private static void ScaleC(int m, int n, float beta, float* c, int ldc)
    {
        if (beta == 1f) return;
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (nint)i * ldc, n);
            if (beta == 0f) row.Clear();
            else System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    [ThreadStatic] private static float[]? t_packA, t_packB;

    // 64-byte aligned pointer into a pinned, thread-local buffer of at least `floats` elements.
    private static float* Buffer(ref float[]? buf, int floats)
    {
        if (buf == null || buf.Length < floats + 16) buf = GC.AllocateUninitializedArray<float>(floats + 16, pinned: true);
        nint p = (nint)Unsafe.AsPointer(ref buf[0]);
        return (float*)((p + 63) & ~(nint)63);
    }

    private static void Serial(Config cfg, bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        int MR = cfg.MR, NR = cfg.NR;
        // Equal K blocks of at most KC; the NC-wide block of packed B is sized for L2.
        int kBlocks = (k + cfg.KC - 1) / cfg.KC;
        int KC = (k + kBlocks - 1) / kBlocks;
        int NC = Math.Max(NR, cfg.L2Floats / Math.Max(KC, 1) / NR * NR);
        float* packA = Buffer(ref t_packA, MR * KC);
        float* packB = Buffer(ref t_packB, Math.Min(NC, (n + NR - 1) / NR * NR) * KC);
        float* tile = stackalloc float[MR * NR + 16];
        float* tileA = (float*)(((nint)tile + 63) & ~(nint)63);
        var kernel = cfg.Kernel;
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                float bet = pc == 0 ? beta : 1f;
                PackB(transB, b, ldb, pc, jc, kc, nc, NR, packB);
                for (int ir = 0; ir < m; ir += MR)
                {
                    int mr = Math.Min(MR, m - ir);
                    // Full row panels of a row-major A are read in place (broadcast operand); others are packed.
                    float* ap; nint rs, cs;
                    if (!transA && mr == MR) { ap = a + (nint)ir * lda + pc; rs = lda; cs = 1; }
                    else { PackA(transA, a, lda, ir, pc, mr, kc, MR, packA); ap = packA; rs = 1; cs = MR; }
                    float* crow = c + (nint)ir * ldc + jc;
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* bp = packB + (nint)jr * kc;
                        if (mr == MR && nr == NR)
                            kernel(kc, ap, rs, cs, bp, crow + jr, ldc, alpha, bet);
                        else
                        {
                            kernel(kc, ap, rs, cs, bp, tileA, NR, alpha, 0f);
                            for (int i = 0; i < mr; i++)
                            {
                                float* cr = crow + (nint)i * ldc + jr;
                                float* tr = tileA + i * NR;
                                if (bet == 0f) for (int j = 0; j < nr; j++) cr[j] = tr[j];
                                else for (int j = 0; j < nr; j++) cr[j] = tr[j] + bet * cr[j];
                            }
                        }
                    }
                }
            }
        }
    }

    private static readonly Config?[] s_configs = new Config?[4];

    private static Config ConfigOf(GemmKernel kind) => s_configs[(int)kind] ??= ConfigFor(kind);

    /// <summary>The micro-kernel family <see cref="SgemmSerial"/> uses for a product <paramref name="n"/> columns wide.</summary>
    internal static GemmKernel KernelFor(int n) => ForShape(n).Kind;

    // The tile the packed-panel routines use for an n-column product: as SgemmSerial picks, the AVX-512 family's 32-wide
    // tile for 25-32 columns (the 64-wide one would compute half a tile of padding for every tile).
    private static Config PackedConfig(GemmKernel kind, int n) =>
        kind == GemmKernel.Vector512 && n <= 32 && Half512 != null ? Half512 : ConfigOf(kind);

    /// <summary>Floats that <see cref="PackPanels"/> writes for a k x n matrix and the <paramref name="kind"/> micro-kernel.</summary>
    internal static int PackedLength(GemmKernel kind, int k, int n)
    {
        int nr = PackedConfig(kind, n).NR;
        return (n + nr - 1) / nr * nr * k;
    }

    /// <summary>Columns per panel that <see cref="PackPanels"/> writes for an n-column matrix and the <paramref name="kind"/> micro-kernel.</summary>
    internal static int PanelWidth(GemmKernel kind, int n) => PackedConfig(kind, n).NR;

    /// <summary>Rows of C per micro-kernel tile of the <paramref name="kind"/> family for an n-column product.</summary>
    internal static int TileRows(GemmKernel kind, int n) => PackedConfig(kind, n).MR;

    /// <summary>Packs B [k x n] (row stride ldb) once into the <paramref name="kind"/> micro-kernel's column panels (each k x NR,
    /// k-major, zero-padded), for <see cref="BlockedPacked"/> to read any number of times.</summary>
    internal static void PackPanels(GemmKernel kind, float* b, int ldb, int k, int n, float* dst) =>
        PackB(false, b, ldb, 0, 0, k, n, PackedConfig(kind, n).NR, dst);

    /// <summary>Rows [<paramref name="r0"/>, <paramref name="r1"/>) of B [k x n] into their places in the layout
    /// <see cref="PackPanels"/> writes for the whole matrix (threads may pack disjoint row ranges of one B).</summary>
    internal static void PackPanelRows(GemmKernel kind, float* b, int ldb, int k, int n, int r0, int r1, float* dst)
    {
        int nr = PackedConfig(kind, n).NR;
        for (int j0 = 0; j0 < n; j0 += nr)
            PackB(false, b, ldb, r0, j0, r1 - r0, Math.Min(nr, n - j0), nr, dst + (nint)j0 * k + (nint)r0 * nr);
    }

    /// <summary>
    /// C [m x n] (+)= op(A) times B packed by <see cref="PackPanels"/>, summed over k in blocks of <paramref name="block"/>
    /// terms (each block in registers, then added to C): the operations <see cref="SgemmSerial"/> performs for each block,
    /// without packing B again. op(A) is A [m x k] (row stride lda) or, when <paramref name="transA"/>, A [k x m]; full
    /// row panels are read in place either way. Single-threaded.
    /// </summary>
    [SkipLocalsInit]   // the C tile scratch is written (or copied into) before it is read
    internal static void BlockedPacked(GemmKernel kind, int m, int n, int k, int block, float* a, int lda, float* packedB, bool accumulate, float* c, int ldc,
        bool transA = false)
    {
        if (m <= 0 || n <= 0 || k <= 0) return;
        var cfg = PackedConfig(kind, n);
        int MR = cfg.MR;
        float* tile = stackalloc float[MR * cfg.NR + 16];
        float* tileA = (float*)(((nint)tile + 63) & ~(nint)63);
        if (transA)
        {
            // A^T's MR-column strips are strided: each is packed once for all k (k x MR, contiguous) and used for every B panel.
            float* strip = Buffer(ref t_packA, MR * k);
            for (int ir = 0; ir < m; ir += MR)
            {
                int mr = Math.Min(MR, m - ir);
                PackA(true, a, lda, ir, 0, mr, k, MR, strip);
                for (int jr = 0; jr < n; jr += cfg.NR)
                    BlockedTile(cfg, mr, Math.Min(cfg.NR, n - jr), k, block, strip, 1, MR, packedB + (nint)jr * k, accumulate, c + (nint)ir * ldc + jr, ldc, tileA);
            }
            return;
        }
        // A last strip of fewer than MR rows is copied once, zero-padded to MR rows, so that its tiles run the full kernel too.
        int full = m / MR * MR;
        float* tail = null;
        if (full < m && cfg.Blocked != null)
        {
            tail = Buffer(ref t_packA, MR * k);
            for (int r = 0; r < MR; r++)
                if (full + r < m) new ReadOnlySpan<float>(a + (nint)(full + r) * lda, k).CopyTo(new Span<float>(tail + (nint)r * k, k));
                else new Span<float>(tail + (nint)r * k, k).Clear();
        }
        float* packA = tail != null ? null : Buffer(ref t_packA, MR * block);
        // C tile by C tile, all k blocks in turn: the tile stays in L1 while the A rows and the B panel stream past it.
        for (int jr = 0; jr < n; jr += cfg.NR)
        {
            int nr = Math.Min(cfg.NR, n - jr);
            for (int ir = 0; ir < m; ir += MR)
            {
                int mr = Math.Min(MR, m - ir);
                if (mr == MR) BlockedTile(cfg, mr, nr, k, block, a + (nint)ir * lda, lda, 1, packedB + (nint)jr * k, accumulate, c + (nint)ir * ldc + jr, ldc, tileA);
                else if (tail != null) BlockedTile(cfg, mr, nr, k, block, tail, k, 1, packedB + (nint)jr * k, accumulate, c + (nint)ir * ldc + jr, ldc, tileA);
                else
                    for (int p = 0; p < k; p += block)
                    {
                        int kb = Math.Min(block, k - p);
                        PackA(false, a, lda, ir, p, mr, kb, MR, packA);
                        BlockedTile(cfg, mr, nr, kb, kb, packA, 1, MR, packedB + (nint)jr * k + (nint)p * cfg.NR, accumulate || p > 0,
                            c + (nint)ir * ldc + jr, ldc, tileA);
                    }
            }
        }
    }

    // One mr x nr tile of C (+)= A B over k in blocks of `block`: A element (i, p) at ap[i * rs + p * cs], B one packed panel.
    private static void BlockedTile(Config cfg, int mr, int nr, int k, int block, float* ap, nint rs, nint cs, float* panel, bool accumulate,
        float* crow, int ldc, float* tileA)
    {
        int NR = cfg.NR;
        if (cfg.Blocked != null)
        {
            if (mr == cfg.MR && nr == NR) { cfg.Blocked(k, block, ap, rs, cs, panel, crow, ldc, accumulate); return; }
            // A partial tile (A holds MR rows, the panel NR zero-padded columns) runs the full kernel on a copy of its C tile:
            // the same sums in the same order, so the same bits as the full tiles' path.
            if (accumulate)
            {
                for (int i = 0; i < mr; i++) new ReadOnlySpan<float>(crow + (nint)i * ldc, nr).CopyTo(new Span<float>(tileA + i * NR, nr));
                new Span<float>(tileA + mr * NR, (cfg.MR - mr) * NR).Clear();   // rows no one reads: no stale denormals in the sums
            }
            cfg.Blocked(k, block, ap, rs, cs, panel, tileA, NR, accumulate);
            for (int i = 0; i < mr; i++) new ReadOnlySpan<float>(tileA + i * NR, nr).CopyTo(new Span<float>(crow + (nint)i * ldc, nr));
            return;
        }
        var kernel = cfg.Kernel;
        for (int p = 0; p < k; p += block)
        {
            int kb = Math.Min(block, k - p);
            float bet = accumulate || p > 0 ? 1f : 0f;
            float* bp = panel + (nint)p * NR;
            float* app = ap + p * cs;
            if (mr == cfg.MR && nr == NR)
                kernel(kb, app, rs, cs, bp, crow, ldc, 1f, bet);
            else
            {
                kernel(kb, app, rs, cs, bp, tileA, NR, 1f, 0f);
                for (int i = 0; i < mr; i++)
                {
                    float* cr = crow + (nint)i * ldc;
                    float* tr = tileA + i * NR;
                    if (bet == 0f) for (int j = 0; j < nr; j++) cr[j] = tr[j];
                    else for (int j = 0; j < nr; j++) cr[j] = tr[j] + bet * cr[j];
                }
            }
        }
    }

    // Packs one MR-row panel of op(A)[i0:i0+mr, pc:pc+kc] as kc x MR (k-major), zero-padded to MR rows.
    private static void PackA(bool transA, float* a, int lda, int i0, int pc, int mr, int kc, int MR, float* d)
    {
        if (!transA)
        {
            for (int r = 0; r < mr; r++)
            {
                float* src = a + (nint)(i0 + r) * lda + pc;
                for (int p = 0; p < kc; p++) d[p * MR + r] = src[p];
            }
        }
        else
        {
            if (mr == 6 && MR == 6 && Vector128.IsHardwareAccelerated)
            {
                // Full 6-row panel (the AVX2 tile): one 4-wide copy and two scalars per k.
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + (nint)(pc + p) * lda + i0;
                    float* dp = d + p * 6;
                    Vector128.Store(Vector128.Load(src), dp);
                    dp[4] = src[4]; dp[5] = src[5];
                }
            }
            else
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + (nint)(pc + p) * lda + i0;
                    float* dp = d + p * MR;
                    for (int r = 0; r < mr; r++) dp[r] = src[r];
                }
        }
        if (mr < MR)
            for (int p = 0; p < kc; p++)
                for (int r = mr; r < MR; r++) d[p * MR + r] = 0f;
    }

    // Packs op(B)[pc:pc+kc, jc:jc+nc] into NR-column panels, each kc x NR (k-major), zero-padded.
    private static void PackB(bool transB, float* b, int ldb, int pc, int jc, int kc, int nc, int NR, float* dst)
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int nr = Math.Min(NR, nc - jr);
            float* d = dst + (nint)jr * kc;
            if (!transB)
            {
                float* src0 = b + (nint)pc * ldb + jc + jr;
                // full panels of whole vectors are moved in registers: a memmove call per 64-float row cost as much as the copy
                if (nr == NR && NR % 16 == 0 && Vector512.IsHardwareAccelerated)
                    for (int p = 0; p < kc; p++)
                        for (int q = 0; q < NR; q += 16) Vector512.Load(src0 + (nint)p * ldb + q).Store(d + p * NR + q);
                else if (nr == NR && NR % 8 == 0 && Vector256.IsHardwareAccelerated)
                    for (int p = 0; p < kc; p++)
                        for (int q = 0; q < NR; q += 8) Vector256.Load(src0 + (nint)p * ldb + q).Store(d + p * NR + q);
                else
                    for (int p = 0; p < kc; p++)
                        new ReadOnlySpan<float>(src0 + (nint)p * ldb, nr).CopyTo(new Span<float>(d + p * NR, nr));
            }
            else
            {
                // B's rows are the panel's columns: 8 at a time through register transposes, the rest one by one
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                    for (; j + 8 <= nr; j += 8) Transpose.Rows8(b + (nint)(jc + jr + j) * ldb + pc, ldb, kc, d + j, NR);
                for (; j < nr; j++)
                {
                    float* src = b + (nint)(jc + jr + j) * ldb + pc;
                    for (int p = 0; p < kc; p++) d[p * NR + j] = src[p];
                }
            }
            if (nr < NR)
                for (int p = 0; p < kc; p++)
                    new Span<float>(d + p * NR + nr, NR - nr).Clear();
        }
    }

    private static void Kernel512x6x64(int kc, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta) =>
        Tile512x6x64(kc, kc, a, rs, cs, b, c, ldc, alpha, beta);

    private static void Blocked512x6x64(int kc, int block, float* a, nint rs, nint cs, float* b, float* c, nint ldc, bool accumulate) =>
        Tile512x6x64(kc, block, a, rs, cs, b, c, ldc, 1f, accumulate ? 1f : 0f);

    // C (6x64) = alpha A B + beta C over kc terms summed in blocks of `block`: the first block's register sums are scaled into C,
    // each later one added to it (a blocked sum's accumulate is beta 1; block = kc is the plain product).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile512x6x64(int kc, int block, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta)
    {
        float* a0 = a; float* a1 = a + 1 * rs; float* a2 = a + 2 * rs; float* a3 = a + 3 * rs; float* a4 = a + 4 * rs; float* a5 = a + 5 * rs;
        nint off = 0;
        int step = Math.Max(block, 1);
        for (int p0 = 0; p0 == 0 || p0 < kc; p0 += step)
        {
            int kb = Math.Min(step, kc - p0);
            Vector512<float> c00 = default; Vector512<float> c01 = default; Vector512<float> c02 = default; Vector512<float> c03 = default;
            Vector512<float> c10 = default; Vector512<float> c11 = default; Vector512<float> c12 = default; Vector512<float> c13 = default;
            Vector512<float> c20 = default; Vector512<float> c21 = default; Vector512<float> c22 = default; Vector512<float> c23 = default;
            Vector512<float> c30 = default; Vector512<float> c31 = default; Vector512<float> c32 = default; Vector512<float> c33 = default;
            Vector512<float> c40 = default; Vector512<float> c41 = default; Vector512<float> c42 = default; Vector512<float> c43 = default;
            Vector512<float> c50 = default; Vector512<float> c51 = default; Vector512<float> c52 = default; Vector512<float> c53 = default;
            for (int p = 0; p < kb; p++)
            {
                var b0 = Vector512.LoadAligned(b + 0);
                var b1 = Vector512.LoadAligned(b + 16);
                var b2 = Vector512.LoadAligned(b + 32);
                var b3 = Vector512.LoadAligned(b + 48);
                var x0 = Vector512.Create(a0[off]);
                c00 = Vector512.FusedMultiplyAdd(x0, b0, c00); c01 = Vector512.FusedMultiplyAdd(x0, b1, c01); c02 = Vector512.FusedMultiplyAdd(x0, b2, c02); c03 = Vector512.FusedMultiplyAdd(x0, b3, c03);
                var x1 = Vector512.Create(a1[off]);
                c10 = Vector512.FusedMultiplyAdd(x1, b0, c10); c11 = Vector512.FusedMultiplyAdd(x1, b1, c11); c12 = Vector512.FusedMultiplyAdd(x1, b2, c12); c13 = Vector512.FusedMultiplyAdd(x1, b3, c13);
                var x2 = Vector512.Create(a2[off]);
                c20 = Vector512.FusedMultiplyAdd(x2, b0, c20); c21 = Vector512.FusedMultiplyAdd(x2, b1, c21); c22 = Vector512.FusedMultiplyAdd(x2, b2, c22); c23 = Vector512.FusedMultiplyAdd(x2, b3, c23);
                var x3 = Vector512.Create(a3[off]);
                c30 = Vector512.FusedMultiplyAdd(x3, b0, c30); c31 = Vector512.FusedMultiplyAdd(x3, b1, c31); c32 = Vector512.FusedMultiplyAdd(x3, b2, c32); c33 = Vector512.FusedMultiplyAdd(x3, b3, c33);
                var x4 = Vector512.Create(a4[off]);
                c40 = Vector512.FusedMultiplyAdd(x4, b0, c40); c41 = Vector512.FusedMultiplyAdd(x4, b1, c41); c42 = Vector512.FusedMultiplyAdd(x4, b2, c42); c43 = Vector512.FusedMultiplyAdd(x4, b3, c43);
                var x5 = Vector512.Create(a5[off]);
                c50 = Vector512.FusedMultiplyAdd(x5, b0, c50); c51 = Vector512.FusedMultiplyAdd(x5, b1, c51); c52 = Vector512.FusedMultiplyAdd(x5, b2, c52); c53 = Vector512.FusedMultiplyAdd(x5, b3, c53);
                off += cs;
                b += 64;
            }
            if (p0 > 0)
            {
                (c00 + Vector512.Load(c + 0 * ldc + 0)).Store(c + 0 * ldc + 0); (c01 + Vector512.Load(c + 0 * ldc + 16)).Store(c + 0 * ldc + 16); (c02 + Vector512.Load(c + 0 * ldc + 32)).Store(c + 0 * ldc + 32); (c03 + Vector512.Load(c + 0 * ldc + 48)).Store(c + 0 * ldc + 48);
                (c10 + Vector512.Load(c + 1 * ldc + 0)).Store(c + 1 * ldc + 0); (c11 + Vector512.Load(c + 1 * ldc + 16)).Store(c + 1 * ldc + 16); (c12 + Vector512.Load(c + 1 * ldc + 32)).Store(c + 1 * ldc + 32); (c13 + Vector512.Load(c + 1 * ldc + 48)).Store(c + 1 * ldc + 48);
                (c20 + Vector512.Load(c + 2 * ldc + 0)).Store(c + 2 * ldc + 0); (c21 + Vector512.Load(c + 2 * ldc + 16)).Store(c + 2 * ldc + 16); (c22 + Vector512.Load(c + 2 * ldc + 32)).Store(c + 2 * ldc + 32); (c23 + Vector512.Load(c + 2 * ldc + 48)).Store(c + 2 * ldc + 48);
                (c30 + Vector512.Load(c + 3 * ldc + 0)).Store(c + 3 * ldc + 0); (c31 + Vector512.Load(c + 3 * ldc + 16)).Store(c + 3 * ldc + 16); (c32 + Vector512.Load(c + 3 * ldc + 32)).Store(c + 3 * ldc + 32); (c33 + Vector512.Load(c + 3 * ldc + 48)).Store(c + 3 * ldc + 48);
                (c40 + Vector512.Load(c + 4 * ldc + 0)).Store(c + 4 * ldc + 0); (c41 + Vector512.Load(c + 4 * ldc + 16)).Store(c + 4 * ldc + 16); (c42 + Vector512.Load(c + 4 * ldc + 32)).Store(c + 4 * ldc + 32); (c43 + Vector512.Load(c + 4 * ldc + 48)).Store(c + 4 * ldc + 48);
                (c50 + Vector512.Load(c + 5 * ldc + 0)).Store(c + 5 * ldc + 0); (c51 + Vector512.Load(c + 5 * ldc + 16)).Store(c + 5 * ldc + 16); (c52 + Vector512.Load(c + 5 * ldc + 32)).Store(c + 5 * ldc + 32); (c53 + Vector512.Load(c + 5 * ldc + 48)).Store(c + 5 * ldc + 48);
            }
            else if (beta == 0f)
            {
                var av = Vector512.Create(alpha);
                (c00 * av).Store(c + 0 * ldc + 0); (c01 * av).Store(c + 0 * ldc + 16); (c02 * av).Store(c + 0 * ldc + 32); (c03 * av).Store(c + 0 * ldc + 48);
                (c10 * av).Store(c + 1 * ldc + 0); (c11 * av).Store(c + 1 * ldc + 16); (c12 * av).Store(c + 1 * ldc + 32); (c13 * av).Store(c + 1 * ldc + 48);
                (c20 * av).Store(c + 2 * ldc + 0); (c21 * av).Store(c + 2 * ldc + 16); (c22 * av).Store(c + 2 * ldc + 32); (c23 * av).Store(c + 2 * ldc + 48);
                (c30 * av).Store(c + 3 * ldc + 0); (c31 * av).Store(c + 3 * ldc + 16); (c32 * av).Store(c + 3 * ldc + 32); (c33 * av).Store(c + 3 * ldc + 48);
                (c40 * av).Store(c + 4 * ldc + 0); (c41 * av).Store(c + 4 * ldc + 16); (c42 * av).Store(c + 4 * ldc + 32); (c43 * av).Store(c + 4 * ldc + 48);
                (c50 * av).Store(c + 5 * ldc + 0); (c51 * av).Store(c + 5 * ldc + 16); (c52 * av).Store(c + 5 * ldc + 32); (c53 * av).Store(c + 5 * ldc + 48);
            }
            else
            {
                var av = Vector512.Create(alpha); var bv = Vector512.Create(beta);
                Vector512.FusedMultiplyAdd(c00, av, Vector512.Load(c + 0 * ldc + 0) * bv).Store(c + 0 * ldc + 0); Vector512.FusedMultiplyAdd(c01, av, Vector512.Load(c + 0 * ldc + 16) * bv).Store(c + 0 * ldc + 16); Vector512.FusedMultiplyAdd(c02, av, Vector512.Load(c + 0 * ldc + 32) * bv).Store(c + 0 * ldc + 32); Vector512.FusedMultiplyAdd(c03, av, Vector512.Load(c + 0 * ldc + 48) * bv).Store(c + 0 * ldc + 48);
                Vector512.FusedMultiplyAdd(c10, av, Vector512.Load(c + 1 * ldc + 0) * bv).Store(c + 1 * ldc + 0); Vector512.FusedMultiplyAdd(c11, av, Vector512.Load(c + 1 * ldc + 16) * bv).Store(c + 1 * ldc + 16); Vector512.FusedMultiplyAdd(c12, av, Vector512.Load(c + 1 * ldc + 32) * bv).Store(c + 1 * ldc + 32); Vector512.FusedMultiplyAdd(c13, av, Vector512.Load(c + 1 * ldc + 48) * bv).Store(c + 1 * ldc + 48);
                Vector512.FusedMultiplyAdd(c20, av, Vector512.Load(c + 2 * ldc + 0) * bv).Store(c + 2 * ldc + 0); Vector512.FusedMultiplyAdd(c21, av, Vector512.Load(c + 2 * ldc + 16) * bv).Store(c + 2 * ldc + 16); Vector512.FusedMultiplyAdd(c22, av, Vector512.Load(c + 2 * ldc + 32) * bv).Store(c + 2 * ldc + 32); Vector512.FusedMultiplyAdd(c23, av, Vector512.Load(c + 2 * ldc + 48) * bv).Store(c + 2 * ldc + 48);
                Vector512.FusedMultiplyAdd(c30, av, Vector512.Load(c + 3 * ldc + 0) * bv).Store(c + 3 * ldc + 0); Vector512.FusedMultiplyAdd(c31, av, Vector512.Load(c + 3 * ldc + 16) * bv).Store(c + 3 * ldc + 16); Vector512.FusedMultiplyAdd(c32, av, Vector512.Load(c + 3 * ldc + 32) * bv).Store(c + 3 * ldc + 32); Vector512.FusedMultiplyAdd(c33, av, Vector512.Load(c + 3 * ldc + 48) * bv).Store(c + 3 * ldc + 48);
                Vector512.FusedMultiplyAdd(c40, av, Vector512.Load(c + 4 * ldc + 0) * bv).Store(c + 4 * ldc + 0); Vector512.FusedMultiplyAdd(c41, av, Vector512.Load(c + 4 * ldc + 16) * bv).Store(c + 4 * ldc + 16); Vector512.FusedMultiplyAdd(c42, av, Vector512.Load(c + 4 * ldc + 32) * bv).Store(c + 4 * ldc + 32); Vector512.FusedMultiplyAdd(c43, av, Vector512.Load(c + 4 * ldc + 48) * bv).Store(c + 4 * ldc + 48);
                Vector512.FusedMultiplyAdd(c50, av, Vector512.Load(c + 5 * ldc + 0) * bv).Store(c + 5 * ldc + 0); Vector512.FusedMultiplyAdd(c51, av, Vector512.Load(c + 5 * ldc + 16) * bv).Store(c + 5 * ldc + 16); Vector512.FusedMultiplyAdd(c52, av, Vector512.Load(c + 5 * ldc + 32) * bv).Store(c + 5 * ldc + 32); Vector512.FusedMultiplyAdd(c53, av, Vector512.Load(c + 5 * ldc + 48) * bv).Store(c + 5 * ldc + 48);
            }
        }
    }

    private static void Kernel256x6x16(int kc, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta) =>
        Tile6x2<V256>(kc, kc, a, rs, cs, b, c, ldc, alpha, beta);

    private static void Blocked256x6x16(int kc, int block, float* a, nint rs, nint cs, float* b, float* c, nint ldc, bool accumulate) =>
        Tile6x2<V256>(kc, block, a, rs, cs, b, c, ldc, 1f, accumulate ? 1f : 0f);

    private static void Kernel512x6x32(int kc, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta) =>
        Tile6x2<V512>(kc, kc, a, rs, cs, b, c, ldc, alpha, beta);

    private static void Blocked512x6x32(int kc, int block, float* a, nint rs, nint cs, float* b, float* c, nint ldc, bool accumulate) =>
        Tile6x2<V512>(kc, block, a, rs, cs, b, c, ldc, 1f, accumulate ? 1f : 0f);

    // As Tile512x6x64 on 6 x 2 vectors: 6x16 tiles of 256-bit vectors (the AVX2 kernel) or 6x32 of 512-bit ones (the
    // AVX-512 kernel for products at most 32 columns wide).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6x2<T>(int kc, int block, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta) where T : struct, IVec<T>
    {
        int w = T.Count;
        float* a0 = a; float* a1 = a + 1 * rs; float* a2 = a + 2 * rs; float* a3 = a + 3 * rs; float* a4 = a + 4 * rs; float* a5 = a + 5 * rs;
        nint off = 0;
        int step = Math.Max(block, 1);
        for (int p0 = 0; p0 == 0 || p0 < kc; p0 += step)
        {
            int kb = Math.Min(step, kc - p0);
            T c00 = default; T c01 = default;
            T c10 = default; T c11 = default;
            T c20 = default; T c21 = default;
            T c30 = default; T c31 = default;
            T c40 = default; T c41 = default;
            T c50 = default; T c51 = default;
            for (int p = 0; p < kb; p++)
            {
                var b0 = T.Load(b); var b1 = T.Load(b + w);
                var x0 = T.Broadcast(a0[off]);
                c00 = T.FusedMultiplyAdd(x0, b0, c00); c01 = T.FusedMultiplyAdd(x0, b1, c01);
                var x1 = T.Broadcast(a1[off]);
                c10 = T.FusedMultiplyAdd(x1, b0, c10); c11 = T.FusedMultiplyAdd(x1, b1, c11);
                var x2 = T.Broadcast(a2[off]);
                c20 = T.FusedMultiplyAdd(x2, b0, c20); c21 = T.FusedMultiplyAdd(x2, b1, c21);
                var x3 = T.Broadcast(a3[off]);
                c30 = T.FusedMultiplyAdd(x3, b0, c30); c31 = T.FusedMultiplyAdd(x3, b1, c31);
                var x4 = T.Broadcast(a4[off]);
                c40 = T.FusedMultiplyAdd(x4, b0, c40); c41 = T.FusedMultiplyAdd(x4, b1, c41);
                var x5 = T.Broadcast(a5[off]);
                c50 = T.FusedMultiplyAdd(x5, b0, c50); c51 = T.FusedMultiplyAdd(x5, b1, c51);
                off += cs;
                b += 2 * w;
            }
            if (p0 > 0)
            {
                (c00 + T.Load(c + 0 * ldc)).Store(c + 0 * ldc); (c01 + T.Load(c + 0 * ldc + w)).Store(c + 0 * ldc + w);
                (c10 + T.Load(c + 1 * ldc)).Store(c + 1 * ldc); (c11 + T.Load(c + 1 * ldc + w)).Store(c + 1 * ldc + w);
                (c20 + T.Load(c + 2 * ldc)).Store(c + 2 * ldc); (c21 + T.Load(c + 2 * ldc + w)).Store(c + 2 * ldc + w);
                (c30 + T.Load(c + 3 * ldc)).Store(c + 3 * ldc); (c31 + T.Load(c + 3 * ldc + w)).Store(c + 3 * ldc + w);
                (c40 + T.Load(c + 4 * ldc)).Store(c + 4 * ldc); (c41 + T.Load(c + 4 * ldc + w)).Store(c + 4 * ldc + w);
                (c50 + T.Load(c + 5 * ldc)).Store(c + 5 * ldc); (c51 + T.Load(c + 5 * ldc + w)).Store(c + 5 * ldc + w);
            }
            else if (beta == 0f)
            {
                var av = T.Broadcast(alpha);
                (c00 * av).Store(c + 0 * ldc); (c01 * av).Store(c + 0 * ldc + w);
                (c10 * av).Store(c + 1 * ldc); (c11 * av).Store(c + 1 * ldc + w);
                (c20 * av).Store(c + 2 * ldc); (c21 * av).Store(c + 2 * ldc + w);
                (c30 * av).Store(c + 3 * ldc); (c31 * av).Store(c + 3 * ldc + w);
                (c40 * av).Store(c + 4 * ldc); (c41 * av).Store(c + 4 * ldc + w);
                (c50 * av).Store(c + 5 * ldc); (c51 * av).Store(c + 5 * ldc + w);
            }
            else
            {
                var av = T.Broadcast(alpha); var bv = T.Broadcast(beta);
                T.FusedMultiplyAdd(c00, av, T.Load(c + 0 * ldc) * bv).Store(c + 0 * ldc); T.FusedMultiplyAdd(c01, av, T.Load(c + 0 * ldc + w) * bv).Store(c + 0 * ldc + w);
                T.FusedMultiplyAdd(c10, av, T.Load(c + 1 * ldc) * bv).Store(c + 1 * ldc); T.FusedMultiplyAdd(c11, av, T.Load(c + 1 * ldc + w) * bv).Store(c + 1 * ldc + w);
                T.FusedMultiplyAdd(c20, av, T.Load(c + 2 * ldc) * bv).Store(c + 2 * ldc); T.FusedMultiplyAdd(c21, av, T.Load(c + 2 * ldc + w) * bv).Store(c + 2 * ldc + w);
                T.FusedMultiplyAdd(c30, av, T.Load(c + 3 * ldc) * bv).Store(c + 3 * ldc); T.FusedMultiplyAdd(c31, av, T.Load(c + 3 * ldc + w) * bv).Store(c + 3 * ldc + w);
                T.FusedMultiplyAdd(c40, av, T.Load(c + 4 * ldc) * bv).Store(c + 4 * ldc); T.FusedMultiplyAdd(c41, av, T.Load(c + 4 * ldc + w) * bv).Store(c + 4 * ldc + w);
                T.FusedMultiplyAdd(c50, av, T.Load(c + 5 * ldc) * bv).Store(c + 5 * ldc); T.FusedMultiplyAdd(c51, av, T.Load(c + 5 * ldc + w) * bv).Store(c + 5 * ldc + w);
            }
        }
    }


    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel128x4x8(int kc, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta)
    {
        Vector128<float> c00 = default; Vector128<float> c01 = default;
        Vector128<float> c10 = default; Vector128<float> c11 = default;
        Vector128<float> c20 = default; Vector128<float> c21 = default;
        Vector128<float> c30 = default; Vector128<float> c31 = default;
        float* a0 = a; float* a1 = a + 1 * rs; float* a2 = a + 2 * rs; float* a3 = a + 3 * rs;
        nint off = 0;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector128.LoadAligned(b + 0);
            var b1 = Vector128.LoadAligned(b + 4);
            var x0 = Vector128.Create(a0[off]);
            c00 = Vector128.MultiplyAddEstimate(x0, b0, c00); c01 = Vector128.MultiplyAddEstimate(x0, b1, c01);
            var x1 = Vector128.Create(a1[off]);
            c10 = Vector128.MultiplyAddEstimate(x1, b0, c10); c11 = Vector128.MultiplyAddEstimate(x1, b1, c11);
            var x2 = Vector128.Create(a2[off]);
            c20 = Vector128.MultiplyAddEstimate(x2, b0, c20); c21 = Vector128.MultiplyAddEstimate(x2, b1, c21);
            var x3 = Vector128.Create(a3[off]);
            c30 = Vector128.MultiplyAddEstimate(x3, b0, c30); c31 = Vector128.MultiplyAddEstimate(x3, b1, c31);
            off += cs;
            b += 8;
        }
        var av = Vector128.Create(alpha);
        if (beta == 0f)
        {
            (c00 * av).Store(c + 0 * ldc + 0); (c01 * av).Store(c + 0 * ldc + 4);
            (c10 * av).Store(c + 1 * ldc + 0); (c11 * av).Store(c + 1 * ldc + 4);
            (c20 * av).Store(c + 2 * ldc + 0); (c21 * av).Store(c + 2 * ldc + 4);
            (c30 * av).Store(c + 3 * ldc + 0); (c31 * av).Store(c + 3 * ldc + 4);
        }
        else
        {
            var bv = Vector128.Create(beta);
            Vector128.MultiplyAddEstimate(c00, av, Vector128.Load(c + 0 * ldc + 0) * bv).Store(c + 0 * ldc + 0); Vector128.MultiplyAddEstimate(c01, av, Vector128.Load(c + 0 * ldc + 4) * bv).Store(c + 0 * ldc + 4);
            Vector128.MultiplyAddEstimate(c10, av, Vector128.Load(c + 1 * ldc + 0) * bv).Store(c + 1 * ldc + 0); Vector128.MultiplyAddEstimate(c11, av, Vector128.Load(c + 1 * ldc + 4) * bv).Store(c + 1 * ldc + 4);
            Vector128.MultiplyAddEstimate(c20, av, Vector128.Load(c + 2 * ldc + 0) * bv).Store(c + 2 * ldc + 0); Vector128.MultiplyAddEstimate(c21, av, Vector128.Load(c + 2 * ldc + 4) * bv).Store(c + 2 * ldc + 4);
            Vector128.MultiplyAddEstimate(c30, av, Vector128.Load(c + 3 * ldc + 0) * bv).Store(c + 3 * ldc + 0); Vector128.MultiplyAddEstimate(c31, av, Vector128.Load(c + 3 * ldc + 4) * bv).Store(c + 3 * ldc + 4);
        }
    }


    private static void KernelScalar4x4(int kc, float* a, nint rs, nint cs, float* b, float* c, nint ldc, float alpha, float beta)
    {
        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        float* a0 = a; float* a1 = a + rs; float* a2 = a + 2 * rs; float* a3 = a + 3 * rs;
        nint off = 0;
        for (int p = 0; p < kc; p++)
        {
            float b0 = b[0], b1 = b[1], b2 = b[2], b3 = b[3];
            float x0 = a0[off], x1 = a1[off], x2 = a2[off], x3 = a3[off];
            c00 += x0 * b0; c01 += x0 * b1; c02 += x0 * b2; c03 += x0 * b3;
            c10 += x1 * b0; c11 += x1 * b1; c12 += x1 * b2; c13 += x1 * b3;
            c20 += x2 * b0; c21 += x2 * b1; c22 += x2 * b2; c23 += x2 * b3;
            c30 += x3 * b0; c31 += x3 * b1; c32 += x3 * b2; c33 += x3 * b3;
            off += cs; b += 4;
        }
        StoreRow(c, alpha, beta, c00, c01, c02, c03);
        StoreRow(c + ldc, alpha, beta, c10, c11, c12, c13);
        StoreRow(c + 2 * ldc, alpha, beta, c20, c21, c22, c23);
        StoreRow(c + 3 * ldc, alpha, beta, c30, c31, c32, c33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* c, float alpha, float beta, float x0, float x1, float x2, float x3)
    {
        if (beta == 0f) { c[0] = alpha * x0; c[1] = alpha * x1; c[2] = alpha * x2; c[3] = alpha * x3; }
        else { c[0] = alpha * x0 + beta * c[0]; c[1] = alpha * x1 + beta * c[1]; c[2] = alpha * x2 + beta * c[2]; c[3] = alpha * x3 + beta * c[3]; }
    }
}
