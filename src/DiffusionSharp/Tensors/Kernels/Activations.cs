using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>Logistic sigmoid 1 / (1 + e^-x).</summary>
public readonly struct SigmoidOp : IUnaryOperator
{
    public static float Invoke(float x) => 1f / (1f + MathF.Exp(-x));
    public static Vector128<float> Invoke(Vector128<float> x) => Vector128<float>.One / (Vector128<float>.One + Vector128.Exp(-x));
    public static Vector256<float> Invoke(Vector256<float> x) => Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-x));
    public static Vector512<float> Invoke(Vector512<float> x) => Vector512<float>.One / (Vector512<float>.One + Vector512.Exp(-x));
}

/// <summary>SiLU (swish) x * sigmoid(x) = x / (1 + e^-x), e^-x from <see cref="FastExp"/> (within 3e-7 of exp, a few times
/// cheaper than <c>Vector512.Exp</c>); below -88, where e^-x saturates, the result is -0 as the limit is.</summary>
public readonly struct SiluOp : IUnaryOperator
{
    // below this e^-x overflows FastExp's range: SiLU is -0 there and its gradient's sigmoid 0
    internal const float Saturated = -88f;
    public static float Invoke(float x) => x < Saturated ? -0f : x / (1f + FastExp.Exp(-x));
    public static Vector128<float> Invoke(Vector128<float> x) =>
        Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128.Create(Saturated)), Vector128.Create(-0f), x / (Vector128<float>.One + FastExp.Exp(-x)));
    public static Vector256<float> Invoke(Vector256<float> x) =>
        Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(Saturated)), Vector256.Create(-0f), x / (Vector256<float>.One + FastExp.Exp(-x)));
    public static Vector512<float> Invoke(Vector512<float> x) =>
        Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(Saturated)), Vector512.Create(-0f), x / (Vector512<float>.One + FastExp.Exp(-x)));
}

/// <summary>SiLU backward from the input: g * s * (1 + x * (1 - s)) with s = sigmoid(x), its e^-x as <see cref="SiluOp"/>'s
/// (s = 0 below -88). Operands are (x, g).</summary>
public readonly struct SiluGradOp : IBinaryOperator
{
    private const float Saturated = SiluOp.Saturated;
    public static float Invoke(float x, float g)
    {
        float s = x < Saturated ? 0f : 1f / (1f + FastExp.Exp(-x));
        return g * s * (1f + x * (1f - s));
    }
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> g)
    {
        var one = Vector128<float>.One;
        var s = Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128.Create(Saturated)), Vector128<float>.Zero, one / (one + FastExp.Exp(-x)));
        return g * s * (one + x * (one - s));
    }
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
    {
        var one = Vector256<float>.One;
        var s = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(Saturated)), Vector256<float>.Zero, one / (one + FastExp.Exp(-x)));
        return g * s * (one + x * (one - s));
    }
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> g)
    {
        var one = Vector512<float>.One;
        var s = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(Saturated)), Vector512<float>.Zero, one / (one + FastExp.Exp(-x)));
        return g * s * (one + x * (one - s));
    }
}

/// <summary>Sigmoid backward from the output: g * y * (1 - y). Operands are (y, g).</summary>
public readonly struct SigmoidGradOp : IBinaryOperator
{
    public static float Invoke(float y, float g) => g * y * (1f - y);
    public static Vector128<float> Invoke(Vector128<float> y, Vector128<float> g) => g * y * (Vector128<float>.One - y);
    public static Vector256<float> Invoke(Vector256<float> y, Vector256<float> g) => g * y * (Vector256<float>.One - y);
    public static Vector512<float> Invoke(Vector512<float> y, Vector512<float> g) => g * y * (Vector512<float>.One - y);
}

/// <summary>Tanh backward from the output: g * (1 - y^2). Operands are (y, g).</summary>
public readonly struct TanhGradOp : IBinaryOperator
{
    public static float Invoke(float y, float g) => g * (1f - y * y);
    public static Vector128<float> Invoke(Vector128<float> y, Vector128<float> g) => g * (Vector128<float>.One - y * y);
    public static Vector256<float> Invoke(Vector256<float> y, Vector256<float> g) => g * (Vector256<float>.One - y * y);
    public static Vector512<float> Invoke(Vector512<float> y, Vector512<float> g) => g * (Vector512<float>.One - y * y);
}

