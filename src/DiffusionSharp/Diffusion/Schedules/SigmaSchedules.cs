namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>Continuous noise-level (sigma) schedules for sampling, and conversions between sigma and discrete time.</summary>
public static class SigmaSchedules
{
    /// <summary>
    /// sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..n-1
    /// (Eq. 5 of Karras et al. 2022), optionally followed by a final 0.
    /// </summary>
    public static double[] Karras(int n, double sigmaMin, double sigmaMax, double rho = 7.0, bool appendZero = true)
    {
        Validate(n, sigmaMin, sigmaMax);
        if (!(rho > 0)) throw new ArgumentOutOfRangeException(nameof(rho), $"Expected rho > 0, got {rho}.");
        var ramp = BetaSchedules.Linspace(0, 1, n);
        double minInv = Math.Pow(sigmaMin, 1 / rho), maxInv = Math.Pow(sigmaMax, 1 / rho);
        var s = new double[n + (appendZero ? 1 : 0)];
        for (int i = 0; i < n; i++) s[i] = Math.Pow(maxInv + ramp[i] * (minInv - maxInv), rho);
        return s;
    }

    /// <summary>Sigmas evenly spaced in log(sigma) from sigma_max down to sigma_min, optionally followed by a final 0.</summary>
    public static double[] Exponential(int n, double sigmaMin, double sigmaMax, bool appendZero = true)
    {
        Validate(n, sigmaMin, sigmaMax);
        var l = BetaSchedules.Linspace(Math.Log(sigmaMax), Math.Log(sigmaMin), n);
        var s = new double[n + (appendZero ? 1 : 0)];
        for (int i = 0; i < n; i++) s[i] = Math.Exp(l[i]);
        return s;
    }

    /// <summary>Polynomial in log sigma: exp(ramp^rho (log max - log min) + log min), ramp from 1 to 0 (k-diffusion polyexponential).</summary>
    public static double[] PolyExponential(int n, double sigmaMin, double sigmaMax, double rho = 1.0, bool appendZero = true)
    {
        Validate(n, sigmaMin, sigmaMax);
        var ramp = BetaSchedules.Linspace(1, 0, n);
        double lmin = Math.Log(sigmaMin), lmax = Math.Log(sigmaMax);
        var s = new double[n + (appendZero ? 1 : 0)];
        for (int i = 0; i < n; i++) s[i] = Math.Exp(Math.Pow(ramp[i], rho) * (lmax - lmin) + lmin);
        return s;
    }

    private static void Validate(int n, double sigmaMin, double sigmaMax)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), $"Expected at least 1 step, got {n}.");
        if (!(sigmaMin > 0) || !(sigmaMax >= sigmaMin))
            throw new ArgumentException($"Expected 0 < sigma_min <= sigma_max, got sigma_min={sigmaMin}, sigma_max={sigmaMax}.");
    }

    /// <summary>Piecewise-linear interpolation of fp at x over grid points 0, 1, ..., fp.Length-1, clamped at the ends (numpy.interp on arange).</summary>
    public static double InterpOnIndex(double x, ReadOnlySpan<double> fp)
    {
        if (fp.Length == 0) throw new ArgumentException("Expected a non-empty table.");
        if (!(x > 0)) return fp[0];
        if (x >= fp.Length - 1) return fp[^1];
        int i = (int)Math.Floor(x);
        double w = x - i;
        return fp[i] + w * (fp[i + 1] - fp[i]);
    }

    /// <summary>
    /// Fractional timestep whose sigma matches <paramref name="sigma"/>, interpolating linearly in log sigma between the
    /// two bracketing table entries (<paramref name="logSigmas"/> ascending in t); clamped to [0, T-1].
    /// </summary>
    public static double SigmaToT(double sigma, ReadOnlySpan<double> logSigmas)
    {
        int n = logSigmas.Length;
        if (n < 2) throw new ArgumentException($"Expected a log-sigma table of at least 2 entries, got {n}.");
        double ls = Math.Log(Math.Max(sigma, 1e-10));
        int low = 0;
        for (int i = 0; i < n; i++) if (ls - logSigmas[i] >= 0) low = i;  // last index with log_sigmas[i] <= log sigma
        low = Math.Min(low, n - 2);
        double lo = logSigmas[low], hi = logSigmas[low + 1];
        double w = Math.Clamp((lo - ls) / (lo - hi), 0, 1);
        return (1 - w) * low + w * (low + 1);
    }

    /// <summary>Sigma at a fractional timestep by linear interpolation of log sigma (inverse of <see cref="SigmaToT"/>).</summary>
    public static double TToSigma(double t, ReadOnlySpan<double> logSigmas)
    {
        int n = logSigmas.Length;
        double tc = Math.Clamp(t, 0, n - 1);
        int low = Math.Min((int)Math.Floor(tc), n - 2);
        double w = tc - low;
        return Math.Exp((1 - w) * logSigmas[low] + w * logSigmas[low + 1]);
    }
}
