namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>
/// Training noise schedules of discrete-time diffusion models, computed in double precision.
/// Index t = 0..T-1 follows the diffusers convention (t = 0 is the least noisy step).
/// </summary>
public static class BetaSchedules
{
    /// <summary>Betas for a named diffusers schedule: "linear", "scaled_linear", "squaredcos_cap_v2" or "sigmoid".</summary>
    public static double[] Create(string schedule, int numTrainTimesteps, double betaStart = 1e-4, double betaEnd = 0.02) =>
        Create(ConfigNames.Parse<BetaScheduleKind>(schedule, "beta_schedule"), numTrainTimesteps, betaStart, betaEnd);

    /// <summary>Betas for a diffusers schedule.</summary>
    public static double[] Create(BetaScheduleKind schedule, int numTrainTimesteps, double betaStart = 1e-4, double betaEnd = 0.02) => schedule switch
    {
        BetaScheduleKind.Linear => Linear(numTrainTimesteps, betaStart, betaEnd),
        BetaScheduleKind.ScaledLinear => ScaledLinear(numTrainTimesteps, betaStart, betaEnd),
        BetaScheduleKind.SquaredCosCapV2 => SquaredCosCapV2(numTrainTimesteps),
        _ => Sigmoid(numTrainTimesteps, betaStart, betaEnd),
    };

    /// <summary>Betas evenly spaced from <paramref name="betaStart"/> to <paramref name="betaEnd"/> (Ho et al. 2020, Sec. 4).</summary>
    public static double[] Linear(int n, double betaStart, double betaEnd) => Linspace(betaStart, betaEnd, n);

    /// <summary>Square of betas evenly spaced in sqrt(beta) (the latent-diffusion / Stable Diffusion schedule).</summary>
    public static double[] ScaledLinear(int n, double betaStart, double betaEnd)
    {
        var b = Linspace(Math.Sqrt(betaStart), Math.Sqrt(betaEnd), n);
        for (int i = 0; i < n; i++) b[i] *= b[i];
        return b;
    }

    /// <summary>
    /// Cosine schedule: alpha_bar(t) = cos^2(((t + s) / (1 + s)) * pi / 2) with s = 0.008, betas capped at
    /// <paramref name="maxBeta"/> (Eq. 17 of Nichol and Dhariwal 2021).
    /// </summary>
    public static double[] SquaredCosCapV2(int n, double maxBeta = 0.999)
    {
        static double AlphaBar(double t) { double c = Math.Cos((t + 0.008) / 1.008 * Math.PI / 2); return c * c; }
        var betas = new double[n];
        for (int i = 0; i < n; i++)
            betas[i] = Math.Min(1 - AlphaBar((i + 1) / (double)n) / AlphaBar(i / (double)n), maxBeta);  // beta_t = 1 - abar(t)/abar(t-1)
        return betas;
    }

    /// <summary>Betas = sigmoid(linspace(-6, 6, n)) * (end - start) + start (the diffusers "sigmoid" schedule, from GeoDiff).</summary>
    public static double[] Sigmoid(int n, double betaStart, double betaEnd)
    {
        var x = Linspace(-6, 6, n);
        for (int i = 0; i < n; i++) x[i] = 1.0 / (1.0 + Math.Exp(-x[i])) * (betaEnd - betaStart) + betaStart;
        return x;
    }

    /// <summary>alpha_bar_t = prod_{s&lt;=t} (1 - beta_s) (Ho et al. 2020, Eq. 4).</summary>
    public static double[] AlphasCumprod(ReadOnlySpan<double> betas)
    {
        var a = new double[betas.Length];
        double p = 1;
        for (int i = 0; i < betas.Length; i++) { p *= 1 - betas[i]; a[i] = p; }
        return a;
    }

    /// <summary>
    /// Rescales betas so the terminal SNR is zero while keeping alpha_bar_0 (Algorithm 1 of Lin et al. 2023,
    /// "Common Diffusion Noise Schedules and Sample Steps are Flawed").
    /// </summary>
    public static double[] RescaleZeroTerminalSnr(ReadOnlySpan<double> betas)
    {
        int n = betas.Length;
        var sq = AlphasCumprod(betas);
        for (int i = 0; i < n; i++) sq[i] = Math.Sqrt(sq[i]);
        double first = sq[0], last = sq[n - 1];
        for (int i = 0; i < n; i++) sq[i] = (sq[i] - last) * first / (first - last);
        var result = new double[n];
        for (int i = 0; i < n; i++)
        {
            double abar = sq[i] * sq[i], prev = i == 0 ? 1.0 : sq[i - 1] * sq[i - 1];
            result[i] = 1 - abar / prev;
        }
        return result;
    }

    /// <summary>VE noise levels sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) of a VP schedule (Karras et al. 2022, Table 1).</summary>
    public static double[] SigmasFromAlphasCumprod(ReadOnlySpan<double> alphasCumprod)
    {
        var s = new double[alphasCumprod.Length];
        for (int i = 0; i < s.Length; i++) s[i] = Math.Sqrt((1 - alphasCumprod[i]) / alphasCumprod[i]);
        return s;
    }

    /// <summary><paramref name="n"/> evenly spaced values from <paramref name="start"/> to <paramref name="end"/> inclusive (numpy.linspace).</summary>
    public static double[] Linspace(double start, double end, int n)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"Expected a non-negative count, got {n}.");
        var r = new double[n];
        if (n == 1) { r[0] = start; return r; }
        double step = (end - start) / (n - 1);
        for (int i = 0; i < n; i++) r[i] = start + i * step;
        if (n > 1) r[n - 1] = end;
        return r;
    }
}
