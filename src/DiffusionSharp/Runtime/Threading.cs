namespace DiffusionSharp.Runtime;

/// <summary>Process-wide thread count used by every parallel kernel.</summary>
public static class Threading
{
    private static int _threads = ReadDefault();

    private static int ReadDefault()
    {
        var env = Environment.GetEnvironmentVariable("DIFFUSIONSHARP_THREADS");
        if (!string.IsNullOrEmpty(env) && int.TryParse(env, out int t) && t > 0) return t;
        return Environment.ProcessorCount;
    }

    /// <summary>Worker threads for kernels (default: env DIFFUSIONSHARP_THREADS, else all cores).</summary>
    public static int Threads
    {
        get => _threads;
        set
        {
            if (value < 1) throw new ArgumentOutOfRangeException(nameof(value), "Thread count must be at least 1.");
            _threads = value;
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, count) split into at most <see cref="Threads"/> contiguous chunks;
    /// runs inline when one chunk suffices (count below <paramref name="grain"/> per extra thread).
    /// </summary>
    public static void For(int count, int grain, Action<int, int> body)
    {
        if (count <= 0) return;
        int chunks = Math.Min(_threads, Math.Max(1, count / Math.Max(1, grain)));
        if (chunks <= 1) { body(0, count); return; }
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = chunks }, c =>
        {
            long s = (long)count * c / chunks, e = (long)count * (c + 1) / chunks;
            body((int)s, (int)e);
        });
    }
}
