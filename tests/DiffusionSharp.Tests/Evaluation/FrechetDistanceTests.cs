using DiffusionSharp.Evaluation;
using Xunit;

namespace DiffusionSharp.Tests.Evaluation;

public class FrechetDistanceTests
{
    public static IEnumerable<object[]> Cases() =>
        FidFixture.Json.GetProperty("frechet").EnumerateObject().Select(p => new object[] { p.Name });

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesScipySqrtmFormula(string name)
    {
        var (a, sa) = FidFixture.Get(name + ".a");
        var (b, sb) = FidFixture.Get(name + ".b");
        var ja = FeatureStatistics.FromFeatures(a, sa[0], sa[1]);
        var jb = FeatureStatistics.FromFeatures(b, sb[0], sb[1]);

        // statistics: numpy mean and np.cov(rowvar=False)
        AssertClose(FidFixture.Get(name + ".mu_a").Data, ja.Mean, 1e-12, "mu_a");
        AssertClose(FidFixture.Get(name + ".mu_b").Data, jb.Mean, 1e-12, "mu_b");
        AssertClose(FidFixture.Get(name + ".sigma_a").Data, ja.Covariance, 1e-12, "sigma_a");
        AssertClose(FidFixture.Get(name + ".sigma_b").Data, jb.Covariance, 1e-12, "sigma_b");

        var c = FidFixture.Json.GetProperty("frechet").GetProperty(name);
        double expected = c.GetProperty("fid").GetDouble();
        double scale = c.GetProperty("trace_a").GetDouble() + c.GetProperty("trace_b").GetDouble();
        double fid = FrechetDistance.Compute(ja, jb);
        // 1e-6 relative; the absolute floor covers the cancellation in Tr(S1)+Tr(S2)-2Tr(sqrtm) when the FID is near 0
        Assert.True(Math.Abs(fid - expected) <= 1e-6 * Math.Abs(expected) + 1e-12 * scale,
            $"{name}: ours {fid:R}, scipy {expected:R}, diff {fid - expected:E3}");
        double tr = FrechetDistance.TraceSqrtProduct(ja.Covariance, jb.Covariance, ja.Dim);
        double trExpected = c.GetProperty("trace_sqrtm").GetDouble();
        Assert.True(Math.Abs(tr - trExpected) <= 1e-7 * Math.Abs(trExpected) + 1e-12 * scale, $"{name}: Tr sqrtm ours {tr:R}, scipy {trExpected:R}");
    }

    [Fact]
    public void IdenticalStatisticsGiveZero()
    {
        var (a, sa) = FidFixture.Get("d64_n300_m240.a");
        var s = FeatureStatistics.FromFeatures(a, sa[0], sa[1]);
        double fid = FrechetDistance.Compute(s, s);
        double scale = s.Covariance.Where((_, i) => i % (s.Dim + 1) == 0).Sum();
        Assert.True(Math.Abs(fid) < 1e-10 * scale, $"FID of a set with itself: {fid}");
    }

    [Fact]
    public void OneDimensionalGaussiansHaveClosedForm()
    {
        // d = 1: (m1 - m2)^2 + (s1 - s2)^2 with s the standard deviations
        var fid = FrechetDistance.Compute([1.5], [4.0], [-0.5], [9.0]);
        Assert.Equal(4.0 + 1.0, fid, 12);
    }

