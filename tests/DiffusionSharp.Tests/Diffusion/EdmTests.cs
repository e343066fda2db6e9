using System.Text.Json;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Losses;
using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tests.Data;
using DiffusionSharp.Tests.Evaluation;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Diffusion;

[Collection("console")]
public class EdmTests
{
    [Theory]
    [InlineData(0.002)]
    [InlineData(0.5)]
    [InlineData(1.3)]
    [InlineData(80.0)]
    public void CoefficientsMeetThePapersRequirements(double sigma)
    {
        const double sd = 0.5;
        double skip = EdmDenoiser.CSkip(sigma, sd), cout = EdmDenoiser.COut(sigma, sd), cin = EdmDenoiser.CIn(sigma, sd);
        // Karras et al. 2022, App. B.6: unit-variance network input (Eq. 117), unit-variance training target (Eq. 123),
        // c_skip minimising c_out (Eq. 131), and lambda = 1 / c_out^2 (Eq. 144)
        Assert.Equal(1.0, cin * cin * (sd * sd + sigma * sigma), 12);
        Assert.Equal(1.0, ((1 - skip) * (1 - skip) * sd * sd + skip * skip * sigma * sigma) / (cout * cout), 10);
        for (double e = -1e-3; e <= 1e-3; e += 2e-3)
            Assert.True(Math.Sqrt((1 - skip - e) * (1 - skip - e) * sd * sd + (skip + e) * (skip + e) * sigma * sigma) > cout);
        Assert.Equal(1.0, EdmDenoiser.LossWeight(sigma, sd) * cout * cout, 10);
        Assert.Equal(Math.Log(sigma) / 4, EdmDenoiser.CNoise(sigma), 14);
        if (sigma == 0.5) { Assert.Equal(0.5, skip, 14); Assert.Equal(0.5 / Math.Sqrt(2), cout, 14); Assert.Equal(Math.Sqrt(2), cin, 14); }
    }

    // For data N(0, s^2) the ideal denoiser is D = s^2 / (s^2 + sigma^2) x, i.e. F = k x_in with k = (s^2 / (s^2 + sigma^2) - c_skip) / (c_out c_in).
    // The loss of F = a x_in is quadratic in a: its minimiser, from two autograd gradients, must be k.
    [Theory]
    [InlineData(0.5, 0.1)]
    [InlineData(0.8, 1.0)]
    [InlineData(0.3, 4.0)]
    public void LossIsMinimisedByTheIdealGaussianDenoiser(double s, double sigma)
    {
        const int m = 20000;
        var loss = new EdmLoss();
        var g = new Generator(7);
        var y = Tensor.Randn(g, m, 1, 1, 1) * (float)s;
        var n = Tensor.Randn(g, m, 1, 1, 1);
        var sigmas = Enumerable.Repeat(sigma, m).ToArray();
        double sd = loss.SigmaData;
        double k = (s * s / (s * s + sigma * sigma) - EdmDenoiser.CSkip(sigma, sd)) / (EdmDenoiser.COut(sigma, sd) * EdmDenoiser.CIn(sigma, sd));
        (double Value, double Grad) At(double a)
        {
            var p = Tensor.FromArray([(float)a], 1);
            p.RequiresGrad = true;
            var l = loss.Losses(new EdmDenoiser((xin, _) => xin * p, sd), y, sigmas, n).MeanAll();
            l.Backward();
            return (l.Item(), p.Grad!.ToArray()[0]);
        }
        var (v0, g0) = At(k - 1);
        var (_, g1) = At(k + 1);
        double aStar = (k - 1) - g0 * 2 / (g1 - g0);
        Assert.True(Math.Abs(aStar - k) < 0.03 * Math.Max(1, Math.Abs(k)), $"minimiser {aStar}, ideal {k}");

        // the value is lambda(sigma) |D - y|^2 of the paper's Eq. 8, computed here in double from Table 1
        double lambda = (sigma * sigma + sd * sd) / (sigma * sigma * sd * sd), sum = 0;
        var ys = y.ToArray(); var ns = n.ToArray();
        for (int i = 0; i < m; i++)
        {
            double x = ys[i] + sigma * ns[i];
            double d = sd * sd / (sigma * sigma + sd * sd) * x + sigma * sd / Math.Sqrt(sigma * sigma + sd * sd) * ((k - 1) * x / Math.Sqrt(sigma * sigma + sd * sd));
            sum += lambda * (d - ys[i]) * (d - ys[i]);
        }
        Assert.Equal(sum / m, v0, 1e-3 * Math.Max(1, v0));
    }

