using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>8x8 register transposes of float blocks (Winograd's channel-last staging, GEMM's packing of a transposed B).</summary>
internal static unsafe class Transpose
{
    // dst[j * ld + i] = src[i * srcStride + j] for 8 source rows i and `len` columns j (8x8 register transposes plus a tail).
    internal static void Rows8(float* src, int srcStride, int len, float* dst, int ld)
    {
        int j = 0;
        for (; j + 8 <= len; j += 8)
        {
            var r0 = Vector256.Load(src + j); var r1 = Vector256.Load(src + srcStride + j);
            var r2 = Vector256.Load(src + 2 * srcStride + j); var r3 = Vector256.Load(src + 3 * srcStride + j);
            var r4 = Vector256.Load(src + 4 * srcStride + j); var r5 = Vector256.Load(src + 5 * srcStride + j);
            var r6 = Vector256.Load(src + 6 * srcStride + j); var r7 = Vector256.Load(src + 7 * srcStride + j);
            Block8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
            float* d = dst + (nint)j * ld;
            r0.Store(d); r1.Store(d + ld); r2.Store(d + 2 * ld); r3.Store(d + 3 * ld);
            r4.Store(d + 4 * ld); r5.Store(d + 5 * ld); r6.Store(d + 6 * ld); r7.Store(d + 7 * ld);
        }
        for (; j < len; j++)
            for (int i = 0; i < 8; i++) dst[(nint)j * ld + i] = src[(nint)i * srcStride + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Block8x8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        // Pairs, then quads, then 128-bit halves (the classic unpack/shuffle/permute ladder, expressed portably).
        var t0 = Unpack(r0, r1, lo: true); var t1 = Unpack(r0, r1, lo: false);
        var t2 = Unpack(r2, r3, lo: true); var t3 = Unpack(r2, r3, lo: false);
        var t4 = Unpack(r4, r5, lo: true); var t5 = Unpack(r4, r5, lo: false);
        var t6 = Unpack(r6, r7, lo: true); var t7 = Unpack(r6, r7, lo: false);
        var q0 = Pairs(t0, t2, lo: true); var q1 = Pairs(t0, t2, lo: false);
        var q2 = Pairs(t1, t3, lo: true); var q3 = Pairs(t1, t3, lo: false);
        var q4 = Pairs(t4, t6, lo: true); var q5 = Pairs(t4, t6, lo: false);
        var q6 = Pairs(t5, t7, lo: true); var q7 = Pairs(t5, t7, lo: false);
        r0 = Halves(q0, q4, lo: true); r4 = Halves(q0, q4, lo: false);
        r1 = Halves(q1, q5, lo: true); r5 = Halves(q1, q5, lo: false);
        r2 = Halves(q2, q6, lo: true); r6 = Halves(q2, q6, lo: false);
        r3 = Halves(q3, q7, lo: true); r7 = Halves(q3, q7, lo: false);
    }

    // Interleaves 32-bit elements of the low (or high) pair in each 128-bit lane: a0 b0 a1 b1 | a4 b4 a5 b5.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Unpack(Vector256<float> a, Vector256<float> b, bool lo)
    {
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported)
            return lo ? System.Runtime.Intrinsics.X86.Avx.UnpackLow(a, b) : System.Runtime.Intrinsics.X86.Avx.UnpackHigh(a, b);
        int o = lo ? 0 : 2;
        return Vector256.Create(a[o], b[o], a[o + 1], b[o + 1], a[o + 4], b[o + 4], a[o + 5], b[o + 5]);
    }

    // 64-bit pairs: a01 b01 | a45 b45 (lo) or a23 b23 | a67 b67.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Pairs(Vector256<float> a, Vector256<float> b, bool lo)
    {
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported)
            return lo ? System.Runtime.Intrinsics.X86.Avx.Shuffle(a, b, 0x44) : System.Runtime.Intrinsics.X86.Avx.Shuffle(a, b, 0xEE);
        int o = lo ? 0 : 2;
        return Vector256.Create(a[o], a[o + 1], b[o], b[o + 1], a[o + 4], a[o + 5], b[o + 4], b[o + 5]);
    }

    // 128-bit halves: a.lo b.lo (lo) or a.hi b.hi.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves(Vector256<float> a, Vector256<float> b, bool lo)
    {
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported)
            return lo ? System.Runtime.Intrinsics.X86.Avx.Permute2x128(a, b, 0x20) : System.Runtime.Intrinsics.X86.Avx.Permute2x128(a, b, 0x31);
        return lo ? Vector256.Create(a.GetLower(), b.GetLower()) : Vector256.Create(a.GetUpper(), b.GetUpper());
    }
}