    [Fact]
    public void CommutingCovariancesHaveClosedForm()
    {
        // diagonal covariances: sum (sqrt(a_i) - sqrt(b_i))^2, zero variances included
        double[] va = [4, 1, 0, 2.25, 9], vb = [1, 1, 16, 0, 0.25];
        int d = va.Length;
        var ca = new double[d * d];
        var cb = new double[d * d];
        for (int i = 0; i < d; i++) { ca[i * d + i] = va[i]; cb[i * d + i] = vb[i]; }
        // rotate both by the same orthogonal matrix so they are full, non-diagonal and still commute
        var q = RandomOrthogonal(d, 7);
        var ra = Conjugate(q, ca, d);
        var rb = Conjugate(q, cb, d);
        double expected = 3 * 3;  // mean term
        for (int i = 0; i < d; i++) expected += Math.Pow(Math.Sqrt(va[i]) - Math.Sqrt(vb[i]), 2);
        var mu = new double[d];
        var mu2 = new double[d];
        mu2[0] = 3;
        // zero eigenvalues carry rounding noise eps*|S| whose square root (~1e-8) is the accuracy floor, as with scipy's sqrtm
        double fid = FrechetDistance.Compute(mu, ra, mu2, rb);
        Assert.True(Math.Abs(fid - expected) < 1e-8 * expected, $"{fid:R} vs {expected:R}");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(33)]
    [InlineData(128)]
    public void EigenDecompositionReconstructsTheMatrix(int n)
    {
        var rng = new Random(n + 1);
        var m = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) m[i * n + j] = m[j * n + i] = rng.NextDouble() * 2 - 1;
        // repeated eigenvalues too: a block with equal diagonal entries
        if (n >= 7) for (int i = 0; i < 3; i++) { for (int j = 0; j < n; j++) m[i * n + j] = m[j * n + i] = 0; m[i * n + i] = 0.5; }
        var (w, v) = SymmetricEigen.Decompose(m, n);
        for (int j = 1; j < n; j++) Assert.True(w[j - 1] <= w[j], "eigenvalues ascending");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double rec = 0, orth = 0;
                for (int k = 0; k < n; k++) { rec += v[i * n + k] * w[k] * v[j * n + k]; orth += v[k * n + i] * v[k * n + j]; }
                Assert.True(Math.Abs(rec - m[i * n + j]) < 1e-12 * Math.Max(1, n), $"A[{i},{j}]: {rec} vs {m[i * n + j]}");
                Assert.True(Math.Abs(orth - (i == j ? 1 : 0)) < 1e-12 * Math.Max(1, n), $"V^T V [{i},{j}] = {orth}");
            }
    }

    [Fact]
    public void SqrtOfSingularPsdMatrixSquaresBack()
    {
        int n = 12, r = 5;
        var rng = new Random(3);
        var x = new double[r * n];
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextDouble() - 0.5;
        var a = new double[n * n];  // X^T X, rank 5
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < r; k++) a[i * n + j] += x[k * n + i] * x[k * n + j];
        var s = SymmetricEigen.SqrtPsd(a, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double sq = 0;
                for (int k = 0; k < n; k++) sq += s[i * n + k] * s[k * n + j];
                Assert.True(Math.Abs(sq - a[i * n + j]) < 1e-7, $"[{i},{j}] {sq} vs {a[i * n + j]}");
            }
    }

    [Fact]
    public void RejectsMismatchedInput()
    {
        Assert.Throws<ArgumentException>(() => FrechetDistance.Compute([1.0, 2.0], [1, 0, 0, 1], [1.0], [1.0]));
        Assert.Throws<ArgumentException>(() => FeatureStatistics.FromFeatures(new double[3], 1, 3));
        Assert.Throws<ArgumentException>(() => FeatureStatistics.FromFeatures(new double[7], 2, 3));
    }

    private static void AssertClose(double[] expected, double[] actual, double rel, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= rel * scale, $"{what}[{i}]: {actual[i]:R} vs {expected[i]:R}");
    }

    private static double[] RandomOrthogonal(int d, int seed)
    {
        var rng = new Random(seed);
        var m = new double[d * d];
        for (int i = 0; i < m.Length; i++) m[i] = rng.NextDouble() - 0.5;
        // Gram-Schmidt on the columns
        for (int j = 0; j < d; j++)
        {
            for (int p = 0; p < j; p++)
            {
                double dot = 0;
                for (int i = 0; i < d; i++) dot += m[i * d + j] * m[i * d + p];
                for (int i = 0; i < d; i++) m[i * d + j] -= dot * m[i * d + p];
            }
            double norm = 0;
            for (int i = 0; i < d; i++) norm += m[i * d + j] * m[i * d + j];
            norm = Math.Sqrt(norm);
            for (int i = 0; i < d; i++) m[i * d + j] /= norm;
        }
        return m;
    }

    private static double[] Conjugate(double[] q, double[] c, int d)
    {
        var r = new double[d * d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                for (int k = 0; k < d; k++) s += q[i * d + k] * c[k * d + k] * q[j * d + k];  // c is diagonal
                r[i * d + j] = s;
            }
        return r;
    }
}
