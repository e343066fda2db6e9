using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>A float vector of one width, so that one generic kernel body serves 256- and 512-bit vectors (the JIT
/// specialises each width).</summary>
internal unsafe interface IVec<T> where T : struct, IVec<T>
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }
    /// <summary>Unaligned load.</summary>
    static abstract T Load(float* p);
    /// <summary>Every lane set to <paramref name="v"/>.</summary>
    static abstract T Broadcast(float v);
    /// <summary>Unaligned store.</summary>
    void Store(float* p);
    /// <summary>Lane-wise sum.</summary>
    static abstract T operator +(T a, T b);
    /// <summary>Lane-wise difference.</summary>
    static abstract T operator -(T a, T b);
    /// <summary>Lane-wise product.</summary>
    static abstract T operator *(T a, T b);
    /// <summary>Lane-wise a b + c, rounded once.</summary>
    static abstract T FusedMultiplyAdd(T a, T b, T c);
}

/// <summary>256-bit float vector (8 lanes).</summary>
internal readonly unsafe struct V256(Vector256<float> v) : IVec<V256>
{
    public readonly Vector256<float> V = v;
    public static int Count => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 Broadcast(float v) => new(Vector256.Create(v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator +(V256 a, V256 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator -(V256 a, V256 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 operator *(V256 a, V256 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V256 FusedMultiplyAdd(V256 a, V256 b, V256 c) => new(Vector256.FusedMultiplyAdd(a.V, b.V, c.V));
}

/// <summary>512-bit float vector (16 lanes).</summary>
internal readonly unsafe struct V512(Vector512<float> v) : IVec<V512>
{
    /// <summary>True where 512-bit vectors run in hardware (AVX-512).</summary>
    public static bool Accelerated => Vector512.IsHardwareAccelerated;
    public readonly Vector512<float> V = v;
    public static int Count => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 Broadcast(float v) => new(Vector512.Create(v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p) => V.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator +(V512 a, V512 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator -(V512 a, V512 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 operator *(V512 a, V512 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static V512 FusedMultiplyAdd(V512 a, V512 b, V512 c) => new(Vector512.FusedMultiplyAdd(a.V, b.V, c.V));
}

/// <summary>A double vector of one width, loaded by widening floats (kernels that accumulate in double, e.g. the Winograd
/// filter gradient); every lane runs the same IEEE operations, so each width gives the same bits.</summary>
internal unsafe interface IVecD<T> where T : unmanaged, IVecD<T>
{
    /// <summary>Doubles per vector.</summary>
    static abstract int Count { get; }
    /// <summary>Count floats from <paramref name="p"/>, widened.</summary>
    static abstract T Load(float* p);
    /// <summary>Every lane set to <paramref name="v"/>.</summary>
    static abstract T Broadcast(double v);
    /// <summary>Lane l rounded to float and stored at p[l * stride].</summary>
    void Store(float* p, nint stride);
    /// <summary>Lane-wise sum.</summary>
    static abstract T operator +(T a, T b);
    /// <summary>Lane-wise difference.</summary>
    static abstract T operator -(T a, T b);
    /// <summary>Lane-wise product.</summary>
    static abstract T operator *(T a, T b);
}

/// <summary>512-bit double vector (8 lanes).</summary>
internal readonly unsafe struct D512(Vector512<double> v) : IVecD<D512>
{
    public readonly Vector512<double> V = v;
    public static int Count => 8;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D512 Load(float* p) => new(Vector512.WidenLower(Vector256.Load(p).ToVector512Unsafe()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D512 Broadcast(double v) => new(Vector512.Create(v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(float* p, nint stride) { for (int l = 0; l < 8; l++) p[l * stride] = (float)V.GetElement(l); }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D512 operator +(D512 a, D512 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D512 operator -(D512 a, D512 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D512 operator *(D512 a, D512 b) => new(a.V * b.V);
}

/// <summary>256-bit double vector (4 lanes).</summary>
internal readonly unsafe struct D256(Vector256<double> v) : IVecD<D256>
{
    public readonly Vector256<double> V = v;
    public static int Count => 4;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D256 Load(float* p) => new(Vector256.WidenLower(Vector128.Load(p).ToVector256Unsafe()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D256 Broadcast(double v) => new(Vector256.Create(v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(float* p, nint stride) { for (int l = 0; l < 4; l++) p[l * stride] = (float)V.GetElement(l); }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D256 operator +(D256 a, D256 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D256 operator -(D256 a, D256 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D256 operator *(D256 a, D256 b) => new(a.V * b.V);
}

/// <summary>One double (scalar lane).</summary>
internal readonly unsafe struct D1(double v) : IVecD<D1>
{
    public readonly double V = v;
    public static int Count => 1;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D1 Load(float* p) => new(*p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D1 Broadcast(double v) => new(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public void Store(float* p, nint stride) => *p = (float)V;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D1 operator +(D1 a, D1 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D1 operator -(D1 a, D1 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static D1 operator *(D1 a, D1 b) => new(a.V * b.V);
}
