using System.CommandLine;
using System.Diagnostics;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>mpirun -np N diffusion bench allreduce</c>: MPI all-reduce time and bytes/s for the gradient sizes of the presets.</summary>
public static class BenchAllReduce
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line" };
        var reps = CliOptions.InRange(new Option<int>("--reps") { Description = "Timed all-reduces per size (the same count on every rank)", DefaultValueFactory = _ => 5 }, 1, 100_000);
        var bucketMb = CliOptions.InRange(new Option<double>("--bucket-mb") { Description = "Also time the gradient as buckets of this many MB (0: whole only)", DefaultValueFactory = _ => 8 }, 0.0, 4096.0);
        var cmd = new Command("allreduce", "Sum float32 gradients of the presets' sizes over the ranks of an MPI job (run under mpirun -np N, N >= 2).");
        cmd.Options.Add(json);
        cmd.Options.Add(reps);
        cmd.Options.Add(bucketMb);
        cmd.SetAction(p => Run(p.GetValue(json), Math.Max(1, p.GetValue(reps)), p.GetValue(bucketMb)));
        return cmd;
    }

    private static int Run(bool json, int reps, double bucketMb)
    {
        var comm = Mpi.Current;
        if (comm.Size < 2)
        {
            Console.Error.WriteLine("error: bench allreduce needs an MPI job of at least 2 ranks: mpirun -np 2 diffusion bench allreduce");
            return 2;
        }
        var sizes = new List<(string Name, long Floats)>();
        foreach (var name in UNet2DModel.PresetNames)
            sizes.Add((name, new UNet2DModel(UNet2DModel.PresetConfig(name)).ParameterCount));
        sizes.Add(("1 MB", 1L << 18));
        int bucketFloats = bucketMb > 0 ? (int)Math.Max(1, bucketMb * (1 << 20) / 4) : int.MaxValue;
        foreach (var (name, floats) in sizes)
        {
            var buf = GC.AllocateArray<float>((int)floats, pinned: true);
            buf.AsSpan().Fill(comm.Rank + 1);
            comm.AllReduceSum(buf);
            float expect = comm.Size * (comm.Size + 1) / 2f;
            if (buf[0] != expect || buf[^1] != expect)
                throw new InvalidOperationException($"all-reduce check failed on rank {comm.Rank}: got {buf[0]} and {buf[^1]}, expected {expect}.");
            double whole = Time(comm, reps, () => comm.AllReduceSum(buf));
            var buckets = new List<float[]>();  // as the trainer does: every bucket's non-blocking all-reduce started, then all waited for
            for (long lo = 0; lo < floats; lo += bucketFloats)
                buckets.Add(GC.AllocateArray<float>((int)Math.Min(bucketFloats, floats - lo), pinned: true));
            double bucketed = Time(comm, reps, () =>
            {
                var reqs = buckets.Select(c => comm.StartAllReduceSum(c, c.Length)).ToList();
                foreach (var r in reqs) r.Wait();
            });
            if (comm.Rank != 0) continue;
            double bytes = floats * 4.0;
            double busFactor = 2.0 * (comm.Size - 1) / comm.Size;  // ring all-reduce moves 2(N-1)/N of the buffer per rank
            if (json)
                Console.WriteLine(BenchTiming.Json(("name", name), ("ranks", comm.Size), ("bytes", (long)bytes), ("seconds", whole),
                    ("bytes_per_s", bytes / whole), ("bus_bytes_per_s", busFactor * bytes / whole), ("bucket_mb", bucketMb), ("buckets", buckets.Count), ("bucketed_seconds", bucketed)));
            else
                Console.WriteLine($"{name}: {bytes / 1e6:F1} MB over {comm.Size} ranks: {whole * 1e3:F2} ms ({bytes / whole / 1e9:F2} GB/s, bus {busFactor * bytes / whole / 1e9:F2} GB/s); in {buckets.Count} buckets of {bucketMb} MB {bucketed * 1e3:F2} ms");
        }
        return 0;
    }

    // Median over reps of the slowest rank's time (a barrier before each rep aligns the starts).
    private static double Time(ICommunicator comm, int reps, Action body)
    {
        comm.Barrier();
        body();
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            comm.Barrier();
            long t0 = Stopwatch.GetTimestamp();
            body();
            times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        }
        Array.Sort(times);
        var all = new double[comm.Size];
        all[comm.Rank] = times[reps / 2];
        comm.AllReduceSum(all);
        return all.Max();
    }
}
