using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using DiffusionSharp.Evaluation;
using Xunit;

namespace DiffusionSharp.Tests.Reliability;

/// <summary>
/// The fuzz cases of <c>info</c>, <c>eval --fid</c> (sample folders, the reference split) and classifier folders, and
/// outputs that are symbolic links.
/// </summary>
public partial class CliFuzzTests
{
    private const string Seed = "0N0XIzNsQ0O2";

    private static byte[] Flip(byte[] full, (int Pos, byte V)[] flips)
    {
        var b = (byte[])full.Clone();
        foreach (var (pos, v) in flips) b[pos] ^= (byte)(v | 1);
        return b;
    }

    // Truncations, CsCheck byte flips and (for JSON) hostile documents and values of one file, each handed to try.
    private static void Mutations(byte[] full, bool json, int cuts, int flips, Action<byte[]> attempt)
    {
        foreach (int cut in Cuts(full.Length, cuts)) attempt(full[..cut]);
        Gen.Select(Gen.Int[0, full.Length - 1], Gen.Byte).Array[1, 4].Sample(f => attempt(Flip(full, f)), iter: flips, threads: 1, seed: Seed);
        if (!json) return;
        foreach (var doc in new[] { "", "[]", "null", "{", "\"text\"", "{}", new string('[', 5000), "{\"a\": 1e400}" })
            attempt(Encoding.UTF8.GetBytes(doc));
        var obj = JsonNode.Parse(full)!.AsObject();
        foreach (var key in obj.Select(kv => kv.Key).ToArray())
            foreach (var v in new[] { "null", "\"x\"", "-1", "0", "2147483648", "[]", "{}" })
            {
                var copy = JsonNode.Parse(obj.ToJsonString())!.AsObject();
                copy[key] = JsonNode.Parse(v);
                attempt(Encoding.UTF8.GetBytes(copy.ToJsonString()));
            }
    }

    // A copy of a folder with one file replaced.
    private string CopyWith(string source, string relative, byte[] bytes)
    {
        var dir = Path.Combine(fx.Dir.Path, "c-" + Interlocked.Increment(ref _n));
        foreach (var f in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            var to = Path.Combine(dir, Path.GetRelativePath(source, f));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(f, to);
        }
        File.WriteAllBytes(Path.Combine(dir, relative), bytes);
        return dir;
    }

    private string RunFolder()
    {
        var run = Path.Combine(fx.Dir.Path, "run-src");
        lock (typeof(FuzzFixture))
            if (!Directory.Exists(run))
                Assert.Equal(0, Run(Array.Empty<string>(), fx.Dir.Path, "train", "-o", run, "--data", fx.Data, "--config", fx.Config, "--steps", "2", "--batch", "2", "--log-every", "1").Rc);
        return run;
    }

    public static TheoryData<string> InfoFiles() => new()
    {
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json", "model_info.json", "checkpoint/trainer_state.json",
    };

    [Theory]
    [MemberData(nameof(InfoFiles))]
    public void InfoOnCorruptFilesFailsCleanlyOrDescribes(string relative)
    {
        var source = relative.StartsWith("checkpoint/", StringComparison.Ordinal) ? RunFolder() : fx.Model;
        var full = File.ReadAllBytes(Path.Combine(source, relative));
        Mutations(full, relative.EndsWith(".json", StringComparison.Ordinal), 12, 8, b =>
        {
            var dir = CopyWith(source, relative, b);
            Run(new[] { Path.GetFileName(relative) }, dir, "info", dir);
            if (relative.EndsWith(".safetensors", StringComparison.Ordinal))
                Run(new[] { Path.GetFileName(relative) }, dir, "info", "--tensors", Path.Combine(dir, relative));
            Directory.Delete(dir, recursive: true);
        });
    }

    private string[] FidArgs(string samples, string? classifier = null, string? data = null) => new[]
    {
        "eval", "--fid", "--classifier", classifier ?? fx.Classifier, "--data", data ?? fx.Data, "--samples", samples, "--reference-count", "4", "--k", "1",
    };

