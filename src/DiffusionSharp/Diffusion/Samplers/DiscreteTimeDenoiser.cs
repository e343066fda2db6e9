using DiffusionSharp.Diffusion.Schedulers;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>
/// Wraps a discrete-time VP model f(x_in, t) (epsilon, x0 or v prediction) as a denoiser D(x, sigma) for
/// <see cref="KSamplers"/>: x_in = c_in x with c_in = 1/sqrt(sigma^2 + 1), and t found from sigma by interpolating log
/// sigma over the training schedule (Karras et al. 2022, Table 1, "VP" column; k-diffusion's DiscreteSchedule).
/// </summary>
public sealed class DiscreteTimeDenoiser
{
    private readonly Func<Tensor, double, Tensor> _model;
    private readonly double[] _sigmas, _logSigmas;

    /// <summary>Wraps <paramref name="model"/> over the schedule <paramref name="alphasCumprod"/>.</summary>
    /// <param name="model">The network: (scaled input, fractional timestep) to its prediction.</param>
    /// <param name="alphasCumprod">alpha_bar_t for t = 0..T-1.</param>
    /// <param name="prediction">What the network predicts.</param>
    /// <param name="quantize">Round t to the nearest integer timestep.</param>
    public DiscreteTimeDenoiser(Func<Tensor, double, Tensor> model, IReadOnlyList<double> alphasCumprod, PredictionType prediction, bool quantize = false)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        if (alphasCumprod.Count < 2) throw new ArgumentException($"Expected at least 2 alpha_bar values, got {alphasCumprod.Count}.");
        _sigmas = BetaSchedules.SigmasFromAlphasCumprod(alphasCumprod.ToArray());
        _logSigmas = _sigmas.Select(s => Math.Log(s)).ToArray();
        for (int i = 1; i < _logSigmas.Length; i++)
            if (!(_logSigmas[i] > _logSigmas[i - 1]))
                throw new ArgumentException($"Expected sigma to increase with t; sigma[{i - 1}] = {_sigmas[i - 1]}, sigma[{i}] = {_sigmas[i]}.");
        Prediction = prediction;
        Quantize = quantize;
    }

    /// <summary>Wraps <paramref name="model"/> using a scheduler's training schedule and prediction type.</summary>
    public static DiscreteTimeDenoiser FromScheduler(Scheduler scheduler, Func<Tensor, double, Tensor> model, bool quantize = false)
        => new(model, scheduler.AlphasCumprod, scheduler.PredictionType, quantize);

    /// <summary>What the wrapped network predicts.</summary>
    public PredictionType Prediction { get; }

    /// <summary>Whether t is rounded to an integer.</summary>
    public bool Quantize { get; }

    /// <summary>Smallest training sigma (t = 0).</summary>
    public double SigmaMin => _sigmas[0];

    /// <summary>Largest training sigma (t = T-1).</summary>
    public double SigmaMax => _sigmas[^1];

    /// <summary>Fractional timestep for <paramref name="sigma"/> (log-sigma interpolation).</summary>
    public double SigmaToT(double sigma)
    {
        double t = SigmaSchedules.SigmaToT(sigma, _logSigmas);
        return Quantize ? Math.Round(t, MidpointRounding.ToEven) : t;
    }

    /// <summary>Sigma at fractional timestep <paramref name="t"/> (log-sigma interpolation).</summary>
    public double TToSigma(double t) => SigmaSchedules.TToSigma(t, _logSigmas);

    /// <summary>n sigmas at timesteps evenly spaced from T-1 down to 0, then 0 (k-diffusion DiscreteSchedule.get_sigmas).</summary>
    public double[] GetSigmas(int n)
    {
        var ts = BetaSchedules.Linspace(_sigmas.Length - 1, 0, n);
        return ts.Select(t => TToSigma(t)).Append(0.0).ToArray();
    }

    /// <summary>D(x, sigma): the denoised estimate of x0.</summary>
    public Tensor Denoise(Tensor x, double sigma)
    {
        float s = (float)sigma;
        float cIn = 1f / MathF.Sqrt(s * s + 1f);
        var xin = x * cIn;
        var f = _model(xin, SigmaToT(sigma));
        if (f.Shape != x.Shape) throw new InvalidOperationException($"Model returned shape {f.Shape} for input {x.Shape}.");
        var y = Denoised(Prediction, f, x, s);
        if (!ReferenceEquals(f, xin)) xin.Dispose();
        return y;
    }

    /// <summary>
    /// D = c_skip x + c_out f for a network output f at noise level sigma of x = x0 + sigma n (Karras et al. 2022, Table 1,
    /// with sigma_data = 1): epsilon (1, -sigma), sample (0, 1), v (1 / (sigma^2 + 1), -sigma / sqrt(sigma^2 + 1)).
    /// </summary>
    public static Tensor Denoised(PredictionType prediction, Tensor f, Tensor x, float sigma) => prediction == PredictionType.VPrediction
        ? prediction.ToX0(f, x, 1f / (sigma * sigma + 1f), sigma / MathF.Sqrt(sigma * sigma + 1f))
        : prediction.ToX0(f, x, 1f, sigma);  // x = x0 + sigma eps: the VP form with a = 1
}
