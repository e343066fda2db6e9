using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Losses;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Diffusion;

public class GaussianDiffusionTests
{
    private static readonly int[] T4 = { 0, 1, 500, 999 };

    [Fact]
    public void LinearAndCosineBetasFollowTheirDefinitions()
    {
        var lin = DiffusionBetas.Linear(1000);
        Assert.Equal(1e-4, lin[0], 15);
        Assert.Equal(0.02, lin[999], 15);
        Assert.Equal(1e-4 + (0.02 - 1e-4) * 500 / 999, lin[500], 15);
        var lin100 = DiffusionBetas.Linear(100);
        Assert.Equal(1e-3, lin100[0], 15);
        Assert.Equal(0.2, lin100[99], 15);
        var cos = BetaSchedules.SquaredCosCapV2(1000);
        double F(double t) => Math.Pow(Math.Cos((t / 1000 + 0.008) / 1.008 * Math.PI / 2), 2);
        double ab = 1;
        for (int i = 0; i < 1000; i++)
        {
            ab *= 1 - cos[i];
            if (i < 990) Assert.Equal(F(i + 1) / F(0), ab, 12);  // alpha_bar_t = f(t)/f(0) until the 0.999 clip acts
        }
        Assert.Equal(0.999, cos[999], 12);
    }

