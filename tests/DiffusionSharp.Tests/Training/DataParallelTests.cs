using System.Diagnostics;
using System.Text;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Training;

/// <summary>A fact that runs only where Open MPI's mpirun is installed.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (MpiJob.MpirunPath == null) Skip = "mpirun (Open MPI) not found; apt-get install openmpi-bin libopenmpi-dev to run the data-parallel tests";
    }
}

/// <summary>Starts <c>diffusion</c> as one process or as an mpirun job.</summary>
internal static class MpiJob
{
    public static readonly string? MpirunPath = new[] { "/usr/bin/mpirun", "/usr/bin/mpirun.openmpi", "/usr/local/bin/mpirun" }.FirstOrDefault(File.Exists);

    private static string Dotnet => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
    private static string Cli => typeof(DiffusionSharp.Cli.Program).Assembly.Location;

    public static Process Start(int ranks, IEnumerable<string> args, StringBuilder log, int threads = 1)
    {
        var psi = new ProcessStartInfo { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (ranks > 0)
        {
            psi.FileName = MpirunPath!;
            foreach (var a in new[] { "-np", ranks.ToString(), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none", Dotnet, Cli }) psi.ArgumentList.Add(a);
        }
        else
        {
            psi.FileName = Dotnet;
            psi.ArgumentList.Add(Cli);
        }
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var k in psi.Environment.Keys.Where(k => k.StartsWith("OMPI_") || k.StartsWith("PMIX_")).ToList()) psi.Environment.Remove(k);
        psi.Environment["DIFFUSIONSHARP_THREADS"] = threads.ToString();
        var p = new Process { StartInfo = psi };
        p.OutputDataReceived += (_, e) => { if (e.Data != null) lock (log) log.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (log) log.AppendLine(e.Data); };
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    public static void Run(int ranks, IEnumerable<string> args, int timeoutSeconds = 120, int threads = 1) => Output(ranks, args, timeoutSeconds, threads);

    /// <summary>Runs to completion (exit code 0 asserted) and returns stdout and stderr together.</summary>
    public static string Output(int ranks, IEnumerable<string> args, int timeoutSeconds = 120, int threads = 1)
    {
        var log = new StringBuilder();
        using var p = Start(ranks, args, log, threads);
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{(ranks > 0 ? $"mpirun -np {ranks}" : "diffusion")} {string.Join(' ', args)} did not finish in {timeoutSeconds} s:\n{log}");
        }
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"exit code {p.ExitCode}:\n{log}");
        lock (log) return log.ToString();
    }

    /// <summary>The processes whose parent is <paramref name="pid"/> and whose environment says they are rank <paramref name="rank"/>.</summary>
    public static int? FindRank(int pid, int rank)
    {
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int child)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1]) != pid) continue;
                var env = File.ReadAllText(Path.Combine(dir, "environ")).Split('\0');
                if (env.Contains($"OMPI_COMM_WORLD_RANK={rank}")) return child;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        }
        return null;
    }
}