    [Fact]
    public void EpsilonViewOnTheVpScheduleIsTheSameDenoiser()
    {
        // D through the VP view (x_t = x / sqrt(1 + sigma^2), eps, then x - sigma eps) equals D itself at every training sigma
        var g = new Generator(3);
        var w = Tensor.Randn(g, 2, 1, 4, 4);
        Tensor Net(Tensor xin, Tensor c) => xin * 0.7f + w * Tensor.PerSample(c.ToArray().Select(v => (double)v).ToArray(), w.Shape);
        var edm = new EdmDenoiser(Net);
        var betas = DiffusionSharp.Diffusion.Schedules.BetaSchedules.Linear(1000, 1e-4, 0.02);
        double acc = 1;
        var ac = betas.Select(b => acc *= 1 - b).ToArray();
        var vp = DiffusionSharp.Diffusion.Schedules.BetaSchedules.SigmasFromAlphasCumprod(ac);
        var x = Tensor.Randn(g, 2, 1, 4, 4) * 3f;
        foreach (int t in new[] { 0, 10, 250, 999 })
        {
            var viaVp = new DiscreteTimeDenoiser((xt, tt) => edm.EpsilonFromVp(xt, Tensor.Full(new Shape(2), (float)tt), vp), ac, PredictionType.Epsilon);
            var a = viaVp.Denoise(x, vp[t]).ToArray();
            var b = edm.Denoise(x, vp[t]).ToArray();
            for (int i = 0; i < a.Length; i++) Assert.True(Math.Abs(a[i] - b[i]) < 1e-4 * (1 + vp[t]), $"t {t}: {a[i]} vs {b[i]}");
        }
    }

    private static TrainOptions Options(string cfg, long steps) => new()
    {
        ModelConfigPath = cfg, BatchSize = 4, Steps = steps, LearningRate = 1e-3, WarmupSteps = 2, EmaDecay = 0.9,
        CheckpointEvery = 0, LogEvery = 1, Seed = 3, ClassConditional = true, Objective = TrainObjective.Edm,
    };

    private static string TinyConfig(TempDir tmp)
    {
        var cfg = tmp.File("unet.json");
        File.WriteAllText(cfg, """
        {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4, "dropout": 0.1}
        """);
        return cfg;
    }

    [Fact]
    public void ResumeKeepsTheObjectiveAndContinuesBitExactly()
    {
        using var tmp = new TempDir();
        var cfg = TinyConfig(tmp);
        var data = FeatureClassifierTests.Stripes(16, 1);
        var straight = Trainer.Create(Options(cfg, 8), tmp.File("a"), data);
        straight.Run(CancellationToken.None);
        Trainer.Create(Options(cfg, 4), tmp.File("b"), data).Run(CancellationToken.None);
        var resumed = Trainer.Resume(tmp.File("b"), data, steps: 8);
        Assert.Equal(TrainObjective.Edm, resumed.Options.Objective);
        resumed.Run(CancellationToken.None);
        Assert.Equal(straight.Model.Parameters().SelectMany(p => p.ToArray()), resumed.Model.Parameters().SelectMany(p => p.ToArray()));
        Assert.Contains("EDMEulerScheduler", File.ReadAllText(Path.Combine(tmp.File("b"), "scheduler", "scheduler_config.json")));
    }

