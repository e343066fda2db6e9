using System.Diagnostics;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using DiffusionSharp.Tests.Data;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Reliability;

/// <summary>
/// The checkpoint write protocol as a state machine: a crash (the process dying) at every step of a write, then again at
/// every step of the next write, must leave a complete checkpoint that loads, and a fresh run must not delete it.
/// </summary>
[Collection("console")]
public class CheckpointCrashTests
{
    private sealed class SimulatedCrash : Exception;

    private const string Marker = "state.json";

    // A checkpoint's payload: "data" holds the step twice, written in two halves with a crash point between them.
    private static void Write(string runDir, int step, int crashAt)
    {
        int hits = 0;
        CheckpointStore.CrashPoint = _ => { if (hits++ == crashAt) throw new SimulatedCrash(); };
        try
        {
            CheckpointStore.Save(runDir, Marker, step.ToString(), dir =>
            {
                File.WriteAllText(Path.Combine(dir, "data"), step + ",");
                CheckpointStore.CrashPoint?.Invoke("mid-write");
                File.AppendAllText(Path.Combine(dir, "data"), step.ToString());
            });
        }
        catch (SimulatedCrash) { }
        finally { CheckpointStore.CrashPoint = null; }
    }

    private static int CountPoints(string runDir, int step)
    {
        int hits = 0;
        CheckpointStore.CrashPoint = _ => hits++;
        try { CheckpointStore.Save(runDir, Marker, step.ToString(), dir => { File.WriteAllText(Path.Combine(dir, "data"), $"{step},{step}"); CheckpointStore.CrashPoint?.Invoke("mid-write"); }); }
        finally { CheckpointStore.CrashPoint = null; }
        return hits;
    }

    // The loadable checkpoint is complete and self-consistent: its payload matches its marker.
    private static int LoadStep(string runDir)
    {
        var dir = CheckpointStore.FindLoadable(runDir, Marker);
        Assert.NotNull(dir);
        int step = int.Parse(File.ReadAllText(Path.Combine(dir!, Marker)));
        Assert.Equal($"{step},{step}", File.ReadAllText(Path.Combine(dir!, "data")));
        return step;
    }

    [Fact]
    public void EveryPairOfCrashPointsLeavesALoadableCheckpoint()
    {
        using var tmp = new TempDir(Directory.Exists("/dev/shm") ? "/dev/shm" : null);  // ~2000 writes: in memory, the fsyncs are free
        int points;
        { var probe = tmp.Sub("probe"); CountPoints(probe, 1); points = CountPoints(probe, 2) + 2; }  // a write over an existing checkpoint, and margin
        int cases = 0;
        foreach (var start in new[] { "checkpoint", "only-tmp", "only-old" })
        {
            for (int first = 0; first <= points; first++)
            {
                for (int second = 0; second <= points; second++)
                {
                    var run = tmp.Sub($"{start}-{first}-{second}");
                    Write(run, 1, crashAt: -1);
                    if (start == "only-tmp") Directory.Move(Path.Combine(run, "checkpoint"), Path.Combine(run, "checkpoint.tmp"));  // what an older writer could leave
                    if (start == "only-old") Directory.Move(Path.Combine(run, "checkpoint"), Path.Combine(run, "checkpoint.old"));
                    Write(run, 2, first);
                    int afterFirst = LoadStep(run);
                    Assert.InRange(afterFirst, 1, 2);
                    Write(run, 3, second);
                    int afterSecond = LoadStep(run);
                    Assert.InRange(afterSecond, afterFirst, 3);  // never back past what was already loadable
                    Write(run, 4, crashAt: -1);
                    Assert.Equal(4, LoadStep(run));
                    Assert.False(Directory.Exists(Path.Combine(run, "checkpoint.tmp")));
                    Assert.False(Directory.Exists(Path.Combine(run, "checkpoint.old")));
                    Directory.Delete(run, recursive: true);
                    cases++;
                }
            }
        }
        Assert.True(cases >= 3 * 100, $"only {cases} crash sequences were tried");
    }

    [Fact]
    public void ACrashBeforeTheFirstCheckpointCompletesLeavesNothingLoadableAndTheNextWriteSucceeds()
    {
        using var tmp = new TempDir();
        int points = CountPoints(tmp.Sub("probe"), 1);
        for (int k = 0; k < points; k++)
        {
            var run = tmp.Sub($"first-{k}");
            Write(run, 1, k);
            var dir = CheckpointStore.FindLoadable(run, Marker);
            if (dir != null) Assert.Equal(1, LoadStep(run));
            Write(run, 2, crashAt: -1);
            Assert.Equal(2, LoadStep(run));
        }
    }

    private static InMemoryImageDataset TinyData()
    {
        var pixels = new byte[16 * 16];
        new Random(1).NextBytes(pixels);
        return new InMemoryImageDataset(pixels, Enumerable.Range(0, 16).Select(i => i % 2).ToArray(), 1, 4, new[] { "a", "b" }, "tiny");
    }

    internal const string TinyConfig = """
    {"sample_size": 4, "in_channels": 1, "out_channels": 1, "block_out_channels": [4], "down_block_types": ["DownBlock2D"],
     "up_block_types": ["UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 2, "add_attention": false, "attention_head_dim": null}
    """;