    [Fact]
    public void EvalFidOnSampleFoldersWithCorruptOrOddPngsFailsCleanly()
    {
        var png = File.ReadAllBytes(fx.Png);
        int i = 0;
        void Try(Action<string> plant, bool child = false)
        {
            var dir = Path.Combine(fx.Dir.Path, "fid-" + Interlocked.Increment(ref _n));
            Directory.CreateDirectory(dir);
            for (int k = 0; k < 3; k++) File.Copy(fx.Png, Path.Combine(dir, $"good{k}.png"));
            plant(Path.Combine(dir, $"odd{i++}.png"));
            Run(new[] { "odd", "--samples" }, dir, child, FidArgs(dir));
            Directory.Delete(dir, recursive: true);
        }
        Mutations(png, json: false, 16, 12, b => Try(f => File.WriteAllBytes(f, b)));
        Try(f => Directory.CreateDirectory(f));                                       // a folder named like a PNG
        Try(f => File.WriteAllBytes(f, PngOfSize(8, 3)));                            // another size and RGB
        Try(f => File.WriteAllBytes(f, PngOfSize(4, 3)));                            // RGB where the classifier is gray
        Try(f => File.WriteAllBytes(f, PngHeaderClaiming(1 << 20, 1 << 20)), true);   // a header claiming 2^40 pixels
        // only odd files, or none at all
        var empty = Path.Combine(fx.Dir.Path, "fid-empty");
        Directory.CreateDirectory(empty);
        Run(new[] { "--samples", empty }, empty, FidArgs(empty));
    }

    private static byte[] PngOfSize(int size, int channels)
    {
        var f = Path.Combine(Path.GetTempPath(), $"png-{Guid.NewGuid():N}.png");
        using (var t = DiffusionSharp.Tensors.Tensor.Zeros(1, channels, size, size)) DiffusionSharp.IO.ImageGrid.Save(f, t, nrow: 1, padding: 0);
        var b = File.ReadAllBytes(f);
        File.Delete(f);
        return b;
    }

