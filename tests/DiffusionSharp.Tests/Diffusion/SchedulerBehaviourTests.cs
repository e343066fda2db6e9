using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Closed-form checks of scheduler behaviour not covered by the upstream traces.</summary>
public class SchedulerBehaviourTests
{
    private readonly ITestOutputHelper _out;

    public SchedulerBehaviourTests(ITestOutputHelper output) { _out = output; }

    private static Tensor Randn(ulong seed, params int[] shape) => Tensor.Randn(new Generator(seed), shape);

    [Fact]
    public void DdpmPosteriorVarianceFollowsHoEq7()
    {
        var abar = BetaSchedules.AlphasCumprod(BetaSchedules.Linear(1000, 1e-4, 0.02));
        var betas = BetaSchedules.Linear(1000, 1e-4, 0.02);
        var small = DDPMScheduler.FromConfig("{\"variance_type\":\"fixed_small\"}");
        var large = DDPMScheduler.FromConfig("{\"variance_type\":\"fixed_large\"}");
        var smallLog = DDPMScheduler.FromConfig("{\"variance_type\":\"fixed_small_log\"}");
        foreach (var t in new[] { 1, 2, 10, 100, 500, 999 })
        {
            double expect = betas[t] * (1 - abar[t - 1]) / (1 - abar[t]);  // beta~_t of Ho et al. 2020, Eq. 7
            Assert.InRange(small.GetVariance(t) / expect, 0.9995, 1.0005);  // float32 like diffusers: 1 - abar_t/abar_{t-1} loses digits
            Assert.InRange(large.GetVariance(t) / betas[t], 0.9995, 1.0005);
            Assert.InRange(smallLog.GetVariance(t) / Math.Sqrt(expect), 0.9995, 1.0005);
        }
        Assert.Equal(1.0, small.GetVariance(0) / 1e-20, 5);
        // with 50 steps the posterior spans t -> t - 20
        small.SetTimesteps(50);
        double a = abar[500], ap = abar[480];
        Assert.Equal(1, small.GetVariance(500) / ((1 - ap) / (1 - a) * (1 - a / ap)), 4);
    }

    [Theory]
    [InlineData("fixed_small")]
    [InlineData("fixed_large")]
    [InlineData("fixed_small_log")]
    [InlineData("fixed_large_log")]
    public void DdpmNoiseEntersWithTheVarianceStd(string varianceType)
    {
        var s = DDPMScheduler.FromConfig($"{{\"variance_type\":\"{varianceType}\",\"clip_sample\":false}}");
        s.SetTimesteps(20);
        var x = Randn(1, 2, 3, 4, 4);
        var eps = Randn(2, 2, 3, 4, 4);
        var z = Randn(3, 2, 3, 4, 4);
        var withNoise = s.Step(eps, 500, x, z).PrevSample;
        var noNoise = s.Step(eps, 500, x, Tensor.Zeros(2, 3, 4, 4)).PrevSample;
        var abar = BetaSchedules.AlphasCumprod(BetaSchedules.Linear(1000, 1e-4, 0.02));
        double beta = 1 - abar[500] / abar[450];
        double variance = varianceType.StartsWith("fixed_small") ? (1 - abar[450]) / (1 - abar[500]) * beta : beta;
        double std = Math.Sqrt(variance);
        for (int i = 0; i < z.Size; i++) Assert.Equal(std * z.Span[i], withNoise.Span[i] - noNoise.Span[i], 4);
        // t = 0 draws nothing
        var last = s.Step(eps, 0, x, z).PrevSample;
        var lastNoNoise = s.Step(eps, 0, x, Tensor.Zeros(2, 3, 4, 4)).PrevSample;
        Assert.Equal(lastNoNoise.ToArray(), last.ToArray());
    }

