namespace DiffusionSharp.Diffusion.Losses;

/// <summary>Double-precision error function and standard-normal CDF.</summary>
public static class NormalMath
{
    private const double TwoOverSqrtPi = 1.1283791670955126;

    /// <summary>erf(x): Maclaurin series for |x| &lt; 2.5, 1 - erfc(x) beyond.</summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        if (a >= 2.5) return Math.Sign(x) * (1 - ErfcLarge(a));
        // erf(x) = 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)); terms stay below ~500 so double keeps ~1e-14
        double x2 = x * x, term = x, sum = x;
        for (int n = 1; n < 200; n++)
        {
            term *= -x2 / n;
            double add = term / (2 * n + 1);
            sum += add;
            if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
        }
        return TwoOverSqrtPi * sum;
    }

    /// <summary>erfc(x) = 1 - erf(x), accurate in the upper tail.</summary>
    public static double Erfc(double x)
    {
        if (x >= 2.5) return ErfcLarge(x);
        if (x <= -2.5) return 2 - ErfcLarge(-x);
        return 1 - Erf(x);
    }

    // Continued fraction erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))) by modified Lentz.
    private static double ErfcLarge(double x)
    {
        const double tiny = 1e-300;
        double f = x, c = x, d = 0;
        for (int k = 1; k < 500; k++)
        {
            double ak = k * 0.5;
            d = x + ak * d; if (Math.Abs(d) < tiny) d = tiny; d = 1 / d;
            c = x + ak / c; if (Math.Abs(c) < tiny) c = tiny;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-16) break;
        }
        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }

    /// <summary>Standard normal CDF.</summary>
    public static double Phi(double z) => 0.5 * Erfc(-z / Math.Sqrt(2));

    /// <summary>Standard normal density.</summary>
    public static double PhiDensity(double z) => Math.Exp(-0.5 * z * z) / Math.Sqrt(2 * Math.PI);

    /// <summary>Phi(b) - Phi(a) for a &lt;= b without cancellation in either tail.</summary>
    public static double PhiDelta(double a, double b)
    {
        if (a > 0) return 0.5 * (Erfc(a / Math.Sqrt(2)) - Erfc(b / Math.Sqrt(2)));
        if (b < 0) return 0.5 * (Erfc(-b / Math.Sqrt(2)) - Erfc(-a / Math.Sqrt(2)));
        return Phi(b) - Phi(a);
    }
}
