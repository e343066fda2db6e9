using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Heun's second-order sampler (Karras et al. 2022, Algorithm 2).</summary>
public static partial class KSamplers
{
    /// <summary>Heun's second-order method (Karras et al. 2022, Algorithm 2), Euler on the last step to sigma = 0.</summary>
    public static Tensor Heun(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double sChurn = 0, double sTMin = 0, double sTMax = double.PositiveInfinity, double sNoise = 1,
        NoiseSampler? noiseSampler = null, Generator? generator = null) =>
        Run(model, x, sigmas, callback, (_, x, denoised, sigmaHat, next) =>
        {
            float dt = next - sigmaHat;
            var x2 = EulerStep(x, denoised, sigmaHat, dt);
            if (next == 0) return x2;
            var denoised2 = CallDenoiser(model, x2, next);
            var y = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, d1s = denoised.Span, x2s = x2.Span, d2s = denoised2.Span;
            var o = y.Span;
            for (int k = 0; k < o.Length; k++)
            {
                float d = (xs[k] - d1s[k]) / sigmaHat, d2 = (x2s[k] - d2s[k]) / next;
                o[k] = xs[k] + (d + d2) / 2f * dt;  // trapezoid, Algorithm 2 line 10
            }
            x2.Dispose();
            return y;
        }, new ChurnSettings(sChurn, sTMin, sTMax, sNoise, noiseSampler, generator));
}
