namespace DiffusionSharp.Optim;

/// <summary>What the learning rate does after the warm-up.</summary>
public enum AfterWarmup
{
    /// <summary>Stays at the base rate (diffusers get_constant_schedule_with_warmup).</summary>
    Constant,
    /// <summary>Falls linearly to 0 at the last step (get_linear_schedule_with_warmup).</summary>
    Linear,
    /// <summary>Half-cosine to 0 at the last step (get_cosine_schedule_with_warmup, num_cycles = 0.5).</summary>
    Cosine,
}

/// <summary>
/// Learning-rate schedule with a linear warm-up from 0, as diffusers' LambdaLR schedules:
/// factor(t) = t / max(1, warmup) for t &lt; warmup, then constant, linear or cosine decay over the remaining steps.
/// <c>t</c> is the number of optimizer steps already taken, so the first step uses factor(0).
/// </summary>
public sealed class LinearWarmup
{
    /// <summary>Peak learning rate.</summary>
    public double BaseLearningRate { get; }

    /// <summary>Steps of linear warm-up.</summary>
    public long WarmupSteps { get; }

    /// <summary>Total training steps (used by the decaying forms).</summary>
    public long TotalSteps { get; }

    /// <summary>Behaviour after the warm-up.</summary>
    public AfterWarmup After { get; }

    /// <summary>Number of cosine waves over the decay (0.5 = one half-cosine to zero).</summary>
    public double NumCycles { get; }

    /// <summary>Creates the schedule; <paramref name="totalSteps"/> is required for Linear and Cosine.</summary>
    public LinearWarmup(double baseLearningRate, long warmupSteps, AfterWarmup after = AfterWarmup.Constant, long totalSteps = 0, double numCycles = 0.5)
    {
        if (!(baseLearningRate >= 0)) throw new ArgumentOutOfRangeException(nameof(baseLearningRate), baseLearningRate, "Learning rate must be >= 0.");
        if (warmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "Warm-up steps must be >= 0.");
        if (after != AfterWarmup.Constant && totalSteps < warmupSteps)
            throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, $"{after} decay needs totalSteps >= warm-up steps ({warmupSteps}).");
        BaseLearningRate = baseLearningRate;
        WarmupSteps = warmupSteps;
        After = after;
        TotalSteps = totalSteps;
        NumCycles = numCycles;
    }

    /// <summary>Multiplier of the base rate after <paramref name="step"/> optimizer steps.</summary>
    public double Factor(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "Step must be >= 0.");
        if (step < WarmupSteps) return (double)step / Math.Max(1, WarmupSteps);
        switch (After)
        {
            case AfterWarmup.Linear:
                return Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
            case AfterWarmup.Cosine:
                double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
                return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * NumCycles * 2.0 * progress)));
            default:
                return 1.0;
        }
    }

    /// <summary>Learning rate after <paramref name="step"/> optimizer steps.</summary>
    public double LearningRateAt(long step) => BaseLearningRate * Factor(step);

    /// <summary>Sets <paramref name="optimizer"/>'s rate for its next step, given the steps taken so far.</summary>
    public void Apply(Optimizer optimizer, long step)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        optimizer.LearningRate = LearningRateAt(step);
    }
}
