using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Closed-form checks of the k-diffusion samplers and the discrete-time denoiser adapter.</summary>
public class KSamplerBehaviourTests
{
    private readonly ITestOutputHelper _out;

    public KSamplerBehaviourTests(ITestOutputHelper output) { _out = output; }

    [Fact]
    public void AdapterPlusEulerReproducesTheDiffusersEulerTrace()
    {
        // diffusers' Euler over an eps model equals k-diffusion Euler over the wrapped denoiser (Karras et al. 2022, Table 1)
        var meta = TraceAssert.Json("schedulers.json").GetProperty("runs").GetProperty("euler_10");
        var fx = Fixtures.Load("schedulers.safetensors");
        var s = SchedulerFactory.FromConfig(meta.GetProperty("config").GetRawText());
        var denoiser = DiscreteTimeDenoiser.FromScheduler(s, SchedulerTraceTests.Eps);
        var sigmas = fx["euler_10.sigmas"].ToArray().Select(v => (double)v).ToArray();
        var x = TraceAssert.Row(fx["euler_10.x"], 0);
        var ts = meta.GetProperty("timesteps").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        int calls = 0;
        var result = KSamplers.Euler((xi, sigma) =>
        {
            Assert.Equal(ts[calls], denoiser.SigmaToT(sigma), 2);
            calls++;
            return denoiser.Denoise(xi, sigma);
        }, x, sigmas, (i, xi, sigma, d) =>
        {
            TraceAssert.Close(xi, TraceAssert.Row(fx["euler_10.x"], i), 1e-5, $"x[{i}]");
            TraceAssert.Close(d, TraceAssert.Row(fx["euler_10.pred_x0"], i), 1e-5, $"pred_x0[{i}]");
        });
        Assert.Equal(10, calls);
        TraceAssert.Close(result, TraceAssert.Row(fx["euler_10.x"], 10), 1e-5, "final x");
    }

    [Theory]
    [InlineData(PredictionType.Epsilon)]
    [InlineData(PredictionType.Sample)]
    [InlineData(PredictionType.VPrediction)]
    public void AdapterRecoversX0FromExactPredictions(PredictionType prediction)
    {
        var ddpm = DDPMScheduler.FromConfig("{}");
        var x0 = Tensor.Randn(new Generator(1), 1, 3, 4, 4);
        var n = Tensor.Randn(new Generator(2), 1, 3, 4, 4);
        const int t = 400;
        double sigma = Math.Sqrt((1 - ddpm.AlphasCumprod[t]) / ddpm.AlphasCumprod[t]);
        var target = prediction switch
        {
            PredictionType.Epsilon => n,
            PredictionType.Sample => x0,
            _ => ddpm.GetVelocity(x0, n, new[] { t }),
        };
        var xVp = ddpm.AddNoise(x0, n, new[] { t });
        var denoiser = new DiscreteTimeDenoiser((xin, tt) =>
        {
            Assert.Equal(t, tt, 3);
            TraceAssert.Close(xin, xVp, 1e-5, "c_in x is the VP sample");
            return target;
        }, ddpm.AlphasCumprod, prediction);
        var xVe = Tensor.Empty(1, 3, 4, 4);
        for (int i = 0; i < xVe.Size; i++) xVe.Span[i] = x0.Span[i] + (float)sigma * n.Span[i];
        TraceAssert.Close(denoiser.Denoise(xVe, sigma), x0, 1e-5, $"{prediction} x0");
        Assert.Equal(ddpm.AlphasCumprod.Count - 1, denoiser.SigmaToT(denoiser.SigmaMax), 6);
        var quantized = new DiscreteTimeDenoiser((xin, tt) => { Assert.Equal(Math.Round(tt), tt); return xin; }, ddpm.AlphasCumprod, prediction, quantize: true);
        quantized.Denoise(xVe, denoiser.TToSigma(123.4));
        var sig = denoiser.GetSigmas(5);
        Assert.Equal(6, sig.Length);
        Assert.Equal(denoiser.SigmaMax, sig[0], 9);
        Assert.Equal(denoiser.SigmaMin, sig[4], 9);
        Assert.Equal(0.0, sig[5]);
    }

