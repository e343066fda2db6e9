using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.CommandLine;
using CsCheck;
using DiffusionSharp.Cli;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using DiffusionSharp.Tests.Data;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Reliability;

/// <summary>A tiny trained model folder, a guide PNG, an IDX data folder and a run folder, made once for the fuzz cases.</summary>
public sealed class FuzzFixture : IDisposable
{
    public TempDir Dir { get; } = new();
    public string Model { get; }
    public string Png { get; }
    public string Data { get; }
    public string Config { get; }
    public string Classifier { get; }

    public FuzzFixture()
    {
        Config = Dir.File("config.json");
        File.WriteAllText(Config, CheckpointCrashTests.TinyConfig);
        Data = Dir.Sub("data");
        var pixels = new byte[16 * 16];
        new Random(4).NextBytes(pixels);
        Idx.Write(Path.Combine(Data, "train-images-idx3-ubyte"), new IdxArray(IdxType.UInt8, new[] { 16, 4, 4 }, pixels));
        Idx.Write(Path.Combine(Data, "train-labels-idx1-ubyte"), new IdxArray(IdxType.UInt8, new[] { 16 }, Enumerable.Range(0, 16).Select(i => (byte)(i % 2)).ToArray()));
        // a small test split, so eval (whose --count 0 means the whole split) never needs a downloaded data set
        var testPixels = new byte[8 * 16];
        new Random(5).NextBytes(testPixels);
        Idx.Write(Path.Combine(Data, "t10k-images-idx3-ubyte"), new IdxArray(IdxType.UInt8, new[] { 8, 4, 4 }, testPixels));
        Idx.Write(Path.Combine(Data, "t10k-labels-idx1-ubyte"), new IdxArray(IdxType.UInt8, new[] { 8 }, Enumerable.Range(0, 8).Select(i => (byte)(i % 2)).ToArray()));
        var ds = Datasets.Open(Data);
        Model = Dir.File("model");
        var t = Trainer.Create(new TrainOptions { ModelConfigPath = Config, BatchSize = 4, Steps = 2, CheckpointEvery = 0, LogEvery = 1, ClassConditional = true, EmaDecay = 0.9 }, Model, ds);
        t.Run(CancellationToken.None);
        Png = Dir.File("guide.png");
        using var img = DiffusionSharp.Tensors.Tensor.Zeros(1, 1, 4, 4);
        ImageGrid.Save(Png, img, nrow: 1, padding: 0);
        Classifier = Dir.File("classifier");
        var (oldErr, oldOut) = (Console.Error, Console.Out);
        Console.SetError(TextWriter.Null);
        Console.SetOut(TextWriter.Null);
        int rc;
        try { rc = Program.Main(new[] { "train-classifier", "--data", Data, "-o", Classifier, "--steps", "1", "--batch", "2", "--widths", "4", "--features", "4" }); }
        finally { Console.SetError(oldErr); Console.SetOut(oldOut); }
        if (rc != 0) throw new InvalidOperationException($"train-classifier on the fixture data failed with exit code {rc}");
    }

    public void Dispose() => Dir.Dispose();
}

/// <summary>
/// Bad inputs the way a fuzzer makes them, per file kind and per command: truncations, random byte flips, hostile JSON and
/// boundary values of numeric options. Every case ends in success or in a one-line error naming the file or option
/// (exit code 1 or 2, no stack trace), allocates under 1 GB, and changes no existing file.
/// </summary>
[Collection("console")]
public partial class CliFuzzTests(FuzzFixture fx) : IClassFixture<FuzzFixture>
{
    private static int _n;

    private static string Fresh(string dir, string ext) => Path.Combine(dir, $"out-{Interlocked.Increment(ref _n)}{ext}");

