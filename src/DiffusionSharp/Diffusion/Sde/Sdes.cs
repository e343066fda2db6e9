using DiffusionSharp.Diffusion.Schedules;

namespace DiffusionSharp.Diffusion.Sde;

/// <summary>
/// A forward SDE dx = f(x, t) dt + g(t) dw on t in [0, T] whose drift is linear, f(x, t) = a(t) x, so its marginals are
/// N(m(t) x_0, s(t)^2 I) (Song et al. 2021, Sec. 3.4 and App. B).
/// </summary>
/// <param name="n">Number of discretisation steps used by the discrete predictors.</param>
public abstract class Sde(int n)
{
    /// <summary>End time T.</summary>
    public double T { get; protected init; } = 1.0;
    /// <summary>Number of discretisation steps used by the discrete predictors.</summary>
    public int N { get; } = n;

    /// <summary>Coefficient a(t) of the linear drift f(x, t) = a(t) x.</summary>
    public abstract double DriftCoefficient(double t);
    /// <summary>Diffusion coefficient g(t).</summary>
    public abstract double Diffusion(double t);
    /// <summary>Scale m(t) and standard deviation s(t) of the perturbation kernel p_{0t}(x_t | x_0) = N(m x_0, s^2 I).</summary>
    public abstract (double Mean, double Std) Marginal(double t);
    /// <summary>Standard deviation of the prior p_T = N(0, sigma^2 I).</summary>
    public abstract double PriorStd { get; }
    /// <summary>Discrete reverse step coefficients (f_i x, G_i) at time t: x_{i+1} = x_i + f_i x_i + G_i z (Song et al. App. E).</summary>
    public abstract (double DriftScale, double G) Discretize(double t);

    /// <summary>Divergence of the drift for dimension <paramref name="dim"/>: a(t) dim.</summary>
    public double DriftDivergence(double t, int dim) => DriftCoefficient(t) * dim;

    /// <summary>log N(z; 0, PriorStd^2 I) for one sample.</summary>
    public double PriorLogP(ReadOnlySpan<double> z)
    {
        double s2 = PriorStd * PriorStd, q = 0;
        foreach (var v in z) q += v * v;
        return -0.5 * z.Length * Math.Log(2 * Math.PI * s2) - q / (2 * s2);
    }

    /// <summary>Step size factor alpha_i of the Langevin corrector: 1 - beta_i for VP (Song et al. 2021, Algorithm 4), else 1.</summary>
    public virtual double CorrectorAlpha(double t) => 1;

    /// <summary>Index of the discrete step for time t, as score_sde's (t (N-1) / T).long().</summary>
    public int StepIndex(double t) => Math.Clamp((int)(t * (N - 1) / T), 0, N - 1);
}

/// <summary>Variance-preserving SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear (the continuous DDPM; Song et al. Eq. 11).</summary>
/// <param name="betaMin">beta(0).</param>
/// <param name="betaMax">beta(1).</param>
/// <param name="n">Number of discrete steps.</param>
public sealed class VpSde(double betaMin = 0.1, double betaMax = 20, int n = 1000) : Sde(n)
{
    /// <summary>beta(0).</summary>
    public double BetaMin => betaMin;
    /// <summary>beta(1).</summary>
    public double BetaMax => betaMax;
    /// <summary>The matching DDPM chain: linear betas from beta_min / N to beta_max / N (Song et al. 2021, App. B).</summary>
    public NoiseScheduleOptions DiscreteSchedule { get; } = new() { NumTrainTimesteps = n, BetaStart = betaMin / n, BetaEnd = betaMax / n };

    /// <summary>beta(t) = beta_min + t (beta_max - beta_min).</summary>
    public double Beta(double t) => BetaMin + t * (BetaMax - BetaMin);
    /// <summary>log m(t) = -t^2 (beta_max - beta_min)/4 - t beta_min/2.</summary>
    public double LogMeanCoefficient(double t) => -0.25 * t * t * (BetaMax - BetaMin) - 0.5 * t * BetaMin;
    /// <summary>The discrete betas beta_i = beta(i/(N-1))/N of <see cref="DiscreteSchedule"/>.</summary>
    public IReadOnlyList<double> DiscreteBetas => _discreteBetas ??= DiscreteSchedule.Betas();
    private double[]? _discreteBetas;

    /// <inheritdoc/>
    public override double CorrectorAlpha(double t) => 1 - DiscreteBetas[StepIndex(t)];

