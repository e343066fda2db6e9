using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>Scalar-parameter elementwise loops (the parameters are runtime values, so they sit outside the operator structs).</summary>
public static class Affine
{
    /// <summary>dst[i] = a * x[i] + b (fused multiply-add in the vector paths).</summary>
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
}
