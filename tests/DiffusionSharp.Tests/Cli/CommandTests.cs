using DiffusionSharp.Cli;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Cli;

[Collection("console")]
public class CommandTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-cli-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    // A tiny class-conditional model folder made by the trainer (2 steps).
    private string TinyModel()
    {
        Directory.CreateDirectory(_root);
        var cfg = Path.Combine(_root, "config.json");
        File.WriteAllText(cfg, """
        {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4}
        """);
        var pixels = new byte[12 * 64];
        new Random(3).NextBytes(pixels);
        var data = new InMemoryImageDataset(pixels, Enumerable.Range(0, 12).Select(i => i % 2).ToArray(), 1, 8, new[] { "dark", "light" }, "test");
        var dir = Path.Combine(_root, "model");
        var t = Trainer.Create(new TrainOptions { ModelConfigPath = cfg, BatchSize = 4, Steps = 2, ClassConditional = true, CheckpointEvery = 0 }, dir, data);
        t.Run(CancellationToken.None);
        return dir;
    }

    internal static int Run(params string[] args)
    {
        var err = Console.Error;
        Console.SetError(TextWriter.Null);
        try { return Program.Main(args); }
        finally { Console.SetError(err); }
    }

    [Fact]
    public void BenchUnetReportsThroughputAgainstMeasuredPeak()
    {
        var outw = Console.Out;
        var sw = new StringWriter();
        Console.SetOut(sw);
        try { Assert.Equal(0, Run("bench", "unet", "--preset", "ddpm-small", "--batch", "2", "--steps", "1", "--json", "--no-peer", "--eval-batches", "2")); }
        finally { Console.SetOut(outw); }
        using var doc = System.Text.Json.JsonDocument.Parse(sw.ToString().Trim().Split('\n')[0]);
        var r = doc.RootElement;
        Assert.Equal(1, r.GetProperty("micro_batch").GetInt32());  // as diffusion train: half the batch
        double peak = r.GetProperty("peak_gflop_per_s").GetDouble(), eval = r.GetProperty("eval_gflop_per_s").GetDouble();
        Assert.True(peak > 0 && eval > 0, $"peak {peak}, eval {eval}");
        double fraction = r.GetProperty("eval_peak_fraction").GetDouble();
        Assert.True(Math.Abs(fraction - eval / peak) < 2e-3, $"eval_peak_fraction {fraction} but eval/peak = {eval / peak}");
        // FLOPs are counted as direct convolution, so a fast algorithm (Winograd) or a peak measured under load can pass 1
        double train = r.GetProperty("train_gflop_per_s").GetDouble(), trainFraction = r.GetProperty("train_peak_fraction").GetDouble();
        Assert.True(train > 0 && Math.Abs(trainFraction - train / peak) < 2e-3, $"train_peak_fraction {trainFraction} but train/peak = {train / peak}");
    }

    [Fact]
    public void BenchUnetComparesEvalWithOnnxRuntimeAndCountsExecutedFlops()
    {
        var outw = Console.Out;
        var sw = new StringWriter();
        Console.SetOut(sw);
        try
        {
            Assert.Equal(0, Run("bench", "unet", "--preset", "ddpm-small", "--batch", "1", "--steps", "1", "--json", "--eval-batches", "1",
                "--peer-script", Path.Combine(_root, "no-such-peer.py")));
        }
        finally { Console.SetOut(outw); }
        var lines = sw.ToString().Trim().Split('\n').Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        var ours = lines[0];
        // Winograd F(2x2) does 16 multiply-adds per 4 outputs where direct convolution does 36, so fewer FLOPs run than are counted.
        double counted = ours.GetProperty("forward_gflop_per_image").GetDouble(), executed = ours.GetProperty("forward_gflop_per_image_executed").GetDouble();
        Assert.True(executed > 0.3 * counted && executed < counted, $"executed {executed} vs direct count {counted}");
        var eval = lines.Single(l => l.GetProperty("impl").GetString() == "eval");
        Assert.Equal(1, eval.GetProperty("batch").GetInt32());
        double diff = eval.GetProperty("max_abs_diff_vs_onnxruntime").GetDouble(), scale = eval.GetProperty("max_abs_output").GetDouble();
        // ONNX Runtime runs our own export of the same weights: the outputs agree to float32 rounding.
        Assert.True(diff < 1e-4 * Math.Max(1, scale), $"max |ours - ONNX Runtime| {diff} (max |out| {scale})");
        Assert.True(eval.GetProperty("onnxruntime_images_per_s").GetDouble() > 0 && eval.GetProperty("images_per_s").GetDouble() > 0);
    }

    [Fact]
    public void BenchUnetWarnsWhenThePeerRanOnTheReferenceBlas()
    {
        static System.Text.Json.JsonElement Peer(string blas) => System.Text.Json.JsonDocument.Parse($$"""{"peer": "pytorch", "peer_blas": [{{blas}}]}""").RootElement;
        // Debian's default libblas.so.3 alternative is the netlib reference, which ran the peer at a third of its speed
        var warning = DiffusionSharp.Cli.Commands.BenchUnetCommand.ReferenceBlasWarning(Peer(
            "\"/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0\", \"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so\""));
        Assert.NotNull(warning);
        Assert.Contains("/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0", warning);
        Assert.Contains("libopenblas0-openmp", warning);
        Assert.Null(DiffusionSharp.Cli.Commands.BenchUnetCommand.ReferenceBlasWarning(Peer(
            "\"/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3\", \"/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0\"")));
        // nothing mapped (a PyTorch wheel with MKL linked in) says nothing either way
        Assert.Null(DiffusionSharp.Cli.Commands.BenchUnetCommand.ReferenceBlasWarning(Peer("")));
    }

    [Fact]
    public void SampleAndEditCommandsWriteImages()
    {
        var model = TinyModel();
        var grid = Path.Combine(_root, "grid.png");
        Assert.Equal(0, Run("sample", "-m", model, "-n", "6", "--steps", "3", "--nrow", "3", "--class", "light", "--guidance", "2", "-o", grid, "--each", Path.Combine(_root, "each")));
        var img = Png.Read(grid);
        Assert.Equal(3 * 8 + 4 * 2, img.Width);  // 3 columns of 8 px with 2 px padding
        Assert.Equal(2 * 8 + 3 * 2, img.Height);
        Assert.Equal(6, Directory.GetFiles(Path.Combine(_root, "each"), "*.png").Length);

        var one = Path.Combine(_root, "each", "00000.png");
        var two = Path.Combine(_root, "each", "00001.png");
        Assert.Equal(0, Run("img2img", "-m", model, "-i", one, "-n", "2", "--steps", "5", "--class", "0", "-o", Path.Combine(_root, "a.png")));
        Assert.Equal(0, Run("inpaint", "-m", model, "-i", one, "-n", "2", "--steps", "5", "--jumps", "2", "--class", "0", "-o", Path.Combine(_root, "b.png")));
        Assert.Equal(0, Run("interpolate", "-m", model, "--a", one, "--b", two, "--frames", "3", "--steps", "4", "--class", "1", "-o", Path.Combine(_root, "c.png")));
        Assert.Equal(0, Run("denoise-steps", "-m", model, "-n", "2", "--steps", "6", "--shown", "3", "--class", "1", "-o", Path.Combine(_root, "d.png"), "--apng", Path.Combine(_root, "d-anim.png")));
        Assert.Equal(5 * 8 + 6 * 2, Png.Read(Path.Combine(_root, "c.png")).Width);  // a, 3 frames, b
        Assert.True(Png.ReadFrames(Path.Combine(_root, "d-anim.png")).Count >= 6);
        Assert.Equal(0, Run("info", model));

        // F16 export samples nearly the same images as the F32 original
        var half = Path.Combine(_root, "half");
        Assert.Equal(0, Run("export", "-m", model, "-o", half, "--half"));
        Assert.True(new FileInfo(Path.Combine(half, "unet", "diffusion_pytorch_model.safetensors")).Length
                    < 0.6 * new FileInfo(Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors")).Length);
        var p32 = DiffusionSharp.Diffusion.DiffusionPipeline.FromPretrained(model);
        var p16 = DiffusionSharp.Diffusion.DiffusionPipeline.FromPretrained(half);
        Assert.Equal(p32.NullClass, p16.NullClass);
        var req = new DiffusionSharp.Diffusion.SampleRequest { Count = 2, Steps = 3, ClassLabel = 1 };
        using var s32 = p32.Sample(req);
        using var s16 = p16.Sample(req);
        GradCheck.AssertClose(s16.Span, s32.Span, 2e-2, 0, "F16 vs F32 samples");
    }

    [Fact]
    public void EvalReportsBitsPerDimOnATestSplit()
    {
        var model = TinyModel();
        var dataDir = Path.Combine(_root, "idx");
        Directory.CreateDirectory(dataDir);
        var pixels = new byte[6 * 64];
        new Random(5).NextBytes(pixels);
        Idx.Write(Path.Combine(dataDir, "t10k-images-idx3-ubyte"), new IdxArray(IdxType.UInt8, new[] { 6, 8, 8 }, pixels));
        Idx.Write(Path.Combine(dataDir, "t10k-labels-idx1-ubyte"), new IdxArray(IdxType.UInt8, new[] { 6 }, new byte[] { 0, 1, 0, 1, 0, 1 }));
        var outWriter = new StringWriter();
        var stdout = Console.Out;
        Console.SetOut(outWriter);
        try { Assert.Equal(0, Run("eval", "-m", model, "--data", dataDir, "-n", "4", "--batch", "3", "--json")); }
        finally { Console.SetOut(stdout); }
        using var doc = System.Text.Json.JsonDocument.Parse(outWriter.ToString().Trim().Split('\n').Last());
        Assert.Equal(4, doc.RootElement.GetProperty("images").GetInt32());
        double bpd = doc.RootElement.GetProperty("bits_per_dim").GetDouble(), prior = doc.RootElement.GetProperty("prior_bpd").GetDouble();
        Assert.True(double.IsFinite(bpd) && bpd > 0, $"bits/dim {bpd}");
        Assert.InRange(prior, 0, 1e-3);  // KL(q(x_T|x_0) || N(0, I)) is tiny for the linear schedule
        Assert.True(bpd > prior);
    }

    [Fact]
    public void BadInputGivesErrorExitCode()
    {
        Assert.Equal(1, Run("sample", "-m", Path.Combine(_root, "missing"), "-o", Path.Combine(_root, "x.png")));
        var model = TinyModel();
        Assert.Equal(1, Run("sample", "-m", model, "--class", "nonsense", "-o", Path.Combine(_root, "x.png")));
        var corrupt = Path.Combine(_root, "corrupt.png");
        File.WriteAllBytes(corrupt, new byte[] { 0x89, 0x50, 0x4E, 0x47, 1, 2, 3 });
        Assert.Equal(1, Run("img2img", "-m", model, "-i", corrupt, "--class", "0", "-o", Path.Combine(_root, "y.png")));
        Assert.False(File.Exists(Path.Combine(_root, "y.png")));
    }
}
