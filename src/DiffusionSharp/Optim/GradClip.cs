using System.Runtime.Intrinsics;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Optim;

/// <summary>Gradient clipping with torch.nn.utils.clip_grad_norm_ semantics.</summary>
public static class GradClip
{
    /// <summary>
    /// Scales every gradient by min(1, maxNorm / (total + 1e-6)), where total is the L2 norm of the per-tensor L2 norms
    /// (or the largest |g| for <paramref name="normType"/> = +inf). Parameters without a gradient are skipped.
    /// Returns the total norm before clipping (0 when no parameter has a gradient).
    /// </summary>
    public static float ClipGlobalNorm(IReadOnlyList<Tensor> parameters, double maxNorm, double normType = 2, bool errorIfNonfinite = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!(maxNorm >= 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "maxNorm must be >= 0.");
        if (normType != 2 && !double.IsPositiveInfinity(normType))
            throw new ArgumentOutOfRangeException(nameof(normType), normType, "Only the L2 norm (2) and the max norm (+inf) are supported.");
        bool inf = double.IsPositiveInfinity(normType);
        var grads = parameters.Select(p => p.Grad).Where(g => g != null).Select(g => g!).ToList();
        if (grads.Count == 0) return 0f;

        // Like torch: each tensor's norm is rounded to float32, then the norm of those norms is taken.
        double acc = 0;
        foreach (var g in grads)
        {
            var s = g.Span;
            if (inf)
            {
                float mx = 0;
                foreach (var x in s) { float a = MathF.Abs(x); if (a > mx || float.IsNaN(a)) mx = a; }
                acc = Math.Max(acc, mx);
                if (float.IsNaN(mx)) acc = double.NaN;
            }
            else
            {
                float n = (float)Math.Sqrt(SumOfSquares(s));
                acc += (double)n * n;
            }
        }
        float total = inf ? (float)acc : (float)Math.Sqrt(acc);
        if (errorIfNonfinite && !float.IsFinite(total))
            throw new InvalidOperationException($"The total gradient norm is {total}, so it cannot be clipped.");
        float coef = (float)maxNorm / (total + 1e-6f);
        if (coef > 1f) coef = 1f;
        if (coef != 1f)
            foreach (var g in grads) System.Numerics.Tensors.TensorPrimitives.Multiply(g.Span, coef, g.Span);
        return total;
    }

    // Sum of squares accumulated in double (as PyTorch's CPU reductions do for float32), vectorised.
    private static double SumOfSquares(ReadOnlySpan<float> x)
    {
        int n = x.Length, i = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var acc0 = Vector512<double>.Zero;
            var acc1 = Vector512<double>.Zero;
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector512.Widen(Vector512.Create(x.Slice(i, 16)));
                acc0 = Vector512.FusedMultiplyAdd(lo, lo, acc0);
                acc1 = Vector512.FusedMultiplyAdd(hi, hi, acc1);
            }
            sum = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var acc0 = Vector256<double>.Zero;
            var acc1 = Vector256<double>.Zero;
            for (; i <= n - 8; i += 8)
            {
                var (lo, hi) = Vector256.Widen(Vector256.Create(x.Slice(i, 8)));
                acc0 = Vector256.FusedMultiplyAdd(lo, lo, acc0);
                acc1 = Vector256.FusedMultiplyAdd(hi, hi, acc1);
            }
            sum = Vector256.Sum(acc0 + acc1);
        }
        for (; i < n; i++) sum += (double)x[i] * x[i];
        return sum;
    }
}
