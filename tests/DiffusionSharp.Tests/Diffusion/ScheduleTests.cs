using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Diffusion.Schedules;
using Xunit;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Training schedules, spacings and sigma schedules against upstream tables and closed forms.</summary>
public class ScheduleTests
{
    [Theory]
    [InlineData("linear", "{\"beta_schedule\":\"linear\",\"beta_start\":0.0001,\"beta_end\":0.02}")]
    [InlineData("squaredcos_cap_v2", "{\"beta_schedule\":\"squaredcos_cap_v2\"}")]
    [InlineData("scaled_linear_sd", "{\"beta_schedule\":\"scaled_linear\",\"beta_start\":0.00085,\"beta_end\":0.012}")]
    public void BetaTablesMatchDiffusers(string table, string config)
    {
        var fx = Fixtures.Load("schedulers.safetensors");
        var s = DDPMScheduler.FromConfig(config);
        TraceAssert.Close(s.Betas, fx["betas." + table].Span, 1e-6, $"betas.{table}");
        TraceAssert.Close(s.AlphasCumprod, fx["alphas_cumprod." + table].Span, 1e-6, $"alphas_cumprod.{table}");
        // the pure double tables agree with the float32 upstream ones too
        var betas = BetaSchedules.Create(s.Options.BetaSchedule, 1000, s.Options.BetaStart, s.Options.BetaEnd);
        TraceAssert.Close(betas, fx["betas." + table].Span, 1e-6, $"double betas.{table}");
        TraceAssert.Close(BetaSchedules.AlphasCumprod(betas), fx["alphas_cumprod." + table].Span, 1e-6, $"double alphas_cumprod.{table}");
    }

    [Fact]
    public void AddNoiseAndVelocityMatchDiffusers()
    {
        var fx = Fixtures.Load("schedulers.safetensors");
        var s = DDPMScheduler.FromConfig("{}");
        var t = fx["add_noise.t"].ToArray().Select(v => (int)v).ToArray();
        Assert.Equal(new[] { 0, 10, 500, 999 }, t);
        TraceAssert.Close(s.AddNoise(fx["add_noise.x0"], fx["add_noise.noise"], t), fx["add_noise.out"], 1e-6, "add_noise");
        TraceAssert.Close(s.GetVelocity(fx["add_noise.x0"], fx["add_noise.noise"], t), fx["add_noise.velocity"], 1e-6, "get_velocity");
    }

    [Fact]
    public void CosineScheduleFollowsImprovedDdpmEq17()
    {
        const int T = 1000;
        var betas = BetaSchedules.SquaredCosCapV2(T);
        var abar = BetaSchedules.AlphasCumprod(betas);
        static double F(double u) { double c = Math.Cos((u + 0.008) / 1.008 * Math.PI / 2); return c * c; }
        // abar_t = f(t+1)/f(0) in diffusers' indexing while no beta hit the 0.999 cap
        for (int t = 0; t < T - 1; t++)
        {
            if (betas[t] >= 0.999) break;
            Assert.Equal(F((t + 1) / (double)T) / F(0), abar[t], 1e-12);
        }
        Assert.Equal(0.999, betas[T - 1], 12);
        Assert.All(betas, b => Assert.InRange(b, 0.0, 0.999));
    }

