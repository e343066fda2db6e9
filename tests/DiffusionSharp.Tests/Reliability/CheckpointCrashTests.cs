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
    private static string Write(string runDir, int step, int crashAt)
    {
        int hits = 0;
        string crashed = "";
        CheckpointStore.CrashPoint = p => { if (hits++ == crashAt) { crashed = p; throw new SimulatedCrash(); } };
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
        return crashed;
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

    // ---- The write protocol as an explicit state machine ----
    // A disk state maps each checkpoint folder name to Absent, Partial (exists, no marker) or Complete(step). The model's
    // Save is the protocol's sequence of transitions, each preceded by the crash point the real CheckpointStore.Save names.

    private enum Kind { Absent, Partial, Complete }

    private readonly record struct Folder(Kind Kind, int Step)
    {
        public override string ToString() => Kind == Kind.Complete ? $"complete({Step})" : Kind.ToString();
    }

    private static readonly string[] Names = { CheckpointStore.Current, CheckpointStore.Previous, CheckpointStore.Temporary, CheckpointStore.Trash };

    private sealed class ModelCrash : Exception;

    /// <summary>The protocol over an in-memory disk; <paramref name="point"/> is called before every transition and may throw <see cref="ModelCrash"/>.</summary>
    private static void ModelSave(Dictionary<string, Folder> disk, int step, Action<string> point)
    {
        const string cur = CheckpointStore.Current, old = CheckpointStore.Previous, tmp = CheckpointStore.Temporary, trash = CheckpointStore.Trash;
        bool Complete(string n) => disk[n].Kind == Kind.Complete;
        bool Exists(string n) => disk[n].Kind != Kind.Absent;
        void Discard(string n)
        {
            if (Exists(n) && n != trash)
            {
                disk[trash] = default;                   // an older trash is deleted (no crash point: trash never loads)
                point("trash-rename");
                (disk[trash], disk[n]) = (disk[n], default);
            }
            if (Exists(trash))
            {
                point("trash-delete");
                disk[trash] = default;
            }
        }
        if (!Complete(cur) && !Complete(old) && Complete(tmp))      // recovery of a lone complete checkpoint.tmp
        {
            point("recover");
            Discard(cur);
            (disk[cur], disk[tmp]) = (disk[tmp], default);
        }
        point("clear-tmp");
        Discard(tmp);
        point("create-tmp");
        disk[tmp] = new Folder(Kind.Partial, step);
        point("write");
        point("mid-write");                                         // the payload's own crash point, half-way through its files
        point("marker");
        point("marker-rename");
        disk[tmp] = new Folder(Kind.Complete, step);
        if (Complete(cur))
        {
            point("discard-old");
            Discard(old);
            point("retire");
            (disk[old], disk[cur]) = (disk[cur], default);
        }
        else
        {
            point("discard-incomplete");
            Discard(cur);
        }
        point("promote");
        (disk[cur], disk[tmp]) = (disk[tmp], default);
        point("discard-old-after");
        Discard(old);
        point("done");
    }

    /// <summary>The crash points of one write from <paramref name="disk"/>, in order (the model's enumeration).</summary>
    private static List<string> ModelPoints(Dictionary<string, Folder> disk, int step)
    {
        var points = new List<string>();
        ModelSave(new Dictionary<string, Folder>(disk), step, points.Add);
        return points;
    }

    /// <summary>The model's disk after a write from <paramref name="disk"/> that crashes at point <paramref name="crashAt"/> (-1: none).</summary>
    private static Dictionary<string, Folder> ModelAfter(Dictionary<string, Folder> disk, int step, int crashAt)
    {
        var d = new Dictionary<string, Folder>(disk);
        int hits = 0;
        try { ModelSave(d, step, _ => { if (hits++ == crashAt) throw new ModelCrash(); }); }
        catch (ModelCrash) { }
        return d;
    }

    // What FindLoadable picks: checkpoint/, else checkpoint.old/, else a complete checkpoint.tmp/.
    private static int? ModelLoadable(Dictionary<string, Folder> disk) =>
        new[] { CheckpointStore.Current, CheckpointStore.Previous, CheckpointStore.Temporary }.Select(n => disk[n]).Where(f => f.Kind == Kind.Complete).Select(f => (int?)f.Step).FirstOrDefault();

    // The real folder's state in the model's terms.
    private static Dictionary<string, Folder> Observe(string runDir) => Names.ToDictionary(n => n, n =>
    {
        var dir = Path.Combine(runDir, n);
        if (!Directory.Exists(dir)) return default;
        var marker = Path.Combine(dir, Marker);
        return File.Exists(marker) ? new Folder(Kind.Complete, int.Parse(File.ReadAllText(marker))) : new Folder(Kind.Partial, 0);
    });

    private static string Show(Dictionary<string, Folder> d) => string.Join(", ", Names.Select(n => $"{n}={d[n]}"));

    private static Dictionary<string, Folder> Empty() => Names.ToDictionary(n => n, _ => default(Folder));

    // Start states: a checkpoint at step 1, and what older writers could leave (only checkpoint.tmp, only checkpoint.old).
    private static IEnumerable<(string Name, Dictionary<string, Folder> Disk)> StartStates()
    {
        var one = new Folder(Kind.Complete, 1);
        yield return ("checkpoint", new Dictionary<string, Folder>(Empty()) { [CheckpointStore.Current] = one });
        yield return ("only-tmp", new Dictionary<string, Folder>(Empty()) { [CheckpointStore.Temporary] = one });
        yield return ("only-old", new Dictionary<string, Folder>(Empty()) { [CheckpointStore.Previous] = one });
        yield return ("empty", Empty());
    }

    [Fact]
    public void TheModelKeepsALoadableCheckpointThroughThreeCrashesInARow()
    {
        // exhaustive over the model alone (cheap): every crash point of three successive writes from every start state
        int sequences = 0;
        foreach (var (name, s0) in StartStates())
        {
            int? loadable0 = ModelLoadable(s0);
            void Explore(Dictionary<string, Folder> d, int step, int depth, int? floor)
            {
                for (int k = -1; k < ModelPoints(d, step).Count; k++)
                {
                    var next = ModelAfter(d, step, k);
                    int? now = ModelLoadable(next);
                    if (floor != null) Assert.True(now >= floor, $"{name}: {Show(d)} then a crash at point {k} of step {step} leaves {Show(next)}");
                    if (floor != null) Assert.True(next[CheckpointStore.Current].Kind != Kind.Absent || next[CheckpointStore.Previous].Kind != Kind.Absent || next[CheckpointStore.Temporary].Kind != Kind.Absent);
                    if (k == -1) Assert.Equal(step, now);                 // a write that completes is what loads
                    if (depth < 3) Explore(next, step + 1, depth + 1, now ?? floor);
                    else sequences++;
                }
            }
            Explore(s0, 2, 1, loadable0);
        }
        Assert.True(sequences > 4 * 1000, $"only {sequences} sequences");
    }

    [Fact]
    public void EveryPairOfCrashPointsOfTheModelLeavesTheSameLoadableCheckpointOnDisk()
    {
        using var tmp = new TempDir(Directory.Exists("/dev/shm") ? "/dev/shm" : null);  // ~3000 writes: in memory, the fsyncs are free
        int cases = 0;
        foreach (var (name, s0) in StartStates())
        {
            var points1 = ModelPoints(s0, 2);
            for (int first = -1; first < points1.Count; first++)
            {
                var s1 = ModelAfter(s0, 2, first);
                var points2 = ModelPoints(s1, 3);
                for (int second = -1; second < points2.Count; second++)
                {
                    var s2 = ModelAfter(s1, 3, second);
                    var run = tmp.Sub($"{name}-{first}-{second}");
                    if (name != "empty") Write(run, 1, crashAt: -1);
                    if (name == "only-tmp") Directory.Move(Path.Combine(run, CheckpointStore.Current), Path.Combine(run, CheckpointStore.Temporary));
                    if (name == "only-old") Directory.Move(Path.Combine(run, CheckpointStore.Current), Path.Combine(run, CheckpointStore.Previous));
                    Assert.Equal(Show(s0), Show(Observe(run)));
                    string where = $"{name}: crash at {(first < 0 ? "none" : points1[first])} ({first}), then at {(second < 0 ? "none" : points2[second])} ({second})";
                    Assert.Equal(first < 0 ? "" : points1[first], Write(run, 2, first));
                    Assert.True(Show(s1) == Show(Observe(run)), $"{where}: after the first write the disk is {Show(Observe(run))}, the model says {Show(s1)}");
                    Assert.Equal(second < 0 ? "" : points2[second], Write(run, 3, second));
                    Assert.True(Show(s2) == Show(Observe(run)), $"{where}: after the second write the disk is {Show(Observe(run))}, the model says {Show(s2)}");
                    if (ModelLoadable(s0) != null || ModelLoadable(s1) != null)
                    {
                        Assert.Equal(ModelLoadable(s2), LoadStep(run));
                        Assert.True(LoadStep(run) >= (ModelLoadable(s1) ?? 0), where);
                        Assert.True(Trainer.HasPreviousRun(run), $"{where}: a fresh run would not see the earlier run");
                    }
                    Write(run, 4, crashAt: -1);
                    Assert.Equal(4, LoadStep(run));
                    Assert.False(Directory.Exists(Path.Combine(run, CheckpointStore.Temporary)));
                    Assert.False(Directory.Exists(Path.Combine(run, CheckpointStore.Previous)));
                    Directory.Delete(run, recursive: true);
                    cases++;
                }
            }
        }
        Assert.True(cases >= 4 * 12 * 12, $"only {cases} crash sequences were tried");
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

    private static readonly string[] ExportFiles =
        { "unet/config.json", ModelFolderWriter.CommitFile, "scheduler/scheduler_config.json", "model_info.json" };

    private static Dictionary<string, string> ExportOf(string dir) => ExportFiles.ToDictionary(f => f, f =>
        Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, f)))));

    [Fact]
    public void ACrashAnywhereInTheModelExportLeavesThePreviousExportLoadable()
    {
        using var tmp = new TempDir();
        var cfg = tmp.File("config.json");
        File.WriteAllText(cfg, TinyConfig);
        var data = TinyData();
        var opts = new TrainOptions { ModelConfigPath = cfg, BatchSize = 4, Steps = 50, CheckpointEvery = 0, LogEvery = 0, EmaDecay = 0.9, ClassConditional = true };
        int k = 0;
        for (; ; k++)
        {
            var run = tmp.Sub($"run-{k}");
            var t = Trainer.Create(opts, run, data);
            t.TrainStep();
            t.SaveCheckpoint();
            var previous = ExportOf(run);
            t.TrainStep();
            int hits = 0;
            string? crashedAt = null;
            CheckpointStore.CrashPoint = p => { if (p.StartsWith("export", StringComparison.Ordinal) && hits++ == k) { crashedAt = p; throw new SimulatedCrash(); } };
            try { t.SaveCheckpoint(); }
            catch (SimulatedCrash) { }
            finally { CheckpointStore.CrashPoint = null; }
            var fresh = tmp.Sub($"fresh-{k}");
            t.ExportModel(fresh);
            var next = ExportOf(fresh);
            Assert.NotEqual(previous[ModelFolderWriter.CommitFile], next[ModelFolderWriter.CommitFile]);  // the second export has other weights
            var after = ExportOf(run);
            foreach (var f in ExportFiles)
                Assert.True(after[f] == previous[f] || after[f] == next[f], $"crash at export point {k} ({crashedAt}): {f} is neither the previous nor the new export's");
            if (crashedAt == null)
            {
                Assert.Equal(next, after);
                Assert.False(Directory.Exists(Path.Combine(run, ModelFolderWriter.Staging)));
                break;
            }
            // until the weights are renamed in, the model (config, weights, scheduler) is the previous export
            if (after[ModelFolderWriter.CommitFile] == previous[ModelFolderWriter.CommitFile])
                foreach (var f in ExportFiles.Where(f => f != "model_info.json"))
                    Assert.True(after[f] == previous[f], $"crash at export point {k} ({crashedAt}): {f} changed before the weights were committed");
            var pipe = DiffusionSharp.Diffusion.DiffusionPipeline.FromPretrained(run);
            Assert.NotNull(pipe.Unet);
            t.SaveCheckpoint();  // the next export completes and removes the staging folder
            Assert.Equal(next, ExportOf(run));
            Assert.False(Directory.Exists(Path.Combine(run, ModelFolderWriter.Staging)));
        }
        Assert.True(k >= 4, $"only {k} export crash points");
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
