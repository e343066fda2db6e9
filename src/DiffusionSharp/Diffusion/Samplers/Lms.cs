using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>Linear multistep sampling (Karras et al. 2022, Sec. 3; k-diffusion sample_lms).</summary>
public static partial class KSamplers
{
    /// <summary>
    /// Weight of the derivative from step i - j in the linear multistep update from sigmas[i] to sigmas[i+1]:
    /// the integral over [sigmas[i], sigmas[i+1]] of the Lagrange basis polynomial through sigmas[i], ..., sigmas[i-order+1].
    /// </summary>
    public static double LinearMultistepCoefficient(int order, IReadOnlyList<double> sigmas, int i, int j)
    {
        if (order - 1 > i) throw new ArgumentException($"Order {order} is too high for step {i}.");
        if ((uint)j >= (uint)order) throw new ArgumentOutOfRangeException(nameof(j), $"Expected 0 <= j < {order}, got {j}.");
        double a = sigmas[i], b = sigmas[i + 1];
        // 4-point Gauss-Legendre is exact for polynomials of degree <= 7, i.e. basis polynomials up to order 8
        ReadOnlySpan<double> nodes = stackalloc double[] { -0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526 };
        ReadOnlySpan<double> weights = stackalloc double[] { 0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538 };
        int pieces = order <= 8 ? 1 : 64;
        double sum = 0, width = (b - a) / pieces;
        for (int p = 0; p < pieces; p++)
        {
            double lo = a + p * width, hi = p == pieces - 1 ? b : lo + width;
            double part = 0;
            for (int q = 0; q < 4; q++) part += weights[q] * Basis(0.5 * (hi - lo) * nodes[q] + 0.5 * (lo + hi));
            sum += 0.5 * (hi - lo) * part;
        }
        return sum;

        double Basis(double tau)
        {
            double prod = 1;
            for (int k = 0; k < order; k++)
            {
                if (k == j) continue;
                prod *= (tau - sigmas[i - k]) / (sigmas[i - j] - sigmas[i - k]);
            }
            return prod;
        }
    }

    /// <summary>Linear multistep method of the given order over past derivatives (k-diffusion sample_lms, Karras et al. 2022 Sec. 3).</summary>
    public static Tensor Lms(Func<Tensor, double, Tensor> model, Tensor x, IReadOnlyList<double> sigmas, SamplerCallback? callback = null, int order = 4)
    {
        if (order < 1) throw new ArgumentOutOfRangeException(nameof(order), $"Expected order >= 1, got {order}.");
        var sig = sigmas.Select(s => (double)(float)s).ToArray();
        var ds = new List<Tensor>();
        var result = Run(model, x, sigmas, callback, (i, x, denoised, sigma, _) =>
        {
            var d = Tensor.Empty(x.Shape);
            ReadOnlySpan<float> xs = x.Span, dn = denoised.Span;
            var dd = d.Span;
            for (int k = 0; k < dd.Length; k++) dd[k] = (xs[k] - dn[k]) / sigma;
            ds.Add(d);
            if (ds.Count > order) { ds[0].Dispose(); ds.RemoveAt(0); }
            int cur = Math.Min(i + 1, order);
            var y = Tensor.Empty(x.Shape);
            var o = y.Span;
            var acc = new float[o.Length];
            for (int j = 0; j < cur; j++)
            {
                float c = (float)LinearMultistepCoefficient(cur, sig, i, j);
                ReadOnlySpan<float> dj = ds[ds.Count - 1 - j].Span;
                for (int k = 0; k < acc.Length; k++) acc[k] += c * dj[k];
            }
            for (int k = 0; k < o.Length; k++) o[k] = xs[k] + acc[k];
            return y;
        });
        foreach (var d in ds) d.Dispose();
        return result;
    }
}
