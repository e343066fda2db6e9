using System.Text.Json;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Diffusion.Schedules;
using Xunit;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Loading diffusers scheduler_config.json files.</summary>
public class SchedulerConfigTests
{
    [Fact]
    public void LoadsTheDdpmCifar10HubConfig()
    {
        var json = TraceAssert.Json("ddpm_cifar10_32_keys.json").GetProperty("scheduler_config").GetRawText();
        var s = Assert.IsType<DDPMScheduler>(SchedulerFactory.FromConfig(json));
        Assert.Equal("fixed_large", ConfigNames.Name(s.Settings.VarianceType));
        Assert.True(s.Settings.ClipSample);
        Assert.Equal("linear", ConfigNames.Name(s.Options.BetaSchedule));
        Assert.Equal(1000, s.NumTrainTimesteps);
        Assert.Equal(1e-4, s.Betas[0], 9);
        Assert.Equal(0.02, s.Betas[^1], 9);
        Assert.Equal("leading", ConfigNames.Name(s.Options.Spacing));
        var direct = DDPMScheduler.FromConfig(json);
        Assert.Equal(s.AlphasCumprod, direct.AlphasCumprod);
    }

    [Fact]
    public void EveryFixtureRunConfigLoadsWithItsSettings()
    {
        foreach (var run in TraceAssert.Json("schedulers.json").GetProperty("runs").EnumerateObject())
        {
            var cfg = run.Value.GetProperty("config");
            var s = SchedulerFactory.FromConfig(cfg.GetRawText());
            Assert.Equal(cfg.GetProperty("_class_name").GetString(), s.GetType().Name);
            Assert.Equal(cfg.GetProperty("timestep_spacing").GetString(), ConfigNames.Name(s.Options.Spacing));
            Assert.Equal(cfg.GetProperty("steps_offset").GetInt32(), s.Options.StepsOffset);
            Assert.Equal(cfg.GetProperty("beta_schedule").GetString(), ConfigNames.Name(s.Options.BetaSchedule));
            if (s is DPMSolverMultistepScheduler d)
            {
                Assert.Equal(double.NegativeInfinity, d.Settings.LambdaMinClipped);
                Assert.Equal(cfg.GetProperty("use_karras_sigmas").GetBoolean(), d.Settings.UseKarrasSigmas);
                Assert.Equal(2, d.Settings.SolverOrder);
                Assert.Null(d.Settings.VarianceType);
            }
            if (s is DDIMScheduler ddim)
                Assert.Equal(cfg.GetProperty("set_alpha_to_one").GetBoolean(), ddim.Settings.SetAlphaToOne);
        }
    }

    [Fact]
    public void AcceptsBareAndQuotedNonFiniteNumbersAndIgnoresUnknownKeys()
    {
        var bare = DPMSolverMultistepScheduler.FromConfig(
            "{\"_class_name\":\"DPMSolverMultistepScheduler\",\"_diffusers_version\":\"0.30.3\",\"lambda_min_clipped\": -Infinity, \"note\":\"NaN -Infinity\", \"extra\":[1,{\"a\":null}]}");
        Assert.Equal(double.NegativeInfinity, bare.Settings.LambdaMinClipped);
        var quoted = DPMSolverMultistepScheduler.FromConfig("{\"lambda_min_clipped\":\"-Infinity\"}");
        Assert.Equal(double.NegativeInfinity, quoted.Settings.LambdaMinClipped);
        var cfg = SchedulerConfig.Parse("{\"note\":\"NaN -Infinity\",\"lambda_min_clipped\":NaN}").Bind<DpmSolverOptions>();
        Assert.Equal("NaN -Infinity", cfg.Extra!["note"].GetString());
        Assert.True(double.IsNaN(cfg.LambdaMinClipped));
    }