    private static Dictionary<string, string> Snapshot(string root) =>
        Directory.GetFiles(root, "*", SearchOption.AllDirectories).Where(f => !Path.GetFileName(f).StartsWith("out-", StringComparison.Ordinal) && !f.Contains("/out-"))
            .ToDictionary(f => f, f => new FileInfo(f).LinkTarget is string link ? "link to " + link : Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    // One case in ChildEvery (and every case that tests a size limit) runs the CLI as a child process whose peak resident
    // memory the kernel reports at exit; the rest run in-process (fast) with their allocations counted.
    private const int ChildEvery = 50;
    private static int _cases, _children;
    private static long _maxChildPeak;
    private const long MemoryLimit = 1L << 30;

    /// <summary>The largest peak resident memory of any child run so far, and how many there were.</summary>
    internal static (long Bytes, int Count) ChildPeak => (Interlocked.Read(ref _maxChildPeak), _children);

    private static (int Rc, string Err) Run(string[] names, string root, params string[] args) => Run(names, root, false, args);

    /// <summary>Runs the CLI (as a child process when <paramref name="child"/> or in turn); checks the outcome rules and returns (exit code, stderr).</summary>
    internal static (int Rc, string Err) Run(string[] names, string root, bool child, params string[] args)
    {
        var before = Snapshot(root);
        child = (child || Interlocked.Increment(ref _cases) % ChildEvery == 0) && MeasuredProcess.Supported;
        int rc;
        string text, cmd = string.Join(' ', args);
        if (child)
        {
            var r = MeasuredProcess.RunCli(args, TimeSpan.FromSeconds(120));
            (rc, text) = (r.ExitCode, r.Stderr);
            Interlocked.Increment(ref _children);
            long seen;
            while ((seen = Interlocked.Read(ref _maxChildPeak)) < r.PeakRssBytes && Interlocked.CompareExchange(ref _maxChildPeak, r.PeakRssBytes, seen) != seen) { }
            Assert.True(r.PeakRssBytes > 0, $"{cmd}: the child did not report its peak memory (exit code {rc}): {text}");
            Assert.True(r.PeakRssBytes < MemoryLimit, $"{cmd}: peak resident memory {r.PeakRssBytes >> 20} MiB");
        }
        else
        {
            var err = new StringWriter();
            var (oldErr, oldOut) = (Console.Error, Console.Out);
            Console.SetError(err);
            Console.SetOut(TextWriter.Null);
            long alloc0 = GC.GetAllocatedBytesForCurrentThread();
            try { rc = Program.Main(args); }
            finally { Console.SetError(oldErr); Console.SetOut(oldOut); }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - alloc0;
            Assert.True(allocated < MemoryLimit, $"{cmd}: allocated {allocated >> 20} MiB");
            text = err.ToString();
        }
        Assert.DoesNotContain("   at ", text);
        Assert.DoesNotContain("internal error", text);
        Assert.DoesNotContain("Unhandled exception", text);
        if (rc != 0)
        {
            Assert.True(rc is 1 or 2, $"{cmd}: exit code {rc}: {text}");
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var errors = lines.Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();
            Assert.True(errors.Length == 1, $"{cmd}: expected one error line, got: {text}");
            Assert.True(names.Any(n => errors[0].Contains(n, StringComparison.Ordinal)), $"{cmd}: the error names none of {string.Join(", ", names)}: {errors[0]}");
        }
        var after = Snapshot(root);
        foreach (var (f, h) in before)
            Assert.True(after.TryGetValue(f, out var h2) && h2 == h, $"{cmd}: {f} was changed or deleted");
        return (rc, text);
    }

    // A copy of the model folder in which one file is replaced by its corrupted bytes.
    private string CorruptModel(string relative, byte[] bytes)
    {
        var dir = Path.Combine(fx.Dir.Path, "m-" + Interlocked.Increment(ref _n));
        foreach (var f in Directory.GetFiles(fx.Model, "*", SearchOption.AllDirectories))
        {
            var to = Path.Combine(dir, Path.GetRelativePath(fx.Model, f));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(f, to);
        }
        File.WriteAllBytes(Path.Combine(dir, relative), bytes);
        return dir;
    }

    private void SampleWith(string relative, byte[] bytes, bool child = false)
    {
        var dir = CorruptModel(relative, bytes);
        Run(new[] { Path.GetFileName(relative), "Sampling produced" }, dir, child, "sample", "-m", dir, "-n", "1", "--steps", "2", "--class", "0", "-o", Fresh(dir, ".png"));
        Directory.Delete(dir, recursive: true);
    }

    private static IEnumerable<int> Cuts(int length, int max)
    {
        if (length <= max) return Enumerable.Range(0, length);
        var r = new Random(length);
        return new[] { 0, 1, 7, 8, 9, length / 2, length - 1 }.Concat(Enumerable.Range(0, max - 7).Select(_ => r.Next(length))).Distinct();
    }

    public static TheoryData<string> ModelFiles() => new()
    {
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json", "model_info.json",
    };

    [Theory]
    [MemberData(nameof(ModelFiles))]
    public void TruncatedModelFilesFailCleanly(string relative)
    {
        var full = File.ReadAllBytes(Path.Combine(fx.Model, relative));
        foreach (int cut in Cuts(full.Length, 24)) SampleWith(relative, full[..cut]);
    }

    [Theory]
    [MemberData(nameof(ModelFiles))]
    public void ByteFlippedModelFilesFailCleanlyOrSample(string relative)
    {
        var full = File.ReadAllBytes(Path.Combine(fx.Model, relative));
        Gen.Select(Gen.Int[0, full.Length - 1], Gen.Byte).Array[1, 4].Sample(flips =>
        {
            var b = (byte[])full.Clone();
            foreach (var (pos, v) in flips) b[pos] ^= (byte)(v | 1);
            SampleWith(relative, b);
        }, iter: 12, threads: 1, seed: "0N0XIzNsQ0O2");
    }

    // Values a hostile or careless config can hold for any key.
    private static readonly string[] Hostile = { "null", "true", "\"x\"", "-1", "0", "1e308", "2147483648", "[]", "{}", "\"NaN\"", "0.5" };

    public static TheoryData<string> JsonModelFiles() => new() { "unet/config.json", "scheduler/scheduler_config.json", "model_info.json" };

    [Theory]
    [MemberData(nameof(JsonModelFiles))]
    public void HostileJsonValuesFailCleanlyOrSample(string relative)
    {
        var obj = JsonNode.Parse(File.ReadAllText(Path.Combine(fx.Model, relative)))!.AsObject();
        foreach (var key in obj.Select(kv => kv.Key).ToArray())
            foreach (var v in Hostile)
            {
                var copy = JsonNode.Parse(obj.ToJsonString())!.AsObject();
                copy[key] = JsonNode.Parse(v);
                // a huge size is where memory could run away: those cases run as child processes with their peak memory measured
                try { SampleWith(relative, System.Text.Encoding.UTF8.GetBytes(copy.ToJsonString()), child: v == "2147483648" && obj[key]?.GetValueKind() == System.Text.Json.JsonValueKind.Number); }
                catch (Exception e) { throw new Xunit.Sdk.XunitException($"{relative} with {key}: {v}: {e.Message}"); }
            }
        foreach (var doc in new[] { "", "[]", "null", "{", "{\"a\":", "\"text\"", "{}", "{\"_class_name\": 5}", new string('[', 5000) })
            SampleWith(relative, System.Text.Encoding.UTF8.GetBytes(doc));
    }

    [Fact]
    public void CorruptGuideImagesFailCleanly()
    {
        var png = File.ReadAllBytes(fx.Png);
        var dir = Path.Combine(fx.Dir.Path, "png");
        Directory.CreateDirectory(dir);
        void Try(byte[] b)
        {
            var f = Fresh(dir, "-in.png");
            File.WriteAllBytes(f, b);
            Run(new[] { Path.GetFileName(f) }, dir, "img2img", "-m", fx.Model, "-i", f, "-n", "1", "--steps", "2", "--class", "0", "-o", Fresh(dir, ".png"));
        }
        foreach (int cut in Cuts(png.Length, 30)) Try(png[..cut]);
        Gen.Select(Gen.Int[0, png.Length - 1], Gen.Byte).Array[1, 3].Sample(flips =>
        {
            var b = (byte[])png.Clone();
            foreach (var (pos, v) in flips) b[pos] ^= (byte)(v | 1);
            Try(b);
        }, iter: 20, threads: 1, seed: "0N0XIzNsQ0O2");
        if (File.Exists("/dev/zero")) Run(new[] { "/dev/zero" }, dir, true, "img2img", "-m", fx.Model, "-i", "/dev/zero", "-n", "1", "--steps", "2", "--class", "0", "-o", Fresh(dir, ".png"));
    }

    [Fact]
    public void CorruptIdxDataFailsCleanly()
    {
        var file = Path.Combine(fx.Data, "train-images-idx3-ubyte");
        var bytes = File.ReadAllBytes(file);
        void Try(byte[] b, bool child = false)
        {
            var dir = Path.Combine(fx.Dir.Path, "idx-" + Interlocked.Increment(ref _n));
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, "train-images-idx3-ubyte"), b);
            File.Copy(Path.Combine(fx.Data, "train-labels-idx1-ubyte"), Path.Combine(dir, "train-labels-idx1-ubyte"));
            Run(new[] { "train-images-idx3-ubyte" }, dir, child, "train", "-o", Fresh(dir, ""), "--data", dir, "--config", fx.Config, "--steps", "1", "--batch", "2", "--log-every", "0");
            Directory.Delete(dir, recursive: true);
        }
        foreach (int cut in Cuts(bytes.Length, 20)) Try(bytes[..cut]);
        var bomb = (byte[])bytes.Clone();
        bomb[4] = 0x7f;  // a first dimension of ~2e9 images
        Try(bomb, child: true);
        Gen.Select(Gen.Int[0, 15], Gen.Byte).Array[1, 3].Sample(flips =>
        {
            var b = (byte[])bytes.Clone();
            foreach (var (pos, v) in flips) b[pos] ^= (byte)(v | 1);  // the header
            Try(b);
        }, iter: 15, threads: 1, seed: "0N0XIzNsQ0O2");
    }

    [Fact]
    public void TrainInitFineTunesARunAndRefusesWhatIsNotAModel()
    {
        var run = Path.Combine(fx.Dir.Path, "init-src");
        Assert.Equal(0, Run(Array.Empty<string>(), fx.Dir.Path, "train", "-o", run, "--data", fx.Data, "--config", fx.Config, "--steps", "1", "--batch", "2", "--log-every", "0").Rc);
        Assert.Equal(0, Run(Array.Empty<string>(), fx.Dir.Path, "train", "-o", Fresh(fx.Dir.Path, ""), "--data", fx.Data, "--init", run, "--steps", "1", "--batch", "2", "--log-every", "0").Rc);
        Assert.NotEqual(0, Run(new[] { "--config" }, fx.Dir.Path, "train", "-o", Fresh(fx.Dir.Path, ""), "--data", fx.Data, "--init", run, "--config", fx.Config, "--steps", "1").Rc);
        Assert.NotEqual(0, Run(new[] { "--init" }, fx.Dir.Path, "train", "-o", Fresh(fx.Dir.Path, ""), "--data", fx.Data, "--init", fx.Data, "--steps", "1").Rc);
        var weights = File.ReadAllBytes(Path.Combine(run, "unet", "diffusion_pytorch_model.safetensors"));
        foreach (int cut in Cuts(weights.Length, 10))
        {
            var unet = Path.Combine(fx.Dir.Path, "init-cut-" + Interlocked.Increment(ref _n));
            Directory.CreateDirectory(unet);
            File.Copy(Path.Combine(run, "unet", "config.json"), Path.Combine(unet, "config.json"));
            File.WriteAllBytes(Path.Combine(unet, "diffusion_pytorch_model.safetensors"), weights[..cut]);
            Assert.NotEqual(0, Run(new[] { "diffusion_pytorch_model.safetensors" }, fx.Dir.Path,
                "train", "-o", Fresh(fx.Dir.Path, ""), "--data", fx.Data, "--init", unet, "--steps", "1", "--batch", "2").Rc);
            Directory.Delete(unet, recursive: true);
        }
    }

    [Fact]
    public void CorruptRunFolderFailsCleanlyAtResume()
    {
        var run = Path.Combine(fx.Dir.Path, "run-src");
        if (!Directory.Exists(run))
            Assert.Equal(0, Run(Array.Empty<string>(), fx.Dir.Path, "train", "-o", run, "--data", fx.Data, "--config", fx.Config, "--steps", "2", "--batch", "2", "--log-every", "1").Rc);
        foreach (var relative in new[] { "checkpoint/trainer_state.json", "metrics.jsonl", "checkpoint/model.safetensors", "checkpoint/optimizer.safetensors" })
        {
            var full = File.ReadAllBytes(Path.Combine(run, relative));
            foreach (int cut in Cuts(full.Length, 10))
            {
                var copy = Path.Combine(fx.Dir.Path, "run-" + Interlocked.Increment(ref _n));
                foreach (var f in Directory.GetFiles(run, "*", SearchOption.AllDirectories))
                {
                    var to = Path.Combine(copy, Path.GetRelativePath(run, f));
                    Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                    File.Copy(f, to);
                }
                File.WriteAllBytes(Path.Combine(copy, relative), full[..cut]);
                // the run's own files may be rewritten by a successful resume; the inputs (data, config) may not
                var (rc, err) = RunResume(copy);
                if (rc != 0) Assert.Contains(Path.GetFileName(relative), err);
                Directory.Delete(copy, recursive: true);
            }
        }
    }

    private (int, string) RunResume(string copy) =>
        Run(new[] { "trainer_state.json", "model.safetensors", "optimizer.safetensors", "metrics.jsonl", "checkpoint" }, fx.Data,
            "train", "-o", copy, "--resume", "--data", fx.Data);

    // Every numeric option of every command, read from the command tree itself so a new option is not forgotten.
    private static IEnumerable<(string Command, Option Option)> NumericOptionsOf(Command c, string path)
    {
        foreach (var o in c.Options)
        {
            var t = Nullable.GetUnderlyingType(o.ValueType) ?? o.ValueType;
            if (t == typeof(int) || t == typeof(long) || t == typeof(ulong) || t == typeof(double) || t == typeof(float))
                yield return (path, o);
        }
        foreach (var sub in c.Subcommands)
            foreach (var x in NumericOptionsOf(sub, (path + " " + sub.Name).Trim()))
                yield return x;
    }

    public static TheoryData<string, string> NumericOptions()
    {
        var data = new TheoryData<string, string>();
        foreach (var (cmd, o) in NumericOptionsOf(Program.CreateRootCommand(), ""))
            data.Add(cmd == "" ? "sample" : cmd, o.Name);  // a global option (--threads) is tried on sample
        return data;
    }

    private static readonly string[] BoundaryValues = { "0", "-1", "2147483648", "9223372036854775808", "1e308", "NaN", "Infinity", "-Infinity", "abc", "" };

    /// <summary>
    /// The boundary values each option accepts because they mean something; every other boundary value must be a usage error
    /// (exit 2) naming the option. An accepted value runs the command on the tiny fixtures and must succeed.
    /// </summary>
    private static bool Accepts(string command, string option, string value) => (option, value) switch
    {
        ("--seed", "0" or "2147483648" or "9223372036854775808") => true,         // any 64-bit unsigned seed
        ("--guidance", "0" or "-1") => true,                                      // 0: unconditional; negative scales are allowed (|w| <= 100)
        ("--eta", "0") => true,                                                   // DDIM eta 0: deterministic
        ("--p-mean", "0" or "-1") => true,                                        // train (edm): the mean of ln sigma may be any value in -20..20
        ("--p-std" or "--dropout", "0") => true,                                  // train: a fixed ln sigma (edm); no resnet dropout
        ("--count", "0") => command == "eval",                                    // eval: 0 = the whole test split (8 images in the fixture)
        ("--timesteps", "0") => true,                                             // eval: 0 = every t of the chain
        ("--warmup" or "--ema" or "--class-dropout" or "--checkpoint-every" or "--sample-every" or "--log-every", "0") => true,  // 0 disables
        ("--bucket-mb", "0") => command == "bench allreduce",                     // 0: the whole gradient in one all-reduce
        ("--port", "0") => true,                                                  // serve: any free port
        _ => false,
    };

    // Long-running commands whose accepted values are only parsed: serve runs until stopped, bench allreduce needs mpirun.
    private static bool ParseOnly(string command) => command is "serve" or "bench allreduce";

    // Options that keep an accepted run tiny; the option under test replaces its own entry.
    private (string Option, string? Value)[] BaseArgs(string command, string option, string dir) => command switch
    {
        "sample" => new (string, string?)[] { ("-m", fx.Model), ("--class", "0"), ("--steps", "1"), ("--count", "1"), ("--batch", "2"), ("-o", Fresh(dir, ".png")) },
        "img2img" or "inpaint" => new (string, string?)[] { ("-m", fx.Model), ("-i", fx.Png), ("--class", "0"), ("--steps", "2"), ("--count", "1"), ("-o", Fresh(dir, ".png")) },
        "interpolate" => new (string, string?)[] { ("-m", fx.Model), ("--a", fx.Png), ("--b", fx.Png), ("--class", "0"), ("--steps", "2"), ("--frames", "2"), ("-o", Fresh(dir, ".png")) },
        "denoise-steps" => new (string, string?)[] { ("-m", fx.Model), ("--class", "0"), ("--steps", "2"), ("--count", "1"), ("--shown", "2"), ("-o", Fresh(dir, ".png")) },
        "train" => new (string, string?)[] { ("--data", fx.Data), ("--config", fx.Config), ("--steps", "1"), ("--batch", "2"), ("-o", Fresh(dir, "")) },
        "train-classifier" => new (string, string?)[] { ("--data", fx.Data), ("--steps", "1"), ("--batch", "2"), ("--widths", "4"), ("--features", "4"), ("-o", Fresh(dir, "")) },
        // bits/dim options run bits/dim on 2 test images; the --fid options run FID on 4 generated samples against the 8 test images
        "eval" when option is "--count" or "--timesteps" or "--batch" or "--seed" =>
            new (string, string?)[] { ("-m", fx.Model), ("--data", fx.Data), ("--count", "2"), ("--timesteps", "2"), ("--batch", "2") },
        "eval" => new (string, string?)[] { ("--fid", null), ("-m", fx.Model), ("--data", fx.Data), ("--classifier", fx.Classifier), ("--samples", "4"), ("--steps", "1"), ("--reference-count", "4"), ("--k", "1") },
        _ => Array.Empty<(string, string?)>(),
    };

    [Fact]
    public void EveryCommandWithNumericOptionsHasTinyBaseArguments()
    {
        var commands = NumericOptions().Select(r => (string)r[0]).Distinct().ToArray();
        Assert.Contains("bench gemm", commands);
        foreach (var c in commands)
            Assert.True(c.StartsWith("bench", StringComparison.Ordinal) || c == "serve" || BaseArgs(c, "", fx.Dir.Path).Length > 0, $"{c} has no base arguments");
    }

    [Theory]
    [MemberData(nameof(NumericOptions))]
    public void BoundaryValuesOfNumericOptionsAreRejectedByName(string command, string option)
    {
        var dir = Path.Combine(fx.Dir.Path, "opt");
        Directory.CreateDirectory(dir);
        foreach (var v in BoundaryValues)
        {
            var args = command.Split(' ').ToList();
            args.AddRange(new[] { option, v });
            foreach (var (o, val) in BaseArgs(command, option, dir))
                if (o != option && !(o == "-m" && option == "--model"))
                {
                    args.Add(o);
                    if (val != null) args.Add(val);
                }
            bool accepted = Accepts(command, option, v);
            if (accepted && ParseOnly(command))
            {
                var parse = Program.CreateRootCommand().Parse(args);
                Assert.True(parse.Errors.Count == 0, $"{string.Join(' ', args)}: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
                continue;
            }
            var (rc, err) = Run(new[] { option }, dir, args.ToArray());
            Assert.True(accepted ? rc == 0 : rc == 2, $"{string.Join(' ', args)}: exit code {rc} (expected {(accepted ? "success" : "a usage error")}): {err}");
        }
    }
}
