using DiffusionSharp.Autograd;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Losses;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

public class VariationalDiffusionTests(ITestOutputHelper output)
{
    [Fact]
    public void LearnedScheduleIsMonotoneHitsEndpointsAndDifferentiates()
    {
        var s = new LearnedGammaSchedule(new Generator(1), hidden: 8, gamma0: -10, gamma1: 4);
        var t = Tensor.FromArray(Enumerable.Range(0, 21).Select(i => i / 20f).ToArray(), 21);
        var (g, d) = s.Evaluate(t);
        Assert.Equal(-10, g.Span[0], 4);
        Assert.Equal(4, g.Span[20], 4);
        for (int i = 1; i < 21; i++) Assert.True(g.Span[i] > g.Span[i - 1], "gamma must increase");
        Assert.All(d.ToArray(), v => Assert.True(v > 0));
        // d gamma / dt against central differences in t
        for (int i = 1; i < 20; i++)
        {
            double h = 1e-3;
            var tp = Tensor.FromValues(t.Span[i] + (float)h); var tm = Tensor.FromValues(t.Span[i] - (float)h);
            double num = (s.Evaluate(tp).Gamma.Item() - s.Evaluate(tm).Gamma.Item()) / (2 * h);
            Assert.True(Math.Abs(num - d.Span[i]) < 2e-2 * Math.Max(1, Math.Abs(num)), $"t={t.Span[i]}: {d.Span[i]} vs {num}");
        }
        // gradients of gamma and gamma' with respect to every schedule parameter
        var p = s.Parameters.Select(x => x.Detach().Clone()).ToArray();
        var tt = Tensor.FromValues(0.1f, 0.45f, 0.8f);
        GradCheck.Check(q => new LearnedGammaSchedule(q[0], q[1], q[2], q[3], q[4], q[5], q[6]).Evaluate(tt).Gamma, p, eps: 1e-2, atol: 5e-3, rtol: 3e-2);
        GradCheck.Check(q => new LearnedGammaSchedule(q[0], q[1], q[2], q[3], q[4], q[5], q[6]).Evaluate(tt).DGamma, p, eps: 1e-2, atol: 5e-3, rtol: 3e-2);
    }

    /// <summary>
    /// With the closed-form optimal eps of the mixture, E[L_VDM] equals -E log p(x) up to the endpoint terms (~1e-3 nats here):
    /// the mean over 4000 points must match the exact NLL within 4 standard errors of the loss's Monte Carlo spread (5 noise draws per point).
    /// </summary>
    [Fact]
    public void OptimalDenoiserLossMatchesExactNll()
    {
        var mix = GaussianMixture2D.Default();
        const int n = 4000;
        var xd = mix.Sample(n, new Generator(2));
        var x = Tensor.FromArray(xd.Select(v => (float)v).ToArray(), n, 2);
        Func<Tensor, Tensor, Tensor> model = (z, gamma) =>
        {
            var y = Tensor.Empty(z.Shape);
            var sc = new double[2];
            for (int i = 0; i < z.Dim(0); i++)
            {
                double gm = gamma.Span[i], a = Math.Sqrt(1 / (1 + Math.Exp(gm))), s = Math.Sqrt(1 / (1 + Math.Exp(-gm)));
                mix.Score(new double[] { z.Span[2 * i], z.Span[2 * i + 1] }, 1, a, s, sc);
                y.Span[2 * i] = (float)(-s * sc[0]); y.Span[2 * i + 1] = (float)(-s * sc[1]);
            }
            return y;
        };
        using var _ = GradMode.NoGrad();
        var src = new NoiseSource(new Generator(3));
        var loss = Enumerable.Range(0, 5).SelectMany(_ => VariationalDiffusion.Loss(model, new LinearGammaSchedule(), x, src).Total.ToArray()).ToArray();
        double mean = loss.Average(v => (double)v), se = Math.Sqrt(loss.Average(v => Math.Pow(v - mean, 2)) / loss.Length);
        double exact = -Enumerable.Range(0, n).Average(i => mix.LogDensity(xd[2 * i], xd[2 * i + 1]));
        output.WriteLine($"VDM bound {mean:F4} +- {se:F4} nats vs exact NLL {exact:F4}");
        Assert.True(Math.Abs(mean - exact) < 4 * se + 5e-3, $"VDM {mean} vs exact {exact}");
    }

