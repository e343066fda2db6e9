namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>improved-diffusion's linear table and timestep respacing (Nichol and Dhariwal 2021, Sec. 4).</summary>
public static class DiffusionBetas
{
    /// <summary>Linear betas from 1e-4 to 0.02 for T = 1000, rescaled by 1000/T for other lengths (as improved-diffusion does).</summary>
    public static double[] Linear(int numTimesteps) => NoiseScheduleOptions.ForTraining("linear", numTimesteps).Betas();

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