    [Fact]
    public void EulerAncestralWithZeroEtaIsEuler()
    {
        var fx = Fixtures.Load("kdiffusion.safetensors");
        var sigmas = fx["euler_10.sigmas"].ToArray().Select(v => (double)v).ToArray();
        var result = KSamplers.EulerAncestral(KSamplerTraceTests.Denoiser, fx["euler_10.x_T"], sigmas, eta: 0,
            noiseSampler: (_, _) => throw new InvalidOperationException("no noise expected"));
        TraceAssert.Close(result, fx["euler_10.out"], 1e-6, "euler_ancestral(eta=0)");
        var (down, up) = KSamplers.AncestralStep(2.0, 1.0, 1.0);
        Assert.Equal(1.0, down * down + up * up, 6);
        Assert.Equal(Math.Sqrt(1.0 * (4.0 - 1.0) / 4.0), up, 6);
    }

    [Fact]
    public void EulerChurnRaisesTheNoiseLevelFirst()
    {
        // one step of Karras et al. 2022 Algorithm 2 with S_churn, checked in double
        var sigmas = new[] { 2.0, 1.0 };
        var x = Tensor.Randn(new Generator(3), 1, 4);
        var z = Tensor.Randn(new Generator(4), 1, 4);
        double gamma = Math.Min(0.3 / 1, Math.Sqrt(2) - 1), hat = 2.0 * (1 + gamma);
        double seenSigma = 0;
        var y = KSamplers.Euler((xi, s) => { seenSigma = s; return KSamplerTraceTests.Denoiser(xi, s); }, x, sigmas, churn: new ChurnOptions(SChurn: 0.3, Noise: (_, _) => z));
        Assert.Equal(hat, seenSigma, 5);
        for (int i = 0; i < 4; i++)
        {
            double xh = x.Span[i] + z.Span[i] * Math.Sqrt(hat * hat - 4.0);
            double d = xh * 0.25 / (hat * hat + 0.25) + 0.1 * Math.Tanh(xh) / (1 + hat);
            Assert.Equal(xh + (xh - d) / hat * (1.0 - hat), y.Span[i], 4);
        }
    }

    [Fact]
    public void LmsCoefficientsIntegrateTheInterpolatingPolynomial()
    {
        var sigmas = SigmaSchedules.Karras(10, 0.03, 15, 7.0);
        for (int i = 0; i < 9; i++)
        {
            int order = Math.Min(i + 1, 4);
            var c = Enumerable.Range(0, order).Select(j => KSamplers.LinearMultistepCoefficient(order, sigmas, i, j)).ToArray();
            // the Lagrange basis sums to 1, and a cubic is integrated exactly
            Assert.Equal(sigmas[i + 1] - sigmas[i], c.Sum(), 10);
            static double P(double s) => 1 + 2 * s - 0.5 * s * s + 0.03 * s * s * s;
            static double Integral(double s) => s + s * s - s * s * s / 6 + 0.0075 * s * s * s * s;
            if (order == 4)
                Assert.Equal(Integral(sigmas[i + 1]) - Integral(sigmas[i]), Enumerable.Range(0, 4).Sum(j => c[j] * P(sigmas[i - j])), 8);
        }
        Assert.Equal(sigmas[1] - sigmas[0], KSamplers.LinearMultistepCoefficient(1, sigmas, 0, 0), 12);
        Assert.Throws<ArgumentException>(() => KSamplers.LinearMultistepCoefficient(3, sigmas, 1, 0));
    }

