using DiffusionSharp.Evaluation;
using Xunit;

namespace DiffusionSharp.Tests.Evaluation;

public class PrecisionRecallTests
{
    public static IEnumerable<object[]> Cases() =>
        FidFixture.Json.GetProperty("pr").EnumerateObject().Select(p => new object[] { p.Name });

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesNumpyBruteForce(string name)
    {
        var (real, sr) = FidFixture.Get($"pr.{name}.real");
        var (fake, sf) = FidFixture.Get($"pr.{name}.fake");
        var c = FidFixture.Json.GetProperty("pr").GetProperty(name);
        int k = c.GetProperty("k").GetInt32();
        var r = PrecisionRecall.Compute(real, sr[0], fake, sf[0], sr[1], k);
        Assert.Equal(c.GetProperty("precision").GetDouble(), r.Precision, 12);
        Assert.Equal(c.GetProperty("recall").GetDouble(), r.Recall, 12);
        var radii = PrecisionRecall.KnnRadii(real, sr[0], sr[1], k);
        var expected = FidFixture.Get($"pr.{name}.radii_real").Data;
        for (int i = 0; i < radii.Length; i++) Assert.True(Math.Abs(radii[i] - expected[i]) <= 1e-12 * expected[i], $"radius {i}: {radii[i]} vs {expected[i]}");
    }

    private static double[] Gaussian(int n, int d, int seed, double shift = 0, double scale = 1)
    {
        var rng = new Random(seed);
        var x = new double[n * d];
        for (int i = 0; i < x.Length; i++)
            x[i] = shift + scale * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
        return x;
    }

    [Fact]
    public void IdenticalSetsGiveOneAndOne()
    {
        var x = Gaussian(60, 5, 1);
        var r = PrecisionRecall.Compute(x, 60, x, 60, 5);
        Assert.Equal(1.0, r.Precision);
        Assert.Equal(1.0, r.Recall);
    }

    [Fact]
    public void FarApartSetsGiveZeroAndZero()
    {
        var r = PrecisionRecall.Compute(Gaussian(50, 4, 1), 50, Gaussian(40, 4, 2, shift: 100), 40, 4);
        Assert.Equal(0.0, r.Precision);
        Assert.Equal(0.0, r.Recall);
    }

    [Fact]
    public void GeneratorCoveringOneOfTwoModesHasFullPrecisionAndHalfRecall()
    {
        // real: two tight clusters far apart; generated: an exact copy of the first cluster
        int per = 30, d = 3;
        var a = Gaussian(per, d, 5, scale: 0.1);
        var b = Gaussian(per, d, 6, shift: 50, scale: 0.1);
        var real = a.Concat(b).ToArray();
        var r = PrecisionRecall.Compute(real, 2 * per, a, per, d);
        Assert.Equal(1.0, r.Precision);
        Assert.Equal(0.5, r.Recall);
        // and the reverse roles: every generated sample of the second mode is outside the one-mode real manifold
        var rev = PrecisionRecall.Compute(a, per, real, 2 * per, d);
        Assert.Equal(0.5, rev.Precision);
        Assert.Equal(1.0, rev.Recall);
    }

    [Fact]
    public void RadiusIsTheKthNeighbourExcludingItself()
    {
        // points on a line at 0, 1, 3, 6, 10: 3rd-nearest distances 6, 5, 3, 5, 9
        double[] x = [0, 1, 3, 6, 10];
        Assert.Equal(new double[] { 6, 5, 3, 5, 9 }, PrecisionRecall.KnnRadii(x, 5, 1, 3));
        Assert.Equal(new double[] { 1, 1, 2, 3, 4 }, PrecisionRecall.KnnRadii(x, 5, 1, 1));
    }

    [Fact]
    public void TooFewSamplesForKAreRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => PrecisionRecall.Compute(new double[6], 3, new double[8], 4, 2, 3));
        Assert.Contains("at least 4", e.Message);
    }
}