/// <summary>
/// <c>mpirun -np 2 diffusion train</c> against one process training the same global batch: the ranks' shards, the
/// gradient all-reduce, a kill -9 of one rank and resume.
/// </summary>
[Collection("mpi")]
public class DataParallelTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-mpi-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    // 64 random 8x8 gray images in 3 classes as IDX files, and a tiny U-Net with attention and dropout.
    private (string Data, string Config) Setup()
    {
        var data = Path.Combine(_root, "data");
        Directory.CreateDirectory(data);
        const int n = 64;
        var g = new Generator(7);
        foreach (var split in new[] { "train", "t10k" })
        {
            using (var f = File.Create(Path.Combine(data, $"{split}-images-idx3-ubyte")))
            {
                f.Write(new byte[] { 0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 8, 0, 0, 0, 8 });
                for (int i = 0; i < n * 64; i++) f.WriteByte((byte)g.NextInt(256));
            }
            using (var f = File.Create(Path.Combine(data, $"{split}-labels-idx1-ubyte")))
            {
                f.Write(new byte[] { 0, 0, 8, 1, 0, 0, 0, n });
                for (int i = 0; i < n; i++) f.WriteByte((byte)(i % 3));
            }
        }
        var cfg = Path.Combine(_root, "config.json");
        File.WriteAllText(cfg, """
        {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4, "dropout": 0.1}
        """);
        return (data, cfg);
    }

    private static string[] TrainArgs(string output, (string Data, string Config) s, long steps, long checkpointEvery) =>
    [
        "train", "-o", output, "--data", s.Data, "--config", s.Config, "--batch", "16", "--steps", steps.ToString(),
        "--class-conditional", "--flip", "--warmup", "3", "--ema", "0.99", "--seed", "5", "--log-every", "5",
        "--checkpoint-every", checkpointEvery.ToString(), "--bucket-mb", "0.02",
    ];

    // Every weight of b within 1e-5 of the same weight of a, relative to that weight (a zero weight must stay zero);
    // returns the worst relative difference.
    private static double AssertClose(string a, string b)
    {
        var wa = SafeTensors.Load(a);
        var wb = SafeTensors.Load(b);
        Assert.Equal(wa.Keys.OrderBy(k => k), wb.Keys.OrderBy(k => k));
        double worst = 0;
        string worstAt = "";
        foreach (var (k, t) in wa)
        {
            var x = t.ToArray();
            var y = wb[k].ToArray();
            for (int i = 0; i < x.Length; i++)
            {
                double d = Math.Abs((double)x[i] - y[i]), rel = d == 0 ? 0 : x[i] == 0 ? double.PositiveInfinity : d / Math.Abs(x[i]);
                if (rel > worst) { worst = rel; worstAt = $"{k}[{i}]: {x[i]:R} vs {y[i]:R}"; }
            }
        }
        Assert.True(worst <= 1e-5, $"{b} differs from {a} by {worst:E2} of the weight at {worstAt}");
        return worst;
    }

    [MpiFact]
    public void TwoRanksMatchOneProcessOnTheSameGlobalBatch()
    {
        var s = Setup();
        string one = Path.Combine(_root, "one"), two = Path.Combine(_root, "two");
        MpiJob.Run(0, TrainArgs(one, s, 20, 0));
        var log = MpiJob.Output(2, TrainArgs(two, s, 20, 0));
        Assert.DoesNotContain("\u001b", log);  // no terminal set-up codes through mpirun's pseudo-terminal
        AssertClose(Path.Combine(one, "checkpoint", "model.safetensors"), Path.Combine(two, "checkpoint", "model.safetensors"));
        AssertClose(Path.Combine(one, "checkpoint", "ema.safetensors"), Path.Combine(two, "checkpoint", "ema.safetensors"));
        // rank 0 alone writes the metrics: one line per 5 steps, with the global batch's loss
        var l1 = File.ReadAllLines(Path.Combine(one, "metrics.jsonl"));
        var l2 = File.ReadAllLines(Path.Combine(two, "metrics.jsonl"));
        Assert.Equal(4, l2.Length);
        for (int i = 0; i < 4; i++)
        {
            double a = Loss(l1[i]), b = Loss(l2[i]);
            Assert.True(Math.Abs(a - b) <= 1e-5 * Math.Abs(a), $"loss at line {i}: {a} vs {b}");
        }
        // training moved the weights away from the shared initialization
        var init = new DiffusionSharp.Nn.UNet.UNet2DModel(DiffusionSharp.Nn.UNet.UNet2DConfig.Load(Path.Combine(two, "unet", "config.json")), new Generator(5 * 4 + 1));
        var trained = SafeTensors.Load(Path.Combine(two, "checkpoint", "model.safetensors"));
        Assert.Contains(init.StateDict(), kv => !kv.Value.ToArray().SequenceEqual(trained[kv.Key].ToArray()));
    }

    [MpiFact]
    public void ResumeWithAnotherNumberOfRanksMatchesOneProcess()
    {
        var s = Setup();
        string straight = Path.Combine(_root, "straight"), twoThenOne = Path.Combine(_root, "two-one"), oneThenTwo = Path.Combine(_root, "one-two");
        MpiJob.Run(0, TrainArgs(straight, s, 20, 0), threads: 2);  // the reference: one process on 2 threads, 20 steps straight
        MpiJob.Run(2, TrainArgs(twoThenOne, s, 10, 0));
        MpiJob.Run(0, [.. TrainArgs(twoThenOne, s, 20, 0), "--resume"]);
        MpiJob.Run(0, TrainArgs(oneThenTwo, s, 10, 0));
        MpiJob.Run(2, [.. TrainArgs(oneThenTwo, s, 20, 0), "--resume"]);
        foreach (var run in new[] { twoThenOne, oneThenTwo })
        {
            Assert.Equal(20, System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "checkpoint", Trainer.StateFile))).RootElement.GetProperty("Step").GetInt64());
            AssertClose(Path.Combine(straight, "checkpoint", "model.safetensors"), Path.Combine(run, "checkpoint", "model.safetensors"));
            AssertClose(Path.Combine(straight, "checkpoint", "ema.safetensors"), Path.Combine(run, "checkpoint", "ema.safetensors"));
        }
    }

    private static double Loss(string jsonLine)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(jsonLine);
        return doc.RootElement.GetProperty("loss").GetDouble();
    }

    [MpiFact]
    public void KilledRankEndsTheJobAndResumeMatchesOneProcess()
    {
        var s = Setup();
        string run = Path.Combine(_root, "killed");
        var log = new StringBuilder();
        using var job = MpiJob.Start(2, TrainArgs(run, s, 100_000, 10), log);
        var state = Path.Combine(run, "checkpoint", "trainer_state.json");
        var wait = Stopwatch.StartNew();
        while (!File.Exists(state) && !job.HasExited && wait.Elapsed.TotalSeconds < 90) Thread.Sleep(50);
        Assert.True(File.Exists(state), $"no checkpoint after {wait.Elapsed.TotalSeconds:F0} s:\n{log}");
        int? victim = MpiJob.FindRank(job.Id, 1);
        Assert.True(victim != null, $"rank 1 not found among mpirun's children:\n{log}");
        var killed = Stopwatch.StartNew();
        Process.GetProcessById(victim!.Value).Kill();  // SIGKILL
        bool ended = job.WaitForExit(30_000);
        if (!ended) job.Kill(entireProcessTree: true);
        Assert.True(ended, $"the job still ran 30 s after rank 1 was killed:\n{log}");
        job.WaitForExit();
        Assert.NotEqual(0, job.ExitCode);
        Assert.Contains("rank 1", log.ToString());
        Assert.True(killed.Elapsed.TotalSeconds < 30);

        var data = Datasets.Open(s.Data, new DatasetOptions());
        long at = Trainer.Resume(run, data).Step;  // the last checkpoint stays loadable
        Assert.True(at >= 10 && at % 10 == 0, $"checkpoint at step {at}");
        MpiJob.Run(2, [.. TrainArgs(run, s, at + 10, 10), "--resume"]);
        string one = Path.Combine(_root, "one");
        MpiJob.Run(0, TrainArgs(one, s, at + 10, 0));
        AssertClose(Path.Combine(one, "checkpoint", "model.safetensors"), Path.Combine(run, "checkpoint", "model.safetensors"));
        AssertClose(Path.Combine(one, "checkpoint", "ema.safetensors"), Path.Combine(run, "checkpoint", "ema.safetensors"));
    }

    [MpiFact]
    public void TwoRanksSampleTheSameImagesAsOneProcess()
    {
        var s = Setup();
        string model = Path.Combine(_root, "model");
        MpiJob.Run(0, TrainArgs(model, s, 2, 0));
        string[] Args(string each, string grid) =>
            ["sample", "-m", model, "-n", "10", "--batch", "4", "--sampler", "ddpm", "--steps", "5", "--seed", "3", "--each", each, "-o", grid];
        string e1 = Path.Combine(_root, "each1"), e2 = Path.Combine(_root, "each2");
        MpiJob.Run(0, Args(e1, Path.Combine(_root, "grid1.png")));
        MpiJob.Run(2, Args(e2, Path.Combine(_root, "grid2.png")));  // 3 batches: rank 0 samples the first, rank 1 the other two
        var names = Directory.GetFiles(e1).Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(10, names.Length);
        Assert.Equal(names, Directory.GetFiles(e2).Select(Path.GetFileName).Order().ToArray());
        foreach (var n in names) Assert.Equal(File.ReadAllBytes(Path.Combine(e1, n!)), File.ReadAllBytes(Path.Combine(e2, n!)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(_root, "grid1.png")), File.ReadAllBytes(Path.Combine(_root, "grid2.png")));

        // bits/dim: 3 batches of 4 test images split over the ranks give the per-image terms of one process
        string[] evalArgs = ["eval", "-m", model, "--data", s.Data, "-n", "12", "--batch", "4", "--timesteps", "3", "--seed", "2", "--json"];
        var one = JsonOf(MpiJob.Output(0, evalArgs));
        var two = JsonOf(MpiJob.Output(2, evalArgs));
        Assert.Equal(12, two.GetProperty("images").GetInt32());
        foreach (var key in new[] { "bits_per_dim", "standard_error", "prior_bpd", "decoder_bpd" })
        {
            double a = one.GetProperty(key).GetDouble(), b = two.GetProperty(key).GetDouble();
            Assert.True(Math.Abs(a - b) <= 1e-9 * Math.Abs(a), $"{key}: one process {a}, two ranks {b}");
        }
    }

    private static System.Text.Json.JsonElement JsonOf(string output)
    {
        // mpirun gives the ranks a pseudo-terminal: no terminal escape codes may reach the output
        Assert.DoesNotContain("\u001b", output);
        var line = output.Split('\n').LastOrDefault(l => l.StartsWith("{\"model\"", StringComparison.Ordinal));
        Assert.True(line != null, $"no line starting with the JSON object in the output:\n{output}");
        return System.Text.Json.JsonDocument.Parse(line).RootElement.Clone();
    }
}
