namespace DiffusionSharp.Tests;

/// <summary>Double-precision reference functions for checking float kernels.</summary>
public static class ReferenceMath
{
    /// <summary>erfc(x) for x &gt;= 0: Maclaurin series of erf below 3, Lentz-free continued fraction (evaluated backwards) above.</summary>
    public static double Erfc(double x)
    {
        if (x < 0) return 2 - Erfc(-x);
        if (x < 3)
        {
            // erf(x) = 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1))
            double term = x, sum = x, x2 = x * x;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-18 * Math.Abs(sum)) break;
            }
            return 1 - 2 / Math.Sqrt(Math.PI) * sum;
        }
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
        double f = x;
        for (int k = 120; k >= 1; k--) f = x + (k / 2.0) / f;
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    /// <summary>Standard normal CDF.</summary>
    public static double Phi(double x) => 0.5 * Erfc(-x / Math.Sqrt(2));
}
