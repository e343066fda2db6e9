using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>Sums accumulated in double lanes (widened from float), so long reductions keep float-exact results.</summary>
public static class Reduce
{
    /// <summary>Sum of x in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Sum(ReadOnlySpan<float> x)
    {
        ref float p = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        double s = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> a0 = default, a1 = default;
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref p, (nuint)i));
                a0 += lo; a1 += hi;
            }
            s += Vector512.Sum(a0 + a1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> a0 = default, a1 = default;
            for (; i <= n - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref p, (nuint)i));
                a0 += lo; a1 += hi;
            }
            s += Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) s += Unsafe.Add(ref p, i);
        return s;
    }

    /// <summary>Sum and sum of squares of x in double (single pass).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (double Sum, double SumSq) SumAndSquares(ReadOnlySpan<float> x)
    {
        ref float p = ref MemoryMarshal.GetReference(x);
        int n = x.Length, i = 0;
        double s = 0, q = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> s0 = default, s1 = default, q0 = default, q1 = default;
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref p, (nuint)i));
                s0 += lo; s1 += hi;
                q0 = Vector512.FusedMultiplyAdd(lo, lo, q0);
                q1 = Vector512.FusedMultiplyAdd(hi, hi, q1);
            }
            s += Vector512.Sum(s0 + s1); q += Vector512.Sum(q0 + q1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> s0 = default, s1 = default, q0 = default, q1 = default;
            for (; i <= n - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref p, (nuint)i));
                s0 += lo; s1 += hi;
                q0 = Vector256.FusedMultiplyAdd(lo, lo, q0);
                q1 = Vector256.FusedMultiplyAdd(hi, hi, q1);
            }
            s += Vector256.Sum(s0 + s1); q += Vector256.Sum(q0 + q1);
        }
        for (; i < n; i++) { double v = Unsafe.Add(ref p, i); s += v; q += v * v; }
        return (s, q);
    }

    /// <summary>Sum of x * y in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"Length mismatch: x {x.Length}, y {y.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float py = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        double s = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> a0 = default, a1 = default;
            for (; i <= n - 16; i += 16)
            {
                var (xl, xh) = Vector512.Widen(Vector512.LoadUnsafe(ref px, (nuint)i));
                var (yl, yh) = Vector512.Widen(Vector512.LoadUnsafe(ref py, (nuint)i));
                a0 = Vector512.FusedMultiplyAdd(xl, yl, a0);
                a1 = Vector512.FusedMultiplyAdd(xh, yh, a1);
            }
            s += Vector512.Sum(a0 + a1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> a0 = default, a1 = default;
            for (; i <= n - 8; i += 8)
            {
                var (xl, xh) = Vector256.Widen(Vector256.LoadUnsafe(ref px, (nuint)i));
                var (yl, yh) = Vector256.Widen(Vector256.LoadUnsafe(ref py, (nuint)i));
                a0 = Vector256.FusedMultiplyAdd(xl, yl, a0);
                a1 = Vector256.FusedMultiplyAdd(xh, yh, a1);
            }
            s += Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) s += (double)Unsafe.Add(ref px, i) * Unsafe.Add(ref py, i);
        return s;
    }

    /// <summary>Sum of g and sum of g * x in double, in one pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (double Sum, double Dot) SumAndDot(ReadOnlySpan<float> g, ReadOnlySpan<float> x)
    {
        if (x.Length != g.Length) throw new ArgumentException($"Length mismatch: g {g.Length}, x {x.Length}.");
        ref float pg = ref MemoryMarshal.GetReference(g);
        ref float px = ref MemoryMarshal.GetReference(x);
        int n = g.Length, i = 0;
        double s = 0, d = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> s0 = default, s1 = default, d0 = default, d1 = default;
            for (; i <= n - 16; i += 16)
            {
                var (gl, gh) = Vector512.Widen(Vector512.LoadUnsafe(ref pg, (nuint)i));
                var (xl, xh) = Vector512.Widen(Vector512.LoadUnsafe(ref px, (nuint)i));
                s0 += gl; s1 += gh;
                d0 = Vector512.FusedMultiplyAdd(gl, xl, d0);
                d1 = Vector512.FusedMultiplyAdd(gh, xh, d1);
            }
            s += Vector512.Sum(s0 + s1); d += Vector512.Sum(d0 + d1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> s0 = default, s1 = default, d0 = default, d1 = default;
            for (; i <= n - 8; i += 8)
            {
                var (gl, gh) = Vector256.Widen(Vector256.LoadUnsafe(ref pg, (nuint)i));
                var (xl, xh) = Vector256.Widen(Vector256.LoadUnsafe(ref px, (nuint)i));
                s0 += gl; s1 += gh;
                d0 = Vector256.FusedMultiplyAdd(gl, xl, d0);
                d1 = Vector256.FusedMultiplyAdd(gh, xh, d1);
            }
            s += Vector256.Sum(s0 + s1); d += Vector256.Sum(d0 + d1);
        }
        for (; i < n; i++) { double gv = Unsafe.Add(ref pg, i); s += gv; d += gv * Unsafe.Add(ref px, i); }
        return (s, d);
    }

    /// <summary>Sum of (x - y)^2 in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SquaredDistance(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (x.Length != y.Length) throw new ArgumentException($"Length mismatch: x {x.Length}, y {y.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref float py = ref MemoryMarshal.GetReference(y);
        int n = x.Length, i = 0;
        double s = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<double> a0 = default, a1 = default;
            for (; i <= n - 16; i += 16)
            {
                var (xl, xh) = Vector512.Widen(Vector512.LoadUnsafe(ref px, (nuint)i));
                var (yl, yh) = Vector512.Widen(Vector512.LoadUnsafe(ref py, (nuint)i));
                var dl = xl - yl; var dh = xh - yh;
                a0 = Vector512.FusedMultiplyAdd(dl, dl, a0);
                a1 = Vector512.FusedMultiplyAdd(dh, dh, a1);
            }
            s += Vector512.Sum(a0 + a1);
        }
        if (Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<double> a0 = default, a1 = default;
            for (; i <= n - 8; i += 8)
            {
                var (xl, xh) = Vector256.Widen(Vector256.LoadUnsafe(ref px, (nuint)i));
                var (yl, yh) = Vector256.Widen(Vector256.LoadUnsafe(ref py, (nuint)i));
                var dl = xl - yl; var dh = xh - yh;
                a0 = Vector256.FusedMultiplyAdd(dl, dl, a0);
                a1 = Vector256.FusedMultiplyAdd(dh, dh, a1);
            }
            s += Vector256.Sum(a0 + a1);
        }
        for (; i < n; i++) { double dv = (double)Unsafe.Add(ref px, i) - Unsafe.Add(ref py, i); s += dv * dv; }
        return s;
    }

    /// <summary>acc[i] += x[i] with acc in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateInto(Span<double> acc, ReadOnlySpan<float> x)
    {
        if (acc.Length != x.Length) throw new ArgumentException($"Length mismatch: acc {acc.Length}, x {x.Length}.");
        ref float px = ref MemoryMarshal.GetReference(x);
        ref double pa = ref MemoryMarshal.GetReference(acc);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.LoadUnsafe(ref px, (nuint)i));
                (Vector512.LoadUnsafe(ref pa, (nuint)i) + lo).StoreUnsafe(ref pa, (nuint)i);
                (Vector512.LoadUnsafe(ref pa, (nuint)(i + 8)) + hi).StoreUnsafe(ref pa, (nuint)(i + 8));
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref px, (nuint)i));
                (Vector256.LoadUnsafe(ref pa, (nuint)i) + lo).StoreUnsafe(ref pa, (nuint)i);
                (Vector256.LoadUnsafe(ref pa, (nuint)(i + 4)) + hi).StoreUnsafe(ref pa, (nuint)(i + 4));
            }
        for (; i < n; i++) Unsafe.Add(ref pa, i) += Unsafe.Add(ref px, i);
    }

    /// <summary>
    /// Sums <paramref name="src"/> of shape <paramref name="dims"/> over the axes flagged in <paramref name="reduced"/> into
    /// <paramref name="dst"/> (the kept axes, row-major), accumulating in double.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SumAxes(ReadOnlySpan<float> src, ReadOnlySpan<int> dims, ReadOnlySpan<bool> reduced, Span<float> dst)
    {
        // Coalesce adjacent axes of the same kind and drop size-1 axes.
        var cd = new List<int>();
        var cr = new List<bool>();
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] == 1) continue;
            if (cd.Count > 0 && cr[^1] == reduced[i]) cd[^1] *= dims[i];
            else { cd.Add(dims[i]); cr.Add(reduced[i]); }
        }
        int total = src.Length;
        if (dst.Length == 0) return;
        if (total == 0) { dst.Clear(); return; }
        if (cd.Count == 0) { dst[0] = src[0]; return; }
        int r = cd.Count;
        // Output strides over the coalesced axes (0 on reduced ones).
        var ost = new int[r];
        int acc = 1;
        for (int i = r - 1; i >= 0; i--) { ost[i] = cr[i] ? 0 : acc; if (!cr[i]) acc *= cd[i]; }
        var sums = new double[dst.Length];
        int inner = cd[r - 1];
        bool innerReduced = cr[r - 1];
        var idx = new int[r];
        int rows = total / inner;
        for (int k = 0; k < rows; k++)
        {
            int o = 0;
            for (int d = 0; d < r - 1; d++) o += idx[d] * ost[d];
            var row = src.Slice(k * inner, inner);
            if (innerReduced) sums[o] += Sum(row);
            else AccumulateInto(sums.AsSpan(o, inner), row);
            for (int d = r - 2; d >= 0; d--) { if (++idx[d] < cd[d]) break; idx[d] = 0; }
        }
        for (int i = 0; i < dst.Length; i++) dst[i] = (float)sums[i];
    }
}
