namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>Discrete-time beta tables computed in double (Ho et al. 2020; Nichol and Dhariwal 2021).</summary>
public static class DiffusionBetas
{
    /// <summary>
    /// Linear betas from 1e-4 to 0.02 for T = 1000, rescaled by 1000/T for other lengths (as improved-diffusion does).
    /// </summary>
    public static double[] Linear(int numTimesteps)
    {
        if (numTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTimesteps), $"Expected at least 1 timestep, got {numTimesteps}.");
        double scale = 1000.0 / numTimesteps, start = scale * 1e-4, end = scale * 0.02;
        var b = new double[numTimesteps];
        for (int i = 0; i < numTimesteps; i++) b[i] = numTimesteps == 1 ? start : start + (end - start) * i / (numTimesteps - 1);
        return b;
    }

    /// <summary>Cosine schedule: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas clipped at 0.999 (Nichol and Dhariwal Eq. 17).</summary>
    public static double[] Cosine(int numTimesteps, double s = 0.008, double maxBeta = 0.999)
    {
        double AlphaBar(double t) => Math.Pow(Math.Cos((t + s) / (1 + s) * Math.PI / 2), 2);
        return FromAlphaBar(numTimesteps, AlphaBar, maxBeta);
    }

    /// <summary>beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), maxBeta) for a continuous alpha_bar on [0, 1].</summary>
    public static double[] FromAlphaBar(int numTimesteps, Func<double, double> alphaBar, double maxBeta = 0.999)
    {
        if (numTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTimesteps), $"Expected at least 1 timestep, got {numTimesteps}.");
        var b = new double[numTimesteps];
        for (int i = 0; i < numTimesteps; i++)
        {
            double t1 = (double)i / numTimesteps, t2 = (double)(i + 1) / numTimesteps;
            b[i] = Math.Min(1 - alphaBar(t2) / alphaBar(t1), maxBeta);
        }
        return b;
    }

    /// <summary>A table by name: "linear" or "cosine".</summary>
    public static double[] Named(string name, int numTimesteps) => name switch
    {
        "linear" => Linear(numTimesteps),
        "cosine" => Cosine(numTimesteps),
        _ => throw new ArgumentException($"Unknown beta schedule '{name}'; expected 'linear' or 'cosine'."),
    };

    /// <summary>
    /// Which of <paramref name="numTimesteps"/> steps to keep: "ddimN" (an evenly strided set of N steps) or comma-separated
    /// per-section counts such as "10,15,20" (improved-diffusion's space_timesteps).
    /// </summary>
    public static SortedSet<int> SpaceTimesteps(int numTimesteps, string sectionCounts)
    {
        if (sectionCounts.StartsWith("ddim", StringComparison.Ordinal))
        {
            int desired = int.Parse(sectionCounts.AsSpan(4), System.Globalization.CultureInfo.InvariantCulture);
            for (int stride = 1; stride < numTimesteps; stride++)
            {
                int count = (numTimesteps + stride - 1) / stride;
                if (count == desired)
                {
                    var set = new SortedSet<int>();
                    for (int i = 0; i < numTimesteps; i += stride) set.Add(i);
                    return set;
                }
            }
            throw new ArgumentException($"Cannot create exactly {desired} steps with an integer stride from {numTimesteps} timesteps.");
        }
        var counts = sectionCounts.Split(',').Select(s => int.Parse(s.Trim(), System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return SpaceTimesteps(numTimesteps, counts);
    }

    /// <summary>Splits the steps into equal sections and takes evenly spaced steps (rounded half-to-even) from each.</summary>
    public static SortedSet<int> SpaceTimesteps(int numTimesteps, int[] sectionCounts)
    {
        int sizePer = numTimesteps / sectionCounts.Length, extra = numTimesteps % sectionCounts.Length, start = 0;
        var all = new SortedSet<int>();
        for (int i = 0; i < sectionCounts.Length; i++)
        {
            int size = sizePer + (i < extra ? 1 : 0), count = sectionCounts[i];
            if (size < count) throw new ArgumentException($"Cannot take {count} steps from a section of {size} steps.");
            double stride = count <= 1 ? 1 : (double)(size - 1) / (count - 1), cur = 0;
            for (int k = 0; k < count; k++)
            {
                all.Add(start + (int)Math.Round(cur, MidpointRounding.ToEven));
                cur += stride;
            }
            start += size;
        }
        return all;
    }
}
