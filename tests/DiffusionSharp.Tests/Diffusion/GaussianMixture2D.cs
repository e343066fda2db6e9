using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>
/// A 2-D Gaussian mixture with closed-form perturbed marginals: if X ~ sum_k pi_k N(mu_k, C_k) then a X + s Z ~
/// sum_k pi_k N(a mu_k, a^2 C_k + s^2 I), so the optimal score, noise predictor and denoiser are known at every noise level.
/// </summary>
public sealed class GaussianMixture2D
{
    public readonly double[] Weights;
    public readonly double[][] Means;
    public readonly double[][] Covs;  // [c00, c01, c11]

    public GaussianMixture2D(double[] weights, double[][] means, double[][] covs) { Weights = weights; Means = means; Covs = covs; }

    public int K => Weights.Length;

    /// <summary>Three well separated components inside [-1, 1]^2 with correlated covariances.</summary>
    public static GaussianMixture2D Default() => new(
        new[] { 0.5, 0.3, 0.2 },
        new[] { new[] { -0.5, -0.4 }, new[] { 0.5, -0.3 }, new[] { 0.0, 0.5 } },
        new[] { new[] { 0.020, 0.010, 0.030 }, new[] { 0.030, -0.012, 0.020 }, new[] { 0.025, 0.0, 0.015 } });

    /// <summary>Diagonal covariances (for bin probabilities as products of 1-D integrals).</summary>
    public static GaussianMixture2D Diagonal() => new(
        new[] { 0.5, 0.3, 0.2 },
        new[] { new[] { -0.5, -0.4 }, new[] { 0.5, -0.3 }, new[] { 0.0, 0.5 } },
        new[] { new[] { 0.020, 0.0, 0.030 }, new[] { 0.030, 0.0, 0.020 }, new[] { 0.025, 0.0, 0.015 } });

    public double[] Sample(int n, Generator g)
    {
        var z = new float[2 * n];
        g.Normal(z);
        var x = new double[2 * n];
        for (int i = 0; i < n; i++)
        {
            double u = g.NextDouble(), acc = 0;
            int k = 0;
            for (; k < K - 1; k++) { acc += Weights[k]; if (u < acc) break; }
            var c = Covs[k];
            double l00 = Math.Sqrt(c[0]), l10 = c[1] / l00, l11 = Math.Sqrt(c[2] - l10 * l10);  // Cholesky factor
            x[2 * i] = Means[k][0] + l00 * z[2 * i];
            x[2 * i + 1] = Means[k][1] + l10 * z[2 * i] + l11 * z[2 * i + 1];
        }
        return x;
    }

    /// <summary>Component k of a X + s Z: mean, precision and log normaliser.</summary>
    private (double m0, double m1, double p00, double p01, double p11, double logNorm) Component(int k, double a, double s)
    {
        var c = Covs[k];
        double c00 = a * a * c[0] + s * s, c01 = a * a * c[1], c11 = a * a * c[2] + s * s;
        double det = c00 * c11 - c01 * c01;
        return (a * Means[k][0], a * Means[k][1], c11 / det, -c01 / det, c00 / det, -Math.Log(2 * Math.PI) - 0.5 * Math.Log(det));
    }

    /// <summary>log density of a X + s Z at (x0, x1).</summary>
    public double LogDensity(double x0, double x1, double a = 1, double s = 0)
    {
        double max = double.NegativeInfinity;
        var l = new double[K];
        for (int k = 0; k < K; k++)
        {
            var (m0, m1, p00, p01, p11, ln) = Component(k, a, s);
            double d0 = x0 - m0, d1 = x1 - m1;
            l[k] = Math.Log(Weights[k]) + ln - 0.5 * (d0 * d0 * p00 + 2 * d0 * d1 * p01 + d1 * d1 * p11);
            max = Math.Max(max, l[k]);
        }
        double sum = 0;
        for (int k = 0; k < K; k++) sum += Math.Exp(l[k] - max);
        return max + Math.Log(sum);
    }

