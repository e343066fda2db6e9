using System.Text.Json;
using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Step-by-step replay of the 18 diffusers sampling traces in fixtures/schedulers.*.</summary>
public class SchedulerTraceTests
{
    private const double Tol = 1e-5;  // max|a-b| <= 1e-5 max|b| per tensor (fixtures README)
    private readonly ITestOutputHelper _out;

    public SchedulerTraceTests(ITestOutputHelper output) { _out = output; }

    public static IEnumerable<object[]> Runs() =>
        TraceAssert.Json("schedulers.json").GetProperty("runs").EnumerateObject().Select(p => new object[] { p.Name });

    /// <summary>The fixtures' analytic epsilon model, in float32: 0.1 x cos(t/1000) + 0.05 tanh(2x).</summary>
    internal static Tensor Eps(Tensor x, double t)
    {
        float c = MathF.Cos((float)t / 1000f);
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = 0.1f * xs[i] * c + 0.05f * MathF.Tanh(2f * xs[i]);
        return y;
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void ReplaysUpstreamTrace(string run)
    {
        var meta = TraceAssert.Json("schedulers.json").GetProperty("runs").GetProperty(run);
        var fx = Fixtures.Load("schedulers.safetensors");
        var scheduler = SchedulerFactory.FromConfig(meta.GetProperty("config").GetRawText());
        Assert.Equal(meta.GetProperty("scheduler").GetString(), scheduler.GetType().Name);
        scheduler.SetTimesteps(meta.GetProperty("num_inference_steps").GetInt32());
        if (scheduler is DDIMScheduler ddim && meta.GetProperty("step_call").GetString()!.Contains("eta=1")) ddim.Eta = 1.0;

        double worst = 0;
        worst = Math.Max(worst, TraceAssert.Close(scheduler.Timesteps, fx[run + ".timesteps"].Span, 1e-6, $"{run} timesteps"));
        if (fx.TryGetValue(run + ".sigmas", out var sig))
        {
            var sigmas = scheduler switch
            {
                SigmaScheduler s => s.Sigmas,
                DPMSolverMultistepScheduler d => d.Sigmas,
                _ => throw new InvalidOperationException(),
            };
            worst = Math.Max(worst, TraceAssert.Close(sigmas, sig.Span, 2e-6, $"{run} sigmas"));
        }
        double initSigma = meta.GetProperty("init_noise_sigma").GetDouble();
        Assert.True(Math.Abs(scheduler.InitNoiseSigma - initSigma) <= 1e-6 * initSigma, $"init_noise_sigma {scheduler.InitNoiseSigma} vs {initSigma}");

        var xs = fx[run + ".x"];
        int calls = meta.GetProperty("num_model_calls").GetInt32();
        Assert.Equal(calls, scheduler.Timesteps.Count);
        fx.TryGetValue(run + ".noise", out var noiseBank);
        fx.TryGetValue(run + ".pred_x0", out var predX0);

        var x = fx["x_T_unit"].Clone();
        float s0 = (float)scheduler.InitNoiseSigma;
        for (int k = 0; k < x.Size; k++) x.Span[k] *= s0;
        worst = Math.Max(worst, TraceAssert.Close(x, TraceAssert.Row(xs, 0), Tol, $"{run} x[0]"));
        for (int i = 0; i < calls; i++)
        {
            double t = scheduler.Timesteps[i];
            var modelIn = scheduler.ScaleModelInput(x, t);
            worst = Math.Max(worst, TraceAssert.Close(modelIn, TraceAssert.Row(fx[run + ".model_in"], i), Tol, $"{run} model_in[{i}]"));
            var eps = Eps(modelIn, t);
            worst = Math.Max(worst, TraceAssert.Close(eps, TraceAssert.Row(fx[run + ".eps"], i), Tol, $"{run} eps[{i}]"));
            var noise = noiseBank != null ? TraceAssert.Row(noiseBank, i) : null;
            var r = scheduler.Step(eps, t, x, noise);
            double ex = TraceAssert.Close(r.PrevSample, TraceAssert.Row(xs, i + 1), Tol, $"{run} x[{i + 1}]");
            if (Environment.GetEnvironmentVariable("TRACE_VERBOSE") != null) _out.WriteLine($"  call {i} t={t}: x err {ex:E2}");
            worst = Math.Max(worst, ex);
            if (predX0 != null)
                worst = Math.Max(worst, TraceAssert.Close(r.PredOriginalSample, TraceAssert.Row(predX0, i), Tol, $"{run} pred_x0[{i}]"));
            x.Dispose();
            x = r.PrevSample;
        }
        _out.WriteLine($"{run}: worst max|a-b|/max|b| = {worst:E2}");
    }
}
