using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Called once per sampler step with the step index, the current x, its sigma and the denoiser's estimate.</summary>
public delegate void SamplerCallback(int step, Tensor x, double sigma, Tensor denoised);

/// <summary>Returns standard-normal noise for the transition from <paramref name="sigma"/> to <paramref name="sigmaNext"/>.</summary>
public delegate Tensor NoiseSampler(double sigma, double sigmaNext);

/// <summary>
/// Samplers over a denoiser D(x, sigma) that estimates x0 from x = x0 + sigma n (the VE / EDM view of Karras et al. 2022),
/// following k-diffusion's sampling.py. <c>sigmas</c> is descending and normally ends with 0. Arithmetic runs in float32
/// like k-diffusion; coefficients come from the float32 sigma values. The sampler never disposes the input x, the
/// denoiser's outputs, or the tensors it passes to the callback before the callback returns.
/// </summary>
public static class KSamplers
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

    private static float Churn(IReadOnlyList<double> sigmas, int i, double sChurn, double sTMin, double sTMax)
    {
        double s = (float)sigmas[i];
        return sTMin <= s && s <= sTMax ? (float)Math.Min(sChurn / (sigmas.Count - 1), Math.Sqrt(2) - 1) : 0f;
    }

    // x + sqrt(sigma_hat^2 - sigma^2) s_noise eps: raise the noise level (Algorithm 2 line 5 of Karras et al. 2022)
    private static Tensor AddChurn(Tensor x, float sigma, float sigmaHat, double sNoise, NoiseSampler noise, float sigmaNext)
    {
        var z = noise(sigma, sigmaNext);
        float k = MathF.Sqrt(sigmaHat * sigmaHat - sigma * sigma), sn = (float)sNoise;
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span, zs = z.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = xs[i] + zs[i] * sn * k;
        return y;
    }

    // x + (x - D) / sigma * dt: an Euler step of dx/dsigma = (x - D(x, sigma)) / sigma (Eq. 7 of Karras et al. 2022)
    private static Tensor EulerStep(Tensor x, Tensor denoised, float sigma, float dt)
    {
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> xs = x.Span, ds = denoised.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = xs[i] + (xs[i] - ds[i]) / sigma * dt;
        return y;
    }

    /// <summary>Euler (Karras et al. 2022, Algorithm 2; plain Euler when <paramref name="sChurn"/> = 0).</summary>
    public static Tensor Euler(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double sChurn = 0, double sTMin = 0, double sTMax = double.PositiveInfinity, double sNoise = 1,
        NoiseSampler? noiseSampler = null, Generator? generator = null)
    {
        Check(x, sigmas);
        var input = x;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1];
            float gamma = Churn(sigmas, i, sChurn, sTMin, sTMax);
            float sigmaHat = sigma * (gamma + 1f);
            if (gamma > 0) Replace(ref x, AddChurn(x, sigma, sigmaHat, sNoise, Noise(noiseSampler, generator, x), next), input);
            var denoised = CallDenoiser(model, x, sigmaHat);
            callback?.Invoke(i, x, sigma, denoised);
            Replace(ref x, EulerStep(x, denoised, sigmaHat, next - sigmaHat), input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

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
        Check(x, sigmas);
        var input = x;
        NoiseSampler? noise = null;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1];
            var denoised = CallDenoiser(model, x, sigma);
            var (down, up) = AncestralStep(sigma, next, eta);
            callback?.Invoke(i, x, sigma, denoised);
            var y = EulerStep(x, denoised, sigma, (float)down - sigma);
            if (next > 0 && up > 0)
            {
                noise ??= Noise(noiseSampler, generator, x);
                var z = noise(sigma, next);
                float sn = (float)sNoise, su = (float)up;
                var ys = y.Span;
                ReadOnlySpan<float> zs = z.Span;
                for (int k = 0; k < ys.Length; k++) ys[k] += zs[k] * sn * su;
            }
            Replace(ref x, y, input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

    /// <summary>Heun's second-order method (Karras et al. 2022, Algorithm 2), Euler on the last step to sigma = 0.</summary>
    public static Tensor Heun(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double sChurn = 0, double sTMin = 0, double sTMax = double.PositiveInfinity, double sNoise = 1,
        NoiseSampler? noiseSampler = null, Generator? generator = null)
    {
        Check(x, sigmas);
        var input = x;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1];
            float gamma = Churn(sigmas, i, sChurn, sTMin, sTMax);
            float sigmaHat = sigma * (gamma + 1f);
            if (gamma > 0) Replace(ref x, AddChurn(x, sigma, sigmaHat, sNoise, Noise(noiseSampler, generator, x), next), input);
            var denoised = CallDenoiser(model, x, sigmaHat);
            callback?.Invoke(i, x, sigma, denoised);
            float dt = next - sigmaHat;
            if (next == 0)
            {
                Replace(ref x, EulerStep(x, denoised, sigmaHat, dt), input);
                continue;
            }
            var x2 = EulerStep(x, denoised, sigmaHat, dt);
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
            Replace(ref x, y, input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

    /// <summary>DPM-Solver-2 (Lu et al. 2022, Algorithm 1 in sigma form): derivative at the log-midpoint sigma.</summary>
    public static Tensor Dpm2(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double sChurn = 0, double sTMin = 0, double sTMax = double.PositiveInfinity, double sNoise = 1,
        NoiseSampler? noiseSampler = null, Generator? generator = null)
    {
        Check(x, sigmas);
        var input = x;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1];
            float gamma = Churn(sigmas, i, sChurn, sTMin, sTMax);
            float sigmaHat = sigma * (gamma + 1f);
            if (gamma > 0) Replace(ref x, AddChurn(x, sigma, sigmaHat, sNoise, Noise(noiseSampler, generator, x), next), input);
            var denoised = CallDenoiser(model, x, sigmaHat);
            callback?.Invoke(i, x, sigma, denoised);
            if (next == 0)
            {
                Replace(ref x, EulerStep(x, denoised, sigmaHat, next - sigmaHat), input);
                continue;
            }
            float la = MathF.Log(sigmaHat), lb = MathF.Log(next);
            float sigmaMid = MathF.Exp(lb - (lb - la) * 0.5f);  // geometric mean of sigma_hat and sigma_next
            var x2 = EulerStep(x, denoised, sigmaHat, sigmaMid - sigmaHat);
            var denoised2 = CallDenoiser(model, x2, sigmaMid);
            var y = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, x2s = x2.Span, d2s = denoised2.Span;
            var o = y.Span;
            float dt2 = next - sigmaHat;
            for (int k = 0; k < o.Length; k++) o[k] = xs[k] + (x2s[k] - d2s[k]) / sigmaMid * dt2;
            x2.Dispose();
            Replace(ref x, y, input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

    /// <summary>
    /// Weight of the derivative from step i - j in the linear multistep update from sigmas[i] to sigmas[i+1]:
    /// the integral over [sigmas[i], sigmas[i+1]] of the Lagrange basis polynomial through sigmas[i], ..., sigmas[i-order+1].
    /// </summary>
    public static double LinearMultistepCoefficient(int order, IReadOnlyList<double> sigmas, int i, int j)
    {
        if (order - 1 > i) throw new ArgumentException($"Order {order} is too high for step {i}.");
        if ((uint)j >= (uint)order) throw new ArgumentOutOfRangeException(nameof(j), $"Expected 0 <= j < {order}, got {j}.");
        double a = sigmas[i], b = sigmas[i + 1];
        // 4-point Gauss-Legendre is exact for polynomials of degree <= 7, i.e. basis polynomials up to order 8
        ReadOnlySpan<double> nodes = stackalloc double[] { -0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526 };
        ReadOnlySpan<double> weights = stackalloc double[] { 0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538 };
        int pieces = order <= 8 ? 1 : 64;
        double sum = 0, width = (b - a) / pieces;
        for (int p = 0; p < pieces; p++)
        {
            double lo = a + p * width, hi = p == pieces - 1 ? b : lo + width;
            double part = 0;
            for (int q = 0; q < 4; q++) part += weights[q] * Basis(0.5 * (hi - lo) * nodes[q] + 0.5 * (lo + hi));
            sum += 0.5 * (hi - lo) * part;
        }
        return sum;

        double Basis(double tau)
        {
            double prod = 1;
            for (int k = 0; k < order; k++)
            {
                if (k == j) continue;
                prod *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k]);
            }
            return prod;
        }
    }

    /// <summary>Linear multistep method of the given order over past derivatives (k-diffusion sample_lms, Karras et al. 2022 Sec. 3).</summary>
    public static Tensor Lms(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null, int order = 4)
    {
        Check(x, sigmas);
        if (order < 1) throw new ArgumentOutOfRangeException(nameof(order), $"Expected order >= 1, got {order}.");
        var sig = sigmas.Select(s => (double)(float)s).ToArray();
        var input = x;
        var ds = new List<Tensor>();
        for (int i = 0; i < sig.Length - 1; i++)
        {
            float sigma = (float)sig[i];
            var denoised = CallDenoiser(model, x, sigma);
            var d = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, dn = denoised.Span;
            var dd = d.Span;
            for (int k = 0; k < dd.Length; k++) dd[k] = (xs[k] - dn[k]) / sigma;
            ds.Add(d);
            if (ds.Count > order) { ds[0].Dispose(); ds.RemoveAt(0); }
            callback?.Invoke(i, x, sigma, denoised);
            int cur = Math.Min(i + 1, order);
            var y = Tensor.Empty(x.Shape);
            var o = y.Span;
            var acc = new float[o.Length];
            for (int j = 0; j < cur; j++)
            {
                float c = (float)LinearMultistepCoefficient(cur, sig, i, j);
                ReadOnlySpan<float> dj = ds[ds.Count - 1 - j].Span;
                for (int k = 0; k < acc.Length; k++) acc[k] += c * dj[k];
            }
            for (int k = 0; k < o.Length; k++) o[k] = xs[k] + acc[k];
            Replace(ref x, y, input);
        }
        foreach (var d in ds) d.Dispose();
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

    private static float ExpM1(float v) => (float)(Math.Abs(v) < 1e-5 ? v + 0.5 * (double)v * v : Math.Exp(v) - 1.0);

    /// <summary>DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) in k-diffusion's sigma form; first order on the first and last steps.</summary>
    public static Tensor DpmPP2M(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null)
    {
        Check(x, sigmas);
        var input = x;
        Tensor? oldDenoised = null;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1];
            var denoised = CallDenoiser(model, x, sigma);
            callback?.Invoke(i, x, sigma, denoised);
            float t = -MathF.Log(sigma), tNext = -MathF.Log(next);
            float h = tNext - t;
            float ratio = MathF.Exp(-tNext) / MathF.Exp(-t), em1 = ExpM1(-h);
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
            Replace(ref x, y, input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }

    /// <summary>
    /// DPM-Solver++(2M) SDE (k-diffusion sample_dpmpp_2m_sde) with midpoint or heun correction; eta = 0 gives the ODE
    /// solver. Noise comes from <paramref name="noiseSampler"/> (e.g. a recorded bank) or <paramref name="generator"/>.
    /// </summary>
    public static Tensor DpmPP2MSde(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null,
        double eta = 1, double sNoise = 1, NoiseSampler? noiseSampler = null, Generator? generator = null, string solverType = "midpoint")
    {
        Check(x, sigmas);
        if (solverType is not ("midpoint" or "heun")) throw new ArgumentException($"solver_type must be midpoint or heun, got '{solverType}'.");
        var input = x;
        Tensor? oldDenoised = null;
        float hLast = 0;
        NoiseSampler? noise = null;
        for (int i = 0; i < sigmas.Count - 1; i++)
        {
            float sigma = (float)sigmas[i], next = (float)sigmas[i + 1];
            var denoised = CallDenoiser(model, x, sigma);
            callback?.Invoke(i, x, sigma, denoised);
            if (next == 0)
            {
                Replace(ref x, denoised.Clone(), input);  // final denoising step
                oldDenoised = denoised;
                continue;
            }
            float t = -MathF.Log(sigma), s = -MathF.Log(next);
            float h = s - t, etaH = (float)eta * h;
            float c1 = next / sigma * MathF.Exp(-etaH), c2 = -ExpM1(-h - etaH);
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
                var z = noise(sigma, next);
                float c4 = next * MathF.Sqrt(-ExpM1(-2f * etaH)) * (float)sNoise;
                ReadOnlySpan<float> zs = z.Span;
                for (int k = 0; k < o.Length; k++) o[k] += zs[k] * c4;
            }
            oldDenoised = denoised;
            hLast = h;
            Replace(ref x, y, input);
        }
        return ReferenceEquals(x, input) ? x.Clone() : x;
    }
}
