using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>A binary float operator with vector forms, in the style of TensorPrimitives' operator structs.</summary>
public interface IBinaryOperator
{
    static abstract float Invoke(float x, float y);
    static abstract Vector128<float> Invoke(Vector128<float> x, Vector128<float> y);
    static abstract Vector256<float> Invoke(Vector256<float> x, Vector256<float> y);
    static abstract Vector512<float> Invoke(Vector512<float> x, Vector512<float> y);
}

/// <summary>A unary float operator with vector forms.</summary>
public interface IUnaryOperator
{
    static abstract float Invoke(float x);
    static abstract Vector128<float> Invoke(Vector128<float> x);
    static abstract Vector256<float> Invoke(Vector256<float> x);
    static abstract Vector512<float> Invoke(Vector512<float> x);
}

public readonly struct AddOp : IBinaryOperator
{
    public static float Invoke(float x, float y) => x + y;
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> y) => x + y;
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> y) => x + y;
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> y) => x + y;
}

public readonly struct SubOp : IBinaryOperator
{
    public static float Invoke(float x, float y) => x - y;
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> y) => x - y;
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> y) => x - y;
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> y) => x - y;
}

public readonly struct MulOp : IBinaryOperator
{
    public static float Invoke(float x, float y) => x * y;
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> y) => x * y;
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> y) => x * y;
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> y) => x * y;
}

public readonly struct DivOp : IBinaryOperator
{
    public static float Invoke(float x, float y) => x / y;
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> y) => x / y;
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> y) => x / y;
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> y) => x / y;
}

/// <summary>Shared vector loops (512/256/128-bit and a scalar tail) driving operator structs.</summary>
public static class Elementwise
{
    /// <summary>dst[i] = TOp(x[i], y[i]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Binary<TOp>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> dst) where TOp : struct, IBinaryOperator
    {
        if (x.Length != y.Length || dst.Length != x.Length)
            throw new ArgumentException($"Length mismatch: x {x.Length}, y {y.Length}, dst {dst.Length}.");
        ref float px = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
        ref float py = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(y);
        ref float pd = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(dst);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
                TOp.Invoke(Vector512.LoadUnsafe(ref px, (nuint)i), Vector512.LoadUnsafe(ref py, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
                TOp.Invoke(Vector256.LoadUnsafe(ref px, (nuint)i), Vector256.LoadUnsafe(ref py, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
        if (Vector128.IsHardwareAccelerated)
            for (; i <= n - 4; i += 4)
                TOp.Invoke(Vector128.LoadUnsafe(ref px, (nuint)i), Vector128.LoadUnsafe(ref py, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
        for (; i < n; i++)
            Unsafe.Add(ref pd, i) = TOp.Invoke(Unsafe.Add(ref px, i), Unsafe.Add(ref py, i));
    }

    /// <summary>dst[i] = TOp(x[i]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unary<TOp>(ReadOnlySpan<float> x, Span<float> dst) where TOp : struct, IUnaryOperator
    {
        if (dst.Length != x.Length) throw new ArgumentException($"Length mismatch: x {x.Length}, dst {dst.Length}.");
        ref float px = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(x);
        ref float pd = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(dst);
        int n = x.Length, i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
                TOp.Invoke(Vector512.LoadUnsafe(ref px, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
        if (Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
                TOp.Invoke(Vector256.LoadUnsafe(ref px, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
        if (Vector128.IsHardwareAccelerated)
            for (; i <= n - 4; i += 4)
                TOp.Invoke(Vector128.LoadUnsafe(ref px, (nuint)i)).StoreUnsafe(ref pd, (nuint)i);
        for (; i < n; i++)
            Unsafe.Add(ref pd, i) = TOp.Invoke(Unsafe.Add(ref px, i));
    }

    /// <summary>acc[i] += x[i].</summary>
    public static void AddInPlace(Span<float> acc, ReadOnlySpan<float> x) => Binary<AddOp>(acc, x, acc);
}

public readonly struct NegOp : IUnaryOperator
{
    public static float Invoke(float x) => -x;
    public static Vector128<float> Invoke(Vector128<float> x) => -x;
    public static Vector256<float> Invoke(Vector256<float> x) => -x;
    public static Vector512<float> Invoke(Vector512<float> x) => -x;
}