    [Fact]
    public void DdpmLearnedRangeInterpolatesBetweenFixedSmallAndLarge()
    {
        var learned = DDPMScheduler.FromConfig("{\"variance_type\":\"learned_range\",\"clip_sample\":false}");
        var small = DDPMScheduler.FromConfig("{\"variance_type\":\"fixed_small\",\"clip_sample\":false}");
        var large = DDPMScheduler.FromConfig("{\"variance_type\":\"fixed_large\",\"clip_sample\":false}");
        foreach (var s in new[] { learned, small, large }) s.SetTimesteps(10);
        var x = Randn(4, 2, 3, 2, 2);
        var eps = Randn(5, 2, 3, 2, 2);
        var z = Randn(6, 2, 3, 2, 2);
        foreach (var (v, reference) in new[] { (-1f, small), (1f, large) })
        {
            var output = Tensor.Empty(2, 6, 2, 2);
            for (int b = 0; b < 2; b++)
            {
                eps.Span.Slice(b * 12, 12).CopyTo(output.Span.Slice(b * 24, 12));
                output.Span.Slice(b * 24 + 12, 12).Fill(v);
            }
            var got = learned.Step(output, 700, x, z);
            var want = reference.Step(eps, 700, x, z);
            TraceAssert.Close(got.PrevSample, want.PrevSample, 1e-5, $"learned_range v={v}");
            TraceAssert.Close(got.PredOriginalSample, want.PredOriginalSample, 1e-6, "learned_range x0");
        }
        Assert.Throws<ArgumentException>(() => learned.Step(eps, 700, x, z));
    }

    [Fact]
    public void DdimEtaOneVarianceEqualsDdpmPosteriorVariance()
    {
        var ddim = DDIMScheduler.FromConfig("{}");
        var ddpm = DDPMScheduler.FromConfig("{}");
        ddim.SetTimesteps(1000);
        ddpm.SetTimesteps(1000);
        foreach (var t in new[] { 1, 5, 250, 999 })
            Assert.Equal(1, ddim.GetVariance(t, t - 1) / ddpm.GetVariance(t), 5);
        // with eta = 1 and 1000 steps DDIM is DDPM with fixed_small (Song et al. 2021, Sec. 4.1)
        var x = Randn(7, 1, 3, 4, 4);
        var eps = Randn(8, 1, 3, 4, 4);
        var z = Randn(9, 1, 3, 4, 4);
        var a = ddim.Step(eps, 600, x, eta: 1.0, useClippedModelOutput: true, noise: z).PrevSample;
        var b = ddpm.Step(eps, 600, x, z).PrevSample;
        TraceAssert.Close(a, b, 2e-5, "DDIM(eta=1) vs DDPM");
    }

    [Fact]
    public void DdimEtaZeroIgnoresNoiseAndFinalAlphaFollowsSetAlphaToOne()
    {
        var s = DDIMScheduler.FromConfig("{\"clip_sample\":false}");
        s.SetTimesteps(10);
        var x = Randn(10, 1, 2, 3);
        var eps = Randn(11, 1, 2, 3);
        Assert.Equal(s.Step(eps, 900, x).PrevSample.ToArray(), s.Step(eps, 900, x, Randn(12, 1, 2, 3)).PrevSample.ToArray());
        // the last step lands on the predicted x0 when alpha_bar_prev = 1
        var last = s.Step(eps, 0, x);
        TraceAssert.Close(last.PrevSample, last.PredOriginalSample, 1e-6, "final DDIM step");
        var s2 = DDIMScheduler.FromConfig("{\"clip_sample\":false,\"set_alpha_to_one\":false}");
        s2.SetTimesteps(10);
        var r = s2.Step(eps, 0, x);
        float a0 = (float)s2.AlphasCumprod[0];
        for (int i = 0; i < x.Size; i++)
            Assert.Equal(MathF.Sqrt(a0) * r.PredOriginalSample.Span[i] + MathF.Sqrt(1 - a0) * eps.Span[i], r.PrevSample.Span[i], 5);
    }

    [Fact]
    public void SeededGeneratorsReplayStochasticSteps()
    {
        var s = EulerAncestralDiscreteScheduler.FromConfig("{}");
        s.SetTimesteps(5);
        var x = Randn(13, 1, 2, 3);
        var eps = Randn(14, 1, 2, 3);
        var a = s.Step(eps, s.Timesteps[0], x, generator: new Generator(99)).PrevSample;
        s.SetTimesteps(5);
        var b = s.Step(eps, s.Timesteps[0], x, generator: new Generator(99)).PrevSample;
        Assert.Equal(a.ToArray(), b.ToArray());
        s.SetTimesteps(5);
        var c = s.Step(eps, s.Timesteps[0], x, noise: Tensor.Randn(new Generator(99), 1, 2, 3)).PrevSample;
        Assert.Equal(a.ToArray(), c.ToArray());
    }