    /// <summary>Relative error of a sampler on Gaussian data (std 0.5), whose PF-ODE solution is X(0) = X_T sd / sqrt(sigma_T^2 + sd^2).</summary>
    private static double GaussianError(Func<Func<Tensor, double, Tensor>, Tensor, double[], Tensor> sampler, int n)
    {
        const double sd = 0.5;
        var sigmas = SigmaSchedules.Karras(n, 0.002, 80, 7.0, appendZero: false).Append(0.0).ToArray();
        var xT = Tensor.Randn(new Generator(5), 1, 3, 8, 8);
        for (int i = 0; i < xT.Size; i++) xT.Span[i] *= 80f;
        Tensor D(Tensor x, double sigma)
        {
            var y = Tensor.Empty(x.Shape);
            float c = (float)(sd * sd / (sigma * sigma + sd * sd));
            for (int i = 0; i < y.Size; i++) y.Span[i] = x.Span[i] * c;
            return y;
        }
        var outp = sampler(D, xT, sigmas);
        double scale = sd / Math.Sqrt(80.0 * 80.0 + sd * sd), err = 0, max = 0;
        for (int i = 0; i < outp.Size; i++)
        {
            err = Math.Max(err, Math.Abs(outp.Span[i] - xT.Span[i] * scale));
            max = Math.Max(max, Math.Abs(xT.Span[i] * scale));
        }
        return err / max;
    }

    [Fact]
    public void SamplersConvergeAtTheirOrderOnGaussianData()
    {
        var samplers = new (string Name, Func<Func<Tensor, double, Tensor>, Tensor, double[], Tensor> Run)[]
        {
            ("euler", (m, x, s) => KSamplers.Euler(m, x, s)),
            ("heun", (m, x, s) => KSamplers.Heun(m, x, s)),
            ("dpm_2", (m, x, s) => KSamplers.Dpm2(m, x, s)),
            ("lms", (m, x, s) => KSamplers.Lms(m, x, s)),
            ("dpmpp_2m", (m, x, s) => KSamplers.DpmPP2M(m, x, s)),
            ("dpmpp_2m_sde(eta=0,heun)", (m, x, s) => KSamplers.DpmPP2MSde(m, x, s, eta: 0, solverType: "heun")),
        };
        var e = new Dictionary<string, (double A, double B)>();
        foreach (var (name, run) in samplers)
        {
            e[name] = (GaussianError(run, 16), GaussianError(run, 32));
            _out.WriteLine($"{name}: {e[name].A:E2} -> {e[name].B:E2} (ratio {e[name].A / e[name].B:F2})");
        }
        Assert.InRange(e["euler"].A / e["euler"].B, 1.6, 2.6);
        foreach (var name in new[] { "heun", "dpm_2", "dpmpp_2m", "lms" })
        {
            Assert.True(e[name].A / e[name].B > 3.0, $"{name} converges at least at second order: {e[name].A:E2} -> {e[name].B:E2}");
            Assert.True(e[name].B < e["euler"].B, $"{name} beats Euler");
        }
        Assert.True(e["dpmpp_2m_sde(eta=0,heun)"].B < e["euler"].B);
    }

    [Fact]
    public void StochasticSamplersReplayFromSeededGenerators()
    {
        var sigmas = SigmaSchedules.Karras(6, 0.03, 10, 7.0);
        var x = Tensor.Randn(new Generator(6), 1, 2, 3);
        var a = KSamplers.DpmPP2MSde(KSamplerTraceTests.Denoiser, x, sigmas, generator: new Generator(7));
        var b = KSamplers.DpmPP2MSde(KSamplerTraceTests.Denoiser, x, sigmas, generator: new Generator(7));
        var c = KSamplers.DpmPP2MSde(KSamplerTraceTests.Denoiser, x, sigmas, generator: new Generator(8));
        Assert.Equal(a.ToArray(), b.ToArray());
        Assert.NotEqual(a.ToArray(), c.ToArray());
        var g = new Generator(9);
        var bank = KSamplers.FromGenerator(g, x.Shape);
        var d = KSamplers.EulerAncestral(KSamplerTraceTests.Denoiser, x, sigmas, noiseSampler: bank);
        var e = KSamplers.EulerAncestral(KSamplerTraceTests.Denoiser, x, sigmas, generator: new Generator(9));
        Assert.Equal(d.ToArray(), e.ToArray());
        Assert.Throws<ArgumentException>(() => KSamplers.Euler(KSamplerTraceTests.Denoiser, x, new[] { 1.0 }));
        Assert.Throws<InvalidOperationException>(() => KSamplers.Euler((xi, s) => Tensor.Zeros(3), x, sigmas));
    }
}
