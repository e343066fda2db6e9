using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>2x nearest upsampling and 2x2 average pooling over planes (N*C planes of H x W), parallel over planes.</summary>
public static class PoolKernels
{
    private static readonly Vector512<int> Dup = Vector512.Create(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    private static readonly Vector512<int> Even = Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14);
    private static readonly Vector512<int> Odd = Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15);

    private static int PlaneGrain(int planeSize) => Math.Max(1, ParallelMap.Grain / Math.Max(1, planeSize));

    /// <summary>d[2j] = d[2j+1] = s[j] for j in [0, s.Length).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RepeatPairs(ReadOnlySpan<float> s, Span<float> d)
    {
        if (d.Length != 2 * s.Length) throw new ArgumentException($"Length mismatch: src {s.Length}, dst {d.Length} (expected twice).");
        ref float ps = ref MemoryMarshal.GetReference(s);
        ref float pd = ref MemoryMarshal.GetReference(d);
        int n = s.Length, j = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; j <= n - 8; j += 8)
            {
                var v = Vector256.LoadUnsafe(ref ps, (nuint)j).ToVector512Unsafe();
                Vector512.Shuffle(v, Dup).StoreUnsafe(ref pd, (nuint)(2 * j));
            }
        for (; j < n; j++)
        {
            float v = Unsafe.Add(ref ps, j);
            Unsafe.Add(ref pd, 2 * j) = v;
            Unsafe.Add(ref pd, 2 * j + 1) = v;
        }
    }

    /// <summary>d[j] = scale * (r0[2j] + r0[2j+1] + r1[2j] + r1[2j+1]) for j in [0, d.Length).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PairSum2(ReadOnlySpan<float> r0, ReadOnlySpan<float> r1, Span<float> d, float scale)
    {
        int n = d.Length;
        if (r0.Length < 2 * n || r1.Length < 2 * n) throw new ArgumentException($"Rows of {r0.Length} and {r1.Length} are shorter than twice the output {n}.");
        ref float p0 = ref MemoryMarshal.GetReference(r0);
        ref float p1 = ref MemoryMarshal.GetReference(r1);
        ref float pd = ref MemoryMarshal.GetReference(d);
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vs = Vector256.Create(scale);
            for (; j <= n - 8; j += 8)
            {
                var t = Vector512.LoadUnsafe(ref p0, (nuint)(2 * j)) + Vector512.LoadUnsafe(ref p1, (nuint)(2 * j));
                var sum = Vector512.Shuffle(t, Even) + Vector512.Shuffle(t, Odd);
                (sum.GetLower() * vs).StoreUnsafe(ref pd, (nuint)j);
            }
        }
        for (; j < n; j++)
            Unsafe.Add(ref pd, j) = scale * ((Unsafe.Add(ref p0, 2 * j) + Unsafe.Add(ref p0, 2 * j + 1)) + (Unsafe.Add(ref p1, 2 * j) + Unsafe.Add(ref p1, 2 * j + 1)));
    }

    /// <summary>dst (2h x 2w per plane) = src (h x w per plane) with every element repeated in a 2x2 block.</summary>
    public static void Upsample2x(float[] src, float[] dst, int planes, int h, int w)
    {
        int w2 = 2 * w, plane = h * w;
        Threading.For(planes, PlaneGrain(4 * plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = 0; i < h; i++)
                {
                    var d0 = dst.AsSpan(p * 4 * plane + 2 * i * w2, w2);
                    RepeatPairs(src.AsSpan(p * plane + i * w, w), d0);
                    d0.CopyTo(dst.AsSpan(p * 4 * plane + (2 * i + 1) * w2, w2));
                }
        });
    }

    /// <summary>dst (h x w per plane) = scale * sum of each 2x2 block of src (2h x 2w per plane).</summary>
    public static void Sum2x2(float[] src, float[] dst, int planes, int h, int w, float scale)
    {
        int w2 = 2 * w, plane = h * w;
        Threading.For(planes, PlaneGrain(4 * plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = 0; i < h; i++)
                    PairSum2(src.AsSpan(p * 4 * plane + 2 * i * w2, w2), src.AsSpan(p * 4 * plane + (2 * i + 1) * w2, w2),
                        dst.AsSpan(p * plane + i * w, w), scale);
        });
    }

    /// <summary>dst (h/2 x w/2 per plane) = mean of each 2x2 block of src (h x w per plane); an odd last row/column is ignored.</summary>
    public static void Pool2x2(float[] src, float[] dst, int planes, int h, int w)
    {
        int ho = h / 2, wo = w / 2, plane = h * w, oplane = ho * wo;
        Threading.For(planes, PlaneGrain(plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = 0; i < ho; i++)
                    PairSum2(src.AsSpan(p * plane + 2 * i * w, w), src.AsSpan(p * plane + (2 * i + 1) * w, w),
                        dst.AsSpan(p * oplane + i * wo, wo), 0.25f);
        });
    }

    /// <summary>Average-pool backward: each element of a 2x2 block gets a quarter of its output's gradient; dropped edges get 0.</summary>
    public static void Pool2x2Backward(float[] g, float[] gx, int planes, int h, int w)
    {
        int ho = h / 2, wo = w / 2, plane = h * w, oplane = ho * wo;
        Threading.For(planes, PlaneGrain(plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
            {
                var px = gx.AsSpan(p * plane, plane);
                if ((h & 1) != 0 || (w & 1) != 0) px.Clear();
                for (int i = 0; i < ho; i++)
                {
                    var d0 = px.Slice(2 * i * w, 2 * wo);
                    RepeatPairs(g.AsSpan(p * oplane + i * wo, wo), d0);
                    System.Numerics.Tensors.TensorPrimitives.Multiply(d0, 0.25f, d0);
                    px.Slice(2 * i * w, w).CopyTo(px.Slice((2 * i + 1) * w, w));
                }
            }
        });
    }
}
