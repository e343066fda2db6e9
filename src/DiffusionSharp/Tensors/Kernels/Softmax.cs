using System.Runtime.CompilerServices;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>
/// Softmax and log-softmax over the middle axis of a [outer, axis, inner] layout. inner = 1 (the last axis, as in attention)
/// runs whole rows through vectorised max / exp / sum; otherwise columns of length inner are processed as vectors.
/// </summary>
public static class SoftmaxKernels
{
    /// <summary>y = softmax(x) (or log-softmax when <paramref name="log"/>) over the axis of length <paramref name="len"/>.</summary>
    public static void Forward(float[] x, float[] y, int outer, int len, int inner, bool log)
    {
        if (outer == 0 || len == 0 || inner == 0) return;
        int block = len * inner;
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, block));
        Threading.For(outer, grain, (s, e) =>
        {
            float[]? buf = inner > 1 ? new float[2 * inner] : null;
            for (int o = s; o < e; o++)
            {
                if (inner == 1) Row(x.AsSpan(o * len, len), y.AsSpan(o * len, len), log);
                else Columns(x.AsSpan(o * block, block), y.AsSpan(o * block, block), len, inner, log, buf!);
            }
        });
    }

    /// <summary>Widest vector <see cref="AttentionRow"/> uses: 512, 256 or 0 (scalar); settable so tests cover every width.</summary>
    internal static int AttentionWidth = Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 0;

    /// <summary>
    /// Softmax of one row in place, for inference attention: max, then e = exp(s - max) with <see cref="FastExp"/> and its
    /// sum in the same pass, then e / sum. The row is short enough (attention over at most a few thousand positions) to stay in L1.
    /// </summary>
    internal static unsafe void AttentionRow(float* s, int len)
    {
        int w = AttentionWidth, i = 0;
        float max = TensorPrimitives.Max(new ReadOnlySpan<float>(s, len));
        float sum = 0;
        if (w == 512)
        {
            var vm = Vector512.Create(max);
            var acc = Vector512<float>.Zero;
            for (; i <= len - 16; i += 16)
            {
                var e = FastExp.Exp(Vector512.Load(s + i) - vm);
                e.Store(s + i);
                acc += e;
            }
            sum += Vector512.Sum(acc);
        }
        if (w >= 256)
        {
            var vm = Vector256.Create(max);
            var acc = Vector256<float>.Zero;
            for (; i <= len - 8; i += 8)
            {
                var e = FastExp.Exp(Vector256.Load(s + i) - vm);
                e.Store(s + i);
                acc += e;
            }
            sum += Vector256.Sum(acc);
        }
        for (; i < len; i++) { float e = FastExp.Exp(s[i] - max); s[i] = e; sum += e; }
        TensorPrimitives.Multiply(new ReadOnlySpan<float>(s, len), 1f / sum, new Span<float>(s, len));
    }

    /// <summary>Softmax (or log-softmax) of one contiguous row: max pass, fused exp-and-sum pass, scale pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Row(ReadOnlySpan<float> x, Span<float> y, bool log)
    {
        if (x.Length == 0) return;
        // Shift by the row max so exp never overflows.
        float max = TensorPrimitives.Max(x);
        float sum = Affine.ExpShiftSum(x, max, y);
        if (log) Affine.ScaleShift(x, 1f, -(max + MathF.Log(sum)), y);
        else TensorPrimitives.Multiply(y, 1f / sum, y);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Columns(ReadOnlySpan<float> x, Span<float> y, int len, int inner, bool log, float[] buf)
    {
        var max = buf.AsSpan(0, inner);
        var sum = buf.AsSpan(inner, inner);
        x.Slice(0, inner).CopyTo(max);
        for (int a = 1; a < len; a++) TensorPrimitives.Max(max, x.Slice(a * inner, inner), max);
        sum.Clear();
        for (int a = 0; a < len; a++)
        {
            var ya = y.Slice(a * inner, inner);
            TensorPrimitives.Subtract(x.Slice(a * inner, inner), max, ya);
            TensorPrimitives.Exp(ya, ya);
            TensorPrimitives.Add(sum, ya, sum);
        }
        if (log)
        {
            TensorPrimitives.Log(sum, sum);
            TensorPrimitives.Add(sum, max, sum);
            for (int a = 0; a < len; a++) TensorPrimitives.Subtract(x.Slice(a * inner, inner), sum, y.Slice(a * inner, inner));
        }
        else
        {
            TensorPrimitives.Reciprocal(sum, sum);
            for (int a = 0; a < len; a++) TensorPrimitives.Multiply(y.Slice(a * inner, inner), sum, y.Slice(a * inner, inner));
        }
    }

    /// <summary>
    /// Backward from the output y: softmax gx = y * (g - sum(g * y)); log-softmax gx = g - exp(y) * sum(g).
    /// </summary>
    public static void Backward(float[] y, float[] g, float[] gx, int outer, int len, int inner, bool log)
    {
        if (outer == 0 || len == 0 || inner == 0) return;
        int block = len * inner;
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, block));
        Threading.For(outer, grain, (s, e) =>
        {
            float[] buf = new float[Math.Max(inner, len)];
            for (int o = s; o < e; o++)
            {
                var ys = y.AsSpan(o * block, block);
                var gs = g.AsSpan(o * block, block);
                var dst = gx.AsSpan(o * block, block);
                if (inner == 1) RowBackward(ys, gs, dst, log);
                else
                {
                    var acc = buf.AsSpan(0, inner);
                    acc.Clear();
                    for (int a = 0; a < len; a++)
                    {
                        var ga = gs.Slice(a * inner, inner);
                        if (log) TensorPrimitives.Add(acc, ga, acc);
                        else TensorPrimitives.MultiplyAdd(ga, ys.Slice(a * inner, inner), acc, acc);
                    }
                    for (int a = 0; a < len; a++)
                    {
                        var ya = ys.Slice(a * inner, inner);
                        var ga = gs.Slice(a * inner, inner);
                        var da = dst.Slice(a * inner, inner);
                        if (log)
                        {
                            TensorPrimitives.Exp(ya, da);
                            TensorPrimitives.Multiply(da, acc, da);
                            TensorPrimitives.Subtract(ga, da, da);
                        }
                        else
                        {
                            TensorPrimitives.Subtract(ga, acc, da);
                            TensorPrimitives.Multiply(da, ya, da);
                        }
                    }
                }
            }
        });
    }

    /// <summary>Backward of one contiguous row (two passes: a double-lane reduction, then one fused update).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> g, Span<float> gx, bool log)
    {
        if (log)
        {
            float sg = (float)Reduce.Sum(g);
            TensorPrimitives.Exp(y, gx);
            TensorPrimitives.MultiplyAdd(gx, -sg, g, gx);
        }
        else
        {
            float dot = (float)Reduce.Dot(g, y);
            TensorPrimitives.AddMultiply(g, -dot, y, gx);
        }
    }
}
