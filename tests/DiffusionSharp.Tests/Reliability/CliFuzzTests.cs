using System.Security.Cryptography;
using System.Text.Json.Nodes;
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

    public FuzzFixture()
    {
        Config = Dir.File("config.json");
        File.WriteAllText(Config, CheckpointCrashTests.TinyConfig);
        Data = Dir.Sub("data");
        var pixels = new byte[16 * 16];
        new Random(4).NextBytes(pixels);
        Idx.Write(Path.Combine(Data, "train-images-idx3-ubyte"), new IdxArray(IdxType.UInt8, new[] { 16, 4, 4 }, pixels));
        Idx.Write(Path.Combine(Data, "train-labels-idx1-ubyte"), new IdxArray(IdxType.UInt8, new[] { 16 }, Enumerable.Range(0, 16).Select(i => (byte)(i % 2)).ToArray()));
        var ds = Datasets.Open(Data);
        Model = Dir.File("model");
        var t = Trainer.Create(new TrainOptions { ModelConfigPath = Config, BatchSize = 4, Steps = 2, CheckpointEvery = 0, LogEvery = 1, ClassConditional = true, EmaDecay = 0.9 }, Model, ds);
        t.Run(CancellationToken.None);
        Png = Dir.File("guide.png");
        using var img = DiffusionSharp.Tensors.Tensor.Zeros(1, 1, 4, 4);
        ImageGrid.Save(Png, img, nrow: 1, padding: 0);
    }

    public void Dispose() => Dir.Dispose();
}

/// <summary>
/// Bad inputs the way a fuzzer makes them, per file kind and per command: truncations, random byte flips, hostile JSON and
/// boundary values of numeric options. Every case ends in success or in a one-line error naming the file or option
/// (exit code 1 or 2, no stack trace), allocates under 1 GB, and changes no existing file.
/// </summary>
[Collection("console")]
public class CliFuzzTests(FuzzFixture fx) : IClassFixture<FuzzFixture>
{
    private static int _n;

    private static string Fresh(string dir, string ext) => Path.Combine(dir, $"out-{Interlocked.Increment(ref _n)}{ext}");