    public static IEnumerable<object[]> PredictionCases()
    {
        foreach (var cls in new[] { "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "HeunDiscreteScheduler" })
            foreach (var p in new[] { "epsilon", "sample", "v_prediction" })
                yield return new object[] { cls, p };
        yield return new object[] { "EulerAncestralDiscreteScheduler", "epsilon" };
        yield return new object[] { "EulerAncestralDiscreteScheduler", "v_prediction" };
    }

    [Theory]
    [MemberData(nameof(PredictionCases))]
    public void ExactModelOutputsRecoverX0(string cls, string prediction)
    {
        var s = SchedulerFactory.FromConfig($"{{\"_class_name\":\"{cls}\",\"prediction_type\":\"{prediction}\",\"clip_sample\":false,\"timestep_spacing\":\"leading\"}}");
        s.SetTimesteps(10);
        int t = (int)s.Timesteps[2];
        var x0 = Randn(20, 2, 3, 4, 4);
        var n = Randn(21, 2, 3, 4, 4);
        var ts = new[] { t, t };
        var vpDdpm = DDPMScheduler.FromConfig("{}");
        var xVp = vpDdpm.AddNoise(x0, n, ts);
        var target = prediction switch { "epsilon" => n, "sample" => x0, _ => vpDdpm.GetVelocity(x0, n, ts) };
        // VE schedulers hold x0 + sigma n; VP ones hold sqrt(abar) x0 + sqrt(1 - abar) n
        var sample = s is SigmaScheduler ? s.AddNoise(x0, n, ts) : xVp;
        if (s is SigmaScheduler)
        {
            var scaled = s.ScaleModelInput(sample, t);
            TraceAssert.Close(scaled, xVp, 1e-5, "c_in x equals the VP sample");
        }
        var r = s.Step(target, t, sample, Tensor.Zeros(2, 3, 4, 4));
        TraceAssert.Close(r.PredOriginalSample, x0, 2e-5, $"{cls}/{prediction} x0");
    }

    /// <summary>eps model that is exact for Gaussian data of std sd: E[n | x_t] = s_t x / (a_t^2 sd^2 + s_t^2).</summary>
    private static Tensor GaussianEps(Tensor x, double abar, double sd)
    {
        double a2 = abar, s = Math.Sqrt(1 - abar);
        float k = (float)(s / (a2 * sd * sd + s * s));
        var y = Tensor.Empty(x.Shape);
        for (int i = 0; i < y.Size; i++) y.Span[i] = k * x.Span[i];
        return y;
    }

    /// <summary>Runs a deterministic scheduler on Gaussian data; returns max relative error against the exact ODE solution.</summary>
    private static double GaussianOdeError(Scheduler s, int steps, double sd = 0.5)
    {
        s.SetTimesteps(steps);
        var unit = Randn(30, 1, 3, 8, 8);
        var x = unit.Clone();
        float init = (float)s.InitNoiseSigma;
        for (int i = 0; i < x.Size; i++) x.Span[i] *= init;
        double t0 = s.Timesteps[0];
        IReadOnlyList<double>? sig = s is SigmaScheduler ss ? ss.Sigmas : s is DPMSolverMultistepScheduler d ? d.Sigmas : null;
        double sigmaT = sig?[0] ?? Math.Sqrt((1 - s.AlphasCumprod[(int)t0]) / s.AlphasCumprod[(int)t0]);
        double sigmaEnd = sig?[^1] ?? 0.0;
        bool ve = s is SigmaScheduler;
        // VE state X = x_vp / alpha; exact PF-ODE solution X(sigma) = X_T sqrt(sigma^2 + sd^2) / sqrt(sigma_T^2 + sd^2)
        double xT = init * (ve ? 1.0 : Math.Sqrt(sigmaT * sigmaT + 1));
        double xEnd = xT * Math.Sqrt(sigmaEnd * sigmaEnd + sd * sd) / Math.Sqrt(sigmaT * sigmaT + sd * sd);
        if (sigmaEnd == 0)
        {
            // every solver's final step to sigma = 0 returns D(x, sigma_a) = x sd^2 / (sigma_a^2 + sd^2): exact ODE up to sigma_a, then that
            double tLast = s.Timesteps[^1];
            double sa = sig != null ? sig[^2] : Math.Sqrt((1 - s.AlphasCumprod[(int)tLast]) / s.AlphasCumprod[(int)tLast]);
            xEnd = xT * Math.Sqrt(sa * sa + sd * sd) / Math.Sqrt(sigmaT * sigmaT + sd * sd) * sd * sd / (sa * sa + sd * sd);
        }
        double scale = ve ? xEnd : xEnd / Math.Sqrt(sigmaEnd * sigmaEnd + 1);
        for (int i = 0; i < s.Timesteps.Count; i++)
        {
            double t = s.Timesteps[i];
            var min = s.ScaleModelInput(x, t);
            // the scheduler's own noise level for this call, so the model is exact for it
            double sigma = sig?[i] ?? SigmaSchedules.InterpOnIndex(t, BetaSchedules.SigmasFromAlphasCumprod(s.AlphasCumprod.ToArray()));
            var eps = GaussianEps(min, 1 / (sigma * sigma + 1), sd);
            var next = s.Step(eps, t, x).PrevSample;
            x.Dispose();
            x = next;
        }
        double err = 0, maxRef = 0;
        for (int i = 0; i < x.Size; i++)
        {
            double expect = unit.Span[i] * scale;
            err = Math.Max(err, Math.Abs(x.Span[i] - expect));
            maxRef = Math.Max(maxRef, Math.Abs(expect));
        }
        return err / maxRef;
    }

    [Fact]
    public void HigherOrderSolversSolveTheGaussianOdeMoreAccurately()
    {
        const string dpm = "{\"use_karras_sigmas\":KARRAS,\"use_lu_lambdas\":LU,\"algorithm_type\":\"dpmsolver++\",\"solver_order\":ORDER,\"solver_type\":\"TYPE\"}";
        double Dpm(int order, int n, string type = "midpoint", bool karras = true) =>
            GaussianOdeError(DPMSolverMultistepScheduler.FromConfig(dpm.Replace("ORDER", order.ToString()).Replace("TYPE", type)
                .Replace("KARRAS", karras ? "true" : "false").Replace("LU", karras ? "false" : "true")), n);
        // uniform steps in lambda (Lu et al. 2022): orders 1/2/3 at 20, 40 and 80 steps
        var lu = new double[4, 3];
        for (int o = 1; o <= 3; o++)
            for (int k = 0; k < 3; k++) lu[o, k] = Dpm(o, 20 << k, karras: false);
        double k1 = Dpm(1, 20), k2 = Dpm(2, 20), k3 = Dpm(3, 20), k2h = Dpm(2, 20, "heun");
        double ddim = GaussianOdeError(DDIMScheduler.FromConfig("{\"clip_sample\":false,\"timestep_spacing\":\"trailing\"}"), 20);
        double euler = GaussianOdeError(EulerDiscreteScheduler.FromConfig("{\"use_karras_sigmas\":true}"), 20);
        double euler40 = GaussianOdeError(EulerDiscreteScheduler.FromConfig("{\"use_karras_sigmas\":true}"), 40);
        double heun = GaussianOdeError(HeunDiscreteScheduler.FromConfig("{\"use_karras_sigmas\":true}"), 20);
        double heun40 = GaussianOdeError(HeunDiscreteScheduler.FromConfig("{\"use_karras_sigmas\":true}"), 40);
        _out.WriteLine($"uniform-lambda DPM++ order 1/2/3 @20/40/80: {lu[1, 0]:E2} {lu[1, 1]:E2} {lu[1, 2]:E2} | {lu[2, 0]:E2} {lu[2, 1]:E2} {lu[2, 2]:E2} | {lu[3, 0]:E2} {lu[3, 1]:E2} {lu[3, 2]:E2}");
        _out.WriteLine($"Karras @20: DPM++ 1/2/3 {k1:E2} {k2:E2} {k3:E2}, heun-type 2 {k2h:E2}; DDIM {ddim:E2}; Euler {euler:E2} -> {euler40:E2}; Heun {heun:E2} -> {heun40:E2}");
        for (int k = 0; k < 3; k++) Assert.True(lu[3, k] < lu[2, k] && lu[2, k] < lu[1, k], $"orders at {20 << k} steps: {lu[1, k]:E2} {lu[2, k]:E2} {lu[3, k]:E2}");
        // halving h: first order error halves; second order quarters (a first-order start-up step keeps order 3 at h^2 asymptotically)
        Assert.InRange(lu[1, 0] / lu[1, 1], 1.8, 2.2);
        Assert.InRange(lu[2, 1] / lu[2, 2], 3.5, 4.5);
        Assert.True(lu[3, 0] / lu[3, 1] > 4.5, $"order 3: {lu[3, 0]:E2} -> {lu[3, 1]:E2}");
        Assert.True(k3 < k2 && k2 < k1 && k2h < k1, $"Karras DPM++: {k1:E2} {k2:E2} {k3:E2} {k2h:E2}");
        Assert.InRange(euler / euler40, 1.7, 2.3);
        Assert.True(heun / heun40 > 3.5 && heun < euler, $"Heun {heun:E2} -> {heun40:E2}, Euler {euler:E2}");
        Assert.True(ddim < 0.2, $"DDIM {ddim:E2}");
        // noise-prediction DPM-Solver (Lu et al. 2022) must end at sigma_min (uniform lambda; the repeated last sigma is a no-op first-order step)
        double Eps(int order, string alg = "dpmsolver") => GaussianOdeError(DPMSolverMultistepScheduler.FromConfig(
            $"{{\"algorithm_type\":\"{alg}\",\"solver_order\":{order},\"final_sigmas_type\":\"sigma_min\",\"use_lu_lambdas\":true}}"), 14);
        double e1 = Eps(1), e2 = Eps(2), e3 = Eps(3), ep2 = Eps(2, "dpmsolver++");
        _out.WriteLine($"dpmsolver 1/2/3 @14 (uniform lambda, sigma_min): {e1:E2} {e2:E2} {e3:E2}; dpmsolver++ 2: {ep2:E2}");
        Assert.True(e2 < e1 / 2 && e3 < e1 / 2 && ep2 < e1 / 2, $"{e1:E2} {e2:E2} {e3:E2} {ep2:E2}");
    }

    [Fact]
    public void DpmSolverFirstOrderMatchesDdimOnTheSameTimesteps()
    {
        // first-order DPM-Solver++ is DDIM (Lu et al. 2022b, Sec. 4.1)
        var dpm = DPMSolverMultistepScheduler.FromConfig("{\"solver_order\":1,\"timestep_spacing\":\"trailing\"}");
        var ddim = DDIMScheduler.FromConfig("{\"clip_sample\":false,\"timestep_spacing\":\"trailing\"}");
        dpm.SetTimesteps(10);
        ddim.SetTimesteps(10);
        Assert.Equal(ddim.Timesteps, dpm.Timesteps);
        var x = Randn(40, 1, 2, 4, 4);
        var eps = Randn(41, 1, 2, 4, 4);
        var a = dpm.Step(eps, 999, x).PrevSample;
        var b = ddim.Step(eps, 999, x).PrevSample;
        TraceAssert.Close(a, b, 1e-5, "DPM-Solver++(1) vs DDIM");
    }

    [Fact]
    public void SdeDpmSolverMatchesKDiffusionDpmPP2MSdeWithSharedNoise()
    {
        var s = DPMSolverMultistepScheduler.FromConfig("{\"algorithm_type\":\"sde-dpmsolver++\"}");
        s.SetTimesteps(10);
        var g = new Generator(77);
        var bank = Enumerable.Range(0, 10).Select(_ => Tensor.Randn(g, 1, 3, 4, 4)).ToArray();
        var unit = Randn(78, 1, 3, 4, 4);
        static Tensor Eps(Tensor x, double t) => SchedulerTraceTests.Eps(x, t);
        var x = unit.Clone();
        for (int i = 0; i < 10; i++)
        {
            var next = s.Step(Eps(x, s.Timesteps[i]), s.Timesteps[i], x, bank[i]).PrevSample;
            x = next;
        }
        var denoiser = DiscreteTimeDenoiser.FromScheduler(s, Eps);
        double s0 = s.Sigmas[0];
        var xVe = unit.Clone();
        for (int i = 0; i < xVe.Size; i++) xVe.Span[i] *= (float)Math.Sqrt(s0 * s0 + 1);
        int k = 0;
        var viaK = KSamplers.DpmPP2MSde(denoiser.Denoise, xVe, s.Sigmas, eta: 1, noiseSampler: (_, _) => bank[k++]);
        Assert.Equal(9, k);  // no noise on the final step to sigma = 0
        TraceAssert.Close(viaK, x, 1e-4, "sde-dpmsolver++ vs k-diffusion dpmpp_2m_sde");
    }

    [Fact]
    public void DpmSolverStepIndexAndStatePersistAcrossSetTimesteps()
    {
        var s = DPMSolverMultistepScheduler.FromConfig("{}");
        var x = Randn(50, 1, 2, 2);
        s.SetTimesteps(4);
        var first = s.Step(SchedulerTraceTests.Eps(x, s.Timesteps[0]), s.Timesteps[0], x).PrevSample;
        Assert.Equal(1, s.StepIndex);
        s.SetTimesteps(4);
        Assert.Null(s.StepIndex);
        var again = s.Step(SchedulerTraceTests.Eps(x, s.Timesteps[0]), s.Timesteps[0], x).PrevSample;
        Assert.Equal(first.ToArray(), again.ToArray());
    }

    [Fact]
    public void EulerChurnFollowsKarrasAlgorithm2()
    {
        var s = EulerDiscreteScheduler.FromConfig("{}");
        s.SetTimesteps(5);
        s.Churn = new ChurnOptions(SChurn: 1.0);
        var x = Randn(60, 1, 2, 3);
        var eps = Randn(61, 1, 2, 3);
        var z = Randn(62, 1, 2, 3);
        var r = s.Step(eps, s.Timesteps[0], x, z);
        double sigma = s.Sigmas[0], next = s.Sigmas[1];
        double gamma = Math.Min(1.0 / 5, Math.Sqrt(2) - 1);
        double hat = sigma * (1 + gamma);
        for (int i = 0; i < x.Size; i++)
        {
            double xh = x.Span[i] + z.Span[i] * Math.Sqrt(hat * hat - sigma * sigma);
            double x0 = xh - hat * eps.Span[i];
            Assert.Equal(x0, r.PredOriginalSample.Span[i], 3);
            Assert.Equal(xh + (xh - x0) / hat * (next - hat), r.PrevSample.Span[i], 3);
        }
    }

    [Fact]
    public void SigmaSchedulersReportTheirSchedule()
    {
        var h = HeunDiscreteScheduler.FromConfig("{}");
        h.SetTimesteps(4);
        Assert.Equal(7, h.Timesteps.Count);
        Assert.Equal(8, h.Sigmas.Count);
        Assert.True(h.StateInFirstOrder);
        var x = Randn(70, 1, 2);
        h.Step(x, h.Timesteps[0], x);
        Assert.False(h.StateInFirstOrder);
        Assert.Equal(1, h.StepIndex);
        var e = EulerDiscreteScheduler.FromConfig("{\"use_exponential_sigmas\":true}");
        e.SetTimesteps(6);
        for (int i = 2; i < 6; i++) Assert.Equal(Math.Log(e.Sigmas[1] / e.Sigmas[0]), Math.Log(e.Sigmas[i] / e.Sigmas[i - 1]), 5);
        Assert.Throws<ArgumentException>(() => e.IndexForTimestep(12.345));
        var a = EulerDiscreteScheduler.FromConfig("{}");
        a.SetTimesteps(10);
        var x0 = Randn(71, 2, 1, 2);
        var n = Randn(72, 2, 1, 2);
        var noisy = a.AddNoise(x0, n, new[] { 999, 0 });
        Assert.Equal(x0.Span[0] + n.Span[0] * (float)a.Sigmas[0], noisy.Span[0], 4);
        Assert.Equal(x0.Span[2] + n.Span[2] * (float)a.TrainingSigmas[0], noisy.Span[2], 5);
    }

    [Fact]
    public void DynamicThresholdingClampsAtTheAbsQuantile()
    {
        // Saharia et al. 2022, Sec. 2.3: s = clamp(quantile(|x0|, p), 1, max), x0 = clamp(x0, -s, s) / s per sample
        var s = DDIMScheduler.FromConfig("{\"prediction_type\":\"sample\",\"thresholding\":true,\"dynamic_thresholding_ratio\":0.5,\"sample_max_value\":2.2}");
        s.SetTimesteps(10);
        var x0 = Tensor.FromArray(new float[] { 0.5f, -3f, 1.5f, 2.5f, 0.1f, -0.2f, 0.3f, 0.4f }, 2, 4);
        var r = s.Step(x0, 500, Tensor.Zeros(2, 4));
        // |x| sorted 0.5 1.5 2.5 3 -> median 2.0; second sample's quantile 0.25 is raised to 1
        Assert.Equal(new float[] { 0.25f, -1f, 0.75f, 1f, 0.1f, -0.2f, 0.3f, 0.4f }, r.PredOriginalSample.ToArray());
        var capped = DDIMScheduler.FromConfig("{\"prediction_type\":\"sample\",\"thresholding\":true,\"dynamic_thresholding_ratio\":0.5,\"sample_max_value\":1.5}");
        capped.SetTimesteps(10);
        Assert.Equal(-1f, capped.Step(x0, 500, Tensor.Zeros(2, 4)).PredOriginalSample.Span[1]);
        Assert.Equal(1.5f / 1.5f, capped.Step(x0, 500, Tensor.Zeros(2, 4)).PredOriginalSample.Span[2]);
    }

    [Fact]
    public void ContinuousTimestepsAreQuarterLogSigma()
    {
        var s = EulerDiscreteScheduler.FromConfig("{\"timestep_type\":\"continuous\",\"prediction_type\":\"v_prediction\"}");
        s.SetTimesteps(5);
        for (int i = 0; i < 5; i++) Assert.Equal(0.25 * Math.Log(s.Sigmas[i]), s.Timesteps[i], 5);
        var log = EulerDiscreteScheduler.FromConfig("{\"interpolation_type\":\"log_linear\"}");
        log.SetTimesteps(4);
        Assert.Equal(6, log.Sigmas.Count);  // diffusers: N + 1 log-spaced sigmas from sigma_max to sigma_min, then the final 0
        Assert.Equal((float)log.TrainingSigmas[^1], (float)log.Sigmas[0], 4);
        Assert.Equal((float)log.TrainingSigmas[0], (float)log.Sigmas[4], 4);
    }

    [Fact]
    public void DdpmCustomTimestepsChainToTheNextListedStep()
    {
        var s = DDPMScheduler.FromConfig("{}");
        Assert.Equal(499, s.PreviousTimestep(500));  // before SetTimesteps: the full 1000-step chain
        s.SetTimesteps(new[] { 900, 500, 100 });
        Assert.Equal(new double[] { 900, 500, 100 }, s.Timesteps);
        Assert.Equal(100, s.PreviousTimestep(500));
        Assert.Equal(-1, s.PreviousTimestep(100));
        Assert.Throws<ArgumentException>(() => s.SetTimesteps(new[] { 100, 500 }));
        var x = Randn(80, 2, 3);
        Assert.Throws<ArgumentException>(() => s.AddNoise(x, Randn(81, 2, 3), new[] { 1 }));
        Assert.Throws<ArgumentException>(() => s.AddNoise(x, Randn(82, 3, 2), new[] { 1, 2 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.AddNoise(x, Randn(83, 2, 3), new[] { 1, 1000 }));
    }
}
