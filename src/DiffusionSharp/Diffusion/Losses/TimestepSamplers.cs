using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Losses;

/// <summary>Draws training timesteps with importance weights so that the weighted loss stays unbiased.</summary>
public abstract class TimestepSampler
{
    /// <summary>Number of timesteps.</summary>
    public int NumTimesteps { get; }

    /// <summary>Creates a sampler over 0..numTimesteps-1.</summary>
    protected TimestepSampler(int numTimesteps)
    {
        if (numTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTimesteps), $"Expected at least one timestep, got {numTimesteps}.");
        NumTimesteps = numTimesteps;
    }

    /// <summary>Unnormalised sampling weights per timestep.</summary>
    public abstract double[] Weights();

    /// <summary>Draws <paramref name="batch"/> timesteps t ~ p and weights 1 / (T p(t)).</summary>
    public (int[] Timesteps, double[] Weights) Sample(int batch, Generator generator)
    {
        var w = Weights();
        double sum = w.Sum();
        var cdf = new double[w.Length];
        double acc = 0;
        for (int i = 0; i < w.Length; i++) { acc += w[i] / sum; cdf[i] = acc; }
        var ts = new int[batch]; var ws = new double[batch];
        for (int k = 0; k < batch; k++)
        {
            double u = generator.NextDouble();
            int idx = Array.BinarySearch(cdf, u);
            if (idx < 0) idx = ~idx;
            idx = Math.Min(idx, w.Length - 1);
            while (w[idx] == 0 && idx < w.Length - 1) idx++;
            ts[k] = idx;
            ws[k] = 1.0 / (w.Length * (w[idx] / sum));
        }
        return (ts, ws);
    }

    /// <summary>Reports the per-sample losses at the drawn timesteps (ignored by samplers that do not adapt).</summary>
    public virtual void UpdateWithAllLosses(ReadOnlySpan<int> timesteps, ReadOnlySpan<double> losses) { }
}

/// <summary>Uniform timesteps, all weights 1.</summary>
public sealed class UniformTimestepSampler(int numTimesteps) : TimestepSampler(numTimesteps)
{
    /// <inheritdoc/>
    public override double[] Weights() => Enumerable.Repeat(1.0, NumTimesteps).ToArray();
}

/// <summary>
/// Importance sampling p(t) proportional to sqrt(E[L_t^2]) from the last <see cref="HistoryPerTerm"/> losses at each t,
/// mixed with a small uniform share; uniform until every t has a full history (Nichol and Dhariwal Eq. 18).
/// </summary>
public sealed class LossSecondMomentResampler : TimestepSampler
{
    private readonly double[,] _history;
    private readonly int[] _counts;

    /// <summary>Losses remembered per timestep.</summary>
    public int HistoryPerTerm { get; }
    /// <summary>Probability mass spread uniformly over all timesteps.</summary>
    public double UniformProbability { get; }

    /// <summary>Creates the resampler (10 losses per timestep and 0.001 uniform mass by default).</summary>
    public LossSecondMomentResampler(int numTimesteps, int historyPerTerm = 10, double uniformProbability = 0.001) : base(numTimesteps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(historyPerTerm, 1);
        HistoryPerTerm = historyPerTerm;
        UniformProbability = uniformProbability;
        _history = new double[numTimesteps, historyPerTerm];
        _counts = new int[numTimesteps];
    }

    /// <summary>True once every timestep has a full history.</summary>
    public bool WarmedUp => _counts.All(c => c == HistoryPerTerm);

    /// <inheritdoc/>
    public override double[] Weights()
    {
        int n = NumTimesteps;
        var w = new double[n];
        if (!WarmedUp) { Array.Fill(w, 1.0); return w; }
        double sum = 0;
        for (int t = 0; t < n; t++)
        {
            double m2 = 0;
            for (int k = 0; k < HistoryPerTerm; k++) m2 += _history[t, k] * _history[t, k];
            w[t] = Math.Sqrt(m2 / HistoryPerTerm);
            sum += w[t];
        }
        for (int t = 0; t < n; t++) w[t] = w[t] / sum * (1 - UniformProbability) + UniformProbability / n;
        return w;
    }

    /// <inheritdoc/>
    public override void UpdateWithAllLosses(ReadOnlySpan<int> timesteps, ReadOnlySpan<double> losses)
    {
        if (timesteps.Length != losses.Length) throw new ArgumentException($"Got {timesteps.Length} timesteps but {losses.Length} losses.");
        for (int i = 0; i < timesteps.Length; i++)
        {
            int t = timesteps[i];
            if (_counts[t] == HistoryPerTerm)
            {
                for (int k = 0; k < HistoryPerTerm - 1; k++) _history[t, k] = _history[t, k + 1];
                _history[t, HistoryPerTerm - 1] = losses[i];
            }
            else _history[t, _counts[t]++] = losses[i];
        }
    }
}
