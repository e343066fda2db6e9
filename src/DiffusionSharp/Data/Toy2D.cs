using DiffusionSharp.Tensors;

namespace DiffusionSharp.Data;

/// <summary>Two-dimensional toy distributions as [N, 2] tensors, the usual test beds for small diffusion models.</summary>
public static class Toy2D
{
    /// <summary>Names accepted by <see cref="Sample"/>.</summary>
    public static readonly string[] Names = ["moons", "8gaussians", "swissroll", "checkerboard"];

    /// <summary>Samples <paramref name="n"/> points of the named set (see <see cref="Names"/>).</summary>
    public static Tensor Sample(string name, int n, Generator gen) => name.ToLowerInvariant() switch
    {
        "moons" or "two-moons" or "twomoons" => TwoMoons(n, gen),
        "8gaussians" or "eight-gaussians" => EightGaussians(n, gen),
        "swissroll" or "swiss-roll" => SwissRoll(n, gen),
        "checkerboard" => Checkerboard(n, gen),
        _ => throw new ArgumentException($"Unknown 2-D toy set '{name}'; expected one of {string.Join(", ", Names)}."),
    };

    private static Tensor Make(int n, Generator gen, int uniformPerPoint, int normalPerPoint, Action<int, double[], float[], float[]> point)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n), $"Point count cannot be negative, got {n}.");
        var u = new float[Math.Max(1, n * uniformPerPoint)];
        var z = new float[Math.Max(1, n * normalPerPoint)];
        gen.Uniform(u.AsSpan(0, n * uniformPerPoint));
        gen.Normal(z.AsSpan(0, n * normalPerPoint));
        var t = Tensor.Empty(n, 2);
        var d = t.Span;
        var xy = new double[2];
        for (int i = 0; i < n; i++)
        {
            point(i, xy, u, z);
            d[2 * i] = (float)xy[0];
            d[2 * i + 1] = (float)xy[1];
        }
        return t;
    }

    /// <summary>Two interleaving half circles (upper: centre (0, 0); lower: centre (1, 0.5)), Gaussian noise of std <paramref name="noise"/>.</summary>
    public static Tensor TwoMoons(int n, Generator gen, double noise = 0.05) => Make(n, gen, 2, 2, (i, p, u, z) =>
    {
        double t = Math.PI * u[2 * i];
        bool upper = u[2 * i + 1] < 0.5;
        p[0] = (upper ? Math.Cos(t) : 1 - Math.Cos(t)) + noise * z[2 * i];
        p[1] = (upper ? Math.Sin(t) : 0.5 - Math.Sin(t)) + noise * z[2 * i + 1];
    });

    /// <summary>Eight Gaussians of std <paramref name="std"/> centred on a circle of radius <paramref name="radius"/> at multiples of 45 degrees.</summary>
    public static Tensor EightGaussians(int n, Generator gen, double radius = 2.0, double std = 0.1) => Make(n, gen, 1, 2, (i, p, u, z) =>
    {
        int k = Math.Min(7, (int)(u[i] * 8));
        double a = k * Math.PI / 4;
        p[0] = radius * Math.Cos(a) + std * z[2 * i];
        p[1] = radius * Math.Sin(a) + std * z[2 * i + 1];
    });

    /// <summary>A 2-D Swiss roll: angle t in [1.5 pi, 4.5 pi], point t (cos t, sin t) / 5 plus noise of std <paramref name="noise"/>.</summary>
    public static Tensor SwissRoll(int n, Generator gen, double noise = 0.05) => Make(n, gen, 1, 2, (i, p, u, z) =>
    {
        double t = 1.5 * Math.PI * (1 + 2 * u[i]);
        p[0] = t * Math.Cos(t) / 5 + noise * z[2 * i];
        p[1] = t * Math.Sin(t) / 5 + noise * z[2 * i + 1];
    });

    /// <summary>Uniform points on the dark squares of a 4x4 checkerboard covering [-4, 4]^2 (cells of side 2).</summary>
    public static Tensor Checkerboard(int n, Generator gen) => Make(n, gen, 3, 0, (i, p, u, z) =>
    {
        // Column c in 0..3 picked uniformly; the row is one of the two cells of matching parity.
        double x = u[3 * i] * 4;                        // in [0, 4) cell units
        int col = Math.Min(3, (int)x);
        int row = 2 * Math.Min(1, (int)(u[3 * i + 1] * 2)) + (col % 2 == 0 ? 0 : 1);
        double y = row + u[3 * i + 2];
        p[0] = 2 * x - 4;
        p[1] = 2 * y - 4;
    });
}