    private static Dictionary<string, string> Snapshot(string root) =>
        Directory.GetFiles(root, "*", SearchOption.AllDirectories).Where(f => !Path.GetFileName(f).StartsWith("out-", StringComparison.Ordinal) && !f.Contains("/out-"))
            .ToDictionary(f => f, f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    /// <summary>Runs the CLI in-process; checks the outcome rules and returns (exit code, stderr).</summary>
    private static (int Rc, string Err) Run(string[] names, string root, params string[] args)
    {
        var before = Snapshot(root);
        var err = new StringWriter();
        var (oldErr, oldOut) = (Console.Error, Console.Out);
        Console.SetError(err);
        Console.SetOut(TextWriter.Null);
        long alloc0 = GC.GetAllocatedBytesForCurrentThread();
        int rc;
        try { rc = Program.Main(args); }
        finally { Console.SetError(oldErr); Console.SetOut(oldOut); }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - alloc0;
        string text = err.ToString(), cmd = string.Join(' ', args);
        Assert.True(allocated < 1L << 30, $"{cmd}: allocated {allocated >> 20} MiB");
        Assert.DoesNotContain("   at ", text);
        Assert.DoesNotContain("internal error", text);
        if (rc != 0)
        {
            Assert.True(rc is 1 or 2, $"{cmd}: exit code {rc}");
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

    private void SampleWith(string relative, byte[] bytes)
    {
        var dir = CorruptModel(relative, bytes);
        Run(new[] { Path.GetFileName(relative), "Sampling produced" }, dir, "sample", "-m", dir, "-n", "1", "--steps", "2", "--class", "0", "-o", Fresh(dir, ".png"));
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

    [Theory]
    [MemberData(nameof(ModelFiles))]
    public void HostileJsonValuesFailCleanlyOrSample(string relative)
    {
        if (relative.EndsWith(".safetensors", StringComparison.Ordinal)) return;  // not JSON
        var obj = JsonNode.Parse(File.ReadAllText(Path.Combine(fx.Model, relative)))!.AsObject();
        foreach (var key in obj.Select(kv => kv.Key).ToArray())
            foreach (var v in Hostile)
            {
                var copy = JsonNode.Parse(obj.ToJsonString())!.AsObject();
                copy[key] = JsonNode.Parse(v);
                try { SampleWith(relative, System.Text.Encoding.UTF8.GetBytes(copy.ToJsonString())); }
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
        if (File.Exists("/dev/zero")) Run(new[] { "/dev/zero" }, dir, "img2img", "-m", fx.Model, "-i", "/dev/zero", "-n", "1", "--steps", "2", "--class", "0", "-o", Fresh(dir, ".png"));
    }

    [Fact]
    public void CorruptIdxDataFailsCleanly()
    {
        var file = Path.Combine(fx.Data, "train-images-idx3-ubyte");
        var bytes = File.ReadAllBytes(file);
        void Try(byte[] b)
        {
            var dir = Path.Combine(fx.Dir.Path, "idx-" + Interlocked.Increment(ref _n));
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, "train-images-idx3-ubyte"), b);
            File.Copy(Path.Combine(fx.Data, "train-labels-idx1-ubyte"), Path.Combine(dir, "train-labels-idx1-ubyte"));
            Run(new[] { "train-images-idx3-ubyte" }, dir, "train", "-o", Fresh(dir, ""), "--data", dir, "--config", fx.Config, "--steps", "1", "--batch", "2", "--log-every", "0");
            Directory.Delete(dir, recursive: true);
        }
        foreach (int cut in Cuts(bytes.Length, 20)) Try(bytes[..cut]);
        var bomb = (byte[])bytes.Clone();
        bomb[4] = 0x7f;  // a first dimension of ~2e9 images
        Try(bomb);
        Gen.Select(Gen.Int[0, 15], Gen.Byte).Array[1, 3].Sample(flips =>
        {
            var b = (byte[])bytes.Clone();
            foreach (var (pos, v) in flips) b[pos] ^= (byte)(v | 1);  // the header
            Try(b);
        }, iter: 15, threads: 1, seed: "0N0XIzNsQ0O2");
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

    public static TheoryData<string, string> NumericOptions() => new()
    {
        { "sample", "--count" }, { "sample", "--steps" }, { "sample", "--batch" }, { "sample", "--guidance" }, { "sample", "--eta" }, { "sample", "--nrow" },
        { "img2img", "--strength" }, { "img2img", "--count" }, { "img2img", "--steps" }, { "inpaint", "--jumps" }, { "inpaint", "--count" },
        { "interpolate", "--frames" }, { "interpolate", "--steps" }, { "denoise-steps", "--steps" }, { "denoise-steps", "--shown" }, { "denoise-steps", "--count" },
        { "train", "--batch" }, { "train", "--steps" }, { "train", "--resolution" }, { "train", "--lr" }, { "train", "--ema" }, { "train", "--class-dropout" },
        { "train", "--warmup" }, { "train", "--checkpoint-every" }, { "train", "--log-every" }, { "eval", "--count" }, { "eval", "--batch" }, { "eval", "--timesteps" },
        { "eval", "--k" }, { "train-classifier", "--steps" }, { "train-classifier", "--batch" }, { "sample", "--threads" },
    };

    [Theory]
    [MemberData(nameof(NumericOptions))]
    public void BoundaryValuesOfNumericOptionsAreRejectedByName(string command, string option)
    {
        var dir = Path.Combine(fx.Dir.Path, "opt");
        Directory.CreateDirectory(dir);
        foreach (var v in new[] { "-1", "2147483648", "9223372036854775808", "NaN", "Infinity", "-Infinity", "1e308", "abc", "" })
        {
            var args = new List<string> { command, option, v, "-o", Fresh(dir, command.StartsWith("train", StringComparison.Ordinal) ? "" : ".png") };
            if (command is "img2img" or "inpaint") args.AddRange(new[] { "-i", fx.Png });
            if (command is "interpolate") args.AddRange(new[] { "--a", fx.Png, "--b", fx.Png });
            if (command is "eval") args.RemoveRange(3, 2);
            // a value that is accepted runs the command: keep that run tiny
            var extra = command switch
            {
                "sample" => new[] { "-m", fx.Model, "--class", "0", "--steps", "1", "--count", "1", "--batch", "2" },
                "img2img" or "inpaint" => new[] { "-m", fx.Model, "--class", "0", "--steps", "2", "--count", "1" },
                "interpolate" => new[] { "-m", fx.Model, "--class", "0", "--steps", "2", "--frames", "2" },
                "denoise-steps" => new[] { "-m", fx.Model, "--class", "0", "--steps", "2", "--count", "1", "--shown", "2" },
                "train" => new[] { "--data", fx.Data, "--config", fx.Config, "--steps", "1", "--batch", "2" },
                "train-classifier" => new[] { "--data", fx.Data, "--steps", "1", "--batch", "2" },
                _ => new[] { "-m", fx.Model },
            };
            for (int i = 0; i < extra.Length; i += extra[i].StartsWith('-') && i + 1 < extra.Length && !extra[i + 1].StartsWith("--", StringComparison.Ordinal) ? 2 : 1)
                if (extra[i] != option) args.AddRange(extra.Skip(i).Take(i + 1 < extra.Length && !extra[i + 1].StartsWith("--", StringComparison.Ordinal) ? 2 : 1));
            var (rc, err) = Run(new[] { option }, dir, args.ToArray());
            Assert.True(rc == 2 || (v == "-1" && option is "--guidance") || (rc == 1 && option == "--threads"), $"{command} {option} {v}: exit code {rc}: {err}");
        }
    }
}
