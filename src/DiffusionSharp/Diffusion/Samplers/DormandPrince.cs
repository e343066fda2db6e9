namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Result of an adaptive ODE solve.</summary>
public sealed record OdeSolution(double[] Y, int FunctionEvaluations, int AcceptedSteps, int RejectedSteps);

/// <summary>
/// Adaptive explicit Runge-Kutta 5(4) of Dormand and Prince (1980) in double, with FSAL, the fifth-order solution propagated
/// and the error norm and step control of scipy's RK45 (RMS of err / (atol + rtol max(|y|, |y_new|))).
/// </summary>
public static class DormandPrince
{
    private static readonly double[] C = { 0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1 };
    private static readonly double[][] A =
    {
        Array.Empty<double>(),
        new[] { 1.0 / 5 },
        new[] { 3.0 / 40, 9.0 / 40 },
        new[] { 44.0 / 45, -56.0 / 15, 32.0 / 9 },
        new[] { 19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729 },
        new[] { 9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656 },
        new[] { 35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84 },
    };
    private static readonly double[] B = { 35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84, 0 };
    // fifth minus fourth order weights (the embedded error estimate)
    private static readonly double[] E = { 71.0 / 57600, 0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40 };

    /// <summary>Integrates dy/dt = f(t, y) from t0 to t1 (either direction). f writes dy into its third argument.</summary>
    public static OdeSolution Solve(Action<double, double[], double[]> f, double t0, double t1, double[] y0,
        double rtol = 1e-5, double atol = 1e-5, int maxSteps = 100000, double? firstStep = null)
    {
        int n = y0.Length;
        var y = (double[])y0.Clone();
        var k = new double[7][];
        for (int i = 0; i < 7; i++) k[i] = new double[n];
        var tmp = new double[n]; var yNew = new double[n];
        double dir = Math.Sign(t1 - t0), t = t0;
        int nfev = 0, accepted = 0, rejected = 0;
        if (dir == 0) return new OdeSolution(y, 0, 0, 0);
        f(t, y, k[0]); nfev++;
        double h = firstStep ?? InitialStep(f, t0, y, k[0], dir, rtol, atol, ref nfev);
        while (dir * (t1 - t) > 0)
        {
            if (accepted + rejected > maxSteps) throw new InvalidOperationException($"RK45 exceeded {maxSteps} steps at t = {t}.");
            if (h < 10 * Math.Abs(Math.BitIncrement(Math.Abs(t)) - Math.Abs(t))) throw new InvalidOperationException($"RK45 step size underflow at t = {t}.");
            double step = Math.Min(h, Math.Abs(t1 - t)) * dir;
            for (int s = 1; s < 7; s++)
            {
                for (int i = 0; i < n; i++)
                {
                    double acc = 0;
                    for (int j = 0; j < s; j++) acc += A[s][j] * k[j][i];
                    tmp[i] = y[i] + step * acc;
                }
                f(t + C[s] * step, tmp, k[s]); nfev++;
                if (s == 6) Array.Copy(tmp, yNew, n);  // the seventh stage is evaluated at the fifth-order solution (FSAL)
            }
            double errSq = 0;
            for (int i = 0; i < n; i++)
            {
                double e = 0;
                for (int j = 0; j < 7; j++) e += E[j] * k[j][i];
                e *= step;
                double sc = atol + rtol * Math.Max(Math.Abs(y[i]), Math.Abs(yNew[i]));
                errSq += (e / sc) * (e / sc);
            }
            double err = Math.Sqrt(errSq / n);
            if (err <= 1)
            {
                t += step;
                Array.Copy(yNew, y, n);
                (k[0], k[6]) = (k[6], k[0]);
                accepted++;
                h = Math.Abs(step) * (err == 0 ? 10 : Math.Min(10, 0.9 * Math.Pow(err, -0.2)));
            }
            else
            {
                rejected++;
                h = Math.Abs(step) * Math.Max(0.2, 0.9 * Math.Pow(err, -0.2));
            }
        }
        return new OdeSolution(y, nfev, accepted, rejected);
    }

    // Hairer, Norsett and Wanner, Solving ODEs I, Sec. II.4 starting step heuristic.
    private static double InitialStep(Action<double, double[], double[]> f, double t0, double[] y0, double[] f0, double dir, double rtol, double atol, ref int nfev)
    {
        int n = y0.Length;
        double d0 = 0, d1 = 0;
        for (int i = 0; i < n; i++)
        {
            double sc = atol + Math.Abs(y0[i]) * rtol;
            d0 += (y0[i] / sc) * (y0[i] / sc); d1 += (f0[i] / sc) * (f0[i] / sc);
        }
        d0 = Math.Sqrt(d0 / n); d1 = Math.Sqrt(d1 / n);
        double h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
        var y1 = new double[n]; var f1 = new double[n];
        for (int i = 0; i < n; i++) y1[i] = y0[i] + h0 * dir * f0[i];
        f(t0 + h0 * dir, y1, f1); nfev++;
        double d2 = 0;
        for (int i = 0; i < n; i++)
        {
            double sc = atol + Math.Abs(y0[i]) * rtol;
            d2 += ((f1[i] - f0[i]) / sc) * ((f1[i] - f0[i]) / sc);
        }
        d2 = Math.Sqrt(d2 / n) / h0;
        double h1 = d1 <= 1e-15 && d2 <= 1e-15 ? Math.Max(1e-6, h0 * 1e-3) : Math.Pow(0.01 / Math.Max(d1, d2), 0.2);
        return Math.Min(100 * h0, h1);
    }
}
