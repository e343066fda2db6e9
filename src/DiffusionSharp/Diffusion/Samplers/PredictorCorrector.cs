namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Predictor of the PC sampler (one reverse-time step).</summary>
public enum PredictorKind
{
    /// <summary>No predictor (corrector-only sampling).</summary>
    None,
    /// <summary>Euler-Maruyama on the reverse SDE dx = [f - g^2 s] dt + g dw-bar.</summary>
    EulerMaruyama,
    /// <summary>Reverse diffusion: x - (f_i x - G_i^2 s) + G_i z with the SDE's own discretisation (Song et al. Eq. 45).</summary>
    ReverseDiffusion,
}

/// <summary>
/// Predictor-corrector sampling of a score SDE (Song et al. 2021, Alg. 1-3): at each of N times from T to eps, Langevin correction
/// steps with step size 2 alpha (r ||z|| / ||s||)^2 for target signal-to-noise r, then a predictor step. Returns the noise-free mean of the last step.
/// </summary>
public static class PredictorCorrector
{
    /// <summary>Samples <paramref name="count"/> points of dimension <paramref name="dim"/> starting from the SDE prior (or <paramref name="xT"/>).</summary>
    public static double[] Sample(Sde.Sde sde, ScoreFunction score, int count, int dim, NoiseSource noise,
        PredictorKind predictor = PredictorKind.ReverseDiffusion, int correctorSteps = 1, double snr = 0.16,
        double eps = 1e-3, int? steps = null, double[]? xT = null)
    {
        int n = steps ?? sde.N, len = count * dim;
        var x = new double[len];
        if (xT != null) { if (xT.Length != len) throw new ArgumentException($"x_T has {xT.Length} values, expected {len}."); Array.Copy(xT, x, len); }
        else { noise.Normal(x); for (int i = 0; i < len; i++) x[i] *= sde.PriorStd; }
        var mean = new double[len]; var s = new double[len]; var z = new double[len];
        for (int k = 0; k < n; k++)
        {
            double t = sde.T + (eps - sde.T) * (n == 1 ? 0 : (double)k / (n - 1));
            for (int c = 0; c < correctorSteps; c++)
            {
                score(x, count, t, s);
                noise.Normal(z);
                double gradNorm = MeanRowNorm(s, count, dim), noiseNorm = MeanRowNorm(z, count, dim);
                double step = 2 * sde.CorrectorAlpha(t) * Math.Pow(snr * noiseNorm / gradNorm, 2);
                double sq = Math.Sqrt(2 * step);
                for (int i = 0; i < len; i++) { mean[i] = x[i] + step * s[i]; x[i] = mean[i] + sq * z[i]; }
            }
            if (predictor == PredictorKind.None) continue;
            score(x, count, t, s);
            noise.Normal(z);
            if (predictor == PredictorKind.EulerMaruyama)
            {
                double dt = -(sde.T - eps) / n, a = sde.DriftCoefficient(t), g = sde.Diffusion(t), sq = g * Math.Sqrt(-dt);
                for (int i = 0; i < len; i++) { mean[i] = x[i] + (a * x[i] - g * g * s[i]) * dt; x[i] = mean[i] + sq * z[i]; }
            }
            else
            {
                var (fs, gd) = sde.Discretize(t);
                for (int i = 0; i < len; i++) { mean[i] = x[i] - (fs * x[i] - gd * gd * s[i]); x[i] = mean[i] + gd * z[i]; }
            }
        }
        return mean;
    }

    private static double MeanRowNorm(double[] v, int count, int dim)
    {
        double acc = 0;
        for (int b = 0; b < count; b++)
        {
            double q = 0;
            for (int j = b * dim; j < (b + 1) * dim; j++) q += v[j] * v[j];
            acc += Math.Sqrt(q);
        }
        return acc / count;
    }
}
