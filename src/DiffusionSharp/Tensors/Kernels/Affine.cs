using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>Scalar-parameter elementwise loops (the parameters are runtime values, so they sit outside the operator structs).</summary>
public static class Affine
{
    /// <summary>dst[i] = a * x[i] + b (fused multiply-add in the vector paths).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaleShift(ReadOnlySpan<float> x, float a, float b, Span<float> dst)
    {
        if (dst.Length != x.Length) throw new ArgumentException($"Length mismatch: x {x.Length}, dst {dst.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pd = ref MemoryMarshal.GetReference(dst);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> va = Vector512.Create(a), vb = Vector512.Create(b);
            for (; i <= n - 16; i += 16)
                Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref px, (nuint)i), va, vb).StoreUnsafe(ref pd, (nuint)i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> va = Vector256.Create(a), vb = Vector256.Create(b);
            for (; i <= n - 8; i += 8)
                Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref px, (nuint)i), va, vb).StoreUnsafe(ref pd, (nuint)i);
        }
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<float> va = Vector128.Create(a), vb = Vector128.Create(b);
            for (; i <= n - 4; i += 4)
                Vector128.FusedMultiplyAdd(Vector128.LoadUnsafe(ref px, (nuint)i), va, vb).StoreUnsafe(ref pd, (nuint)i);
        }
        for (; i < n; i++) Unsafe.Add(ref pd, i) = MathF.FusedMultiplyAdd(Unsafe.Add(ref px, i), a, b);
    }

    /// <summary>dst[i] = a * x[i] + b * y[i] + c in one pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Combine(ReadOnlySpan<float> x, float a, ReadOnlySpan<float> y, float b, float c, Span<float> dst)
    {
        if (y.Length != x.Length || dst.Length != x.Length)
            throw new ArgumentException($"Length mismatch: x {x.Length}, y {y.Length}, dst {dst.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float py = ref MemoryMarshal.GetReference(y);
        ref float pd = ref MemoryMarshal.GetReference(dst);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> va = Vector512.Create(a), vb = Vector512.Create(b), vc = Vector512.Create(c);
            for (; i <= n - 16; i += 16)
            {
                var t = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref py, (nuint)i), vb, vc);
                Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref px, (nuint)i), va, t).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> va = Vector256.Create(a), vb = Vector256.Create(b), vc = Vector256.Create(c);
            for (; i <= n - 8; i += 8)
            {
                var t = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref py, (nuint)i), vb, vc);
                Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref px, (nuint)i), va, t).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<float> va = Vector128.Create(a), vb = Vector128.Create(b), vc = Vector128.Create(c);
            for (; i <= n - 4; i += 4)
            {
                var t = Vector128.FusedMultiplyAdd(Vector128.LoadUnsafe(ref py, (nuint)i), vb, vc);
                Vector128.FusedMultiplyAdd(Vector128.LoadUnsafe(ref px, (nuint)i), va, t).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        for (; i < n; i++)
            Unsafe.Add(ref pd, i) = MathF.FusedMultiplyAdd(Unsafe.Add(ref px, i), a, MathF.FusedMultiplyAdd(Unsafe.Add(ref py, i), b, c));
    }

    /// <summary>dst[i] = exp(x[i] - shift); returns the sum of dst (float lanes: all terms are positive, so the sum is well conditioned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShiftSum(ReadOnlySpan<float> x, float shift, Span<float> dst)
    {
        if (dst.Length != x.Length) throw new ArgumentException($"Length mismatch: x {x.Length}, dst {dst.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pd = ref MemoryMarshal.GetReference(dst);
        int n = x.Length, i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var vs = Vector512.Create(shift);
            Vector512<float> a0 = default, a1 = default;
            for (; i <= n - 32; i += 32)
            {
                var e0 = Vector512.Exp(Vector512.LoadUnsafe(ref px, (nuint)i) - vs);
                var e1 = Vector512.Exp(Vector512.LoadUnsafe(ref px, (nuint)(i + 16)) - vs);
                e0.StoreUnsafe(ref pd, (nuint)i);
                e1.StoreUnsafe(ref pd, (nuint)(i + 16));
                a0 += e0; a1 += e1;
            }
            for (; i <= n - 16; i += 16)
            {
                var e0 = Vector512.Exp(Vector512.LoadUnsafe(ref px, (nuint)i) - vs);
                e0.StoreUnsafe(ref pd, (nuint)i);
                a0 += e0;
            }
            sum += Vector512.Sum(a0 + a1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            var vs = Vector256.Create(shift);
            Vector256<float> a0 = default;
            for (; i <= n - 8; i += 8)
            {
                var e0 = Vector256.Exp(Vector256.LoadUnsafe(ref px, (nuint)i) - vs);
                e0.StoreUnsafe(ref pd, (nuint)i);
                a0 += e0;
            }
            sum += Vector256.Sum(a0);
        }
        if (Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            var vs = Vector128.Create(shift);
            Vector128<float> a0 = default;
            for (; i <= n - 4; i += 4)
            {
                var e0 = Vector128.Exp(Vector128.LoadUnsafe(ref px, (nuint)i) - vs);
                e0.StoreUnsafe(ref pd, (nuint)i);
                a0 += e0;
            }
            sum += Vector128.Sum(a0);
        }
        for (; i < n; i++)
        {
            float e = MathF.Exp(Unsafe.Add(ref px, i) - shift);
            Unsafe.Add(ref pd, i) = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>Vector width of the dropout kernels (512, 256 or 0 for scalar); tests lower it to cover every path.</summary>
    internal static int DropoutWidth = Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 0;

    /// <summary>
    /// Inverted dropout: y[i] = x[i] * (u[i] &gt;= p ? scale : 0) from uniform draws u, and bit i % 8 of keep[i / 8] set
    /// where u[i] &gt;= p (the backward's mask, 1 bit per element).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DropoutForward(ReadOnlySpan<float> x, ReadOnlySpan<float> u, float p, float scale, Span<float> y, Span<byte> keep)
    {
        int n = x.Length, i = 0;
        if (u.Length != n || y.Length != n || keep.Length < (n + 7) / 8)
            throw new ArgumentException($"Length mismatch: x {x.Length}, u {u.Length}, y {y.Length}, keep {keep.Length} bytes.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pu = ref MemoryMarshal.GetReference(u);
        ref float py = ref MemoryMarshal.GetReference(y);
        ref byte pk = ref MemoryMarshal.GetReference(keep);
        if (DropoutWidth >= 512 && Vector512.IsHardwareAccelerated)
        {
            Vector512<float> vp = Vector512.Create(p), vs = Vector512.Create(scale);
            for (; i <= n - 16; i += 16)
            {
                var m = Vector512.GreaterThanOrEqual(Vector512.LoadUnsafe(ref pu, (nuint)i), vp);
                (Vector512.LoadUnsafe(ref px, (nuint)i) * (m & vs)).StoreUnsafe(ref py, (nuint)i);
                Unsafe.WriteUnaligned(ref Unsafe.Add(ref pk, i >> 3), (ushort)m.ExtractMostSignificantBits());
            }
        }
        if (DropoutWidth >= 256 && Vector256.IsHardwareAccelerated)
        {
            Vector256<float> vp = Vector256.Create(p), vs = Vector256.Create(scale);
            for (; i <= n - 8; i += 8)
            {
                var m = Vector256.GreaterThanOrEqual(Vector256.LoadUnsafe(ref pu, (nuint)i), vp);
                (Vector256.LoadUnsafe(ref px, (nuint)i) * (m & vs)).StoreUnsafe(ref py, (nuint)i);
                Unsafe.Add(ref pk, i >> 3) = (byte)m.ExtractMostSignificantBits();
            }
        }
        for (; i < n; i++)
        {
            bool k = Unsafe.Add(ref pu, i) >= p;
            Unsafe.Add(ref py, i) = Unsafe.Add(ref px, i) * (k ? scale : 0f);
            ref byte b = ref Unsafe.Add(ref pk, i >> 3);
            if ((i & 7) == 0) b = 0;
            if (k) b |= (byte)(1 << (i & 7));
        }
    }

    /// <summary>The dropout gradient: d[i] = g[i] * (bit i % 8 of keep[i / 8] ? scale : 0), the same products as the forward's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DropoutBackward(ReadOnlySpan<float> g, ReadOnlySpan<byte> keep, float scale, Span<float> d)
    {
        int n = g.Length, i = 0;
        if (d.Length != n || keep.Length < (n + 7) / 8)
            throw new ArgumentException($"Length mismatch: g {g.Length}, d {d.Length}, keep {keep.Length} bytes.");
        ref float pg = ref MemoryMarshal.GetReference(g);
        ref float pd = ref MemoryMarshal.GetReference(d);
        ref byte pk = ref MemoryMarshal.GetReference(keep);
        if (DropoutWidth >= 512 && Vector512.IsHardwareAccelerated)
        {
            var bit = Vector512.Create(1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u, 256u, 512u, 1024u, 2048u, 4096u, 8192u, 16384u, 32768u);
            var vs = Vector512.Create(scale);
            for (; i <= n - 16; i += 16)
            {
                var m = ~Vector512.Equals(Vector512.Create((uint)Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref pk, i >> 3))) & bit, Vector512<uint>.Zero);
                (Vector512.LoadUnsafe(ref pg, (nuint)i) * (m.AsSingle() & vs)).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        if (DropoutWidth >= 256 && Vector256.IsHardwareAccelerated)
        {
            var bit = Vector256.Create(1u, 2u, 4u, 8u, 16u, 32u, 64u, 128u);
            var vs = Vector256.Create(scale);
            for (; i <= n - 8; i += 8)
            {
                var m = ~Vector256.Equals(Vector256.Create((uint)Unsafe.Add(ref pk, i >> 3)) & bit, Vector256<uint>.Zero);
                (Vector256.LoadUnsafe(ref pg, (nuint)i) * (m.AsSingle() & vs)).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        for (; i < n; i++)
            Unsafe.Add(ref pd, i) = Unsafe.Add(ref pg, i) * (((Unsafe.Add(ref pk, i >> 3) >> (i & 7)) & 1) != 0 ? scale : 0f);
    }

    /// <summary>dst[i] = min &lt;= x[i] &lt;= max ? g[i] : 0 (the clamp gradient).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PassInside(ReadOnlySpan<float> x, ReadOnlySpan<float> g, float min, float max, Span<float> dst)
    {
        if (g.Length != x.Length || dst.Length != x.Length)
            throw new ArgumentException($"Length mismatch: x {x.Length}, g {g.Length}, dst {dst.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float pg = ref MemoryMarshal.GetReference(g);
        ref float pd = ref MemoryMarshal.GetReference(dst);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> lo = Vector512.Create(min), hi = Vector512.Create(max);
            for (; i <= n - 16; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref px, (nuint)i);
                var keep = Vector512.GreaterThanOrEqual(v, lo) & Vector512.LessThanOrEqual(v, hi);
                (keep & Vector512.LoadUnsafe(ref pg, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> lo = Vector256.Create(min), hi = Vector256.Create(max);
            for (; i <= n - 8; i += 8)
            {
                var v = Vector256.LoadUnsafe(ref px, (nuint)i);
                var keep = Vector256.GreaterThanOrEqual(v, lo) & Vector256.LessThanOrEqual(v, hi);
                (keep & Vector256.LoadUnsafe(ref pg, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float v = Unsafe.Add(ref px, i);
            Unsafe.Add(ref pd, i) = v >= min && v <= max ? Unsafe.Add(ref pg, i) : 0f;
        }
    }
}
