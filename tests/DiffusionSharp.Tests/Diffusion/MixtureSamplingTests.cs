using System.Diagnostics;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Diffusion.Sde;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>
/// Every sampler, driven by the closed-form optimal score of a known 2-D mixture, must reproduce the mixture.
/// Tolerance: each weight, mean and covariance entry within 5 standard errors of its sampling error for n = 3000 draws
/// (hard assignment is exact to ~1e-9 at these separations); the rest of the budget covers the sampler's own bias, which is
/// stated per test where an extra relative covariance allowance is used.
/// </summary>
public class MixtureSamplingTests(ITestOutputHelper output)
{
    private const int N = 3000;
    private static readonly GaussianMixture2D Mix = GaussianMixture2D.Default();

    /// <summary>Optimal eps(x_t, t) = -sqrt(1 - alpha_bar_t) grad log p_t(x_t) for the base linear-1000 process.</summary>
    internal static DenoiserModel OptimalEps(GaussianMixture2D mix, GaussianDiffusion baseProcess) => (x, ts) =>
    {
        int b = x.Dim(0);
        var xs = x.Span; var y = Tensor.Empty(x.Shape);
        var xd = new double[2 * b]; var sc = new double[2 * b];
        for (int i = 0; i < 2 * b; i++) xd[i] = xs[i];
        var tsd = ts.ToArray();
        int start = 0;
        while (start < b)
        {
            int end = start;
            while (end < b && tsd[end] == tsd[start]) end++;  // one closed-form call per run of equal timesteps
            double ab = baseProcess.AlphasCumprod[(int)tsd[start]], s = Math.Sqrt(1 - ab);
            mix.Score(xd.AsSpan(2 * start, 2 * (end - start)), end - start, Math.Sqrt(ab), s, sc.AsSpan(2 * start, 2 * (end - start)));
            for (int i = 2 * start; i < 2 * end; i++) y.Span[i] = (float)(-s * sc[i]);
            start = end;
        }
        return y;
    };

    /// <summary>
    /// Learned-range output [eps, v] with the optimal per-axis reverse variance Var(x_{t-1} | x_t) = beta-tilde + coef1^2 Var(x_0 | x_t)
    /// mapped to v by inverting Nichol and Dhariwal Eq. 15 for the (respaced) process.
    /// </summary>
    internal static DenoiserModel OptimalLearnedRange(GaussianMixture2D mix, GaussianDiffusion baseProcess, GaussianDiffusion process) => (x, ts) =>
    {
        int b = x.Dim(0);
        var y = Tensor.Empty(b, 4);
        for (int i = 0; i < b; i++)
        {
            int orig = (int)ts.Span[i], k = Array.IndexOf(process.TimestepMap, orig);
            double ab = baseProcess.AlphasCumprod[orig], a = Math.Sqrt(ab), s = Math.Sqrt(1 - ab);
            var (m0, m1, v0, v1) = mix.PosteriorX0(x.Span[2 * i], x.Span[2 * i + 1], a, s);
            y.Span[4 * i] = (float)((x.Span[2 * i] - a * m0) / s);
            y.Span[4 * i + 1] = (float)((x.Span[2 * i + 1] - a * m1) / s);
            double lo = process.PosteriorLogVarianceClipped[k], hi = Math.Log(process.Betas[k]), c1 = process.Posterior[k].CoefX0;
            double V(double vx0) => Math.Clamp(2 * (Math.Log(process.Posterior[k].Variance + c1 * c1 * vx0) - lo) / (hi - lo) - 1, -1, 1);
            y.Span[4 * i + 2] = (float)V(v0);
            y.Span[4 * i + 3] = (float)V(v1);
        }
        return y;
    };

    private static double[] ToDouble(Tensor t) => t.ToArray().Select(v => (double)v).ToArray();

    [Theory]
    [InlineData(ModelVarianceType.FixedSmall)]
    [InlineData(ModelVarianceType.FixedLarge)]
    public void Ddpm1000ReproducesMixture(ModelVarianceType variance)
    {
        var sw = Stopwatch.StartNew();
        var diffusion = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, variance);
        var x = diffusion.PSampleLoop(OptimalEps(Mix, diffusion), new Shape(N, 2), new Generator(11));
        double z = Mix.AssertMatches(ToDouble(x), N, 5, $"DDPM-1000 {variance}");
        output.WriteLine($"DDPM-1000 {variance}: worst {z:F2} SE ({Mix.WorstLabel}), {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void RespacedDdpm100WithOptimalLearnedRangeReproducesMixture()
    {
        var baseProcess = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange);
        var spaced = baseProcess.Respace(DiffusionBetas.SpaceTimesteps(1000, "100"));
        Assert.Equal(100, spaced.NumTimesteps);
        var x = spaced.PSampleLoop(OptimalLearnedRange(Mix, baseProcess, spaced), new Shape(N, 2), new Generator(12));
        double z = Mix.AssertMatches(ToDouble(x), N, 5, "DDPM respaced 100, learned range");
        output.WriteLine($"DDPM respaced 100 learned range: worst {z:F2} SE ({Mix.WorstLabel})");
    }

