using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Diffusion.Sde;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Likelihoods on mixture data against the exact density.</summary>
public class LikelihoodTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(DivergenceMode.Exact)]
    [InlineData(DivergenceMode.Hutchinson)]
    [InlineData(DivergenceMode.HutchinsonRademacher)]
    public void ProbabilityFlowLogLikelihoodMatchesExactDensity(DivergenceMode mode)
    {
        var mix = GaussianMixture2D.Default();
        var sde = new VpSde();
        const int n = 200;
        const double eps = 1e-5;
        var x = mix.Sample(n, new Generator(5));
        ScoreVjpFunction score = (xs, count, t, v, sc, vjp) => { var (m, s) = sde.Marginal(t); mix.Score(xs, count, m, s, sc, v, vjp); };
        var r = ProbabilityFlow.LogLikelihood(sde, score, x, n, 2, mode, new Generator(6), rtol: 1e-6, atol: 1e-6, eps: eps);
        var (me, se) = sde.Marginal(eps);
        double sumErr = 0, maxErr = 0, sumExact = 0, sumSq = 0;
        for (int i = 0; i < n; i++)
        {
            double exact = mix.LogDensity(x[2 * i], x[2 * i + 1], me, se);  // the ODE starts at t = eps, so its density is p_eps
            double err = r.LogLikelihood[i] - exact;
            sumErr += err; sumSq += err * err; maxErr = Math.Max(maxErr, Math.Abs(err)); sumExact += exact;
        }
        double meanErr = sumErr / n, seErr = Math.Sqrt((sumSq / n - meanErr * meanErr) / (n - 1));
        output.WriteLine($"{mode}: mean exact log p {sumExact / n:F4}, mean error {meanErr:E2} +- {seErr:E2}, max |error| {maxErr:E2}, {r.FunctionEvaluations} evaluations");
        if (mode == DivergenceMode.Exact)
        {
            // exact divergence: only solver error (rtol 1e-6) and the prior mismatch p_T vs N(0, I) (m(1)^2 |mu|^2 ~ 1e-5)
            Assert.True(maxErr < 1e-2 && Math.Abs(meanErr) < 1e-3, $"max |log p error| {maxErr:E2}, mean {meanErr:E2}");
        }
        else
        {
            // Hutchinson: one probe per point has large variance (Var = 2||J||_F^2 Gaussian, 2 sum_{i!=j} J_ij^2 Rademacher,
            // J ~ -C^-1 ~ 50 near t = 0); the estimate is unbiased, so the mean error over 200 points must sit within 4 standard errors
            Assert.True(Math.Abs(meanErr) < 4 * seErr, $"mean log p error {meanErr:E2} +- {seErr:E2}");
            Assert.True(seErr < (mode == DivergenceMode.Hutchinson ? 1.5 : 0.5), $"Hutchinson standard error {seErr:E2}");
        }
    }

    private static double[] QuantizedSample(GaussianMixture2D mix, int n, ulong seed)
    {
        var x = mix.Sample(n, new Generator(seed));
        for (int i = 0; i < x.Length; i++) x[i] = Math.Clamp(Math.Round((x[i] + 1) * 127.5), 0, 255) / 127.5 - 1;
        return x;
    }

    [Fact]
    public void FullChainBoundIsAboveExactNllAndClose()
    {
        var mix = GaussianMixture2D.Diagonal();
        const int n = 256;
        var x = QuantizedSample(mix, n, 9);
        var diffusion = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange);
        var model = MixtureSamplingTests.OptimalLearnedRange(mix, diffusion, diffusion);
        var x0 = Tensor.FromArray(x.Select(v => (float)v).ToArray(), n, 2);
        var r = diffusion.CalcBpdLoop(model, x0, new Generator(10));
        double bound = r.TotalBpd.Average(), exact = 0, prior = r.PriorBpd.Average();
        for (int i = 0; i < n; i++) exact += -Math.Log(mix.BinProbabilityDiagonal(x[2 * i], x[2 * i + 1])) / (2 * Math.Log(2));
        exact /= n;
        double decoder = 0;
        for (int i = 0; i < n; i++) decoder += r.VbTerms[i, 0];
        decoder /= n;
        // per-point spread of (bound - exact) gives the standard error of the mean gap
        var gaps = Enumerable.Range(0, n).Select(i => r.TotalBpd[i] + Math.Log(mix.BinProbabilityDiagonal(x[2 * i], x[2 * i + 1])) / (2 * Math.Log(2))).ToArray();
        double gm = gaps.Average(), gse = Math.Sqrt(gaps.Select(g => (g - gm) * (g - gm)).Sum() / (n - 1) / n);
        output.WriteLine($"bound {bound:F4} bits/dim, exact {exact:F4}, gap {gm:F4} +- {gse:F4}, prior {prior:E2}, decoder {decoder:F4}");
        Assert.True(gm > -3 * gse, $"bound below exact NLL: gap {gm:F4} +- {gse:F4}");
        Assert.True(gm < 0.1, $"gap {gm:F4} bits/dim too large");
        Assert.True(prior < 1e-4, $"prior term {prior:E2}");
    }

    [Fact]
    public void FullLoopHoldsEveryTermAndStrataAreChecked()
    {
        var mix = GaussianMixture2D.Diagonal();
        const int n = 16;
        var x0 = Tensor.FromArray(QuantizedSample(mix, n, 11).Select(v => (float)v).ToArray(), n, 2);
        var diffusion = new GaussianDiffusion(DiffusionBetas.Linear(100), PredictionType.Epsilon, ModelVarianceType.LearnedRange);
        var model = MixtureSamplingTests.OptimalLearnedRange(mix, diffusion, diffusion);
        var full = diffusion.CalcBpdLoop(model, x0, new Generator(12));
        Assert.Equal(100, full.VbTerms.GetLength(1));
        for (int i = 0; i < n; i++)
        {
            double s = full.PriorBpd[i];
            for (int t = 0; t < 100; t++) s += full.VbTerms[i, t];
            Assert.True(Math.Abs(full.TotalBpd[i] - s) < 1e-9 * Math.Max(1, Math.Abs(s)), $"image {i}: total {full.TotalBpd[i]} vs prior + terms {s}");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => diffusion.EstimateBpd(model, x0, new Generator(12), strata: 100, new Generator(13)));
        Assert.Throws<ArgumentOutOfRangeException>(() => diffusion.EstimateBpd(model, x0, new Generator(12), strata: 0, new Generator(13)));
    }

    [Theory]
    [InlineData(1000, 1)]
    [InlineData(1000, 10)]
    [InlineData(1000, 999)]
    [InlineData(10, 5)]
    public void StrataEdgesCoverEveryTimestepOnce(int steps, int strata)
    {
        var e = GaussianDiffusion.StrataEdges(steps, strata);
        Assert.Equal(strata + 1, e.Length);
        Assert.Equal(1, e[0]);
        Assert.Equal(steps, e[^1]);
        for (int k = 1; k <= strata; k++) Assert.True(e[k] > e[k - 1], $"stratum {k - 1} is empty: [{e[k - 1]}, {e[k]})");
        if (strata > 1) Assert.True(e[1] - e[0] <= e[^1] - e[^2], "the first stratum (small t) should be no wider than the last");
    }

    [Fact]
    public void StratifiedBoundIsUnbiased()
    {
        // mean over many images of the 100-stratum estimate and of the full 1000-term loop agree within their standard errors
        var mix = GaussianMixture2D.Diagonal();
        const int n = 512;
        var x0 = Tensor.FromArray(QuantizedSample(mix, n, 14).Select(v => (float)v).ToArray(), n, 2);
        var diffusion = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange);
        var model = MixtureSamplingTests.OptimalLearnedRange(mix, diffusion, diffusion);
        var full = diffusion.CalcBpdLoop(model, x0, new Generator(15)).TotalBpd;
        var est = diffusion.EstimateBpd(model, x0, new Generator(16), strata: 100, new Generator(17)).TotalBpd;
        var diff = Enumerable.Range(0, n).Select(i => est[i] - full[i]).ToArray();
        double m = diff.Average(), se = Math.Sqrt(diff.Select(d => (d - m) * (d - m)).Sum() / (n - 1) / n);
        output.WriteLine($"full {full.Average():F4}, stratified {est.Average():F4}, difference {m:F5} +- {se:F5}");
        Assert.True(Math.Abs(m) < 4 * se + 1e-6, $"stratified estimate off by {m:F5} +- {se:F5}");
        Assert.True(se < 0.05 * Math.Abs(full.Average()), $"standard error {se:F5} too large to be a useful check");
    }
}
