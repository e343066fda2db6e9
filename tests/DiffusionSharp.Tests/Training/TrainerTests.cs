using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Training;

public class TrainerTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-trainer-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private const string TinyConfig = """
    {
      "sample_size": 8, "in_channels": 1, "out_channels": 1,
      "block_out_channels": [8, 16],
      "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
      "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
      "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4, "dropout": 0.1
    }
    """;

    // 40 random 8x8 gray images in 3 classes.
    private static InMemoryImageDataset TinyData(int count = 40)
    {
        var g = new Generator(99);
        var pixels = new byte[count * 64];
        var labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            labels[i] = i % 3;
            for (int p = 0; p < 64; p++) pixels[i * 64 + p] = (byte)(g.NextInt(64) + 60 * labels[i] + ((p % 8) < 4 ? 20 : 0));
        }
        return new InMemoryImageDataset(pixels, labels, 1, 8, new[] { "a", "b", "c" }, "tiny test images");
    }

    private TrainOptions Options(long steps, bool classCond = false)
    {
        var cfgPath = Path.Combine(_root, "config.json");
        Directory.CreateDirectory(_root);
        File.WriteAllText(cfgPath, TinyConfig);
        return new TrainOptions
        {
            ModelConfigPath = cfgPath, BatchSize = 4, Steps = steps, LearningRate = 1e-3, WarmupSteps = 3,
            EmaDecay = 0.99, CheckpointEvery = 0, LogEvery = 2, Seed = 5, RandomFlip = true, ClassConditional = classCond,
        };
    }

    private static float[] Weights(Trainer t) => t.Model.Parameters().SelectMany(p => p.ToArray()).ToArray();

    [Fact]
    public void ResumeContinuesBitExactly()
    {
        var data = TinyData();
        var straight = Trainer.Create(Options(20, classCond: true), Path.Combine(_root, "a"), data);
        straight.Run(CancellationToken.None);

        var first = Trainer.Create(Options(10, classCond: true), Path.Combine(_root, "b"), data);
        first.Run(CancellationToken.None);
        Assert.Equal(10, first.Step);
        var resumed = Trainer.Resume(Path.Combine(_root, "b"), data, steps: 20);
        Assert.Equal(10, resumed.Step);
        resumed.Run(CancellationToken.None);

        Assert.Equal(20, resumed.Step);
        Assert.Equal(Weights(straight), Weights(resumed));
        var emaA = straight.Ema!.Shadow.SelectMany(p => p.ToArray()).ToArray();
        var emaB = resumed.Ema!.Shadow.SelectMany(p => p.ToArray()).ToArray();
        Assert.Equal(emaA, emaB);
        Assert.NotEqual(Weights(first), Weights(resumed));  // training moved the weights
    }

    [Fact]
    public void NanLossStopsAndKeepsLastCheckpoint()
    {
        var data = TinyData();
        var dir = Path.Combine(_root, "nan");
        var t = Trainer.Create(Options(100), dir, data);
        for (int i = 0; i < 3; i++) t.TrainStep();
        t.SaveCheckpoint();
        var saved = Weights(t);
        t.Model.Parameters().First().Span.Fill(float.NaN);  // poison the weights
        var ex = Assert.Throws<TrainingDivergedException>(() => t.TrainStep());
        Assert.Contains("NaN", ex.Message);
        var back = Trainer.Resume(dir, data);
        Assert.Equal(3, back.Step);
        Assert.Equal(saved, Weights(back));
        Assert.All(Weights(back), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void CheckpointOfAnotherConfigIsRejected()
    {
        var dir = Path.Combine(_root, "other");
        var t = Trainer.Create(Options(2), dir, TinyData());
        t.Run(CancellationToken.None);
        // Same run folder, but a data set with 3 channels: the checkpoint no longer fits.
        var rgb = new InMemoryImageDataset(new byte[40 * 3 * 64], new int[40], 3, 8, new[] { "x" }, "rgb");
        var ex = Assert.Throws<InvalidDataException>(() => Trainer.Resume(dir, rgb));
        Assert.Contains("another model config", ex.Message);
    }

    [Fact]
    public void InitStartsFromTheGivenModelsWeightsAndTrainsOn()
    {
        var data = TinyData();
        var preDir = Path.Combine(_root, "pre");
        Trainer.Create(Options(3, classCond: true), preDir, data).Run(CancellationToken.None);
        // a run folder names its exported unet/, as an exported model folder does
        Assert.Equal(Path.Combine(preDir, "unet"), Trainer.InitFolder(preDir));
        var pre = UNet2DModel.FromPretrained(Path.Combine(preDir, "unet")).Parameters().SelectMany(p => p.ToArray()).ToArray();

        var tuned = Trainer.Create(Options(2, classCond: true) with { InitFrom = preDir, Dropout = 0 }, Path.Combine(_root, "tuned"), data);
        Assert.Equal(pre, Weights(tuned));
        Assert.Equal(pre, tuned.Ema!.Shadow.SelectMany(p => p.ToArray()).ToArray());
        Assert.Equal(0f, tuned.Model.Config.Dropout);
        var fresh = Trainer.Create(Options(2, classCond: true), Path.Combine(_root, "fresh"), data);
        Assert.NotEqual(pre, Weights(fresh));

        var losses = new List<double>();
        tuned.Run(CancellationToken.None, (r, _) => losses.Add(r.Loss));
        Assert.All(losses, l => Assert.True(double.IsFinite(l)));
        Assert.NotEqual(pre, Weights(tuned));
        // the fine-tuned run resumes from its own checkpoint, not from the model it started from
        var resumed = Trainer.Resume(Path.Combine(_root, "tuned"), data, steps: 3);
        Assert.Equal(Weights(tuned), Weights(resumed));
    }

    [Fact]
    public void InitRefusesAModelThatDoesNotFitTheRun()
    {
        var data = TinyData();
        var condDir = Path.Combine(_root, "cond");
        Trainer.Create(Options(1, classCond: true), condDir, data).Run(CancellationToken.None);
        var ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1) with { InitFrom = condDir }, Path.Combine(_root, "a"), data));
        Assert.Contains("add --class-conditional", ex.Message);
        var rgb = new InMemoryImageDataset(new byte[40 * 3 * 64], new int[40], 3, 8, new[] { "x", "y", "z" }, "rgb");
        ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1, classCond: true) with { InitFrom = condDir }, Path.Combine(_root, "b"), rgb));
        Assert.Contains("1-channel images; the data set's have 3", ex.Message);
        var two = new InMemoryImageDataset(new byte[40 * 64], new int[40], 1, 8, new[] { "x", "y" }, "two classes");
        ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1, classCond: true) with { InitFrom = condDir }, Path.Combine(_root, "c"), two));
        Assert.Contains("the model has 3 classes (and the null class); the data set has 2", ex.Message);
        ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1, classCond: true) with { InitFrom = condDir, Objective = TrainObjective.Hybrid }, Path.Combine(_root, "h"), data));
        Assert.Contains("the model outputs 1 channels; the Hybrid objective on this data needs 2", ex.Message);
        // what the network predicts comes from the scheduler config beside unet/
        ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1, classCond: true) with { InitFrom = condDir, Objective = TrainObjective.Edm }, Path.Combine(_root, "e"), data));
        Assert.Contains("drop --objective edm", ex.Message);
        ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1, classCond: true) with { InitFrom = condDir, VPrediction = true }, Path.Combine(_root, "v"), data));
        Assert.Contains("drop --v-prediction", ex.Message);
        var edmDir = Path.Combine(_root, "edm");
        Trainer.Create(Options(1, classCond: true) with { Objective = TrainObjective.Edm }, edmDir, data).Run(CancellationToken.None);
        ex = Assert.Throws<InvalidDataException>(() => Trainer.Create(Options(1, classCond: true) with { InitFrom = edmDir }, Path.Combine(_root, "s"), data));
        Assert.Contains("pass --objective edm", ex.Message);
        // the unet/ folder alone carries no objective: taken as asked
        Assert.NotNull(Trainer.Create(Options(1, classCond: true) with { InitFrom = Path.Combine(edmDir, "unet") }, Path.Combine(_root, "s2"), data));
        var none = Assert.Throws<DirectoryNotFoundException>(() => Trainer.Create(Options(1) with { InitFrom = _root }, Path.Combine(_root, "d"), data));
        Assert.Contains("neither a diffusers UNet folder", none.Message);
        Assert.False(Directory.Exists(Path.Combine(_root, "d")));
    }

    [Fact]
    public void LossDecreasesAndExportedModelSamples()
    {
        var data = TinyData();
        var dir = Path.Combine(_root, "export");
        var opts = Options(60) with { LearningRate = 3e-3, LogEvery = 1 };
        var t = Trainer.Create(opts, dir, data);
        var losses = new List<double>();
        t.Run(CancellationToken.None, (r, _) => losses.Add(r.Loss));
        Assert.True(losses.Skip(45).Average() < losses.Take(10).Average(), $"loss did not go down: {losses.Take(10).Average()} -> {losses.Skip(45).Average()}");
        Assert.True(File.Exists(Path.Combine(dir, "loss.png")));
        Assert.True(File.Exists(Path.Combine(dir, "metrics.jsonl")));

        var pipe = DiffusionPipeline.FromPretrained(dir);
        Assert.Equal(t.Model.ParameterCount, pipe.Unet.ParameterCount);
        foreach (var sampler in new[] { "dpmpp", "ddim", "euler", "k-dpmpp-2m" })
        {
            using var imgs = pipe.Sample(new SampleRequest { Count = 3, Steps = 4, Sampler = sampler, Seed = 1, BatchSize = 2 });
            Assert.Equal(new Shape(3, 1, 8, 8), imgs.Shape);
            Assert.All(imgs.ToArray(), v => Assert.InRange(v, -1f, 1f));
        }
        long callsBefore = pipe.NetworkCalls;
        double netBefore = pipe.NetworkTime.TotalSeconds;
        var wall = System.Diagnostics.Stopwatch.StartNew();
        using var a = pipe.Sample(new SampleRequest { Count = 2, Steps = 3, Seed = 7 });
        double wallSeconds = wall.Elapsed.TotalSeconds;
        Assert.Equal(3, pipe.NetworkCalls - callsBefore);  // DPM-Solver++ (2M): one network call per step
        Assert.InRange(pipe.NetworkTime.TotalSeconds - netBefore, 1e-7, wallSeconds);
        using var b = pipe.Sample(new SampleRequest { Count = 2, Steps = 3, Seed = 7 });
        Assert.Equal(a.ToArray(), b.ToArray());
    }

    [Fact]
    public void GuidanceNeedsNullClass()
    {
        var dir = Path.Combine(_root, "cfg");
        var t = Trainer.Create(Options(2, classCond: true), dir, TinyData());
        t.Run(CancellationToken.None);
        var pipe = DiffusionPipeline.FromPretrained(dir);
        Assert.Equal(3, pipe.NullClass);
        using var guided = pipe.Sample(new SampleRequest { Count = 2, Steps = 2, ClassLabel = 1, GuidanceScale = 3.0 });
        Assert.Equal(new Shape(2, 1, 8, 8), guided.Shape);
        Assert.Throws<ArgumentOutOfRangeException>(() => pipe.Sample(new SampleRequest { Count = 1, Steps = 2, ClassLabel = 3 }));
        var plain = new DiffusionPipeline(pipe.Unet, "{\"_class_name\": \"DDPMScheduler\"}");
        Assert.Throws<ArgumentException>(() => plain.Sample(new SampleRequest { Count = 1, Steps = 2, ClassLabel = 0, GuidanceScale = 2 }));
    }
}
