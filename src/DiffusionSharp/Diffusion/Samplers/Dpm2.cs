using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>DPM-Solver-2 (Lu et al. 2022, Algorithm 1) in sigma form.</summary>
public static partial class KSamplers
{
    /// <summary>DPM-Solver-2 (Lu et al. 2022, Algorithm 1 in sigma form): derivative at the log-midpoint sigma.</summary>
    public static Tensor Dpm2(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double sChurn = 0, double sTMin = 0, double sTMax = double.PositiveInfinity, double sNoise = 1,
        NoiseSampler? noiseSampler = null, Generator? generator = null) =>
        Run(model, x, sigmas, callback, (_, x, denoised, sigmaHat, next) =>
        {
            if (next == 0) return EulerStep(x, denoised, sigmaHat, next - sigmaHat);
            float la = MathF.Log(sigmaHat), lb = MathF.Log(next);
            float sigmaMid = MathF.Exp(lb - (lb - la) * 0.5f);  // geometric mean of sigma_hat and sigma_next
            using var x2 = EulerStep(x, denoised, sigmaHat, sigmaMid - sigmaHat);
            var denoised2 = CallDenoiser(model, x2, sigmaMid);
            var y = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, x2s = x2.Span, d2s = denoised2.Span;
            var o = y.Span;
            float dt2 = next - sigmaHat;
            for (int k = 0; k < o.Length; k++) o[k] = xs[k] + (x2s[k] - d2s[k]) / sigmaMid * dt2;
            return y;
        }, new ChurnSettings(sChurn, sTMin, sTMax, sNoise, noiseSampler, generator));
}
