using System.Collections.Concurrent;
using System.Numerics;

namespace DiffusionSharp.Tensors;

/// <summary>
/// Pool of float arrays in size classes of a quarter power of two (2^p, 1.25 * 2^p, 1.5 * 2^p, 1.75 * 2^p), so a steady
/// training step reuses storage instead of churning the GC and a fresh array is at most 25% longer than requested. A
/// request whose class is empty takes an idle array of up to <see cref="SpareClasses"/> larger classes first (at most about
/// 1.9x the request), so the sizes a step leaves idle at that moment serve it instead of new memory.
/// The pool holds at most <see cref="MaxPooledBytes"/>; arrays returned beyond that are left to the GC.
/// </summary>
public static class TensorPool
{
    private const int MinPooledLength = 33;  // at or below 32 floats the GC is cheaper than pooling
    private const int MaxClassLog = 30;
    private const int ClassesPerPower = 4;
    private static readonly ConcurrentBag<float[]>[] Classes = CreateClasses();
    private static long _pooledBytes;

    private static ConcurrentBag<float[]>[] CreateClasses()
    {
        var b = new ConcurrentBag<float[]>[(MaxClassLog + 1) * ClassesPerPower];
        for (int i = 0; i < b.Length; i++) b[i] = new ConcurrentBag<float[]>();
        return b;
    }

    /// <summary>When false, <see cref="Rent"/> always allocates (useful to compare).</summary>
    public static bool Enabled { get; set; } = true;

    /// <summary>
    /// Upper bound on the bytes held by idle pooled arrays. Defaults to a quarter of the memory available to the process,
    /// enough to hold a training step's whole working set so the next step faults in no new pages.
    /// </summary>
    public static long MaxPooledBytes { get; set; } = Math.Max(256L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);

    /// <summary>Bytes currently held by idle pooled arrays.</summary>
    public static long PooledBytes => Interlocked.Read(ref _pooledBytes);

    /// <summary>The length of the arrays <see cref="Rent"/> hands out for a request of <paramref name="length"/> floats.</summary>
    public static int PooledLength(int length)
    {
        int c = ClassOf(length);
        return c < 0 ? length : LengthOfClass(c);
    }

    // Smallest class whose length is >= length, or -1 when the length is not pooled.
    private static int ClassOf(int length)
    {
        if (length < MinPooledLength) return -1;
        int p = 31 - BitOperations.LeadingZeroCount((uint)length);  // 2^p <= length < 2^(p+1)
        int quarter = 1 << (p - 2);
        int j = (length - (1 << p) + quarter - 1) >> (p - 2);       // ceil((length - 2^p) / 2^(p-2)), 0..4
        int c = p * ClassesPerPower + j;                             // j = 4 is the next power's first class
        return c >= Classes.Length ? -1 : c;
    }

    private static int LengthOfClass(int c)
    {
        int p = c / ClassesPerPower, j = c % ClassesPerPower;
        return (1 << p) + j * (1 << (p - 2));
    }

    /// <summary>Rents an array of at least <paramref name="length"/> floats; contents are undefined unless <paramref name="clear"/>.</summary>
    public static float[] Rent(int length, bool clear)
    {
        int c = ClassOf(length);
        if (!Enabled || c < 0) return new float[length];
        if (TryTakeFrom(c, out var arr))
        {
            Interlocked.Add(ref _pooledBytes, -4L * arr.Length);
            if (clear) Array.Clear(arr, 0, length);
            return arr;
        }
        var fresh = GC.AllocateUninitializedArray<float>(LengthOfClass(c));
        if (clear) Array.Clear(fresh, 0, length);  // uninitialised memory may hold garbage
        return fresh;
    }

    /// <summary>Larger classes a request may take an idle array from (at most 1.5x its class length) before allocating.</summary>
    internal const int SpareClasses = 2;

    // Its own class first, then up to SpareClasses larger ones: a step's arrays of sizes idle at that moment serve the others.
    private static bool TryTakeFrom(int c, out float[] arr)
    {
        for (int d = 0; d <= SpareClasses && c + d < Classes.Length; d++)
            if (Classes[c + d].TryTake(out arr!)) return true;
        arr = null!;
        return false;
    }

    /// <summary>Returns an array obtained from <see cref="Rent"/>; arrays of other lengths are ignored.</summary>
    public static void Return(float[] array)
    {
        int len = array.Length;
        if (!Enabled) return;
        int c = ClassOf(len);
        if (c < 0 || LengthOfClass(c) != len) return;
        long bytes = 4L * len;
        if (Interlocked.Add(ref _pooledBytes, bytes) > MaxPooledBytes) { Interlocked.Add(ref _pooledBytes, -bytes); return; }
        Classes[c].Add(array);
    }

    /// <summary>
    /// Drops every pooled array and has the GC return their memory to the operating system, so a phase with other tensor
    /// sizes (evaluation after training, another batch size) does not stack its arrays on top of the previous phase's.
    /// </summary>
    public static void Trim()
    {
        Clear();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>Drops every pooled array.</summary>
    public static void Clear()
    {
        foreach (var bag in Classes)
            while (bag.TryTake(out var arr)) Interlocked.Add(ref _pooledBytes, -4L * arr.Length);
    }
}