    [Fact]
    public void BadValuesGiveClearErrors()
    {
        var e = Assert.Throws<FormatException>(() => DDIMScheduler.FromConfig("{\"beta_start\":\"abc\"}"));
        Assert.Contains("beta_start", e.Message);
        Assert.Contains("a number", e.Message);
        var b = Assert.Throws<FormatException>(() => DDIMScheduler.FromConfig("{\"clip_sample\":1}"));
        Assert.Contains("clip_sample", b.Message);
        Assert.Contains("glide", Assert.Throws<NotSupportedException>(() => DDIMScheduler.FromConfig("{\"beta_schedule\":\"glide\"}")).Message);
        Assert.Throws<NotSupportedException>(() => DDPMScheduler.FromConfig("{\"variance_type\":\"huge\"}"));
        Assert.Throws<NotSupportedException>(() => EulerDiscreteScheduler.FromConfig("{\"prediction_type\":\"flow\"}"));
        Assert.Throws<NotSupportedException>(() => DDIMScheduler.FromConfig("{\"timestep_spacing\":\"random\"}"));
        Assert.Throws<ArgumentException>(() => SchedulerFactory.FromConfig("{\"beta_start\":0.001}"));
        Assert.Contains("PNDMScheduler", Assert.Throws<NotSupportedException>(() => SchedulerFactory.FromConfig("{\"_class_name\":\"PNDMScheduler\"}")).Message);
        Assert.Throws<FormatException>(() => SchedulerConfig.Parse("[1,2]"));
        Assert.Throws<ArgumentException>(() => DDPMScheduler.FromConfig("{\"num_train_timesteps\":4,\"trained_betas\":[0.1,0.2]}"));
        Assert.Throws<ArgumentOutOfRangeException>(() => DPMSolverMultistepScheduler.FromConfig("{\"solver_order\":4}"));
        Assert.Throws<ArgumentException>(() => DPMSolverMultistepScheduler.FromConfig("{\"algorithm_type\":\"dpmsolver\"}"));
        var ddim = DDIMScheduler.FromConfig("{}");
        Assert.Throws<InvalidOperationException>(() => ddim.Step(DiffusionSharp.Tensors.Tensor.Zeros(1, 2), 10, DiffusionSharp.Tensors.Tensor.Zeros(1, 2)));
        ddim.SetTimesteps(10);
        var shape = Assert.Throws<ArgumentException>(() => ddim.Step(DiffusionSharp.Tensors.Tensor.Zeros(1, 3), 900, DiffusionSharp.Tensors.Tensor.Zeros(1, 2)));
        Assert.Contains("[1, 2]", shape.Message);
        Assert.Contains("[1, 3]", shape.Message);
    }

    [Fact]
    public void TrainedBetasAndDefaultsAreUsed()
    {
        var s = DDPMScheduler.FromConfig("{\"num_train_timesteps\":4,\"trained_betas\":[0.1,0.2,0.3,0.4]}");
        Assert.Equal(new[] { 0.1, 0.2, 0.3, 0.4 }.Select(v => (double)(float)v), s.Betas);
        Assert.Equal((double)(float)(0.9 * 0.8), s.AlphasCumprod[1], 7);
        var defaults = EulerDiscreteScheduler.FromConfig("{}");
        Assert.Equal("linspace", ConfigNames.Name(defaults.Options.Spacing));
        Assert.Equal(PredictionType.Epsilon, defaults.PredictionType);
        var v = DDIMScheduler.FromConfig("{\"prediction_type\":\"v_prediction\"}");
        Assert.Equal(PredictionType.VPrediction, v.PredictionType);
    }

    [Fact]
    public void LambdaMinClippedDropsTheLowestSnrTimesteps()
    {
        var s = DPMSolverMultistepScheduler.FromConfig("{\"beta_schedule\":\"squaredcos_cap_v2\",\"lambda_min_clipped\":-5.1}");
        s.SetTimesteps(10);
        int last = 1000;
        for (int t = 999; t >= 0; t--)
        {
            float ac = (float)s.AlphasCumprod[t];
            if (MathF.Log(MathF.Sqrt(ac)) - MathF.Log(MathF.Sqrt(1 - ac)) < -5.1f) last--; else break;
        }
        Assert.True(last < 1000);
        Assert.Equal(last - 1, s.Timesteps[0]);
        Assert.Equal(Math.Round((last - 1) * 9.0 / 10.0, MidpointRounding.ToEven), s.Timesteps[1]);
    }

    [Fact]
    public void FinalSigmaTypeSigmaMinEndsAtTheSmallestTrainingSigma()
    {
        var e = EulerDiscreteScheduler.FromConfig("{\"final_sigmas_type\":\"sigma_min\"}");
        e.SetTimesteps(5);
        Assert.Equal(e.TrainingSigmas[0], e.Sigmas[^1]);
        var d = DPMSolverMultistepScheduler.FromConfig("{\"final_sigmas_type\":\"sigma_min\"}");
        d.SetTimesteps(5);
        Assert.Equal((float)Math.Sqrt((1 - d.AlphasCumprod[0]) / d.AlphasCumprod[0]), (float)d.Sigmas[^1], 6);
    }
}
