namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>
/// Annealed Langevin dynamics (Song and Ermon 2019, Alg. 1) for a noise-conditional score s(x, sigma):
/// for each sigma_i (geometric: <see cref="Schedules.SigmaSchedules.Exponential"/>), alpha_i = eps sigma_i^2 / sigma_L^2 and T steps x += alpha_i/2 s(x, sigma_i) + sqrt(alpha_i) z.
/// </summary>
public static class AnnealedLangevin
{
    /// <summary>
    /// Runs Alg. 1 in place on <paramref name="x"/> (count samples of dimension x.Length / count). The score is called with
    /// t = sigma_i. With <paramref name="denoiseLast"/> the result gets the final Tweedie step x + sigma_L^2 s(x, sigma_L).
    /// </summary>
    public static void Sample(ScoreFunction score, double[] x, int count, IReadOnlyList<double> sigmas, int stepsPerLevel, double stepSize,
        NoiseSource noise, bool denoiseLast = false)
    {
        if (count < 1 || x.Length % count != 0) throw new ArgumentException($"State of {x.Length} values does not split into {count} samples.");
        var s = new double[x.Length]; var z = new double[x.Length];
        double last = sigmas[^1];
        foreach (var sigma in sigmas)
        {
            double alpha = stepSize * sigma * sigma / (last * last);
            double sq = Math.Sqrt(alpha);
            for (int k = 0; k < stepsPerLevel; k++)
            {
                score(x, count, sigma, s);
                noise.Normal(z);
                for (int i = 0; i < x.Length; i++) x[i] += 0.5 * alpha * s[i] + sq * z[i];
            }
        }
        if (denoiseLast)
        {
            score(x, count, last, s);
            for (int i = 0; i < x.Length; i++) x[i] += last * last * s[i];  // Tweedie's formula E[x_0 | x] (Song and Ermon 2020)
        }
    }
}
