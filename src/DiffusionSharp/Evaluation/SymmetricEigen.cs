namespace DiffusionSharp.Evaluation;

/// <summary>Eigen-decomposition of real symmetric matrices (cyclic Jacobi rotations, double precision).</summary>
public static class SymmetricEigen
{
    /// <summary>
    /// Decomposes the symmetric n x n matrix <paramref name="matrix"/> (row-major; only read, and assumed symmetric) as
    /// V diag(values) V^T. Returns the eigenvalues in ascending order and V row-major with eigenvector j in column j.
    /// </summary>
    public static (double[] Values, double[] Vectors) Decompose(ReadOnlySpan<double> matrix, int n)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"Matrix order must be non-negative, got {n}.");
        if (matrix.Length != (long)n * n) throw new ArgumentException($"A {n} x {n} matrix needs {(long)n * n} values, got {matrix.Length}.");
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) a[i * n + j] = 0.5 * (matrix[i * n + j] + matrix[j * n + i]);
        foreach (var x in a)
            if (!double.IsFinite(x)) throw new ArgumentException("The matrix has a non-finite entry.");
        var v = new double[n * n];
        for (int i = 0; i < n; i++) v[i * n + i] = 1;
        double total = 0;
        foreach (var x in a) total += x * x;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
            // Jacobi converges quadratically; stop when the off-diagonal mass is at rounding level.
            if (off <= 1e-32 * total || off == 0) break;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++)
                {
                    double apq = Math.Abs(a[p * n + q]);
                    // Past the first sweeps, an entry below rounding of both diagonal entries is dropped (Numerical Recipes, jacobi).
                    if (sweep > 3 && Math.Abs(a[p * n + p]) + 100 * apq == Math.Abs(a[p * n + p]) && Math.Abs(a[q * n + q]) + 100 * apq == Math.Abs(a[q * n + q]))
                        a[p * n + q] = a[q * n + p] = 0;
                    else Rotate(a, v, n, p, q);
                }
        }
        var values = new double[n];
        for (int i = 0; i < n; i++) values[i] = a[i * n + i];
        var order = Enumerable.Range(0, n).OrderBy(i => values[i]).ToArray();
        var sortedValues = new double[n];
        var sortedVectors = new double[n * n];
        for (int j = 0; j < n; j++)
        {
            sortedValues[j] = values[order[j]];
            for (int i = 0; i < n; i++) sortedVectors[i * n + j] = v[i * n + order[j]];
        }
        return (sortedValues, sortedVectors);
    }

    // One rotation in the (p, q) plane that zeroes a[p, q] (Golub and Van Loan, Alg. 8.5.1; tan chosen as the smaller root).
    private static void Rotate(double[] a, double[] v, int n, int p, int q)
    {
        double apq = a[p * n + q];
        if (apq == 0) return;
        double app = a[p * n + p], aqq = a[q * n + q];
        double theta = (aqq - app) / (2 * apq);
        double t = Math.Abs(theta) > 1e150 ? 0.5 / theta : Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
        double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; k++)
        {
            double akp = a[k * n + p], akq = a[k * n + q];
            a[k * n + p] = c * akp - s * akq;
            a[k * n + q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; k++)
        {
            double apk = a[p * n + k], aqk = a[q * n + k];
            a[p * n + k] = c * apk - s * aqk;
            a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = a[q * n + p] = 0;
        for (int k = 0; k < n; k++)
        {
            double vkp = v[k * n + p], vkq = v[k * n + q];
            v[k * n + p] = c * vkp - s * vkq;
            v[k * n + q] = s * vkp + c * vkq;
        }
    }

    /// <summary>
    /// The principal square root of a symmetric positive semi-definite matrix: V diag(sqrt(max(lambda, 0))) V^T
    /// (tiny negative eigenvalues from rounding are treated as 0). Row-major n x n.
    /// </summary>
    public static double[] SqrtPsd(ReadOnlySpan<double> matrix, int n)
    {
        var (w, vec) = Decompose(matrix, n);
        var scaled = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) scaled[i * n + j] = vec[i * n + j] * Math.Sqrt(Math.Max(w[j], 0));
        var r = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
            {
                double sum = 0;
                for (int k = 0; k < n; k++) sum += scaled[i * n + k] * vec[j * n + k];
                r[i * n + j] = r[j * n + i] = sum;
            }
        return r;
    }
}