    /// <inheritdoc/>
    public override double DriftCoefficient(double t) => -0.5 * Beta(t);
    /// <inheritdoc/>
    public override double Diffusion(double t) => Math.Sqrt(Beta(t));
    /// <inheritdoc/>
    public override (double Mean, double Std) Marginal(double t)
    {
        double l = LogMeanCoefficient(t);
        return (Math.Exp(l), Math.Sqrt(-Math.ExpM1Safe(2 * l)));
    }
    /// <inheritdoc/>
    public override double PriorStd => 1;
    /// <inheritdoc/>
    public override (double DriftScale, double G) Discretize(double t)
    {
        double beta = DiscreteBetas[StepIndex(t)];
        return (Math.Sqrt(1 - beta) - 1, Math.Sqrt(beta));  // ancestral DDPM step as an SDE discretisation (Song et al. Eq. 47)
    }
}

/// <summary>Sub-VP SDE: VP drift, g(t)^2 = beta(t) (1 - e^{-2 int_0^t beta}) (Song et al. Eq. 14).</summary>
/// <param name="betaMin">beta(0).</param>
/// <param name="betaMax">beta(1).</param>
/// <param name="n">Number of discrete steps.</param>
public sealed class SubVpSde(double betaMin = 0.1, double betaMax = 20, int n = 1000) : Sde(n)
{
    private readonly VpSde _vp = new(betaMin, betaMax, n);

    /// <inheritdoc/>
    public override double DriftCoefficient(double t) => _vp.DriftCoefficient(t);
    /// <inheritdoc/>
    public override double Diffusion(double t)
    {
        double discount = -Math.ExpM1Safe(2 * _vp.LogMeanCoefficient(t) * 2);  // 1 - exp(-2 beta_min t - (beta_max - beta_min) t^2)
        return Math.Sqrt(_vp.Beta(t) * discount);
    }
    /// <inheritdoc/>
    public override (double Mean, double Std) Marginal(double t)
    {
        double l = _vp.LogMeanCoefficient(t);
        return (Math.Exp(l), -Math.ExpM1Safe(2 * l));  // std = 1 - e^{2 log m} (Song et al. Eq. 29)
    }
    /// <inheritdoc/>
    public override double PriorStd => 1;
    /// <inheritdoc/>
    public override (double DriftScale, double G) Discretize(double t)
    {
        double dt = T / N;  // Euler-Maruyama discretisation, as score_sde's default for SDEs without a special one
        return (DriftCoefficient(t) * dt, Diffusion(t) * Math.Sqrt(dt));
    }
}

/// <summary>Variance-exploding SDE dx = sqrt(d sigma^2/dt) dw, sigma(t) = sigma_min (sigma_max/sigma_min)^t (Song et al. Eq. 9).</summary>
/// <param name="sigmaMin">sigma(0).</param>
/// <param name="sigmaMax">sigma(1).</param>
/// <param name="n">Number of discrete steps.</param>
public sealed class VeSde(double sigmaMin = 0.01, double sigmaMax = 50, int n = 1000) : Sde(n)
{
    // the SMLD noise levels, geometric from sigma_min to sigma_max
    private readonly double[] _discreteSigmas = BetaSchedules.Linspace(Math.Log(sigmaMin), Math.Log(sigmaMax), n).Select(Math.Exp).ToArray();

    /// <summary>sigma(0).</summary>
    public double SigmaMin => sigmaMin;
    /// <summary>sigma(1).</summary>
    public double SigmaMax => sigmaMax;

    /// <summary>sigma(t).</summary>
    public double Sigma(double t) => SigmaMin * Math.Pow(SigmaMax / SigmaMin, t);
    /// <inheritdoc/>
    public override double DriftCoefficient(double t) => 0;
    /// <inheritdoc/>
    public override double Diffusion(double t) => Sigma(t) * Math.Sqrt(2 * (Math.Log(SigmaMax) - Math.Log(SigmaMin)));
    /// <inheritdoc/>
    public override (double Mean, double Std) Marginal(double t) => (1, Sigma(t));
    /// <inheritdoc/>
    public override double PriorStd => SigmaMax;
    /// <inheritdoc/>
    public override (double DriftScale, double G) Discretize(double t)
    {
        int i = StepIndex(t);
        double s = _discreteSigmas[i], prev = i == 0 ? 0 : _discreteSigmas[i - 1];
        return (0, Math.Sqrt(s * s - prev * prev));  // SMLD as a discretised VE SDE (Song et al. Eq. 46)
    }
}

internal static class MathExt
{
    extension(Math)
    {
        /// <summary>e^x - 1 without cancellation for small x.</summary>
        public static double ExpM1Safe(double x) => Math.Abs(x) < 1e-5 ? x + 0.5 * x * x + x * x * x / 6 : Math.Exp(x) - 1;
    }
}
