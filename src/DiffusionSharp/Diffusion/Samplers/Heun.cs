using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Second-order samplers over an Euler trial step: Heun (Karras et al. 2022, Algorithm 2) and DPM-Solver-2 (Lu et al. 2022, Algorithm 1).</summary>
public static partial class KSamplers
{
    /// <summary>Heun's second-order method (Karras et al. 2022, Algorithm 2), Euler on the last step to sigma = 0.</summary>
    public static Tensor Heun(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        ChurnOptions? churn = null) => SecondOrder(model, x, sigmas, callback, churn, (_, next) => next, trapezoid: true);

    /// <summary>DPM-Solver-2 (Lu et al. 2022, Algorithm 1 in sigma form): the slope at the log-midpoint of sigma_hat and sigma_next.</summary>
    public static Tensor Dpm2(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        ChurnOptions? churn = null) => SecondOrder(model, x, sigmas, callback, churn, (sigmaHat, next) =>
        {
            float la = MathF.Log(sigmaHat), lb = MathF.Log(next);
            return MathF.Exp(lb - (lb - la) * 0.5f);
        }, trapezoid: false);

    // Euler from sigma_hat to the trial sigma s2 and D there; then from x with the slope at s2, or the mean of both slopes (trapezoid,
    // Algorithm 2 line 10 of Karras et al. 2022). The last step, to sigma = 0, is Euler.
    private static Tensor SecondOrder(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback,
        ChurnOptions? churn, Func<float, float, float> trial, bool trapezoid) =>
        Run(model, x, sigmas, callback, (_, x, denoised, sigmaHat, next) =>
        {
            float dt = next - sigmaHat;
            if (next == 0) return EulerStep(x, denoised, sigmaHat, dt);
            float s2 = trial(sigmaHat, next);
            using var x2 = EulerStep(x, denoised, sigmaHat, s2 - sigmaHat);
            return SecondOrderUpdate(x, denoised, sigmaHat, x2, CallDenoiser(model, x2, s2), s2, dt, trapezoid);
        }, churn);

    // x + slope dt, the slope (x2 - D2) / sigma2 or its mean with (x - D) / sigma (Heun's trapezoid, Algorithm 2 line 10)
    internal static Tensor SecondOrderUpdate(Tensor x, Tensor denoised, float sigma, Tensor x2, Tensor denoised2, float sigma2, float dt, bool trapezoid)
    {
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span, d1s = denoised.Span, x2s = x2.Span, d2s = denoised2.Span;
        var o = y.Span;
        for (int k = 0; k < o.Length; k++)
            o[k] = trapezoid ? xs[k] + ((xs[k] - d1s[k]) / sigma + (x2s[k] - d2s[k]) / sigma2) / 2f * dt : xs[k] + (x2s[k] - d2s[k]) / sigma2 * dt;
        return y;
    }
}
