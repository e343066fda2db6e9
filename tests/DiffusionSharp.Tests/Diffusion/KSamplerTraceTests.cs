using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Step-by-step replay of the 6 k-diffusion sampler traces in fixtures/kdiffusion.*.</summary>
public class KSamplerTraceTests
{
    private const double Tol = 1e-5;
    private readonly ITestOutputHelper _out;

    public KSamplerTraceTests(ITestOutputHelper output) { _out = output; }

    public static IEnumerable<object[]> Runs() =>
        TraceAssert.Json("kdiffusion.json").GetProperty("runs").EnumerateObject().Select(p => new object[] { p.Name });

    /// <summary>The fixtures' analytic denoiser in float32: x sd^2/(sigma^2 + sd^2) + 0.1 tanh(x)/(1 + sigma), sd = 0.5.</summary>
    internal static Tensor Denoiser(Tensor x, double sigma)
    {
        float s = (float)sigma;
        float c = 0.25f / (s * s + 0.25f), d = 1f + s;
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = xs[i] * c + 0.1f * MathF.Tanh(xs[i]) / d;
        return y;
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void ReplaysUpstreamTrace(string run)
    {
        var meta = TraceAssert.Json("kdiffusion.json").GetProperty("runs").GetProperty(run);
        var fx = Fixtures.Load("kdiffusion.safetensors");
        int n = meta.GetProperty("n").GetInt32();
        double worst = 0;

        var karras = SigmaSchedules.Karras(n, 0.0292, 14.6146, 7.0);
        var sigmasRef = fx[run + ".sigmas"];
        worst = Math.Max(worst, TraceAssert.Close(karras, sigmasRef.Span, 1e-6, $"{run} Karras sigmas"));
        var sigmas = sigmasRef.ToArray().Select(v => (double)v).ToArray();

        var x = fx["x_T_unit"].Clone();
        float s0 = (float)sigmas[0];
        for (int k = 0; k < x.Size; k++) x.Span[k] *= s0;
        worst = Math.Max(worst, TraceAssert.Close(x, fx[run + ".x_T"], Tol, $"{run} x_T"));

        var callsX = fx[run + ".calls.x"];
        var callsSigma = fx[run + ".calls.sigma"];
        var callsD = fx[run + ".calls.denoised"];
        int call = 0;
        Tensor Model(Tensor xi, double sigma)
        {
            Assert.True(call < callsX.Dim(0), $"{run}: more denoiser calls than the {callsX.Dim(0)} recorded");
            worst = Math.Max(worst, TraceAssert.Close(xi, TraceAssert.Row(callsX, call), Tol, $"{run} calls.x[{call}]"));
            double sr = callsSigma.Span[call];
            Assert.True(Math.Abs(sigma - sr) <= 1e-6 * sr, $"{run} calls.sigma[{call}]: {sigma} vs {sr}");
            var d = Denoiser(xi, sigma);
            worst = Math.Max(worst, TraceAssert.Close(d, TraceAssert.Row(callsD, call), Tol, $"{run} calls.denoised[{call}]"));
            call++;
            return d;
        }

        int steps = 0;
        void Callback(int i, Tensor xi, double sigma, Tensor denoised)
        {
            Assert.Equal(steps, i);
            Assert.Equal((float)sigmas[i], (float)sigma);
            worst = Math.Max(worst, TraceAssert.Close(xi, TraceAssert.Row(fx[run + ".x_steps"], i), Tol, $"{run} x_steps[{i}]"));
            worst = Math.Max(worst, TraceAssert.Close(denoised, TraceAssert.Row(fx[run + ".denoised_steps"], i), Tol, $"{run} denoised_steps[{i}]"));
            steps++;
        }

        int noiseIdx = 0;
        fx.TryGetValue(run + ".noise", out var bank);
        Tensor Noise(double sigma, double next)
        {
            Assert.NotNull(bank);
            return TraceAssert.Row(bank!, noiseIdx++);
        }

        Tensor result = run switch
        {
            "euler_10" => KSamplers.Euler(Model, x, sigmas, Callback),
            "euler_ancestral_10" => KSamplers.EulerAncestral(Model, x, sigmas, Callback, eta: 1.0, noiseSampler: Noise),
            "heun_10" => KSamplers.Heun(Model, x, sigmas, Callback),
            "dpmpp_2m_10" or "dpmpp_2m_20" => KSamplers.DpmPP2M(Model, x, sigmas, Callback),
            "lms_10" => KSamplers.Lms(Model, x, sigmas, Callback, order: 4),
            _ => throw new InvalidOperationException($"No sampler mapped for run {run}."),
        };
        Assert.Equal(meta.GetProperty("num_model_calls").GetInt32(), call);
        Assert.Equal(n, steps);
        if (bank != null) Assert.Equal(bank.Dim(0), noiseIdx);
        worst = Math.Max(worst, TraceAssert.Close(result, fx[run + ".out"], Tol, $"{run} out"));
        worst = Math.Max(worst, TraceAssert.Close(result, TraceAssert.Row(fx[run + ".x_steps"], n), Tol, $"{run} x_steps[{n}]"));
        _out.WriteLine($"{run}: worst max|a-b|/max|b| = {worst:E2}");
    }

    [Fact]
    public void DpmPP2MSdeWithZeroEtaEqualsDpmPP2MTrace()
    {
        // with eta = 0 the SDE solver's midpoint update reduces algebraically to DPM-Solver++(2M)
        var fx = Fixtures.Load("kdiffusion.safetensors");
        foreach (var run in new[] { "dpmpp_2m_10", "dpmpp_2m_20" })
        {
            var sigmas = fx[run + ".sigmas"].ToArray().Select(v => (double)v).ToArray();
            var result = KSamplers.DpmPP2MSde(Denoiser, fx[run + ".x_T"], sigmas, eta: 0);
            TraceAssert.Close(result, fx[run + ".out"], 1e-5, $"{run} via dpmpp_2m_sde(eta=0)");
        }
    }
}
