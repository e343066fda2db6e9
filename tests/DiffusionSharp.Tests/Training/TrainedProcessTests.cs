using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Tensors;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Training;

/// <summary>A model exported by the trainer samples with the noise process it was trained on, for any T and trained betas.</summary>
public class TrainedProcessTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-process-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private const string TinyConfig = """
    {
      "sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 8],
      "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
      "layers_per_block": 1, "norm_num_groups": 4
    }
    """;

    private static InMemoryImageDataset TinyData()
    {
        var g = new Generator(3);
        var pixels = new byte[8 * 64];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)g.NextInt(256);
        return new InMemoryImageDataset(pixels, new int[8], 1, 8, new[] { "all" }, "random 8x8 images");
    }

    private static double[] RisingBetas(int n)
    {
        var b = new double[n];
        for (int i = 0; i < n; i++) b[i] = 1e-4 + 0.03 * Math.Pow(i / (n - 1.0), 2);
        return b;
    }

    public static IEnumerable<object[]> Cases() => new[]
    {
        new object[] { "linear", false },
        new object[] { "cosine", false },
        new object[] { "linear", true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SamplingRunsTheTrainedProcessStepForStep(string schedule, bool trainedBetas)
    {
        const int T = 500;
        var dir = Path.Combine(_root, schedule + trainedBetas);
        Directory.CreateDirectory(dir);
        var cfgPath = Path.Combine(dir, "unet.json");
        File.WriteAllText(cfgPath, TinyConfig);
        var options = new TrainOptions
        {
            ModelConfigPath = cfgPath, BatchSize = 2, Steps = 1, WarmupSteps = 1, EmaDecay = 0, CheckpointEvery = 0, LogEvery = 1,
            NumTrainTimesteps = T, BetaSchedule = schedule, TrainedBetas = trainedBetas ? RisingBetas(T) : null,
        };
        var trainer = Trainer.Create(options, dir, TinyData());
        trainer.Run(CancellationToken.None);
        var trained = trainer.Diffusion;
        Assert.Equal(T, trained.NumTimesteps);
        if (trainedBetas) Assert.Equal(RisingBetas(T), trained.Betas);

        var pipe = DiffusionPipeline.FromPretrained(dir);
        Assert.Equal(trained.Betas, pipe.CreateGaussianDiffusion(T).Betas);  // the likelihood path: the same doubles
        var ddpm = Assert.IsType<DDPMScheduler>(pipe.CreateScheduler("ddpm"));
        Assert.Equal(T, ddpm.NumTrainTimesteps);
        // the scheduler keeps diffusers' float32 tables: a float32 cumulative product of 500 terms, nothing more
        for (int t = 0; t < T; t++)
            Assert.True(Math.Abs(ddpm.AlphasCumprod[t] - trained.AlphasCumprod[t]) <= 5e-5 * trained.AlphasCumprod[t],
                $"alpha_bar[{t}]: sampler {ddpm.AlphasCumprod[t]} vs trained {trained.AlphasCumprod[t]}");

        // every reverse step of the sampler equals the trained model's p(x_{t-1} | x_t): mean and variance
        var model = pipe.Denoiser();
        var x = Tensor.Randn(new Generator(11), 2, 1, 8, 8);
        using var zero = Tensor.Zeros(2, 1, 8, 8);
        for (int t = T - 1; t >= 0; t--)
        {
            var ts = new[] { t, t };
            using var output = model(x, Tensor.Full(new Shape(2), t));
            var p = trained.PMeanVarianceFromOutput(output, null, x, ts, clipDenoised: true);
            var step = ddpm.Step(output, t, x, zero);
            double maxMean = p.Mean.ToArray().Max(Math.Abs), err = 0;
            var a = step.PrevSample.Span; var b = p.Mean.Span;
            for (int i = 0; i < a.Length; i++) err = Math.Max(err, Math.Abs(a[i] - b[i]));
            Assert.True(err <= 1e-4 * Math.Max(maxMean, 1), $"t={t}: posterior mean differs by {err}");
            if (t > 0)
            {
                double v = Math.Exp(p.LogVariance.Span[0]);
                // float32 1 - abar_t / abar_{t-1} cancels about 3 of its 7 digits
                Assert.True(Math.Abs(ddpm.GetVariance(t) - v) <= 1e-3 * v, $"t={t}: variance {ddpm.GetVariance(t)} vs trained {v}");
            }
            x.Dispose();
            x = step.PrevSample;
        }
        x.Dispose();
    }

    [Fact]
    public void BadScheduleValuesNameTheFileAndKey()
    {
        Directory.CreateDirectory(_root);
        string Error(string json)
        {
            var path = Path.Combine(_root, "scheduler_config.json");
            File.WriteAllText(path, json);
            var e = Record.Exception(() => new DDPMScheduler(SchedulerConfig.Load(path)));
            Assert.NotNull(e);
            Assert.Contains(path, e!.Message);
            Assert.DoesNotContain("\n", e.Message);
            return e.Message;
        }
        Assert.Contains("beta_end", Error("{\"beta_end\": 1.5}"));
        Assert.Contains("beta_start", Error("{\"beta_start\": NaN}"));
        Assert.Contains("beta_start", Error("{\"beta_start\": -0.1}"));
        Assert.Contains("trained_betas[1]", Error("{\"num_train_timesteps\": 2, \"trained_betas\": [0.1, 0]}"));
        Assert.Contains("dynamic_thresholding_ratio", Error("{\"dynamic_thresholding_ratio\": 0}"));
        Assert.Contains("num_train_timesteps", Error("{\"num_train_timesteps\": \"many\"}"));
        Assert.Contains("not valid JSON", Error(""));
        Assert.Contains("not valid JSON", Error("{\"beta_start\": 0.1"));
        Assert.Contains("use_karras_sigmas", Assert.Throws<ArgumentException>(() =>
            EulerDiscreteScheduler.FromConfig("{\"use_karras_sigmas\": true, \"use_exponential_sigmas\": true}")).Message);
    }

    [Fact]
    public void UnknownKeysAreReported()
    {
        var s = DDIMScheduler.FromConfig("{\"_class_name\": \"DDIMScheduler\", \"clip_sampel\": false, \"set_alpha_to_one\": false}");
        Assert.Equal(new[] { "clip_sampel" }, s.Options.UnknownKeys);
        Assert.False(s.Settings.SetAlphaToOne);
    }

    [Fact]
    public void RegistryListsEverySamplerThePipelineRuns()
    {
        // "auto" (each model's default) first, then every sampler
        Assert.Equal(DiffusionPipeline.SamplerNames, SamplerRegistry.Choices);
        Assert.Equal([SamplerRegistry.Auto, .. SamplerRegistry.Names], SamplerRegistry.Choices);
        Assert.DoesNotContain(SamplerRegistry.Auto, SamplerRegistry.Names);
        foreach (var info in SamplerRegistry.All)
        {
            Assert.True(info.CreateScheduler != null ^ info.RunK != null, info.Name);
            if (info.CreateScheduler != null) Assert.NotNull(info.CreateScheduler(SchedulerConfig.Empty, 0));
        }
        Assert.Contains("k-lms", Assert.Throws<ArgumentException>(() => SamplerRegistry.Get("k-nope")).Message);
    }
}