    [Fact]
    public void LossGradientsMatchFiniteDifferences()
    {
        var sched = new LearnedGammaSchedule(new Generator(4), hidden: 4, gamma0: -6, gamma1: 3);
        var x = Tensor.Randn(new Generator(5), 3, 2);
        var t = Tensor.FromValues(0.2f, 0.5f, 0.9f);
        var eps = Tensor.Randn(new Generator(6), 3, 2);
        var p = sched.Parameters.Select(q => q.Detach().Clone()).ToArray();
        var m = Tensor.FromArray(new float[] { 0.1f, -0.2f }, 1, 2);
        GradCheck.Check(q => VariationalDiffusion.Loss((z, g) => z * 0.5f - q[7], new LearnedGammaSchedule(q[0], q[1], q[2], q[3], q[4], q[5], q[6]), x, t, eps).Total,
            p.Append(m).ToArray(), eps: 1e-3, atol: 1e-2, rtol: 3e-2);
    }

    /// <summary>
    /// Joint training of a denoiser family that contains the optimum for Gaussian data, eps-hat = sigma (z - alpha m) / (alpha^2 v + sigma^2),
    /// and the learned schedule: the loss falls to the exact NLL and m, v reach the data mean and variance.
    /// </summary>
    [Fact]
    public void JointTrainingWithLearnedScheduleReducesLossToExactNll()
    {
        var mu = new[] { 0.3, -0.2 }; var var = new[] { 0.04, 0.09 };
        var g = new Generator(7);
        var sched = new LearnedGammaSchedule(g, hidden: 8, gamma0: -5, gamma1: 2);
        var m = Tensor.Zeros(1, 2); var logV = Tensor.Zeros(1, 2);
        m.RequiresGrad = true; logV.RequiresGrad = true;
        Func<Tensor, Tensor, Tensor> model = (z, gamma) =>
        {
            var g2 = gamma.Reshape(gamma.Size, 1);
            var a2 = (-g2).Sigmoid(); var s2 = g2.Sigmoid();
            return s2.Sqrt() * (z - a2.Sqrt() * m) / (a2 * logV.Exp() + s2);
        };
        var parameters = sched.Parameters.Append(m).Append(logV).ToArray();
        var adam = new DiffusionSharp.Optim.Adam(parameters, 0.03);
        var noise = new NoiseSource(g);
        var losses = new List<double>();
        const int batch = 256;
        for (int step = 0; step < 300; step++)
        {
            var xb = Tensor.Randn(g, batch, 2);
            for (int i = 0; i < batch; i++) for (int j = 0; j < 2; j++) xb.Span[2 * i + j] = (float)(mu[j] + Math.Sqrt(var[j]) * xb.Span[2 * i + j]);
            foreach (var p in parameters) p.ZeroGrad();
            var loss = VariationalDiffusion.Loss(model, sched, xb, noise).Total.MeanAll();
            losses.Add(loss.Item());
            loss.Backward();
            adam.Step();
        }
        double exact = Enumerable.Range(0, 2).Sum(j => 0.5 * Math.Log(2 * Math.PI * Math.E * var[j]));
        double first = losses.Take(20).Average(), last = losses.Skip(250).Average();
        output.WriteLine($"VDM joint training: loss {first:F3} -> {last:F3} (exact NLL {exact:F3}); m = ({m.Span[0]:F3}, {m.Span[1]:F3}), v = ({Math.Exp(logV.Span[0]):F4}, {Math.Exp(logV.Span[1]):F4}), gamma0 {sched.Gamma0.Item():F2}, gamma1 {sched.Gamma1.Item():F2}");
        Assert.True(last < first - 1, "loss should fall");
        Assert.True(Math.Abs(last - exact) < 0.15, $"final loss {last} vs exact {exact}");
        for (int j = 0; j < 2; j++)
        {
            Assert.True(Math.Abs(m.Span[j] - mu[j]) < 0.05, $"m[{j}] = {m.Span[j]}");
            Assert.InRange(Math.Exp(logV.Span[j]) / var[j], 0.7, 1.4);
        }
        Assert.True(sched.Gamma0.Item() < -5, "gamma0 should decrease (the reconstruction term favours less noise at t = 0)");
    }
}
