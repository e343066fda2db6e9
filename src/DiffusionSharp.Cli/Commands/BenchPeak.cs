using System.CommandLine;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion bench peak</c>: register-only FMA throughput on all kernel threads.</summary>
public static class BenchPeak
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line" };
        var seconds = CliOptions.InRange(new Option<double>("--seconds") { Description = "Approximate seconds per measurement", DefaultValueFactory = _ => 0.5 }, 0.001, 3600.0);
        var cmd = new Command("peak", "Peak fp32 FMA GFLOP/s: independent Vector512 (or narrower) FMA chains in registers on every thread.");
        cmd.Options.Add(json);
        cmd.Options.Add(seconds);
        cmd.SetAction(parse => Run(parse.GetValue(json), Math.Max(0.05, parse.GetValue(seconds))));
        return cmd;
    }

    private static int Run(bool json, double seconds)
    {
        int threads = Threading.Threads;
        var (bestAll, best1, width) = Measure(threads, seconds);
        if (json)
            Console.WriteLine(BenchTiming.Json(("threads", threads), ("vector_bits", width * 32), ("gflops", bestAll), ("gflops_one_thread", best1), ("accumulators", Accumulators)));
        else
            Console.WriteLine($"peak fp32 FMA ({width * 32}-bit, {Accumulators} chains): {bestAll:F1} GFLOP/s on {threads} threads, {best1:F1} GFLOP/s on one");
        return 0;
    }

    /// <summary>Best GFLOP/s of register-only FMA bursts on <paramref name="threads"/> threads and on one; the vector width in floats.</summary>
    public static (double AllThreads, double OneThread, int Width) Measure(int threads, double seconds)
    {
        int width = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
        // Calibrate short bursts (~2 ms) so a burst usually runs unpreempted on a busy machine; keep the best burst.
        long iters = 1 << 10;
        Chains(iters, width);  // compile first
        while (true)
        {
            long t0 = Stopwatch.GetTimestamp();
            Chains(iters, width);
            if (Stopwatch.GetElapsedTime(t0).TotalSeconds > 0.002) break;
            iters *= 2;
        }
        double flopsPerThread = (double)iters * Accumulators * width * 2;
        int bursts = Math.Max(10, (int)(seconds / 0.002));
        double best1 = flopsPerThread / Bursts(1, iters, width, bursts) / 1e9;
        double bestAll = threads * flopsPerThread / Bursts(threads, iters, width, bursts) / 1e9;
        return (bestAll, best1, width);
    }

    // Best wall time of one burst run simultaneously on `threads` threads (first start to last end, stamped by the workers).
    private static double Bursts(int threads, long iters, int width, int bursts)
    {
        using var go = new Barrier(threads);
        var starts = new long[threads, bursts];
        var ends = new long[threads, bursts];
        var ts = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            ts[t] = new Thread(() =>
            {
                for (int b = 0; b < bursts; b++)
                {
                    go.SignalAndWait();
                    starts[id, b] = Stopwatch.GetTimestamp();
                    Chains(iters, width);
                    ends[id, b] = Stopwatch.GetTimestamp();
                }
            }) { IsBackground = true };
            ts[t].Start();
        }
        foreach (var th in ts) th.Join();
        double best = double.MaxValue;
        for (int b = 0; b < bursts; b++)
        {
            long s0 = long.MaxValue, e1 = long.MinValue;
            for (int t = 0; t < threads; t++) { s0 = Math.Min(s0, starts[t, b]); e1 = Math.Max(e1, ends[t, b]); }
            best = Math.Min(best, (double)(e1 - s0) / Stopwatch.Frequency);
        }
        return best;
    }

    private const int Accumulators = 12;

    private static float Chains(long iters, int width) => width switch
    {
        16 => Chains512(iters),
        8 => Chains256(iters),
        _ => Chains128(iters),
    };

    // 12 independent chains cover FMA latency (4 cycles) times two pipes with room to spare.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains512(long iters)
    {
        var m = Vector512.Create(0.999999f); var a = Vector512.Create(1e-7f);
        Vector512<float> c0 = Vector512.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Vector512.FusedMultiplyAdd(c0, m, a); c1 = Vector512.FusedMultiplyAdd(c1, m, a); c2 = Vector512.FusedMultiplyAdd(c2, m, a);
            c3 = Vector512.FusedMultiplyAdd(c3, m, a); c4 = Vector512.FusedMultiplyAdd(c4, m, a); c5 = Vector512.FusedMultiplyAdd(c5, m, a);
            c6 = Vector512.FusedMultiplyAdd(c6, m, a); c7 = Vector512.FusedMultiplyAdd(c7, m, a); c8 = Vector512.FusedMultiplyAdd(c8, m, a);
            c9 = Vector512.FusedMultiplyAdd(c9, m, a); c10 = Vector512.FusedMultiplyAdd(c10, m, a); c11 = Vector512.FusedMultiplyAdd(c11, m, a);
        }
        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains256(long iters)
    {
        var m = Vector256.Create(0.999999f); var a = Vector256.Create(1e-7f);
        Vector256<float> c0 = Vector256.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Vector256.MultiplyAddEstimate(c0, m, a); c1 = Vector256.MultiplyAddEstimate(c1, m, a); c2 = Vector256.MultiplyAddEstimate(c2, m, a);
            c3 = Vector256.MultiplyAddEstimate(c3, m, a); c4 = Vector256.MultiplyAddEstimate(c4, m, a); c5 = Vector256.MultiplyAddEstimate(c5, m, a);
            c6 = Vector256.MultiplyAddEstimate(c6, m, a); c7 = Vector256.MultiplyAddEstimate(c7, m, a); c8 = Vector256.MultiplyAddEstimate(c8, m, a);
            c9 = Vector256.MultiplyAddEstimate(c9, m, a); c10 = Vector256.MultiplyAddEstimate(c10, m, a); c11 = Vector256.MultiplyAddEstimate(c11, m, a);
        }
        return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Chains128(long iters)
    {
        var m = Vector128.Create(0.999999f); var a = Vector128.Create(1e-7f);
        Vector128<float> c0 = Vector128.Create(1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
        for (long i = 0; i < iters; i++)
        {
            c0 = Vector128.MultiplyAddEstimate(c0, m, a); c1 = Vector128.MultiplyAddEstimate(c1, m, a); c2 = Vector128.MultiplyAddEstimate(c2, m, a);
            c3 = Vector128.MultiplyAddEstimate(c3, m, a); c4 = Vector128.MultiplyAddEstimate(c4, m, a); c5 = Vector128.MultiplyAddEstimate(c5, m, a);
            c6 = Vector128.MultiplyAddEstimate(c6, m, a); c7 = Vector128.MultiplyAddEstimate(c7, m, a); c8 = Vector128.MultiplyAddEstimate(c8, m, a);
            c9 = Vector128.MultiplyAddEstimate(c9, m, a); c10 = Vector128.MultiplyAddEstimate(c10, m, a); c11 = Vector128.MultiplyAddEstimate(c11, m, a);
        }
        return Vector128.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }
}
