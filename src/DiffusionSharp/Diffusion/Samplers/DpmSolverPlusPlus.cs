using DiffusionSharp.Diffusion.Sde;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>DPM-Solver++(2M) and its SDE variant (Lu et al. 2022b, Algorithm 2; k-diffusion sample_dpmpp_2m, sample_dpmpp_2m_sde).</summary>
public static partial class KSamplers
{
    /// <summary>DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) in k-diffusion's sigma form; first order on the first and last steps.</summary>
    public static Tensor DpmPP2M(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null)
    {
        Tensor? oldDenoised = null;
        return Run(model, x, sigmas, callback, (i, x, denoised, sigma, next) =>
        {
            float t = -MathF.Log(sigma), tNext = -MathF.Log(next);
            float h = tNext - t;
            float ratio = MathF.Exp(-tNext) / MathF.Exp(-t), em1 = (float)Math.ExpM1Safe(-h);
            var y = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, dn = denoised.Span;
            var o = y.Span;
            if (oldDenoised == null || next == 0)
            {
                for (int k = 0; k < o.Length; k++) o[k] = ratio * xs[k] - em1 * dn[k];
            }
            else
            {
                float hLast = t - -MathF.Log((float)sigmas[i - 1]);
                float r = hLast / h;
                float w = 1f / (2f * r), w1 = 1f + w;  // second-order extrapolation of the data prediction
                ReadOnlySpan<float> od = oldDenoised.Span;
                for (int k = 0; k < o.Length; k++) o[k] = ratio * xs[k] - em1 * (w1 * dn[k] - w * od[k]);
            }
            oldDenoised = denoised;
            return y;
        });
    }

    /// <summary>
    /// DPM-Solver++(2M) SDE (k-diffusion sample_dpmpp_2m_sde) with midpoint or heun correction; eta = 0 gives the ODE
    /// solver. Noise comes from <paramref name="noiseSampler"/> (e.g. a recorded bank) or <paramref name="generator"/>.
    /// </summary>
    public static Tensor DpmPP2MSde(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double eta = 1, double sNoise = 1, NoiseSampler? noiseSampler = null, Generator? generator = null, string solverType = "midpoint")
    {
        if (solverType is not ("midpoint" or "heun")) throw new ArgumentException($"solver_type must be midpoint or heun, got '{solverType}'.");
        Tensor? oldDenoised = null;
        float hLast = 0;
        NoiseSampler? noise = null;
        return Run(model, x, sigmas, callback, (_, x, denoised, sigma, next) =>
        {
            if (next == 0)
            {
                oldDenoised = denoised;
                return denoised.Clone();  // final denoising step
            }
            float t = -MathF.Log(sigma), s = -MathF.Log(next);
            float h = s - t, etaH = (float)eta * h;
            float c1 = next / sigma * MathF.Exp(-etaH), c2 = -(float)Math.ExpM1Safe(-h - etaH);
            var y = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, dn = denoised.Span;
            var o = y.Span;
            for (int k = 0; k < o.Length; k++) o[k] = c1 * xs[k] + c2 * dn[k];
            if (oldDenoised != null)
            {
                float r = hLast / h;
                float c3 = solverType == "heun" ? (c2 / (-h - etaH) + 1f) * (1f / r) : 0.5f * c2 * (1f / r);
                ReadOnlySpan<float> od = oldDenoised.Span;
                for (int k = 0; k < o.Length; k++) o[k] += c3 * (dn[k] - od[k]);
            }
            if (eta != 0)
            {
                noise ??= Noise(noiseSampler, generator, x);
                AddNoise(y, noise(sigma, next), (float)sNoise, next * MathF.Sqrt(-(float)Math.ExpM1Safe(-2f * etaH)));
            }
            oldDenoised = denoised;
            hLast = h;
            return y;
        });
    }
}
