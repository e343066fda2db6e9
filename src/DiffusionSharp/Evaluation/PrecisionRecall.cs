using System.Numerics;

namespace DiffusionSharp.Evaluation;

/// <summary>Improved precision and recall of a generated set against a real one.</summary>
/// <param name="Precision">Fraction of generated samples inside the real manifold.</param>
/// <param name="Recall">Fraction of real samples inside the generated manifold.</param>
/// <param name="K">Nearest-neighbour rank that sets each sample's radius.</param>
/// <param name="RealCount">Number of real samples.</param>
/// <param name="FakeCount">Number of generated samples.</param>
public sealed record PrecisionRecallResult(double Precision, double Recall, int K, int RealCount, int FakeCount);

/// <summary>
/// k-NN manifold precision and recall (Kynkaanniemi et al. 2019): each sample's manifold ball has the radius of its k-th
/// nearest neighbour in its own set (itself excluded); a point is inside a manifold when it lies within (distance &lt;=) some ball.
/// </summary>
public static class PrecisionRecall
{
    /// <summary>Default neighbourhood size (the paper's k = 3).</summary>
    public const int DefaultK = 3;

    /// <summary>
    /// Precision (fraction of <paramref name="fake"/> inside the real manifold) and recall (fraction of <paramref name="real"/>
    /// inside the generated manifold); both sets are row-major [count, dim]. Exact brute force in double precision.
    /// </summary>
    public static PrecisionRecallResult Compute(ReadOnlySpan<double> real, int realCount, ReadOnlySpan<double> fake, int fakeCount, int dim, int k = DefaultK)
    {
        Check(real, realCount, dim, k, "real");
        Check(fake, fakeCount, dim, k, "generated");
        var r = real.ToArray();
        var f = fake.ToArray();
        var realRadii = SquaredRadii(r, realCount, dim, k);
        var fakeRadii = SquaredRadii(f, fakeCount, dim, k);
        var fakeInside = new bool[fakeCount];
        var realInside = new bool[realCount];
        Runtime.Threading.For(fakeCount, 16, (lo, hi) =>
        {
            for (int j = lo; j < hi; j++)
            {
                var fj = f.AsSpan(j * dim, dim);
                bool inside = false;
                for (int i = 0; i < realCount; i++)
                {
                    double d2 = SquaredDistance(r.AsSpan(i * dim, dim), fj);
                    if (d2 <= realRadii[i]) inside = true;
                    if (d2 <= fakeRadii[j]) realInside[i] = true;  // only ever set to true, so concurrent writes agree
                }
                fakeInside[j] = inside;
            }
        });
        return new PrecisionRecallResult(fakeInside.Count(b => b) / (double)fakeCount, realInside.Count(b => b) / (double)realCount, k, realCount, fakeCount);
    }

    /// <summary>Distance of every row of <paramref name="features"/> [count, dim] to its k-th nearest other row.</summary>
    public static double[] KnnRadii(ReadOnlySpan<double> features, int count, int dim, int k = DefaultK)
    {
        Check(features, count, dim, k, "feature");
        var r = SquaredRadii(features.ToArray(), count, dim, k);
        for (int i = 0; i < r.Length; i++) r[i] = Math.Sqrt(r[i]);
        return r;
    }

    private static void Check(ReadOnlySpan<double> x, int count, int dim, int k, string what)
    {
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), $"Feature dimension must be positive, got {dim}.");
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), $"k must be at least 1, got {k}.");
        if (x.Length != (long)count * dim) throw new ArgumentException($"{count} {what} vectors of dimension {dim} need {(long)count * dim} values, got {x.Length}.");
        if (count <= k) throw new ArgumentException($"The {what} set has {count} samples; k = {k} nearest neighbours need at least {k + 1}.");
    }

    // Squared distance to the k-th nearest other row, keeping the k smallest in a sorted buffer.
    private static double[] SquaredRadii(double[] x, int count, int dim, int k)
    {
        var radii = new double[count];
        Runtime.Threading.For(count, 16, (lo, hi) =>
        {
            var best = new double[k];
            for (int i = lo; i < hi; i++)
            {
                Array.Fill(best, double.PositiveInfinity);
                var xi = x.AsSpan(i * dim, dim);
                for (int j = 0; j < count; j++)
                {
                    if (j == i) continue;
                    double d2 = SquaredDistance(xi, x.AsSpan(j * dim, dim));
                    if (d2 >= best[k - 1]) continue;
                    int p = k - 1;
                    while (p > 0 && best[p - 1] > d2) { best[p] = best[p - 1]; p--; }
                    best[p] = d2;
                }
                radii[i] = best[k - 1];
            }
        });
        return radii;
    }

    private static double SquaredDistance(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        int n = a.Length, i = 0;
        double sum = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<double>.Count)
        {
            var acc = Vector<double>.Zero;
            for (; i <= n - Vector<double>.Count; i += Vector<double>.Count)
            {
                var d = new Vector<double>(a.Slice(i)) - new Vector<double>(b.Slice(i));
                acc += d * d;
            }
            sum = Vector.Sum(acc);
        }
        for (; i < n; i++) { double d = a[i] - b[i]; sum += d * d; }
        return sum;
    }
}