    // A PNG whose IHDR claims width x height (CRC fixed so the header itself is valid), with no image data.
    private static byte[] PngHeaderClaiming(int width, int height)
    {
        var b = PngOfSize(4, 1);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(16), width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(20), height);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(29), Crc32(b.AsSpan(12, 17)));
        return b;
    }

    // The PNG chunk CRC (ISO 3309, reflected polynomial 0xEDB88320).
    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte x in data)
        {
            c ^= x;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }

    public static TheoryData<string> ReferenceFiles() => new() { "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };

    [Theory]
    [MemberData(nameof(ReferenceFiles))]
    public void EvalFidWithACorruptReferenceSplitFailsCleanly(string file)
    {
        var full = File.ReadAllBytes(Path.Combine(fx.Data, file));
        Mutations(full, json: false, 12, 10, b =>
        {
            var data = CopyWith(fx.Data, file, b);
            Run(new[] { file }, data, FidArgs("train:4", data: data));
            Directory.Delete(data, recursive: true);
        });
    }

    public static TheoryData<string> ClassifierFiles() => new() { FeatureClassifier.ConfigFile, FeatureClassifier.WeightsFile };

    [Theory]
    [MemberData(nameof(ClassifierFiles))]
    public void CorruptClassifierFoldersFailCleanly(string file)
    {
        var full = File.ReadAllBytes(Path.Combine(fx.Classifier, file));
        Mutations(full, file.EndsWith(".json", StringComparison.Ordinal), 12, 10, b =>
        {
            var cls = CopyWith(fx.Classifier, file, b);
            Run(new[] { file }, cls, FidArgs("test:4", classifier: cls));
            var (rc, _) = Run(new[] { file }, cls, "info", cls);
            if (rc == 0) FeatureClassifier.Load(cls);  // info describes only a classifier folder that loads
            Directory.Delete(cls, recursive: true);
        });
    }

    [Fact]
    public void InfoDescribesAClassifierFolderAndRefusesAFolderWithoutAModel()
    {
        var (rc, _) = Run(Array.Empty<string>(), fx.Classifier, "info", fx.Classifier);
        Assert.Equal(0, rc);
        var (rc2, err) = Run(new[] { fx.Data }, fx.Data, "info", fx.Data);
        Assert.Equal(1, rc2);
        Assert.Contains("not a model, run or classifier folder", err);
    }

    [Fact]
    public void ClassifierParameterCountFromTheConfigMatchesTheNetwork()
    {
        foreach (var (ch, feat, classes, inCh) in new[] { (new[] { 4 }, 4, 2, 1), (new[] { 8, 16, 3 }, 5, 10, 3) })
        {
            var cfg = new ClassifierConfig { ImageSize = 8, InChannels = inCh, Channels = ch, FeatureDim = feat, NumClasses = classes };
            Assert.Equal(new FeatureClassifier(cfg).ParameterCount, cfg.ParameterCount);
        }
    }

    [Fact]
    public void OutputsAreNeverWrittenThroughASymbolicLink()
    {
        if (OperatingSystem.IsWindows()) return;  // symbolic links need privileges there
        var dir = Path.Combine(fx.Dir.Path, "links");
        Directory.CreateDirectory(dir);
        var target = Path.Combine(dir, "target.png");
        File.WriteAllBytes(target, new byte[] { 1, 2, 3 });
        var none = Path.Combine(fx.Dir.Path, "links-none");  // --overwrite runs replace the link by design: the target is checked by hand
        Directory.CreateDirectory(none);
        string[] Sample(string output, bool overwrite) =>
            new[] { "sample", "-m", fx.Model, "--class", "0", "--steps", "1", "-n", "1", "-o", output }.Concat(overwrite ? new[] { "--overwrite" } : Array.Empty<string>()).ToArray();

        // a link to an existing file: refused, then with --overwrite the link itself is replaced and the target is untouched
        var link = Path.Combine(dir, "link.png");
        File.CreateSymbolicLink(link, target);
        var (rc, err) = Run(new[] { "--output" }, dir, Sample(link, overwrite: false));
        Assert.Equal(1, rc);
        Assert.Contains("symbolic link", err);
        Assert.Equal("target.png", Path.GetFileName(new FileInfo(link).LinkTarget));
        Assert.Equal(0, Run(new[] { "--output" }, none, Sample(link, overwrite: true)).Rc);
        Assert.Null(new FileInfo(link).LinkTarget);
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(target));
        Assert.Equal(0x89, File.ReadAllBytes(link)[0]);  // a PNG now lies at the link's name

        // a dangling link: its target is never created
        var dangling = Path.Combine(dir, "dangling.png");
        var nowhere = Path.Combine(dir, "nowhere.png");
        File.CreateSymbolicLink(dangling, nowhere);
        Assert.Equal(1, Run(new[] { "--output" }, dir, Sample(dangling, overwrite: false)).Rc);
        Assert.False(File.Exists(nowhere));
        Assert.Equal(0, Run(new[] { "--output" }, none, Sample(dangling, overwrite: true)).Rc);
        Assert.False(File.Exists(nowhere));

        // a link planted at the side name the output is written under first (this process runs the command in-process)
        var output = Path.Combine(dir, "fresh.png");
        File.CreateSymbolicLink(Path.Combine(dir, $".fresh.png.{Environment.ProcessId}.tmp"), target);
        var outcome = Run(new[] { "--output" }, none, false, Sample(output, overwrite: false));  // the planted link is removed
        Assert.Equal(0, outcome.Rc);
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(target));
        Assert.Null(new FileInfo(output).LinkTarget);

        // --each into a folder that is a link, and --each images that are links
        var realEach = Path.Combine(dir, "each-real");
        Directory.CreateDirectory(realEach);
        var eachLink = Path.Combine(dir, "each-link");
        Directory.CreateSymbolicLink(eachLink, realEach);
        Assert.Equal(1, Run(new[] { "--each" }, dir, Sample(Fresh(dir, ".png"), false).Concat(new[] { "--each", eachLink }).ToArray()).Rc);
        Assert.Empty(Directory.GetFileSystemEntries(realEach));
    }
}