    [Fact]
    public void LinearScaledLinearAndSigmoidEndpoints()
    {
        var lin = BetaSchedules.Linear(1000, 1e-4, 0.02);
        Assert.Equal(1e-4, lin[0], 15);
        Assert.Equal(0.02, lin[^1], 15);
        Assert.Equal(1e-4 + 500 * (0.02 - 1e-4) / 999, lin[500], 15);
        var sl = BetaSchedules.ScaledLinear(1000, 0.00085, 0.012);
        Assert.Equal(0.00085, sl[0], 15);
        Assert.Equal(0.012, sl[^1], 15);
        Assert.Equal(Math.Pow((Math.Sqrt(0.00085) + Math.Sqrt(0.012)) / 2, 2), BetaSchedules.ScaledLinear(3, 0.00085, 0.012)[1], 15);
        var sg = BetaSchedules.Sigmoid(1000, 1e-4, 0.02);
        Assert.Equal(1 / (1 + Math.Exp(6)) * (0.02 - 1e-4) + 1e-4, sg[0], 15);
        Assert.Equal(1 / (1 + Math.Exp(-6)) * (0.02 - 1e-4) + 1e-4, sg[^1], 15);
        for (int i = 1; i < sg.Length; i++) Assert.True(sg[i] > sg[i - 1]);
        Assert.Throws<NotSupportedException>(() => BetaSchedules.Create("quadratic", 10));
    }

    [Fact]
    public void ZeroTerminalSnrRescaleKeepsFirstAndZeroesLast()
    {
        var betas = BetaSchedules.ScaledLinear(1000, 0.00085, 0.012);
        var before = BetaSchedules.AlphasCumprod(betas);
        var after = BetaSchedules.AlphasCumprod(BetaSchedules.RescaleZeroTerminalSnr(betas));
        Assert.Equal(before[0], after[0], 12);
        Assert.Equal(0.0, after[^1], 12);
        // sqrt(abar) is an affine map of the original sqrt(abar) (Algorithm 1 of Lin et al. 2023)
        double a0 = Math.Sqrt(before[0]), aT = Math.Sqrt(before[^1]);
        for (int t = 0; t < 1000; t += 111)
            Assert.Equal((Math.Sqrt(before[t]) - aT) * a0 / (a0 - aT), Math.Sqrt(after[t]), 10);
        var s = EulerDiscreteScheduler.FromConfig("{\"rescale_betas_zero_snr\":true,\"beta_schedule\":\"scaled_linear\",\"beta_start\":0.00085,\"beta_end\":0.012}");
        Assert.Equal(Math.Pow(2, -24), s.AlphasCumprod[^1]);
        Assert.True(double.IsFinite(s.InitNoiseSigma));
    }

