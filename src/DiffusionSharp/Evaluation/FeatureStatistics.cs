using System.Numerics.Tensors;

namespace DiffusionSharp.Evaluation;

/// <summary>Mean and covariance of a set of feature vectors (double precision), the input of the Frechet distance.</summary>
public sealed class FeatureStatistics
{
    /// <summary>Number of feature vectors.</summary>
    public int Count { get; }

    /// <summary>Feature dimension d.</summary>
    public int Dim { get; }

    /// <summary>Mean vector [d].</summary>
    public double[] Mean { get; }

    /// <summary>Unbiased covariance (divided by n - 1, as numpy's <c>np.cov(x, rowvar=False)</c>), row-major [d, d].</summary>
    public double[] Covariance { get; }

    /// <summary>Wraps precomputed statistics.</summary>
    public FeatureStatistics(double[] mean, double[] covariance, int count)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(covariance);
        if (covariance.LongLength != (long)mean.Length * mean.Length)
            throw new ArgumentException($"A mean of {mean.Length} values needs a {mean.Length} x {mean.Length} covariance, got {covariance.Length} values.");
        Mean = mean; Covariance = covariance; Count = count; Dim = mean.Length;
    }

    /// <summary>Statistics of <paramref name="count"/> row-major feature vectors of dimension <paramref name="dim"/> (two-pass: mean, then centred products).</summary>
    public static FeatureStatistics FromFeatures(ReadOnlySpan<double> features, int count, int dim)
    {
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), $"Feature dimension must be positive, got {dim}.");
        if (count < 2) throw new ArgumentException($"A covariance needs at least 2 feature vectors, got {count}.");
        if (features.Length != (long)count * dim) throw new ArgumentException($"{count} vectors of dimension {dim} need {(long)count * dim} values, got {features.Length}.");
        var mean = new double[dim];
        for (int i = 0; i < count; i++)
        {
            var row = features.Slice(i * dim, dim);
            for (int j = 0; j < dim; j++) mean[j] += row[j];
        }
        for (int j = 0; j < dim; j++) mean[j] /= count;
        // Centred columns as rows of [d, n], so every covariance entry is one contiguous dot product.
        var centred = new double[(long)dim * count];
        for (int i = 0; i < count; i++)
            for (int j = 0; j < dim; j++) centred[(long)j * count + i] = features[i * dim + j] - mean[j];
        var cov = new double[dim * dim];
        Runtime.Threading.For(dim, 4, (lo, hi) =>
        {
            for (int a = lo; a < hi; a++)
            {
                var ra = centred.AsSpan(a * count, count);
                for (int b = 0; b <= a; b++)
                {
                    double s = TensorPrimitives.Dot<double>(ra, centred.AsSpan(b * count, count)) / (count - 1);
                    cov[a * dim + b] = s;
                    cov[b * dim + a] = s;
                }
            }
        });
        return new FeatureStatistics(mean, cov, count);
    }

    /// <summary>Statistics of float feature vectors (converted to double first).</summary>
    public static FeatureStatistics FromFeatures(ReadOnlySpan<float> features, int count, int dim)
    {
        var d = new double[features.Length];
        for (int i = 0; i < d.Length; i++) d[i] = features[i];
        return FromFeatures(d, count, dim);
    }
}