    [Fact]
    public void SpaceTimestepsMatchesSectionAndDdimRules()
    {
        Assert.Equal(Enumerable.Range(0, 100).Select(i => i * 10), DiffusionBetas.SpaceTimesteps(1000, "ddim100"));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => i * 20), DiffusionBetas.SpaceTimesteps(1000, "ddim50"));
        Assert.Throws<ArgumentException>(() => DiffusionBetas.SpaceTimesteps(1000, "ddim999"));
        // improved-diffusion's docstring example: 300 steps, sections [10, 15, 20]; first section 0..99 with stride 99/9 = 11
        var s = DiffusionBetas.SpaceTimesteps(300, "10,15,20").ToArray();
        Assert.Equal(45, s.Length);
        Assert.Equal(new[] { 0, 11, 22, 33, 44, 55, 66, 77, 88, 99 }, s[..10]);
        Assert.Equal(100, s[10]);
        Assert.Equal(199, s[24]);
        Assert.Equal(299, s[^1]);
        var spaced10 = DiffusionBetas.SpaceTimesteps(1000, "10").ToArray();
        Assert.Equal(new[] { 0, 111, 222, 333, 444, 555, 666, 777, 888, 999 }, spaced10);  // stride 999/9 = 111
    }

    [Fact]
    public void RespacingKeepsAlphaBarAtKeptSteps()
    {
        var d = new GaussianDiffusion(BetaSchedules.SquaredCosCapV2(1000));
        var keep = DiffusionBetas.SpaceTimesteps(1000, "ddim25").ToArray();
        var r = d.Respace(keep);
        Assert.Equal(25, r.NumTimesteps);
        for (int i = 0; i < keep.Length; i++)
        {
            Assert.Equal(keep[i], r.TimestepMap[i]);
            Assert.Equal(d.AlphasCumprod[keep[i]], r.AlphasCumprod[i], 12);
        }
        var rr = r.Respace(new[] { 0, 12, 24 });  // respacing a respaced process maps to original steps
        Assert.Equal(new[] { keep[0], keep[12], keep[24] }, rr.TimestepMap);
        Assert.Equal(d.AlphasCumprod[keep[12]], rr.AlphasCumprod[1], 12);
    }

    [Fact]
    public void PosteriorMatchesBayesRuleForTwoGaussians()
    {
        var d = new GaussianDiffusion(DiffusionBetas.Linear(1000));
        var g = new Generator(3);
        var x0 = Tensor.Randn(g, 4, 3); var xt = Tensor.Randn(g, 4, 3);
        var (mean, variance, logVar) = d.QPosteriorMeanVariance(x0, xt, T4);
        for (int b = 0; b < 4; b++)
        {
            int t = T4[b];
            if (t == 0) continue;
            // q(x_{t-1}|x_0) = N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}), q(x_t|x_{t-1}) = N(sqrt(1-beta) x_{t-1}, beta): precision-weighted product
            double abPrev = d.AlphasCumprod[t - 1], beta = d.Betas[t], a = Math.Sqrt(1 - beta);
            double prec = 1 / (1 - abPrev) + a * a / beta, v = 1 / prec;
            Assert.Equal(v, variance.Span[b * 3], 5);
            Assert.Equal(Math.Log(v), logVar.Span[b * 3], 4);
            for (int j = 0; j < 3; j++)
            {
                double m = v * (Math.Sqrt(abPrev) * x0.Span[b * 3 + j] / (1 - abPrev) + a * xt.Span[b * 3 + j] / beta);
                Assert.Equal(m, mean.Span[b * 3 + j], 4);
            }
        }
        Assert.Equal(Math.Log(d.Posterior[1].Variance), logVar.Span[0], 4);  // clipped at t = 0
    }

    [Fact]
    public void EpsXStartAndVelocityConversionsRoundTrip()
    {
        var d = new GaussianDiffusion(BetaSchedules.SquaredCosCapV2(1000));
        var g = new Generator(4);
        var T4 = new[] { 0, 1, 500, 900 };  // at t = 999 of the cosine table 1/sqrt(alpha_bar) ~ 1e4 amplifies float32 rounding of x_t
        var x0 = Tensor.Randn(g, 4, 5); var eps = Tensor.Randn(g, 4, 5);
        var xt = d.QSample(x0, T4, eps);
        var (a, s) = d.Scales(T4, xt.Shape);
        GradCheck.AssertClose(PredictionType.Epsilon.ToX0(eps, xt, a, s).Span, x0.Span, 2e-3, 1e-3, "x0 from eps");
        GradCheck.AssertClose(PredictionType.Sample.ToEps(PredictionType.Epsilon.ToX0(eps, xt, a, s), xt, a, s).Span, eps.Span, 2e-3, 1e-3, "eps round trip");
        var v = d.VelocityFrom(x0, eps, T4);
        GradCheck.AssertClose(PredictionType.VPrediction.ToX0(v, xt, a, s).Span, x0.Span, 1e-5, 1e-5, "x0 from v");
        GradCheck.AssertClose(PredictionType.VPrediction.ToEps(v, xt, a, s).Span, eps.Span, 1e-5, 1e-5, "eps from v");
        // v by its definition in double
        for (int b = 0; b < 4; b++)
            for (int j = 0; j < 5; j++)
            {
                double ab = d.AlphasCumprod[T4[b]];
                Assert.Equal(Math.Sqrt(ab) * eps.Span[b * 5 + j] - Math.Sqrt(1 - ab) * x0.Span[b * 5 + j], v.Span[b * 5 + j], 5);
                Assert.Equal(Math.Sqrt(ab) * x0.Span[b * 5 + j] + Math.Sqrt(1 - ab) * eps.Span[b * 5 + j], xt.Span[b * 5 + j], 5);
            }
    }

    [Fact]
    public void LearnedRangeInterpolatesLogVariance()
    {
        var d = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange);
        var x = Tensor.Randn(new Generator(5), 4, 2);
        var outV = new float[] { 0, 0, -1, 1, 0, 0, 0.5f, -0.5f, 0, 0, 1, 1, 0, 0, -1, 0 };
        var p = d.PMeanVariance((xx, ts) => Tensor.FromArray(outV, 4, 4), x, T4);
        for (int b = 0; b < 4; b++)
            for (int j = 0; j < 2; j++)
            {
                int t = T4[b];
                double frac = (outV[b * 4 + 2 + j] + 1) / 2;
                double want = frac * Math.Log(d.Betas[t]) + (1 - frac) * d.PosteriorLogVarianceClipped[t];  // Eq. 15 of Nichol and Dhariwal
                Assert.Equal(want, p.LogVariance.Span[b * 2 + j], 4);
            }
        var bad = Assert.Throws<ArgumentException>(() => d.PMeanVariance((xx, ts) => Tensor.Zeros(4, 2), x, T4));
        Assert.Contains("[4, 4]", bad.Message);
    }

    [Fact]
    public void NormalKlMatchesClosedFormAndFiniteDifferences()
    {
        var g = new Generator(6);
        var m1 = Tensor.Randn(g, 3, 4); var l1 = Tensor.Randn(g, 3, 4); var m2 = Tensor.Randn(g, 3, 4); var l2 = Tensor.Randn(g, 1, 4);
        var kl = GaussianLosses.NormalKl(m1, l1, m2, l2);
        for (int i = 0; i < 12; i++)
        {
            double s1 = Math.Exp(0.5 * l1.Span[i]), s2 = Math.Exp(0.5 * l2.Span[i % 4]), dm = m1.Span[i] - m2.Span[i];
            double want = Math.Log(s2 / s1) + (s1 * s1 + dm * dm) / (2 * s2 * s2) - 0.5;
            Assert.Equal(want, kl.Span[i], 4);
        }
        GradCheck.Check(t => GaussianLosses.NormalKl(t[0], t[1], t[2], t[3]), new[] { m1, l1, m2, l2 }, eps: 1e-3);
    }

    /// <summary>Bin probability by Simpson's rule on the Gaussian density (independent of the erf in the library).</summary>
    private static double BinProbability(double x, double mean, double sigma)
    {
        double lo = x < -0.999 ? mean - 40 * sigma : x - 1.0 / 255, hi = x > 0.999 ? mean + 40 * sigma : x + 1.0 / 255;
        int n = 20000;
        double h = (hi - lo) / n, acc = 0;
        for (int i = 0; i <= n; i++)
        {
            double u = lo + i * h, z = (u - mean) / sigma;
            acc += Math.Exp(-0.5 * z * z) / (sigma * Math.Sqrt(2 * Math.PI)) * (i == 0 || i == n ? 1 : i % 2 == 1 ? 4 : 2);
        }
        return acc * h / 3;
    }

    [Theory]
    [InlineData(0.0, 0.0, 0.01)]
    [InlineData(0.2, 0.19, 0.004)]
    [InlineData(-1.0, -0.98, 0.02)]
    [InlineData(1.0, 0.99, 0.01)]
    [InlineData(0.5, 0.3, 0.05)]
    [InlineData(0.1, 0.0, 0.02)]
    public void DiscretizedDecoderMatchesIntegratedBinProbability(double x, double mean, double sigma)
    {
        double got = GaussianLosses.DiscretizedLogProb(x, mean, Math.Log(sigma), out double dm, out double dls);
        double want = Math.Log(BinProbability(x, mean, sigma));
        Assert.True(Math.Abs(got - want) < 1e-7 * Math.Max(1, Math.Abs(want)), $"log P {got} vs {want}");
        // derivatives by central differences in double
        double h = 1e-6;
        double fm = (GaussianLosses.DiscretizedLogProb(x, mean + h, Math.Log(sigma), out _, out _) - GaussianLosses.DiscretizedLogProb(x, mean - h, Math.Log(sigma), out _, out _)) / (2 * h);
        double fl = (GaussianLosses.DiscretizedLogProb(x, mean, Math.Log(sigma) + h, out _, out _) - GaussianLosses.DiscretizedLogProb(x, mean, Math.Log(sigma) - h, out _, out _)) / (2 * h);
        Assert.Equal(fm, dm, 4);
        Assert.Equal(fl, dls, 4);
    }

    [Fact]
    public void DiscretizedDecoderTensorGradientsMatchFiniteDifferences()
    {
        var x = Tensor.FromArray(new float[] { -1, -0.5f, 0, 0.25f, 0.75f, 1 }, 2, 3);
        var mean = Tensor.FromArray(new float[] { -0.95f, -0.45f, 0.05f, 0.2f, 0.7f, 0.9f }, 2, 3);
        var logScale = Tensor.FromArray(new float[] { -3, -2.5f, -3.2f, -2.8f, -3f, -2.6f }, 2, 3);
        GradCheck.Check(t => GaussianLosses.DiscretizedGaussianLogLikelihood(x, t[0], t[1]), new[] { mean, logScale }, eps: 1e-3, rtol: 3e-2);
    }

    [Fact]
    public void VbTermIsDecoderAtZeroAndKlElsewhere()
    {
        var d = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.FixedLarge);
        var g = new Generator(8);
        var x0 = Tensor.FromArray(new float[] { -1, 0.2f, 0.5f, 1, 0, -0.3f, 0.7f, 0.1f }, 4, 2);
        var xt = d.QSample(x0, T4, Tensor.Randn(g, 4, 2));
        var eps = Tensor.Randn(g, 4, 2);
        var p = d.PMeanVariance((xx, ts) => eps, xt, T4);
        var vb = d.VbTermsBpd(x0, xt, T4, p).ToArray();
        var (tm, _, tlv) = d.QPosteriorMeanVariance(x0, xt, T4);
        for (int b = 0; b < 4; b++)
        {
            double want = 0;
            for (int j = 0; j < 2; j++)
            {
                int i = b * 2 + j;
                double pm = p.Mean.Span[i], plv = p.LogVariance.Span[i];
                if (T4[b] == 0) want += -Math.Log(BinProbability(x0.Span[i], pm, Math.Exp(0.5 * plv)));
                else
                {
                    double v1 = Math.Exp(tlv.Span[i]), v2 = Math.Exp(plv), dm = tm.Span[i] - pm;
                    want += 0.5 * (Math.Log(v2 / v1) + (v1 + dm * dm) / v2 - 1);
                }
            }
            want /= 2 * Math.Log(2);
            Assert.Equal(want, vb[b], 3);
        }
    }

    private static Tensor Param(int seed, params int[] shape) => Tensor.Randn(new Generator((ulong)seed), shape);

    [Theory]
    [InlineData(PredictionType.Epsilon, false)]
    [InlineData(PredictionType.Sample, false)]
    [InlineData(PredictionType.VPrediction, false)]
    [InlineData(PredictionType.Epsilon, true)]
    [InlineData(PredictionType.VPrediction, true)]
    public void SimpleLossMatchesTargetsAndFiniteDifferences(PredictionType meanType, bool minSnr)
    {
        var d = new GaussianDiffusion(BetaSchedules.SquaredCosCapV2(1000), meanType) { MinSnrGamma = minSnr ? 5.0 : null };
        var g = new Generator(9);
        var x0 = Tensor.Randn(g, 4, 3); var noise = Tensor.Randn(g, 4, 3); var outp = Param(10, 4, 3);
        var loss = d.TrainingLosses((x, ts) => outp, x0, T4, noise).Loss.ToArray();
        for (int b = 0; b < 4; b++)
        {
            double ab = d.AlphasCumprod[T4[b]], snr = ab / (1 - ab), acc = 0;
            for (int j = 0; j < 3; j++)
            {
                int i = b * 3 + j;
                double target = meanType switch
                {
                    PredictionType.Epsilon => noise.Span[i],
                    PredictionType.Sample => x0.Span[i],
                    _ => Math.Sqrt(ab) * noise.Span[i] - Math.Sqrt(1 - ab) * x0.Span[i],
                };
                acc += Math.Pow(outp.Span[i] - target, 2) / 3;
            }
            // min-SNR-gamma (Hang et al. 2023 Eq. 9 and Sec. 3.4): eps target weight min(snr, g)/snr, v target min(snr, g)/(snr + 1)
            double w = !minSnr ? 1 : meanType == PredictionType.Epsilon ? Math.Min(snr, 5) / snr : Math.Min(snr, 5) / (snr + 1);
            Assert.Equal(acc * w, loss[b], 3);
        }
        GradCheck.Check(t => d.TrainingLosses((x, ts) => t[0], x0, T4, noise).Loss, new[] { outp });
    }

    [Fact]
    public void HybridLossStopsVbGradientIntoTheMean()
    {
        var hybrid = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange, DiffusionLossType.Hybrid);
        var g = new Generator(11);
        var x0 = Tensor.FromArray(new float[] { -1, 0.2f, 0.5f, 1, 0, -0.3f, 0.7f, 0.1f }, 4, 2);
        var noise = Tensor.Randn(g, 4, 2);
        var outp = Param(12, 4, 4);
        var outS = outp.Span;
        for (int i = 0; i < 4; i++) { outS[i * 4 + 2] = Math.Clamp(outS[i * 4 + 2], -0.9f, 0.9f); outS[i * 4 + 3] = Math.Clamp(outS[i * 4 + 3], -0.9f, 0.9f); }
        outp.RequiresGrad = true;
        var terms = hybrid.TrainingLosses((x, ts) => outp, x0, T4, noise);
        var mse = terms.Mse!.ToArray(); var vb = terms.Vb!.ToArray(); var loss = terms.Loss.ToArray();
        for (int b = 0; b < 4; b++) Assert.Equal(mse[b] + 0.001 * 1000 * vb[b], loss[b], 4);  // L_hybrid = L_simple + lambda L_vlb (T L_t)
        terms.Loss.SumAll().Backward();
        var grad = outp.Grad!.ToArray();
        for (int b = 0; b < 4; b++)
            for (int j = 0; j < 2; j++)
            {
                int i = b * 4 + j;
                double want = 2 * (outS[i] - noise.Span[b * 2 + j]) / 2;  // d/d eps of mean((eps - noise)^2) only
                Assert.Equal(want, grad[i], 4);
            }
        Assert.Contains(grad.Where((v, i) => i % 4 >= 2), v => Math.Abs(v) > 1e-4);  // the variance outputs do learn from L_vlb
        // variance outputs: central differences of the summed loss in double
        for (int b = 0; b < 4; b++)
            for (int j = 2; j < 4; j++)
            {
                int i = b * 4 + j;
                float orig = outp.Span[i];
                double Eval(float v)
                {
                    outp.Span[i] = v;
                    using var _ = DiffusionSharp.Autograd.GradMode.NoGrad();
                    return hybrid.TrainingLosses((x, ts) => outp, x0, T4, noise).Loss.ToArray().Sum(f => (double)f);
                }
                double num = (Eval(orig + 1e-3f) - Eval(orig - 1e-3f)) / 2e-3;
                outp.Span[i] = orig;
                Assert.True(Math.Abs(num - grad[i]) < 2e-3 + 3e-2 * Math.Abs(num), $"variance output {i}: analytic {grad[i]} vs numeric {num}");
            }
        outp.ZeroGrad();
        var kl = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange, DiffusionLossType.Kl);
        GradCheck.Check(t => kl.TrainingLosses((x, ts) => t[0], x0, T4, noise).Loss, new[] { outp }, eps: 1e-3, atol: 2e-2, rtol: 3e-2);
    }

    [Fact]
    public void LossSecondMomentResamplerWeightsBySqrtMeanSquare()
    {
        var s = new LossSecondMomentResampler(4);
        Assert.All(s.Weights(), w => Assert.Equal(1.0, w));
        for (int k = 0; k < 12; k++)
            s.UpdateWithAllLosses(new[] { 0, 1, 2, 3 }, new[] { 1.0 + k, 2.0, 0.5, k % 2 == 0 ? 3.0 : -3.0 });
        Assert.True(s.WarmedUp);
        // history keeps the last 10: t=0 holds 3..12
        double r0 = Math.Sqrt(Enumerable.Range(3, 10).Select(v => (double)v * v).Average()), r1 = 2, r2 = 0.5, r3 = 3;
        double sum = r0 + r1 + r2 + r3;
        var w = s.Weights();
        var want = new[] { r0, r1, r2, r3 }.Select(r => r / sum * 0.999 + 0.001 / 4).ToArray();
        for (int i = 0; i < 4; i++) Assert.Equal(want[i], w[i], 12);
        var (ts, iw) = s.Sample(20000, new Generator(13));
        for (int t = 0; t < 4; t++)
        {
            double frac = ts.Count(v => v == t) / 20000.0;
            Assert.InRange(frac, want[t] - 0.015, want[t] + 0.015);  // ~4 binomial standard errors
        }
        for (int i = 0; i < 10; i++) Assert.Equal(1 / (4 * want[ts[i]]), iw[i], 9);
    }
}
