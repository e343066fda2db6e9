namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>A batched score s(x, t) ~ grad_x log p_t(x): x and score hold <paramref name="count"/> samples back to back.</summary>
public delegate void ScoreFunction(ReadOnlySpan<double> x, int count, double t, Span<double> score);

/// <summary>A score with a vector-Jacobian product: vjp_n = v_n^T (d score / d x)(x_n) for each sample n.</summary>
public delegate void ScoreVjpFunction(ReadOnlySpan<double> x, int count, double t, ReadOnlySpan<double> v, Span<double> score, Span<double> vjp);

/// <summary>How the likelihood computation gets the divergence of the probability-flow drift.</summary>
public enum DivergenceMode
{
    /// <summary>Hutchinson-Skilling estimate v^T J v with one Gaussian probe per sample, fixed over the solve.</summary>
    Hutchinson,
    /// <summary>Hutchinson-Skilling with a Rademacher probe.</summary>
    HutchinsonRademacher,
    /// <summary>The exact trace from one vector-Jacobian product per dimension (for low dimensions).</summary>
    Exact,
}

/// <summary>Per-sample likelihood from the probability-flow ODE.</summary>
public sealed record OdeLikelihood(double[] LogLikelihood, double[] BitsPerDim, double[] PriorLogP, double[] DeltaLogP, double[] Latent, int FunctionEvaluations);

/// <summary>
/// The probability-flow ODE dx/dt = f(x, t) - g(t)^2/2 s(x, t) (Song et al. 2021 Eq. 13), integrated with RK45 in double:
/// sampling (T to eps) and exact log-likelihood via the instantaneous change of variables (Eq. 39).
/// </summary>
public static class ProbabilityFlow
{
    /// <summary>Evaluates the probability-flow drift for all samples.</summary>
    public static void Drift(Sde.Sde sde, ScoreFunction score, double[] x, int count, double t, double[] dx)
    {
        score(x, count, t, dx);
        double a = sde.DriftCoefficient(t), g = sde.Diffusion(t);
        for (int i = 0; i < x.Length; i++) dx[i] = a * x[i] - 0.5 * g * g * dx[i];
    }

    /// <summary>Integrates from T (prior sample or <paramref name="xT"/>) to <paramref name="eps"/>; returns x_eps and the number of score calls.</summary>
    public static (double[] X, int FunctionEvaluations) Sample(Sde.Sde sde, ScoreFunction score, int count, int dim, NoiseSource noise,
        double rtol = 1e-5, double atol = 1e-5, double eps = 1e-3, double[]? xT = null)
    {
        int len = count * dim;
        var x = new double[len];
        if (xT != null) { if (xT.Length != len) throw new ArgumentException($"x_T has {xT.Length} values, expected {len}."); Array.Copy(xT, x, len); }
        else { noise.Normal(x); for (int i = 0; i < len; i++) x[i] *= sde.PriorStd; }
        var sol = DormandPrince.Solve((t, y, dy) => Drift(sde, score, y, count, t, dy), sde.T, eps, x, rtol, atol);
        return (sol.Y, sol.FunctionEvaluations);
    }

    /// <summary>Integrates the data forward to T (deterministic encoding to the latent).</summary>
    public static double[] Encode(Sde.Sde sde, ScoreFunction score, double[] x0, int count, double rtol = 1e-5, double atol = 1e-5, double eps = 1e-5)
        => DormandPrince.Solve((t, y, dy) => Drift(sde, score, y, count, t, dy), eps, sde.T, x0, rtol, atol).Y;

    /// <summary>
    /// log p_eps(x) = log p_T(x(T)) + int_eps^T div f-tilde(x(t), t) dt, solving [x, delta] jointly with RK45 (Song et al. Eq. 39, App. D.2).
    /// Bits per dimension = -log p / (dim ln 2).
    /// </summary>
    public static OdeLikelihood LogLikelihood(Sde.Sde sde, ScoreVjpFunction score, double[] x0, int count, int dim,
        DivergenceMode mode, NoiseSource? noise = null, double rtol = 1e-5, double atol = 1e-5, double eps = 1e-5)
    {
        int len = count * dim;
        if (x0.Length != len) throw new ArgumentException($"Data has {x0.Length} values, expected {count} x {dim}.");
        double[]? probe = null;
        if (mode != DivergenceMode.Exact)
        {
            if (noise == null) throw new ArgumentException("The Hutchinson estimator needs a noise source.");
            probe = new double[len];
            noise.Normal(probe);
            if (mode == DivergenceMode.HutchinsonRademacher) for (int i = 0; i < len; i++) probe[i] = probe[i] >= 0 ? 1 : -1;
        }
        var y0 = new double[len + count];
        Array.Copy(x0, y0, len);
        var s = new double[len]; var vjp = new double[len]; var basis = new double[len];
        void F(double t, double[] y, double[] dy)
        {
            var x = y.AsSpan(0, len);
            double a = sde.DriftCoefficient(t), g = sde.Diffusion(t), g2 = 0.5 * g * g;
            var div = dy.AsSpan(len, count);
            if (mode == DivergenceMode.Exact)
            {
                div.Clear();
                for (int d = 0; d < dim; d++)
                {
                    Array.Clear(basis);
                    for (int b = 0; b < count; b++) basis[b * dim + d] = 1;
                    score(x, count, t, basis, s, vjp);
                    for (int b = 0; b < count; b++) div[b] += vjp[b * dim + d];
                }
            }
            else
            {
                score(x, count, t, probe, s, vjp);
                for (int b = 0; b < count; b++)
                {
                    double acc = 0;
                    for (int j = b * dim; j < (b + 1) * dim; j++) acc += probe![j] * vjp[j];
                    div[b] = acc;
                }
            }
            for (int i = 0; i < len; i++) dy[i] = a * x[i] - g2 * s[i];
            for (int b = 0; b < count; b++) div[b] = sde.DriftDivergence(t, dim) - g2 * div[b];  // div f-tilde = div f - g^2/2 div s
        }
        var sol = DormandPrince.Solve(F, eps, sde.T, y0, rtol, atol);
        var logp = new double[count]; var bpd = new double[count]; var prior = new double[count]; var delta = new double[count];
        for (int b = 0; b < count; b++)
        {
            prior[b] = sde.PriorLogP(sol.Y.AsSpan(b * dim, dim));
            delta[b] = sol.Y[len + b];
            logp[b] = prior[b] + delta[b];
            bpd[b] = -logp[b] / (dim * Math.Log(2));
        }
        return new OdeLikelihood(logp, bpd, prior, delta, sol.Y[..len], sol.FunctionEvaluations);
    }
}
