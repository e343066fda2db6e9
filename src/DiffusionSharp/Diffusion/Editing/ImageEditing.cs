using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Editing;

/// <summary>SDEdit image-to-image, DDIM inversion and spherical interpolation of latents.</summary>
public static class ImageEditing
{
    /// <summary>
    /// SDEdit (Meng et al. 2022): noise the guide to step t0 = round(strength T) - 1 with q(x_t0 | x_0) and run ancestral sampling
    /// back to 0. strength 1 starts from (almost) pure noise, small strengths stay close to the guide.
    /// </summary>
    public static Tensor SdEdit(GaussianDiffusion diffusion, DenoiserModel model, Tensor guide, double strength, NoiseSource noise, bool clipDenoised = false)
    {
        if (!(strength > 0 && strength <= 1)) throw new ArgumentOutOfRangeException(nameof(strength), $"Expected strength in (0, 1], got {strength}.");
        int t0 = Math.Max(0, (int)Math.Round(strength * diffusion.NumTimesteps) - 1), b = guide.Dim(0);
        using var xt0 = diffusion.QSample(guide, Enumerable.Repeat(t0, b).ToArray(), noise.Randn(guide.Shape));
        return diffusion.PSampleLoop(model, guide.Shape, noise, clipDenoised, xt0, fromStep: t0);
    }

    /// <summary>DDIM inversion: the deterministic (eta = 0) DDIM map run forward from x_0 to x_{T-1}'s successor, giving a latent that <see cref="GaussianDiffusion.DdimSampleLoop"/> maps back.</summary>
    public static Tensor DdimInvert(GaussianDiffusion diffusion, DenoiserModel model, Tensor x0, bool clipDenoised = false)
    {
        var x = x0.Clone();
        int b = x0.Dim(0);
        for (int i = 0; i < diffusion.NumTimesteps; i++)
        {
            var next = diffusion.DdimReverseSample(model, x, Enumerable.Repeat(i, b).ToArray(), clipDenoised);
            x.Dispose();
            x = next;
        }
        return x;
    }

    /// <summary>
    /// Spherical interpolation sin((1-a) theta)/sin theta z0 + sin(a theta)/sin theta z1 per sample (Shoemake 1985), theta the angle
    /// between the flattened samples; falls back to linear interpolation when they are nearly parallel.
    /// </summary>
    public static Tensor Slerp(Tensor z0, Tensor z1, double alpha, double parallelThreshold = 0.9995)
    {
        z1.ExpectShape(z0.Shape, "second latent");
        int b = z0.Rank == 0 ? 1 : z0.Dim(0), per = z0.Size / Math.Max(b, 1);
        var y = Tensor.Empty(z0.Shape);
        var a = z0.Span; var c = z1.Span; var o = y.Span;
        for (int k = 0; k < b; k++)
        {
            double dot = 0, na = 0, nc = 0;
            for (int j = k * per; j < (k + 1) * per; j++) { dot += (double)a[j] * c[j]; na += (double)a[j] * a[j]; nc += (double)c[j] * c[j]; }
            double cos = dot / Math.Sqrt(na * nc);
            double wa, wc;
            if (!double.IsFinite(cos) || Math.Abs(cos) > parallelThreshold) { wa = 1 - alpha; wc = alpha; }
            else
            {
                double theta = Math.Acos(cos), st = Math.Sin(theta);
                wa = Math.Sin((1 - alpha) * theta) / st; wc = Math.Sin(alpha * theta) / st;
            }
            for (int j = k * per; j < (k + 1) * per; j++) o[j] = (float)(wa * a[j] + wc * c[j]);
        }
        return y;
    }
}
