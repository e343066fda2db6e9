using DiffusionSharp.Optim;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Optim;

public class PowerEmaTests
{
    private static double SigmaRel(double g) => Math.Sqrt((g + 1) / ((g + 2) * (g + 2) * (g + 3)));

    [Fact]
    public void GammaMatchesTheRelativeStandardDeviation()
    {
        Assert.Equal(6.94, Ema.GammaFromSigmaRel(0.10), 2);  // the pairing Karras et al. 2024 quote (Sec. 3.1)
        foreach (var s in new[] { 0.01, 0.05, 0.2 }) Assert.Equal(s, SigmaRel(Ema.GammaFromSigmaRel(s)), 10);
        Assert.Throws<ArgumentOutOfRangeException>(() => Ema.GammaFromSigmaRel(0.3));
    }

    // With beta_n = (1 - 1/n)^(gamma+1) the average after n steps weighs step i by (i^(gamma+1) - (i-1)^(gamma+1)) / n^(gamma+1).
    [Fact]
    public void AverageWeighsStepsByThePowerFunction()
    {
        double gamma = Ema.GammaFromSigmaRel(0.05);
        var p = Tensor.FromArray([0f], 1);
        p.RequiresGrad = true;
        var ema = new Ema([p], 1.0) { PowerGamma = gamma };
        const int n = 60;
        double expected = 0;
        for (int i = 1; i <= n; i++)
        {
            p.Span[0] = i;
            ema.Step([p]);
            expected += i * (Math.Pow(i, gamma + 1) - Math.Pow(i - 1, gamma + 1));
        }
        expected /= Math.Pow(n, gamma + 1);
        Assert.Equal(expected, ema.Shadow[0].Span[0], 1e-3 * expected);
        Assert.True(expected > 0.85 * n && expected < n);  // recent steps dominate, older ones still count
    }
}