    /// <summary>Score grad log p of a X + s Z for every point; optionally v^T J with J the (symmetric) Jacobian of the score.</summary>
    public void Score(ReadOnlySpan<double> x, int count, double a, double s, Span<double> score, ReadOnlySpan<double> v = default, Span<double> vjp = default)
    {
        Span<double> w = stackalloc double[8], s0 = stackalloc double[8], s1 = stackalloc double[8];
        var comps = new (double m0, double m1, double p00, double p01, double p11, double logNorm)[K];
        for (int k = 0; k < K; k++) comps[k] = Component(k, a, s);
        for (int b = 0; b < count; b++)
        {
            double x0 = x[2 * b], x1 = x[2 * b + 1], max = double.NegativeInfinity;
            for (int k = 0; k < K; k++)
            {
                var (m0, m1, p00, p01, p11, ln) = comps[k];
                double d0 = x0 - m0, d1 = x1 - m1;
                w[k] = Math.Log(Weights[k]) + ln - 0.5 * (d0 * d0 * p00 + 2 * d0 * d1 * p01 + d1 * d1 * p11);
                s0[k] = -(p00 * d0 + p01 * d1); s1[k] = -(p01 * d0 + p11 * d1);
                max = Math.Max(max, w[k]);
            }
            double sum = 0;
            for (int k = 0; k < K; k++) { w[k] = Math.Exp(w[k] - max); sum += w[k]; }
            double g0 = 0, g1 = 0;
            for (int k = 0; k < K; k++) { w[k] /= sum; g0 += w[k] * s0[k]; g1 += w[k] * s1[k]; }
            score[2 * b] = g0; score[2 * b + 1] = g1;
            if (vjp.Length == 0) continue;
            // J = sum_k w_k (-P_k + s_k s_k^T) - sbar sbar^T
            double j00 = -g0 * g0, j01 = -g0 * g1, j11 = -g1 * g1;
            for (int k = 0; k < K; k++)
            {
                var c = comps[k];
                j00 += w[k] * (-c.p00 + s0[k] * s0[k]); j01 += w[k] * (-c.p01 + s0[k] * s1[k]); j11 += w[k] * (-c.p11 + s1[k] * s1[k]);
            }
            double v0 = v[2 * b], v1 = v[2 * b + 1];
            vjp[2 * b] = v0 * j00 + v1 * j01; vjp[2 * b + 1] = v0 * j01 + v1 * j11;
        }
    }

    /// <summary>Posterior mean and per-axis variance of X given a X + s Z = x (for one point).</summary>
    public (double m0, double m1, double v0, double v1) PosteriorX0(double x0, double x1, double a, double s)
    {
        double e0 = 0, e1 = 0, q0 = 0, q1 = 0, max = double.NegativeInfinity;
        var l = new double[K]; var pm = new double[K, 2]; var pv = new double[K, 2];
        for (int k = 0; k < K; k++)
        {
            var (cm0, cm1, p00, p01, p11, ln) = Component(k, a, s);  // precision of S = a^2 C + s^2 I
            double d0 = x0 - cm0, d1 = x1 - cm1;
            l[k] = Math.Log(Weights[k]) + ln - 0.5 * (d0 * d0 * p00 + 2 * d0 * d1 * p01 + d1 * d1 * p11);
            max = Math.Max(max, l[k]);
            var c = Covs[k];
            double r0 = p00 * d0 + p01 * d1, r1 = p01 * d0 + p11 * d1;  // S^-1 (x - a mu)
            pm[k, 0] = Means[k][0] + a * (c[0] * r0 + c[1] * r1);
            pm[k, 1] = Means[k][1] + a * (c[1] * r0 + c[2] * r1);
            // diag of C - a^2 C S^-1 C
            pv[k, 0] = c[0] - a * a * (c[0] * (p00 * c[0] + p01 * c[1]) + c[1] * (p01 * c[0] + p11 * c[1]));
            pv[k, 1] = c[2] - a * a * (c[1] * (p00 * c[1] + p01 * c[2]) + c[2] * (p01 * c[1] + p11 * c[2]));
        }
        double sum = 0;
        for (int k = 0; k < K; k++) { l[k] = Math.Exp(l[k] - max); sum += l[k]; }
        for (int k = 0; k < K; k++)
        {
            double w = l[k] / sum;
            e0 += w * pm[k, 0]; e1 += w * pm[k, 1];
            q0 += w * (pv[k, 0] + pm[k, 0] * pm[k, 0]); q1 += w * (pv[k, 1] + pm[k, 1] * pm[k, 1]);
        }
        return (e0, e1, q0 - e0 * e0, q1 - e1 * e1);
    }

