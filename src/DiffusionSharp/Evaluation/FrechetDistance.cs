namespace DiffusionSharp.Evaluation;

/// <summary>
/// The Frechet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, FID):
/// |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
/// </summary>
public static class FrechetDistance
{
    /// <summary>The Frechet distance between the Gaussians N(a.Mean, a.Covariance) and N(b.Mean, b.Covariance).</summary>
    public static double Compute(FeatureStatistics a, FeatureStatistics b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Dim != b.Dim) throw new ArgumentException($"Feature dimensions differ: {a.Dim} and {b.Dim}.");
        return Compute(a.Mean, a.Covariance, b.Mean, b.Covariance);
    }

    /// <summary>
    /// The Frechet distance from means [d] and row-major covariances [d, d]. Not clamped: rounding can leave a value a
    /// little below 0 for (nearly) identical statistics, as with the scipy-based reference formula.
    /// </summary>
    public static double Compute(ReadOnlySpan<double> mean1, ReadOnlySpan<double> cov1, ReadOnlySpan<double> mean2, ReadOnlySpan<double> cov2)
    {
        int d = mean1.Length;
        if (mean2.Length != d) throw new ArgumentException($"Mean lengths differ: {d} and {mean2.Length}.");
        if (cov1.Length != d * d || cov2.Length != d * d)
            throw new ArgumentException($"Covariances must be {d} x {d} ({d * d} values), got {cov1.Length} and {cov2.Length}.");
        double meanTerm = 0, traces = 0;
        for (int i = 0; i < d; i++)
        {
            double diff = mean1[i] - mean2[i];
            meanTerm += diff * diff;
            traces += cov1[i * d + i] + cov2[i * d + i];
        }
        return meanTerm + traces - 2 * TraceSqrtProduct(cov1, cov2, d);
    }

    /// <summary>
    /// Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2. S1 S2 is similar to the PSD matrix S1^(1/2) S2 S1^(1/2), so the trace is the
    /// sum of the square roots of that matrix's eigenvalues (clipped at 0); this stays real and exact for singular covariances.
    /// </summary>
    public static double TraceSqrtProduct(ReadOnlySpan<double> cov1, ReadOnlySpan<double> cov2, int d)
    {
        if (cov1.Length != d * d || cov2.Length != d * d)
            throw new ArgumentException($"Covariances must be {d} x {d} ({d * d} values), got {cov1.Length} and {cov2.Length}.");
        var root = SymmetricEigen.SqrtPsd(cov1, d);
        var rs = Multiply(root, cov2.ToArray(), d);
        var m = Multiply(rs, root, d);
        var (lambda, _) = SymmetricEigen.Decompose(m, d);
        double sum = 0;
        foreach (var l in lambda) sum += Math.Sqrt(Math.Max(l, 0));
        return sum;
    }

    private static double[] Multiply(double[] x, double[] y, int d)
    {
        var r = new double[d * d];
        Runtime.Threading.For(d, 8, (lo, hi) =>
        {
            for (int i = lo; i < hi; i++)
                for (int k = 0; k < d; k++)
                {
                    double xik = x[i * d + k];
                    if (xik == 0) continue;
                    for (int j = 0; j < d; j++) r[i * d + j] += xik * y[k * d + j];
                }
        });
        return r;
    }
}