    [Fact]
    public void TrainedEdmModelExportsAndSamplesWithEverySampler()
    {
        using var tmp = new TempDir();
        var data = FidCommandTests.WriteStripes(tmp, "data", 24, 1);
        var run = tmp.File("run");
        var (code, _, err) = FidCommandTests.Run("train", "-o", run, "--data", data, "--config", TinyConfig(tmp), "--objective", "edm", "--class-conditional",
            "--batch", "8", "--steps", "30", "--lr", "2e-3", "--warmup", "5", "--ema-profile", "power", "--ema-std", "0.1", "--seed", "2", "--checkpoint-every", "0", "--log-every", "1", "--lr-schedule", "cosine", "--dropout", "0");
        Assert.True(code == 0, err);
        var losses = File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.True(losses[^1].GetProperty("lr").GetDouble() < 0.05 * 2e-3, "cosine schedule ends near 0");
        Assert.True(losses.TakeLast(5).Average(l => l.GetProperty("loss").GetDouble()) < losses.Take(5).Average(l => l.GetProperty("loss").GetDouble()), "loss falls");
        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, Trainer.CheckpointDir, Trainer.StateFile))).RootElement.GetProperty("Options");
        Assert.Equal("Edm", state.GetProperty("Objective").GetString());
        Assert.Equal(0.1, state.GetProperty("EmaStd").GetDouble());
        Assert.Equal("Cosine", state.GetProperty("LrSchedule").GetString());
        var model = tmp.File("export");
        (code, _, err) = FidCommandTests.Run("export", "-m", run, "-o", model, "--half");
        Assert.True(code == 0, err);
        var sched = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "scheduler", "scheduler_config.json"))).RootElement;
        Assert.Equal("EDMEulerScheduler", sched.GetProperty("_class_name").GetString());
        Assert.Equal(0.5, sched.GetProperty("sigma_data").GetDouble());
        Assert.Equal(0.0f, DiffusionSharp.Nn.UNet.UNet2DModel.FromPretrained(Path.Combine(model, "unet")).Config.Dropout);
        var pipe = DiffusionPipeline.FromPretrained(model);
        Assert.NotNull(pipe.Edm);
        foreach (var sampler in SamplerRegistry.Names)
        {
            using var images = pipe.Sample(new SampleRequest { Count = 4, Steps = 6, Sampler = sampler, Seed = 1, GuidanceScale = 1.5 });
            var v = images.ToArray();
            Assert.All(v, p => Assert.True(float.IsFinite(p)));
            Assert.True(v.Max() - v.Min() > 0.05, $"{sampler}: constant image");
        }
        var grid = tmp.File("grid.png");
        (code, _, err) = FidCommandTests.Run("sample", "-m", model, "--sampler", "k-dpmpp-2m", "-n", "4", "--steps", "5", "-o", grid);
        Assert.True(code == 0, err);
        Assert.True(Png.Read(grid).Width > 0);
    }

    [Fact]
    public void AutoSamplesAnEdmModelWithDpmSolverOverItsKarrasSigmasAndAVpModelWithTheScheduler()
    {
        using var tmp = new TempDir();
        var t = Trainer.Create(Options(TinyConfig(tmp), 1) with { ClassConditional = false }, tmp.File("m"), FeatureClassifierTests.Stripes(8, 1));
        t.Run(CancellationToken.None);
        var edm = DiffusionPipeline.FromPretrained(tmp.File("m"));
        var vpJson = File.ReadAllText(Path.Combine(tmp.File("m"), "scheduler", "scheduler_config.json")).Replace("EDMEulerScheduler", "DDPMScheduler");
        var vp = new DiffusionPipeline(edm.Unet, vpJson);
        Assert.Equal("k-dpmpp-2m", edm.DefaultSampler);
        Assert.Equal("dpmpp", vp.DefaultSampler);
        Assert.Equal("ddim", edm.ResolveSampler("ddim"));
        Assert.Equal(SamplerRegistry.Auto, new SampleRequest().Sampler);
        foreach (var (pipe, named) in new[] { (edm, "k-dpmpp-2m"), (vp, "dpmpp") })
        {
            using var auto = pipe.Sample(new SampleRequest { Count = 2, Steps = 4, Seed = 3 });
            using var same = pipe.Sample(new SampleRequest { Count = 2, Steps = 4, Seed = 3, Sampler = named });
            using var other = pipe.Sample(new SampleRequest { Count = 2, Steps = 4, Seed = 3, Sampler = named == "dpmpp" ? "k-dpmpp-2m" : "dpmpp" });
            Assert.Equal(same.ToArray(), auto.ToArray());
            Assert.NotEqual(other.ToArray(), auto.ToArray());
        }
        // a k-sampler runs any number of steps, a scheduler at most the training timesteps
        Assert.Equal(5000, edm.ChainSteps(SamplerRegistry.Auto, 5000));
        Assert.Equal(1000, vp.ChainSteps(SamplerRegistry.Auto, 5000));
        Assert.Equal(vp.CreateScheduler("dpmpp").GetType(), vp.CreateScheduler(SamplerRegistry.Auto).GetType());
        Assert.Contains("'k-dpmpp-2m' (auto for this model) is a k-diffusion sampler", Assert.Throws<ArgumentException>(() => edm.CreateScheduler(SamplerRegistry.Auto)).Message);
    }

    // With the ideal F for data N(0, s^2) (F = k(sigma) x_in, sigma = e^(4 c_noise)) in place of the network: the schedulers, which
    // run on the VP view, must draw the same images as a VP model predicting the ideal epsilon; the k-samplers, which run on D
    // directly, images of standard deviation s (closely for the second-order ones, first-order ones lose some at 50 steps).
    [Fact]
    public void EverySamplerDrawsTheGaussianThatTheIdealEdmNetworkImplies()
    {
        using var tmp = new TempDir();
        var o = Options(TinyConfig(tmp), 1) with { ClassConditional = false };
        var t = Trainer.Create(o, tmp.File("m"), FeatureClassifierTests.Stripes(8, 1));
        t.Run(CancellationToken.None);
        var edm = DiffusionPipeline.FromPretrained(tmp.File("m"));
        var vpJson = File.ReadAllText(Path.Combine(tmp.File("m"), "scheduler", "scheduler_config.json")).Replace("EDMEulerScheduler", "DDPMScheduler");
        var vp = new DiffusionPipeline(edm.Unet, vpJson);
        Assert.Null(vp.Edm);
        const double s = 0.3, sd = 0.5;
        edm.NetworkOverride = (xin, c, _) => xin * Tensor.PerSample(c.ToArray().Select(v =>
        {
            double sigma = Math.Exp(4.0 * v);
            return (s * s / (s * s + sigma * sigma) - EdmDenoiser.CSkip(sigma, sd)) / (EdmDenoiser.COut(sigma, sd) * EdmDenoiser.CIn(sigma, sd));
        }).ToArray(), xin.Shape);
        var table = DiffusionSharp.Diffusion.Schedules.BetaSchedules.SigmasFromAlphasCumprod(new DiffusionSharp.Diffusion.Schedulers.DDPMScheduler(vp.SchedulerConfig).AlphasCumprod.ToArray());
        vp.NetworkOverride = (xt, ts, _) => xt * Tensor.PerSample(ts.ToArray().Select(tt =>
        {
            double sigma = DiffusionSharp.Diffusion.Schedules.SigmaSchedules.InterpOnIndex(tt, table);
            return sigma / (s * s + sigma * sigma) * Math.Sqrt(1 + sigma * sigma);  // eps = (x - D) / sigma at x = x_t sqrt(1 + sigma^2)
        }).ToArray(), xt.Shape);
        foreach (var info in SamplerRegistry.All)
        {
            var req = new SampleRequest { Count = 128, Steps = 50, Sampler = info.Name, Seed = 4 };
            using var images = edm.Sample(req);
            var v = images.ToArray();
            double mean = v.Average(), std = Math.Sqrt(v.Select(x => (x - mean) * (x - mean)).Average());
            Assert.True(Math.Abs(mean) < 0.02, $"{info.Name}: mean {mean}");
            if (info.RunK != null)
                Assert.True(Math.Abs(std / s - 1) < (info.CallsPerStep == 2 || info.Name is "k-lms" or "k-dpmpp-2m" ? 0.03 : 0.15), $"{info.Name}: std {std}, expected {s}");
            else
            {
                using var reference = vp.Sample(req);
                var r = reference.ToArray();
                for (int i = 0; i < v.Length; i++) Assert.True(Math.Abs(v[i] - r[i]) < 2e-3, $"{info.Name}: pixel {i}: {v[i]} vs the VP model's {r[i]}");
            }
        }
    }
}
