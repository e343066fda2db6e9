using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Called once per sampler step with the step index, the current x, its sigma and the denoiser's estimate.</summary>
public delegate void SamplerCallback(int step, Tensor x, double sigma, Tensor denoised);

/// <summary>Returns standard-normal noise for the transition from <paramref name="sigma"/> to <paramref name="sigmaNext"/>.</summary>
public delegate Tensor NoiseSampler(double sigma, double sigmaNext);

/// <summary>Churn of Karras et al. 2022, Algorithm 2 (none at the defaults): S_churn, S_tmin, S_tmax, S_noise and the noise source.</summary>
/// <param name="SChurn">Total churn S_churn.</param>
/// <param name="STMin">Churn applies for sigma in [STMin, STMax].</param>
/// <param name="STMax">Churn applies for sigma in [STMin, STMax].</param>
/// <param name="SNoise">Scale S_noise of the added noise.</param>
/// <param name="Noise">Noise source; else <paramref name="Generator"/>, else a randomly seeded generator.</param>
/// <param name="Generator">Random source when <paramref name="Noise"/> is null.</param>
public sealed record ChurnOptions(double SChurn = 0, double STMin = 0, double STMax = double.PositiveInfinity, double SNoise = 1,
    NoiseSampler? Noise = null, Generator? Generator = null);

/// <summary>
/// Samplers over a denoiser D(x, sigma) that estimates x0 from x = x0 + sigma n (the VE / EDM view of Karras et al. 2022),
/// following k-diffusion's sampling.py. <c>sigmas</c> is descending and normally ends with 0. Arithmetic runs in float32
/// like k-diffusion; coefficients come from the float32 sigma values. The sampler never disposes the input x, the
/// denoiser's outputs, or the tensors it passes to the callback before the callback returns.
/// </summary>
public static partial class KSamplers
{
    /// <summary>Noise from <paramref name="generator"/> shaped like <paramref name="like"/>.</summary>
    public static NoiseSampler FromGenerator(Generator generator, Shape like)
    {
        ArgumentNullException.ThrowIfNull(generator);
        var dims = like.ToArray();
        return (_, _) => Tensor.Randn(generator, dims);
    }

    private static NoiseSampler Noise(NoiseSampler? sampler, Generator? generator, Tensor x) =>
        sampler ?? FromGenerator(generator ?? new Generator((ulong)Random.Shared.NextInt64()), x.Shape);

    private static void Check(Tensor x, IReadOnlyList<double> sigmas)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (sigmas.Count < 2) throw new ArgumentException($"Expected at least 2 sigmas (start and end), got {sigmas.Count}.");
        for (int i = 0; i < sigmas.Count; i++)
            if (!(sigmas[i] >= 0)) throw new ArgumentException($"Expected non-negative sigmas, got sigmas[{i}] = {sigmas[i]}.");
    }

    private static Tensor CallDenoiser(Func<Tensor, double, Tensor> model, Tensor x, float sigma)
    {
        var d = model(x, sigma);
        if (d.Shape != x.Shape) throw new InvalidOperationException($"Denoiser returned shape {d.Shape} for input {x.Shape}.");
        return d;
    }

    private static void Replace(ref Tensor x, Tensor next, Tensor input)
    {
        if (!ReferenceEquals(x, input)) x.Dispose();
        x = next;
    }

    /// <summary>gamma_i of Karras et al. 2022, Algorithm 2: min(S_churn / N, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax], else 0.</summary>
    internal static float ChurnGamma(ChurnOptions churn, IReadOnlyList<double> sigmas, int i)
    {
        double s = (float)sigmas[i];
        return churn.STMin <= s && s <= churn.STMax ? (float)Math.Min(churn.SChurn / (sigmas.Count - 1), Math.Sqrt(2) - 1) : 0f;
    }

    /// <summary>One update: x at sigma_hat with its denoised estimate to x at <paramref name="next"/> (a new tensor).</summary>
    private delegate Tensor Update(int i, Tensor x, Tensor denoised, float sigmaHat, float next);

    /// <summary>
    /// The loop every sampler shares: at each sigma, optionally raise x to sigma_hat (Algorithm 2 lines 4-6 of Karras et al.
    /// 2022), evaluate D(x, sigma_hat), report the step and replace x by <paramref name="update"/>.
    /// </summary>
    private static Tensor Run(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback,
        Update update, ChurnOptions? churn = null)
    {
        Check(x, sigmas);
        var input = x;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1], sigmaHat = sigma;
            if (churn is ChurnOptions c)
            {
                float gamma = ChurnGamma(c, sigmas, i);
                sigmaHat = sigma * (gamma + 1f);
                if (gamma > 0) Replace(ref x, AddChurn(x, sigma, sigmaHat, c.SNoise, Noise(c.Noise, c.Generator, x), next), input);
            }
            var denoised = CallDenoiser(model, x, sigmaHat);
            callback?.Invoke(i, x, sigma, denoised);
            Replace(ref x, update(i, x, denoised, sigmaHat, next), input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

    // x + sqrt(sigma_hat^2 - sigma^2) s_noise eps: raise the noise level (Algorithm 2 line 5 of Karras et al. 2022)
    internal static Tensor AddChurn(Tensor x, float sigma, float sigmaHat, double sNoise, NoiseSampler noise, float sigmaNext)
    {
        var z = noise(sigma, sigmaNext);
        float k = MathF.Sqrt(sigmaHat * sigmaHat - sigma * sigma), sn = (float)sNoise;
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span, zs = z.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = xs[i] + zs[i] * sn * k;
        return y;
    }

    // y += z s_noise sigma_up: the fresh noise of an ancestral step
    internal static void AddNoise(Tensor y, Tensor z, float sNoise, float sigmaUp)
    {
        var ys = y.Span;
        ReadOnlySpan<float> zs = z.Span;
        for (int k = 0; k < ys.Length; k++) ys[k] += zs[k] * sNoise * sigmaUp;
    }

    // x + (x - D) / sigma * dt: an Euler step of dx/dsigma = (x - D(x, sigma)) / sigma (Eq. 7 of Karras et al. 2022)
    internal static Tensor EulerStep(Tensor x, Tensor denoised, float sigma, float dt)
    {
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span, ds = denoised.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = xs[i] + (xs[i] - ds[i]) / sigma * dt;
        return y;
    }
}