    [Fact]
    public void TimestepSpacingsMatchNumpyFormulas()
    {
        Assert.Equal(new double[] { 999, 856, 713, 570, 428, 285, 142 }, TimestepSpacing.Trailing(1000, 7));
        Assert.Equal(new double[] { 999, 899, 799, 699, 599, 499, 399, 299, 199, 99 }, TimestepSpacing.Trailing(1000, 10));
        Assert.Equal(new double[] { 999, 500, 0 }, TimestepSpacing.Linspace(1000, 3, round: true));  // 499.5 rounds half to even
        Assert.Equal(new double[] { 999, 666, 333, 0 }, TimestepSpacing.Linspace(1000, 4, round: true));
        Assert.Equal(999 - 999.0 / 6, TimestepSpacing.Linspace(1000, 7, round: false)[1], 12);
        // 1000 // 7 = 142
        Assert.Equal(new double[] { 853, 711, 569, 427, 285, 143, 1 }, TimestepSpacing.Leading(1000, 7, stepsOffset: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => TimestepSpacing.Leading(1000, 1001));
        Assert.Throws<ArgumentOutOfRangeException>(() => TimestepSpacing.Trailing(1000, 0));
    }

    [Fact]
    public void SchedulersApplyTheirSpacing()
    {
        var ddim = DDIMScheduler.FromConfig("{\"timestep_spacing\":\"trailing\"}");
        ddim.SetTimesteps(7);
        Assert.Equal(TimestepSpacing.Trailing(1000, 7), ddim.Timesteps);
        var ddpm = DDPMScheduler.FromConfig("{\"timestep_spacing\":\"linspace\"}");
        ddpm.SetTimesteps(4);
        Assert.Equal(new double[] { 999, 666, 333, 0 }, ddpm.Timesteps);
        var dpm = DPMSolverMultistepScheduler.FromConfig("{\"timestep_spacing\":\"trailing\"}");
        dpm.SetTimesteps(7);
        Assert.Equal(TimestepSpacing.Trailing(1000, 7), dpm.Timesteps);
        // DPM-Solver's leading spacing divides by N + 1 and drops the 0
        var dpmLead = DPMSolverMultistepScheduler.FromConfig("{\"timestep_spacing\":\"leading\",\"steps_offset\":1}");
        dpmLead.SetTimesteps(4);
        Assert.Equal(new double[] { 801, 601, 401, 201 }, dpmLead.Timesteps);
        var euler = EulerDiscreteScheduler.FromConfig("{\"timestep_spacing\":\"trailing\"}");
        euler.SetTimesteps(7);
        Assert.Equal(TimestepSpacing.Trailing(1000, 7), euler.Timesteps);
        Assert.Equal((float)euler.Sigmas.Max(), euler.InitNoiseSigma, 6);
        var eulerLin = EulerDiscreteScheduler.FromConfig("{}");
        eulerLin.SetTimesteps(7);
        Assert.Equal((float)(999 - 999.0 / 6), eulerLin.Timesteps[1]);
        // sigma at a fractional timestep interpolates the training table linearly in t
        double t = eulerLin.Timesteps[1];
        int lo = (int)Math.Floor(t);
        double expect = eulerLin.TrainingSigmas[lo] + (t - lo) * (eulerLin.TrainingSigmas[lo + 1] - eulerLin.TrainingSigmas[lo]);
        Assert.Equal(expect, eulerLin.Sigmas[1], 4);
    }

    [Theory]
    [InlineData(10, 0.0292, 14.6146, 7.0)]
    [InlineData(25, 0.002, 80.0, 7.0)]
    [InlineData(6, 0.1, 10.0, 1.0)]
    [InlineData(8, 0.05, 20.0, 3.0)]
    public void KarrasSigmasFollowEq5(int n, double min, double max, double rho)
    {
        var s = SigmaSchedules.Karras(n, min, max, rho);
        Assert.Equal(n + 1, s.Length);
        Assert.Equal(max, s[0], 12);
        Assert.Equal(min, s[n - 1], 12);
        Assert.Equal(0.0, s[n]);
        // sigma^(1/rho) is evenly spaced
        double step = Math.Pow(s[1], 1 / rho) - Math.Pow(s[0], 1 / rho);
        for (int i = 1; i < n; i++) Assert.Equal(step, Math.Pow(s[i], 1 / rho) - Math.Pow(s[i - 1], 1 / rho), 10);
        var e = SigmaSchedules.Exponential(n, min, max, appendZero: false);
        Assert.Equal(n, e.Length);
        Assert.Equal(max, e[0], 10);
        Assert.Equal(min, e[^1], 10);
        for (int i = 1; i < n; i++) Assert.Equal(Math.Log(e[1] / e[0]), Math.Log(e[i] / e[i - 1]), 10);
        var p = SigmaSchedules.PolyExponential(n, min, max, rho: 1.0, appendZero: false);
        for (int i = 0; i < n; i++) Assert.Equal(e[i], p[i], 10);
        Assert.Throws<ArgumentException>(() => SigmaSchedules.Karras(n, max, min));
    }

    [Fact]
    public void SigmaToTInvertsTToSigma()
    {
        var abar = BetaSchedules.AlphasCumprod(BetaSchedules.Linear(1000, 1e-4, 0.02));
        var log = BetaSchedules.SigmasFromAlphasCumprod(abar).Select(v => Math.Log(v)).ToArray();
        foreach (var t in new[] { 0.0, 0.25, 17.5, 500.0, 998.9, 999.0 })
            Assert.Equal(t, SigmaSchedules.SigmaToT(SigmaSchedules.TToSigma(t, log), log), 9);
        Assert.Equal(0.0, SigmaSchedules.SigmaToT(1e-9, log));
        Assert.Equal(999.0, SigmaSchedules.SigmaToT(1e9, log));
    }
}
