using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Losses;

/// <summary>
/// EDM training (Karras et al. 2022, Table 1, "Training"): ln sigma ~ N(P_mean, P_std^2), x = y + sigma n, and the loss
/// lambda(sigma) |D(x, sigma) - y|^2 (Eq. 8), averaged over elements like L_simple.
/// </summary>
/// <param name="PMean">Mean of ln sigma.</param>
/// <param name="PStd">Standard deviation of ln sigma.</param>
/// <param name="SigmaData">Standard deviation of the data.</param>
public sealed record EdmLoss(double PMean = -1.2, double PStd = 1.2, double SigmaData = 0.5)
{
    /// <summary>sigma = exp(P_mean + P_std z) for a standard-normal draw z.</summary>
    public double SigmaFromNormal(double z) => Math.Exp(PMean + PStd * z);

    /// <summary>
    /// Per-sample loss of the network F on clean images <paramref name="y"/> at noise levels <paramref name="sigmas"/> with
    /// noise <paramref name="noise"/>, written as |F - (y - c_skip x) / c_out|^2: equal to lambda |D - y|^2 since
    /// lambda c_out^2 = 1 (Eq. 8), without the cancellation of D - y at small sigma.
    /// </summary>
    public Tensor Losses(EdmDenoiser denoiser, Tensor y, double[] sigmas, Tensor noise)
    {
        if (noise.Shape != y.Shape) throw new ArgumentException($"Expected noise of shape {y.Shape}, got {noise.Shape}.");
        if (denoiser.SigmaData != SigmaData) throw new ArgumentException($"The denoiser's sigma_data {denoiser.SigmaData} differs from the loss's {SigmaData}.");
        var x = y + noise * denoiser.Coefficients(sigmas, (s, _) => s, y.Shape);
        var diff = denoiser.Network(x, sigmas) - (y - x * denoiser.Coefficients(sigmas, EdmDenoiser.CSkip, y.Shape)) * denoiser.Coefficients(sigmas, (s, d) => 1 / EdmDenoiser.COut(s, d), y.Shape);
        return (diff * diff).MeanPerSample();
    }
}
