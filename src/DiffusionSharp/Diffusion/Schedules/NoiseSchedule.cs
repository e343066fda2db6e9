using System.Text.Json.Serialization;

namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>A named diffusers beta schedule (<c>beta_schedule</c>).</summary>
public enum BetaScheduleKind
{
    /// <summary>Betas evenly spaced from beta_start to beta_end (Ho et al. 2020, Sec. 4).</summary>
    Linear,
    /// <summary>Betas evenly spaced in sqrt(beta) (latent diffusion).</summary>
    ScaledLinear,
    /// <summary>The cosine schedule of Nichol and Dhariwal 2021, Eq. 17.</summary>
    [JsonStringEnumMemberName("squaredcos_cap_v2")] SquaredCosCapV2,
    /// <summary>sigmoid(linspace(-6, 6)) between beta_start and beta_end (GeoDiff).</summary>
    Sigmoid,
}

/// <summary>
/// The settings that define a discrete-time noise process: the keys of <c>scheduler_config.json</c> that training,
/// likelihood and every sampler share. Trained betas, when given, replace the named schedule.
/// </summary>
public record NoiseScheduleOptions
{
    /// <summary>Number of training timesteps T.</summary>
    [JsonPropertyName("num_train_timesteps")] public int NumTrainTimesteps { get; init; } = 1000;
    /// <summary>First beta of a linear, scaled_linear or sigmoid schedule.</summary>
    [JsonPropertyName("beta_start")] public double BetaStart { get; init; } = 1e-4;
    /// <summary>Last beta of a linear, scaled_linear or sigmoid schedule.</summary>
    [JsonPropertyName("beta_end")] public double BetaEnd { get; init; } = 0.02;
    /// <summary>The named schedule.</summary>
    [JsonPropertyName("beta_schedule")] public BetaScheduleKind BetaSchedule { get; init; } = BetaScheduleKind.Linear;
    /// <summary>Explicit betas for t = 0..T-1, replacing the named schedule.</summary>
    [JsonPropertyName("trained_betas")] public double[]? TrainedBetas { get; init; }
    /// <summary>Rescale to zero terminal SNR (Lin et al. 2023, Algorithm 1).</summary>
    [JsonPropertyName("rescale_betas_zero_snr")] public bool RescaleBetasZeroSnr { get; init; }

    /// <summary>
    /// improved-diffusion's schedules for any T: linear from 1e-4 to 0.02 scaled by 1000/T, or cosine. The scaling is stated
    /// in beta_start/beta_end, so a scheduler built from these options runs the same process.
    /// </summary>
    public static NoiseScheduleOptions ForTraining(string schedule, int numTrainTimesteps)
    {
        if (numTrainTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTrainTimesteps), $"Expected at least 1 timestep, got {numTrainTimesteps}.");
        double scale = 1000.0 / numTrainTimesteps;
        return schedule switch
        {
            "linear" => new() { NumTrainTimesteps = numTrainTimesteps, BetaStart = scale * 1e-4, BetaEnd = scale * 0.02 },
            "cosine" => new() { NumTrainTimesteps = numTrainTimesteps, BetaSchedule = BetaScheduleKind.SquaredCosCapV2 },
            _ => throw new ArgumentException($"Unknown beta schedule '{schedule}'; expected 'linear' or 'cosine'."),
        };
    }

    /// <summary>Checks the values; <paramref name="source"/> names the file or setting in the message.</summary>
    public virtual void Validate(string source)
    {
        if (NumTrainTimesteps < 2)
            throw OutOfRange($"{source}: num_train_timesteps must be at least 2, got {NumTrainTimesteps}.");
        if (TrainedBetas != null)
        {
            if (TrainedBetas.Length != NumTrainTimesteps)
                throw new ArgumentException($"{source}: trained_betas has {TrainedBetas.Length} values but num_train_timesteps is {NumTrainTimesteps}.");
            for (int i = 0; i < TrainedBetas.Length; i++) CheckBeta(source, $"trained_betas[{i}]", TrainedBetas[i]);
            return;
        }
        if (BetaSchedule == BetaScheduleKind.SquaredCosCapV2) return;
        CheckBeta(source, "beta_start", BetaStart);
        CheckBeta(source, "beta_end", BetaEnd);
    }

    /// <summary>An out-of-range error whose message names the file and key (no parameter name: the value came from a file).</summary>
    protected static ArgumentOutOfRangeException OutOfRange(string message) => new(message, (Exception?)null);

    private static void CheckBeta(string source, string key, double beta)
    {
        if (!(beta > 0 && beta <= 1)) throw new ArgumentException($"{source}: {key} must lie in (0, 1], got {beta}.");
    }

    /// <summary>The betas of these options; <paramref name="roundLikeDiffusers"/> rounds them to float32 before the rescale, as diffusers does.</summary>
    public double[] Betas(bool roundLikeDiffusers = false)
    {
        var betas = TrainedBetas != null ? (double[])TrainedBetas.Clone() : BetaSchedules.Create(BetaSchedule, NumTrainTimesteps, BetaStart, BetaEnd);
        if (roundLikeDiffusers) for (int i = 0; i < betas.Length; i++) betas[i] = (float)betas[i];
        return RescaleBetasZeroSnr ? BetaSchedules.RescaleZeroTerminalSnr(betas) : betas;
    }
}