    /// <summary>With 100 steps the fixed variances bracket the truth (Ho et al. Sec. 3.2): beta-tilde under-disperses, beta over-disperses.</summary>
    [Fact]
    public void RespacedFixedVariancesBracketTheMixtureCovariance()
    {
        double Spread(ModelVarianceType v)
        {
            var baseProcess = new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, v);
            var spaced = baseProcess.Respace(DiffusionBetas.SpaceTimesteps(1000, "100"));
            var x = ToDouble(spaced.PSampleLoop(OptimalEps(Mix, baseProcess), new Shape(N, 2), new Generator(12)));
            double acc = 0;  // mean within-component variance (trace / 2) averaged over components by assignment
            var cnt = new int[3]; var m = new double[3, 2]; var q = new double[3];
            for (int i = 0; i < N; i++) { int k = Mix.Assign(x[2 * i], x[2 * i + 1]); cnt[k]++; m[k, 0] += x[2 * i]; m[k, 1] += x[2 * i + 1]; q[k] += x[2 * i] * x[2 * i] + x[2 * i + 1] * x[2 * i + 1]; }
            for (int k = 0; k < 3; k++) acc += (q[k] / cnt[k] - (m[k, 0] * m[k, 0] + m[k, 1] * m[k, 1]) / ((double)cnt[k] * cnt[k])) / 2 / (Mix.Covs[k][0] + Mix.Covs[k][2]) * 2;
            return acc / 3;  // 1 = exact
        }
        double small = Spread(ModelVarianceType.FixedSmall), large = Spread(ModelVarianceType.FixedLarge);
        output.WriteLine($"relative within-component variance: fixed-small {small:F3}, fixed-large {large:F3}");
        Assert.InRange(small, 0.5, 0.95);
        Assert.InRange(large, 1.05, 1.6);
    }

    [Fact]
    public void DdimDeterministic100ReproducesMixture()
    {
        var baseProcess = new GaussianDiffusion(DiffusionBetas.Linear(1000));
        var spaced = baseProcess.Respace(DiffusionBetas.SpaceTimesteps(1000, "ddim100"));
        var x = spaced.DdimSampleLoop(OptimalEps(Mix, baseProcess), new Shape(N, 2), new Generator(13));
        double z = Mix.AssertMatches(ToDouble(x), N, 5, "DDIM 100");
        output.WriteLine($"DDIM 100: worst {z:F2} SE ({Mix.WorstLabel})");
    }

    private static ScoreFunction SdeScore(Sde sde) => (x, count, t, score) =>
    {
        var (m, s) = sde.Marginal(t);
        Mix.Score(x, count, m, s, score);
    };

    [Fact]
    public void AnnealedLangevinReproducesMixture()
    {
        var g = new Generator(21);
        var x = new double[2 * N];
        new NoiseSource(g).Normal(x);
        for (int i = 0; i < x.Length; i++) x[i] *= 2;
        var sigmas = SigmaSchedules.Exponential(20, 0.01, 2, appendZero: false);
        AnnealedLangevin.Sample((xs, c, sigma, sc) => Mix.Score(xs, c, 1, sigma, sc), x, N, sigmas, 100, 1e-5, g);
        double z = Mix.AssertMatches(x, N, 5, "annealed Langevin");
        output.WriteLine($"Annealed Langevin: worst {z:F2} SE ({Mix.WorstLabel})");
    }

    [Theory]
    [InlineData("vp", PredictorKind.ReverseDiffusion)]
    [InlineData("vp", PredictorKind.EulerMaruyama)]
    [InlineData("subvp", PredictorKind.EulerMaruyama)]
    [InlineData("ve", PredictorKind.ReverseDiffusion)]
    public void PredictorCorrectorReproducesMixture(string kind, PredictorKind predictor)
    {
        Sde sde = kind switch { "vp" => new VpSde(n: 500), "subvp" => new SubVpSde(n: 500), _ => new VeSde(0.01, 3, 500) };
        var x = PredictorCorrector.Sample(sde, SdeScore(sde), N, 2, new Generator(31), predictor, correctorSteps: 1, snr: kind == "ve" ? 0.16 : 0.01);
        double z = Mix.AssertMatches(x, N, 5, $"PC {kind} {predictor}");
        output.WriteLine($"PC {kind} {predictor}: worst {z:F2} SE ({Mix.WorstLabel})");
    }

    [Fact]
    public void ProbabilityFlowOdeReproducesMixture()
    {
        var sde = new VpSde();
        var (x, nfe) = ProbabilityFlow.Sample(sde, SdeScore(sde), N, 2, new Generator(41), rtol: 1e-5, atol: 1e-5, eps: 1e-4);
        double z = Mix.AssertMatches(x, N, 5, "probability-flow ODE");
        output.WriteLine($"PF ODE: worst {z:F2} SE ({Mix.WorstLabel}), {nfe} evaluations");
        Assert.InRange(nfe, 20, 2000);
    }
}
