namespace DiffusionSharp.Runtime;

/// <summary>Process-wide thread count used by every parallel kernel.</summary>
public static class Threading
{
    private static int _threads = ReadDefault();
    private static volatile ForkPool? _pool;

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
    /// runs inline when one chunk suffices (count below <paramref name="grain"/> per extra thread). The chunks depend only on
    /// <paramref name="count"/>, <paramref name="grain"/> and <see cref="Threads"/>, never on which thread runs them.
    /// </summary>
    public static void For(int count, int grain, Action<int, int> body)
    {
        if (count <= 0) return;
        int chunks = Math.Min(_threads, Math.Max(1, count / Math.Max(1, grain)));
        if (chunks <= 1) { body(0, count); return; }
        // Small kernels fork hundreds of times per network evaluation: a pool of spinning workers answers in well under a
        // microsecond where the .NET thread pool may take tens to wake. It serves one fork at a time and only while the
        // threads fit the cores (spinning on an oversubscribed machine would wait on descheduled threads).
        if (chunks <= Environment.ProcessorCount && PoolFor(chunks) is { } pool && pool.TryRun(count, chunks, body)) return;
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = chunks }, c =>
        {
            long s = (long)count * c / chunks, e = (long)count * (c + 1) / chunks;
            body((int)s, (int)e);
        });
    }

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, count) in about count / <paramref name="piece"/> contiguous pieces that
    /// at most <see cref="Threads"/> threads claim one at a time, so a thread slowed by other work on the machine takes fewer
    /// of them. Which thread runs which piece varies from run to run: only for bodies whose results do not depend on how
    /// [0, count) is split (each index writes its own outputs).
    /// </summary>
    public static void ForDynamic(int count, int piece, Action<int, int> body)
    {
        if (count <= 0) return;
        int pieces = (int)(((long)count + Math.Max(1, piece) - 1) / Math.Max(1, piece));
        int threads = Math.Min(_threads, pieces);
        if (threads <= 1) { body(0, count); return; }
        if (threads <= Environment.ProcessorCount && PoolFor(threads) is { } pool && pool.TryRun(count, pieces, body, threads)) return;
        Parallel.For(0, pieces, new ParallelOptions { MaxDegreeOfParallelism = threads }, c =>
        {
            long s = (long)count * c / pieces, e = (long)count * (c + 1) / pieces;
            body((int)s, (int)e);
        });
    }

    private static ForkPool? PoolFor(int chunks)
    {
        var pool = _pool;
        if (pool != null && pool.Workers >= chunks - 1) return pool;
        lock (typeof(Threading))
        {
            pool = _pool;
            if (pool == null || pool.Workers < chunks - 1) _pool = pool = new ForkPool(Math.Max(chunks, Environment.ProcessorCount) - 1);
            return pool;
        }
    }

    // Fork-join over dedicated background threads that spin briefly between forks, then sleep until the next one.
    private sealed class ForkPool
    {
#pragma warning disable CA1001  // workers live as long as the process; their semaphores are never released early
        private sealed class Worker
        {
            public int Sleeping;
            public readonly SemaphoreSlim Wake = new(0);
        }
#pragma warning restore CA1001

        // One fork: the caller and the workers claim chunks until none is left (a worker that is late, because its core is
        // busy, leaves its share to the others), each counting down Remaining when its chunk is done.
        private sealed class Job(long generation, int count, int chunks, int threads, Action<int, int> body)
        {
            public readonly long Generation = generation;
            // Threads: the caller and workers 1 .. Threads - 1 take part
            public readonly int Count = count, Chunks = chunks, Threads = threads;
            public readonly Action<int, int> Body = body;
            public int Next;
            public int Remaining = chunks;
            public Exception? Error;

            public void RunAvailable()
            {
                int c;
                while ((c = Interlocked.Increment(ref Next) - 1) < Chunks)
                {
                    long s = (long)Count * c / Chunks, e = (long)Count * (c + 1) / Chunks;
                    try { Body((int)s, (int)e); }
                    catch (Exception ex) { Interlocked.CompareExchange(ref Error, ex, null); }
                    Interlocked.Decrement(ref Remaining);
                }
            }
        }

        // A worker spins this long for the next fork before it sleeps: longer than the gaps between the kernels of one
        // network evaluation, short enough not to hold a core while the process does something else.
        private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 10_000;

        private readonly Worker[] _workers;
        private int _busy;
        private long _generation;
        private Job? _job;
        [ThreadStatic] private static bool t_inPool;

        public int Workers => _workers.Length;

        public ForkPool(int workers)
        {
            _workers = new Worker[workers];
            for (int i = 0; i < workers; i++)
            {
                var w = _workers[i] = new Worker();
                int index = i + 1;
                new Thread(() => Loop(w, index)) { IsBackground = true, Name = $"DiffusionSharp kernel {index}" }.Start();
            }
        }

        // Runs every chunk, the caller taking its share; false (nothing run) when the pool is serving another fork or this is a nested one.
        public bool TryRun(int count, int chunks, Action<int, int> body) => TryRun(count, chunks, body, chunks);

        // As above with `threads` (at most Workers + 1) threads claiming the chunks.
        public bool TryRun(int count, int chunks, Action<int, int> body, int threads)
        {
            if (t_inPool || Interlocked.CompareExchange(ref _busy, 1, 0) != 0) return false;
            try
            {
                var job = new Job(++_generation, count, chunks, threads, body);
                Volatile.Write(ref _job, job);
                for (int i = 0; i < threads - 1; i++)
                    if (Interlocked.CompareExchange(ref _workers[i].Sleeping, 0, 1) == 1) _workers[i].Wake.Release();
                t_inPool = true;
                try { job.RunAvailable(); }
                finally { t_inPool = false; }
                var spin = new SpinWait();
                while (Volatile.Read(ref job.Remaining) != 0) spin.SpinOnce(sleep1Threshold: -1);
                if (job.Error != null) throw new AggregateException(job.Error);
                return true;
            }
            finally { Volatile.Write(ref _busy, 0); }
        }

        private void Loop(Worker w, int index)
        {
            t_inPool = true;
            long seen = 0;
            while (true)
            {
                Job? job;
                long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
                while ((job = Volatile.Read(ref _job)) == null || job.Generation == seen)
                {
                    if (System.Diagnostics.Stopwatch.GetTimestamp() < deadline) { Thread.SpinWait(8); continue; }
                    Interlocked.Exchange(ref w.Sleeping, 1);  // a full fence: the fork either sees Sleeping or this sees the fork
                    job = Volatile.Read(ref _job);
                    if (job == null || job.Generation == seen) w.Wake.Wait();
                    Interlocked.Exchange(ref w.Sleeping, 0);
                    deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
                }
                seen = job.Generation;
                if (index < job.Threads) job.RunAvailable();
            }
        }
    }
}
