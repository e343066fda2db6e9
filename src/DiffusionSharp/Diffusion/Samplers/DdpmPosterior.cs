namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>
/// The posterior q(x_prev | x_t, x_0) = N(CoefX0 x_0 + CoefXt x_t, Variance I) between two points abar_t, abar_prev of one
/// VP process, with beta = 1 - abar_t / abar_prev (Ho et al. 2020, Eq. 6-7), in double: the one ancestral DDPM step of
/// DDPMScheduler and GaussianDiffusion, and sigma^2 / eta^2 of DDIM (Song et al. 2021, Eq. 16).
/// </summary>
/// <param name="CoefX0">sqrt(abar_prev) beta / (1 - abar_t).</param>
/// <param name="CoefXt">sqrt(1 - beta) (1 - abar_prev) / (1 - abar_t).</param>
/// <param name="Variance">beta-tilde = beta (1 - abar_prev) / (1 - abar_t).</param>
/// <param name="Beta">beta = 1 - abar_t / abar_prev.</param>
public readonly record struct DdpmPosterior(double CoefX0, double CoefXt, double Variance, double Beta)
{
    /// <summary>The posterior from abar_t and abar_prev (1 before the first step).</summary>
    public static DdpmPosterior Between(double alphaBar, double alphaBarPrev)
    {
        double beta = 1 - alphaBar / alphaBarPrev, tilde = (1 - alphaBarPrev) / (1 - alphaBar);
        return new(Math.Sqrt(alphaBarPrev) * beta / (1 - alphaBar), Math.Sqrt(1 - beta) * tilde, beta * tilde, beta);
    }
}