    /// <summary>Index of the component with the largest responsibility under the clean mixture.</summary>
    public int Assign(double x0, double x1)
    {
        int best = 0; double bestL = double.NegativeInfinity;
        for (int k = 0; k < K; k++)
        {
            var (m0, m1, p00, p01, p11, ln) = Component(k, 1, 0);
            double d0 = x0 - m0, d1 = x1 - m1;
            double l = Math.Log(Weights[k]) + ln - 0.5 * (d0 * d0 * p00 + 2 * d0 * d1 * p01 + d1 * d1 * p11);
            if (l > bestL) { bestL = l; best = k; }
        }
        return best;
    }

    /// <summary>
    /// Fits weights, means and covariances by hard assignment and asserts them within multiples of their standard errors:
    /// weight SE sqrt(pi(1-pi)/n), mean SE sqrt(C_ii / n_k), covariance SE sqrt((C_ii C_jj + C_ij^2) / n_k) (Wishart).
    /// Returns the largest error in standard errors.
    /// </summary>
    public string WorstLabel = "";

    public double AssertMatches(ReadOnlySpan<double> x, int n, double zTol, string what, double covRelBias = 0, double meanAbsBias = 0)
    {
        var cnt = new int[K]; var sum = new double[K, 2]; var sq = new double[K, 3];
        for (int i = 0; i < n; i++)
        {
            double a = x[2 * i], b = x[2 * i + 1];
            Assert.True(double.IsFinite(a) && double.IsFinite(b), $"{what}: sample {i} is not finite.");
            int k = Assign(a, b);
            cnt[k]++; sum[k, 0] += a; sum[k, 1] += b;
            sq[k, 0] += a * a; sq[k, 1] += a * b; sq[k, 2] += b * b;
        }
        double worst = 0;
        void Check(double got, double want, double se, string label)
        {
            double z = Math.Abs(got - want) / se;
            if (z > worst) { worst = z; WorstLabel = $"{label} {got:F5} vs {want:F5}"; }
            Assert.True(z <= zTol, $"{what}: {label} = {got:F5}, expected {want:F5} ({z:F1} standard errors, tolerance {zTol}).");
        }
        for (int k = 0; k < K; k++)
        {
            int nk = cnt[k];
            if (K > 1) Check((double)nk / n, Weights[k], Math.Sqrt(Weights[k] * (1 - Weights[k]) / n), $"weight[{k}]");
            double m0 = sum[k, 0] / nk, m1 = sum[k, 1] / nk;
            var c = Covs[k];
            Check(m0, Means[k][0], Math.Sqrt(c[0] / nk) + meanAbsBias, $"mean[{k}].x");
            Check(m1, Means[k][1], Math.Sqrt(c[2] / nk) + meanAbsBias, $"mean[{k}].y");
            double v00 = sq[k, 0] / nk - m0 * m0, v01 = sq[k, 1] / nk - m0 * m1, v11 = sq[k, 2] / nk - m1 * m1;
            double Se(double ii, double jj, double ij, double want) => Math.Sqrt((ii * jj + ij * ij) / nk) + covRelBias * Math.Sqrt(ii * jj);
            Check(v00, c[0], Se(c[0], c[0], c[0], c[0]), $"cov[{k}].xx");
            Check(v01, c[1], Se(c[0], c[2], c[1], c[1]), $"cov[{k}].xy");
            Check(v11, c[2], Se(c[2], c[2], c[2], c[2]), $"cov[{k}].yy");
        }
        return worst;
    }

    /// <summary>Probability of the 8-bit bin around grid point x (width 2/255, edge bins open) by Simpson integration of each diagonal component.</summary>
    public double BinProbabilityDiagonal(double x0, double x1)
    {
        double p = 0;
        for (int k = 0; k < K; k++)
            p += Weights[k] * Bin1D(x0, Means[k][0], Covs[k][0]) * Bin1D(x1, Means[k][1], Covs[k][2]);
        return p;
    }

    private static double Bin1D(double x, double mu, double v)
    {
        const double h = 1.0 / 255;
        double lo = x < -0.999 ? mu - 12 * Math.Sqrt(v) : x - h, hi = x > 0.999 ? mu + 12 * Math.Sqrt(v) : x + h;
        if (hi <= lo) return 0;
        int n = 2000;  // Simpson with 2000 panels: error ~ (width^5 f'''') negligible next to 1e-9
        double step = (hi - lo) / n, acc = 0;
        for (int i = 0; i <= n; i++)
        {
            double u = lo + i * step, f = Math.Exp(-0.5 * (u - mu) * (u - mu) / v) / Math.Sqrt(2 * Math.PI * v);
            acc += f * (i == 0 || i == n ? 1 : i % 2 == 1 ? 4 : 2);
        }
        return acc * step / 3;
    }
}