/// <summary>
/// Exact GELU x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2; erfc from the Chebyshev fit in Numerical Recipes (2nd ed., Sec. 6.2),
/// fractional error below 1.2e-7, evaluated on |x| so the negative tail keeps its relative accuracy.
/// </summary>
public readonly struct GeluOp : IUnaryOperator
{
    internal const float InvSqrt2 = 0.70710678118654752f;
    internal const float InvSqrt2Pi = 0.39894228040143268f;
    private const float C0 = -1.26551223f, C1 = 1.00002368f, C2 = 0.37409196f, C3 = 0.09678418f, C4 = -0.18628806f,
        C5 = 0.27886807f, C6 = -1.13520398f, C7 = 1.48851587f, C8 = -0.82215223f, C9 = 0.17087277f;

    /// <summary>Phi(x), the standard normal CDF.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Phi(float x)
    {
        float z = MathF.Abs(x) * InvSqrt2;
        float t = 1f / (1f + 0.5f * z);
        float p = C9;
        p = p * t + C8; p = p * t + C7; p = p * t + C6; p = p * t + C5;
        p = p * t + C4; p = p * t + C3; p = p * t + C2; p = p * t + C1; p = p * t + C0;
        float half = 0.5f * t * MathF.Exp(p - z * z);
        return x < 0 ? half : 1f - half;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Phi(Vector128<float> x)
    {
        var z = Vector128.Abs(x) * Vector128.Create(InvSqrt2);
        var t = Vector128<float>.One / (Vector128<float>.One + Vector128.Create(0.5f) * z);
        var p = Vector128.Create(C9);
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C8)); p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C7));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C6)); p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C5));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C4)); p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C3));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C2)); p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C1));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(C0));
        var half = Vector128.Create(0.5f) * t * Vector128.Exp(p - z * z);
        return Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128<float>.Zero), half, Vector128<float>.One - half);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Phi(Vector256<float> x)
    {
        var z = Vector256.Abs(x) * Vector256.Create(InvSqrt2);
        var t = Vector256<float>.One / (Vector256<float>.One + Vector256.Create(0.5f) * z);
        var p = Vector256.Create(C9);
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C8)); p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C7));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C6)); p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C5));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C4)); p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C3));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C2)); p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C1));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(C0));
        var half = Vector256.Create(0.5f) * t * Vector256.Exp(p - z * z);
        return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256<float>.Zero), half, Vector256<float>.One - half);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Phi(Vector512<float> x)
    {
        var z = Vector512.Abs(x) * Vector512.Create(InvSqrt2);
        var t = Vector512<float>.One / (Vector512<float>.One + Vector512.Create(0.5f) * z);
        var p = Vector512.Create(C9);
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C8)); p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C7));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C6)); p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C5));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C4)); p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C3));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C2)); p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C1));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(C0));
        var half = Vector512.Create(0.5f) * t * Vector512.Exp(p - z * z);
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), half, Vector512<float>.One - half);
    }

    public static float Invoke(float x) => x * Phi(x);
    public static Vector128<float> Invoke(Vector128<float> x) => x * Phi(x);
    public static Vector256<float> Invoke(Vector256<float> x) => x * Phi(x);
    public static Vector512<float> Invoke(Vector512<float> x) => x * Phi(x);
}

/// <summary>Exact GELU backward: g * (Phi(x) + x * phi(x)), phi the standard normal density. Operands are (x, g).</summary>
public readonly struct GeluGradOp : IBinaryOperator
{
    public static float Invoke(float x, float g) => g * (GeluOp.Phi(x) + x * GeluOp.InvSqrt2Pi * MathF.Exp(-0.5f * x * x));
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> g)
        => g * (GeluOp.Phi(x) + x * Vector128.Create(GeluOp.InvSqrt2Pi) * Vector128.Exp(Vector128.Create(-0.5f) * x * x));
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
        => g * (GeluOp.Phi(x) + x * Vector256.Create(GeluOp.InvSqrt2Pi) * Vector256.Exp(Vector256.Create(-0.5f) * x * x));
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> g)
        => g * (GeluOp.Phi(x) + x * Vector512.Create(GeluOp.InvSqrt2Pi) * Vector512.Exp(Vector512.Create(-0.5f) * x * x));
}

/// <summary>Abs backward: g * sign(x) with sign(0) = 0 (as PyTorch). Operands are (x, g).</summary>
public readonly struct AbsGradOp : IBinaryOperator
{
    public static float Invoke(float x, float g) => x > 0 ? g : x < 0 ? -g : 0f;
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> g)
        => (Vector128.GreaterThan(x, Vector128<float>.Zero) & g) | (Vector128.LessThan(x, Vector128<float>.Zero) & -g);
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
        => (Vector256.GreaterThan(x, Vector256<float>.Zero) & g) | (Vector256.LessThan(x, Vector256<float>.Zero) & -g);
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> g)
        => (Vector512.GreaterThan(x, Vector512<float>.Zero) & g) | (Vector512.LessThan(x, Vector512<float>.Zero) & -g);
}

/// <summary>Squared difference (x - y)^2.</summary>
public readonly struct SquaredDifferenceOp : IBinaryOperator
{
    public static float Invoke(float x, float y) { float d = x - y; return d * d; }
    public static Vector128<float> Invoke(Vector128<float> x, Vector128<float> y) { var d = x - y; return d * d; }
    public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> y) { var d = x - y; return d * d; }
    public static Vector512<float> Invoke(Vector512<float> x, Vector512<float> y) { var d = x - y; return d * d; }
}
