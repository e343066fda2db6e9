using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Euler and ancestral Euler (Karras et al. 2022, Algorithm 2; k-diffusion sample_euler, sample_euler_ancestral).</summary>
public static partial class KSamplers
{
    /// <summary>Euler (Karras et al. 2022, Algorithm 2; plain Euler without <paramref name="churn"/>).</summary>
    public static Tensor Euler(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        ChurnOptions? churn = null) =>
        Run(model, x, sigmas, callback, (_, x, denoised, sigmaHat, next) => EulerStep(x, denoised, sigmaHat, next - sigmaHat), churn);

    /// <summary>sigma_down and sigma_up of an ancestral step: sigma_down^2 + sigma_up^2 = sigma_next^2, sigma_up scaled by eta.</summary>
    public static (double SigmaDown, double SigmaUp) AncestralStep(double sigmaFrom, double sigmaTo, double eta = 1.0)
    {
        if (eta == 0) return (sigmaTo, 0);
        float f = (float)sigmaFrom, t = (float)sigmaTo;
        float up = MathF.Min(t, (float)eta * MathF.Sqrt(t * t * (f * f - t * t) / (f * f)));
        float down = MathF.Sqrt(t * t - up * up);
        return (down, up);
    }

    /// <summary>Ancestral Euler: Euler to sigma_down, then add noise of std sigma_up (k-diffusion sample_euler_ancestral).</summary>
    public static Tensor EulerAncestral(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double eta = 1, double sNoise = 1, NoiseSampler? noiseSampler = null, Generator? generator = null)
    {
        NoiseSampler? noise = null;
        return Run(model, x, sigmas, callback, (_, x, denoised, sigma, next) =>
        {
            var (down, up) = AncestralStep(sigma, next, eta);
            var y = EulerStep(x, denoised, sigma, (float)down - sigma);
            if (next > 0 && up > 0)
            {
                noise ??= Noise(noiseSampler, generator, x);
                AddNoise(y, noise(sigma, next), (float)sNoise, (float)up);
            }
            return y;
        });
    }
}
