using System.Collections.Concurrent;
using System.Numerics;

namespace DiffusionSharp.Tensors;

/// <summary>
/// Power-of-two bucketed pool of float arrays, so a steady training step reuses storage instead of churning the GC.
/// </summary>
public static class TensorPool
{
    private const int MinBucketLog = 6;   // below 64 floats the GC is cheaper than pooling
    private const int MaxBucketLog = 30;
    private const int MaxPerBucket = 64;
    private static readonly ConcurrentBag<float[]>[] Buckets = CreateBuckets();
    private static readonly int[] Counts = new int[MaxBucketLog + 1];

    private static ConcurrentBag<float[]>[] CreateBuckets()
    {
        var b = new ConcurrentBag<float[]>[MaxBucketLog + 1];
        for (int i = 0; i < b.Length; i++) b[i] = new ConcurrentBag<float[]>();
        return b;
    }

    /// <summary>When false, <see cref="Rent"/> always allocates (useful to compare).</summary>
    public static bool Enabled { get; set; } = true;

    private static int BucketOf(int length) => length <= 1 ? 0 : 32 - BitOperations.LeadingZeroCount((uint)(length - 1));

    /// <summary>Rents an array of at least <paramref name="length"/> floats; contents are undefined unless <paramref name="clear"/>.</summary>
    public static float[] Rent(int length, bool clear)
    {
        int b = BucketOf(length);
        if (!Enabled || b < MinBucketLog || b > MaxBucketLog) return new float[length];
        if (Buckets[b].TryTake(out var arr))
        {
            Interlocked.Decrement(ref Counts[b]);
            if (clear) Array.Clear(arr, 0, length);
            return arr;
        }
        var fresh = GC.AllocateUninitializedArray<float>(1 << b);
        if (clear) Array.Clear(fresh, 0, length);  // uninitialised memory may hold garbage
        return fresh;
    }

    /// <summary>Returns an array obtained from <see cref="Rent"/>.</summary>
    public static void Return(float[] array)
    {
        int len = array.Length;
        if (!Enabled || len == 0 || (len & (len - 1)) != 0) return;
        int b = BucketOf(len);
        if (b < MinBucketLog || b > MaxBucketLog) return;
        if (Interlocked.Increment(ref Counts[b]) > MaxPerBucket) { Interlocked.Decrement(ref Counts[b]); return; }
        Buckets[b].Add(array);
    }

    /// <summary>Drops every pooled array.</summary>
    public static void Clear()
    {
        for (int i = 0; i < Buckets.Length; i++)
        {
            while (Buckets[i].TryTake(out _)) Interlocked.Decrement(ref Counts[i]);
        }
    }
}
