using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>The DDIM update (Song et al. 2021, Eq. 12) in the VP parameterisation: the one DDIMScheduler and GaussianDiffusion run.</summary>
public static class Ddim
{
    /// <summary>sigma_t of Eq. 16 of Song et al. 2021 for noise weight <paramref name="eta"/>: eta times the DDPM posterior std.</summary>
    public static float Sigma(double alphaBar, double alphaBarPrev, double eta) => (float)(eta * Math.Sqrt(DdpmPosterior.Between(alphaBar, alphaBarPrev).Variance));

    /// <summary>
    /// x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z, with one (abar_prev, sigma) per batch element
    /// (one value for all); <paramref name="z"/> may be null when no sigma is positive.
    /// </summary>
    public static Tensor Step(Tensor x0, Tensor eps, ReadOnlySpan<float> alphaBarPrev, ReadOnlySpan<float> sigma, Tensor? z)
    {
        var y = Tensor.Empty(x0.Shape);
        int batch = x0.Dim(0), per = x0.Size / batch;
        ReadOnlySpan<float> p = x0.Span, e = eps.Span, zs = z != null ? z.Span : default;
        var o = y.Span;
        for (int b = 0; b < batch; b++)
        {
            float ab = alphaBarPrev[alphaBarPrev.Length == 1 ? 0 : b], s = sigma[sigma.Length == 1 ? 0 : b];
            float cx = MathF.Sqrt(ab), ce = MathF.Sqrt(MathF.Max(0f, 1f - ab - s * s));  // "direction pointing to x_t"
            for (int j = b * per; j < (b + 1) * per; j++) o[j] = z == null ? cx * p[j] + ce * e[j] : cx * p[j] + ce * e[j] + s * zs[j];
        }
        return y;
    }
}
