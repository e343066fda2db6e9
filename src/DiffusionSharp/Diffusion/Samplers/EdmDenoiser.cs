using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>
/// EDM preconditioning of a network F (Karras et al. 2022, Eq. 7 and Table 1): D(x, sigma) = c_skip x + c_out F(c_in x, c_noise),
/// a denoiser for <see cref="KSamplers"/>; <see cref="EpsilonFromVp"/> views it as an epsilon model on a discrete-time VP
/// schedule so the diffusers schedulers sample it too.
/// </summary>
public sealed class EdmDenoiser
{
    private readonly Func<Tensor, Tensor, Tensor> _network;

    /// <summary>Wraps <paramref name="network"/>: (c_in x, c_noise per sample [N]) to F.</summary>
    public EdmDenoiser(Func<Tensor, Tensor, Tensor> network, double sigmaData = 0.5)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        if (!(sigmaData > 0)) throw new ArgumentOutOfRangeException(nameof(sigmaData), sigmaData, "sigma_data must be positive.");
        SigmaData = sigmaData;
    }

    /// <summary>Standard deviation of the data (0.5 for images in [-1, 1]).</summary>
    public double SigmaData { get; }

    /// <summary>c_skip = sigma_data^2 / (sigma^2 + sigma_data^2).</summary>
    public static double CSkip(double sigma, double sigmaData) => sigmaData * sigmaData / (sigma * sigma + sigmaData * sigmaData);

    /// <summary>c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2).</summary>
    public static double COut(double sigma, double sigmaData) => sigma * sigmaData / Math.Sqrt(sigma * sigma + sigmaData * sigmaData);

    /// <summary>c_in = 1 / sqrt(sigma^2 + sigma_data^2).</summary>
    public static double CIn(double sigma, double sigmaData) => 1 / Math.Sqrt(sigma * sigma + sigmaData * sigmaData);

    /// <summary>c_noise = ln(sigma) / 4.</summary>
    public static double CNoise(double sigma) => 0.25 * Math.Log(sigma);

    /// <summary>lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2 (Table 1, "loss weighting").</summary>
    public static double LossWeight(double sigma, double sigmaData) => (sigma * sigma + sigmaData * sigmaData) / (sigma * sigma * sigmaData * sigmaData);

    /// <summary>F(c_in x, c_noise) for one sigma per sample (gradients flow through the network).</summary>
    public Tensor Network(Tensor x, double[] sigmas)
    {
        if (x.Rank < 1 || sigmas.Length != x.Dim(0)) throw new ArgumentException($"Expected one sigma per sample of {x.Shape}, got {sigmas.Length}.");
        foreach (var s in sigmas)
            if (!(s > 0) || double.IsInfinity(s)) throw new ArgumentOutOfRangeException(nameof(sigmas), $"Expected finite sigmas > 0, got {s}.");
        var f = _network(x * Coefficients(sigmas, CIn, x.Shape), Tensor.FromArray(sigmas.Select(s => (float)CNoise(s)).ToArray(), sigmas.Length));
        if (f.Shape != x.Shape) throw new InvalidOperationException($"The network returned shape {f.Shape} for input {x.Shape}.");
        return f;
    }

    /// <summary>D(x, sigma_i) = c_skip x + c_out F(c_in x, c_noise) per sample.</summary>
    public Tensor Denoise(Tensor x, double[] sigmas) => x * Coefficients(sigmas, CSkip, x.Shape) + Network(x, sigmas) * Coefficients(sigmas, COut, x.Shape);

    /// <summary>c(sigma_i, sigma_data) per sample, broadcastable against <paramref name="like"/>.</summary>
    public Tensor Coefficients(double[] sigmas, Func<double, double, double> c, Shape like) => Tensor.PerSample(sigmas.Select(s => c(s, SigmaData)).ToArray(), like);

    /// <summary>D(x, sigma), one sigma for the batch (the k-diffusion denoiser; sigma = 0 returns a copy of x).</summary>
    public Tensor Denoise(Tensor x, double sigma) => sigma == 0 ? x.Clone() : Denoise(x, Enumerable.Repeat(sigma, x.Dim(0)).ToArray());

    /// <summary>
    /// The epsilon prediction at VP input x_t and (fractional) timesteps t: sigma_t = sqrt((1 - abar_t) / abar_t), interpolated
    /// linearly over <paramref name="vpSigmas"/> like the diffusers schedulers, x = x_t sqrt(1 + sigma_t^2) and
    /// eps = (x - D(x, sigma_t)) / sigma_t (Karras et al. 2022, Table 1, VP column).
    /// </summary>
    public Tensor EpsilonFromVp(Tensor xt, Tensor timesteps, double[] vpSigmas)
    {
        int n = xt.Dim(0);
        var ts = timesteps.Span;
        if (ts.Length != n && ts.Length != 1) throw new ArgumentException($"Expected 1 or {n} timesteps, got {ts.Length}.");
        var sigmas = new double[n];
        for (int i = 0; i < n; i++) sigmas[i] = SigmaSchedules.InterpOnIndex(ts[ts.Length == 1 ? 0 : i], vpSigmas);
        var x = xt * Coefficients(sigmas, (s, _) => Math.Sqrt(1 + s * s), xt.Shape);
        return (x - Denoise(x, sigmas)) * Coefficients(sigmas, (s, _) => 1 / s, xt.Shape);
    }
}