    [Fact]
    public void TrainerCheckpointSurvivesTwoCrashesAndAFreshRunRefusesToDeleteIt()
    {
        using var tmp = new TempDir();
        var cfg = tmp.File("config.json");
        File.WriteAllText(cfg, TinyConfig);
        var data = TinyData();
        var run = tmp.Sub("run");
        var opts = new TrainOptions { ModelConfigPath = cfg, BatchSize = 4, Steps = 50, CheckpointEvery = 0, LogEvery = 1, EmaDecay = 0.9 };
        var t = Trainer.Create(opts, run, data);
        t.TrainStep();
        t.SaveCheckpoint();
        // the issue's sequence: killed between the two renames, then killed at the resumed run's first rename
        CheckpointStore.CrashPoint = p => { if (p == "promote") throw new SimulatedCrash(); };
        t.TrainStep();
        Assert.Throws<SimulatedCrash>(() => t.SaveCheckpoint());
        var resumed = Trainer.Resume(run, data);
        Assert.Equal(1, resumed.Step);
        CheckpointStore.CrashPoint = p => { if (p == "retire" || p == "trash-rename") throw new SimulatedCrash(); };
        resumed.TrainStep();
        Assert.Throws<SimulatedCrash>(() => resumed.SaveCheckpoint());
        CheckpointStore.CrashPoint = null;
        Assert.True(Trainer.HasCheckpoint(run));

        // a fresh run into the folder is refused and deletes nothing
        var before = Directory.GetFiles(run, "*", SearchOption.AllDirectories).OrderBy(f => f).ToArray();
        var err = new StringWriter();
        var old = Console.Error;
        Console.SetError(err);
        int rc;
        try { rc = DiffusionSharp.Cli.Program.Main(new[] { "train", "-o", run, "--data", tmp.Path, "--config", cfg, "--steps", "2" }); }
        finally { Console.SetError(old); }
        Assert.Equal(1, rc);
        Assert.Contains("--overwrite", err.ToString());
        Assert.Equal(before, Directory.GetFiles(run, "*", SearchOption.AllDirectories).OrderBy(f => f).ToArray());
        Assert.Equal(1, Trainer.Resume(run, data).Step);
    }

    [Fact]
    public void ResumeKeepsStoredTotalAndConfigAndDropsRepeatedMetrics()
    {
        using var tmp = new TempDir();
        var cfgDir = tmp.Sub("cfg");
        var cfg = Path.Combine(cfgDir, "config.json");
        File.WriteAllText(cfg, TinyConfig);
        var data = TinyData();
        var run = tmp.Sub("run");
        var t = Trainer.Create(new TrainOptions { ModelConfigPath = cfg, BatchSize = 4, Steps = 6, CheckpointEvery = 0, LogEvery = 1, EmaDecay = 0 }, run, data);
        for (int i = 0; i < 3; i++) t.TrainStep();
        t.SaveCheckpoint();
        // metrics went on past the checkpoint (steps 1..5, the last line cut short by a kill)
        File.WriteAllText(Path.Combine(run, "metrics.jsonl"), string.Concat(Enumerable.Range(1, 4).Select(i => $"{{\"step\":{i},\"loss\":0.5}}\n")) + "{\"step\":5,\"lo");
        Directory.Delete(cfgDir, recursive: true);  // the config file is gone: the checkpoint's copy is used
        var back = Trainer.Resume(run, data);
        Assert.Equal(6, back.Options.Steps);
        Assert.Equal(3, back.Step);
        back.Run(CancellationToken.None);
        var steps = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("step").GetInt64()).ToArray();
        Assert.Equal(new long[] { 1, 2, 3, 4, 5, 6 }, steps);
    }

    [Fact]
    public async Task SigtermDuringTrainingWritesACheckpoint()
    {
        if (OperatingSystem.IsWindows()) return;  // SIGTERM is POSIX
        using var tmp = new TempDir();
        var cfg = tmp.File("config.json");
        File.WriteAllText(cfg, TinyConfig);
        var dataDir = tmp.Sub("data");
        var pixels = new byte[32 * 16];
        new Random(2).NextBytes(pixels);
        Idx.Write(Path.Combine(dataDir, "train-images-idx3-ubyte"), new IdxArray(IdxType.UInt8, new[] { 32, 4, 4 }, pixels));
        Idx.Write(Path.Combine(dataDir, "train-labels-idx1-ubyte"), new IdxArray(IdxType.UInt8, new[] { 32 }, new byte[32]));
        var run = tmp.File("run");
        var cli = Path.Combine(AppContext.BaseDirectory, "diffusion.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { cli, "train", "-o", run, "--data", dataDir, "--config", cfg, "--batch", "4", "--steps", "100000000", "--checkpoint-every", "0", "--log-every", "1", "--threads", "1" })
            psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi)!;
        try
        {
            await SignalAndCheck(proc, run);
        }
        finally
        {
            if (!proc.HasExited) proc.Kill(entireProcessTree: true);
        }
    }

    private static async Task SignalAndCheck(Process proc, string run)
    {
        var stderr = proc.StandardError.ReadToEndAsync();
        var stdout = proc.StandardOutput.ReadToEndAsync();  // both pipes are drained so the child never blocks on a full one
        var metrics = Path.Combine(run, "metrics.jsonl");
        var sw = Stopwatch.StartNew();
        while (!(File.Exists(metrics) && new FileInfo(metrics).Length > 0) && sw.Elapsed < TimeSpan.FromSeconds(60) && !proc.HasExited) Thread.Sleep(50);
        if (proc.HasExited) Assert.Fail("training ended before it was signalled: " + await stderr);
        using (var kill = Process.Start("kill", new[] { "-TERM", proc.Id.ToString() })) await kill.WaitForExitAsync();
        Assert.True(proc.WaitForExit(60_000), "training did not stop after SIGTERM");
        var text = await stderr + await stdout;
        Assert.True(proc.ExitCode == 0, $"exit code {proc.ExitCode}: {text}");
        Assert.Contains("interrupted: checkpoint at step", text);
        Assert.True(Trainer.HasCheckpoint(run));
        var state = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "checkpoint", Trainer.StateFile)));
        Assert.True(state.RootElement.GetProperty("Step").GetInt64() >= 1);
    }
}
