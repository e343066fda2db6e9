namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>
/// Inference timestep selections of Table 2 of Lin et al. 2023 ("leading", "trailing", "linspace"), descending,
/// matching diffusers' numpy arithmetic (round half to even).
/// </summary>
public static class TimestepSpacing
{
    /// <summary>k * (T // N) for k = N-1..0, plus <paramref name="stepsOffset"/>.</summary>
    public static double[] Leading(int numTrainTimesteps, int numInferenceSteps, int stepsOffset = 0)
    {
        Check(numTrainTimesteps, numInferenceSteps);
        int ratio = numTrainTimesteps / numInferenceSteps;
        var t = new double[numInferenceSteps];
        for (int i = 0; i < numInferenceSteps; i++) t[i] = (numInferenceSteps - 1 - i) * ratio + stepsOffset;
        return t;
    }

    /// <summary>round(T - k T/N) - 1 for k = 0..N-1 (numpy.arange(T, 0, -T/N)).</summary>
    public static double[] Trailing(int numTrainTimesteps, int numInferenceSteps, int lastTimestep = -1)
    {
        Check(numTrainTimesteps, numInferenceSteps);
        int last = lastTimestep < 0 ? numTrainTimesteps : lastTimestep;
        double ratio = numTrainTimesteps / (double)numInferenceSteps;
        int count = (int)Math.Ceiling(last / ratio);
        var t = new double[count];
        for (int i = 0; i < count; i++) t[i] = Math.Round(last + i * -ratio, MidpointRounding.ToEven) - 1;
        return t;
    }

    /// <summary>linspace(0, T-1, N) reversed, rounded half-to-even when <paramref name="round"/> is set.</summary>
    public static double[] Linspace(int numTrainTimesteps, int numInferenceSteps, bool round)
    {
        Check(numTrainTimesteps, numInferenceSteps);
        var l = BetaSchedules.Linspace(0, numTrainTimesteps - 1, numInferenceSteps);
        Array.Reverse(l);
        if (round) for (int i = 0; i < l.Length; i++) l[i] = Math.Round(l[i], MidpointRounding.ToEven);
        return l;
    }

    private static void Check(int numTrainTimesteps, int numInferenceSteps)
    {
        if (numInferenceSteps < 1)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps), $"Expected at least 1 inference step, got {numInferenceSteps}.");
        if (numInferenceSteps > numTrainTimesteps)
            throw new ArgumentOutOfRangeException(nameof(numInferenceSteps),
                $"Expected at most num_train_timesteps={numTrainTimesteps} inference steps, got {numInferenceSteps}.");
    }
}
