using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion;

/// <summary>What the denoising network predicts (diffusers' <c>prediction_type</c>); a learned variance is an extra output beside it.</summary>
public enum PredictionType
{
    /// <summary>The added noise epsilon (Ho et al. 2020).</summary>
    Epsilon,
    /// <summary>The clean sample x0.</summary>
    Sample,
    /// <summary>The velocity v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans and Ho 2022, Sec. 4).</summary>
    VPrediction,
}

/// <summary>The network output of each <see cref="PredictionType"/> turned into x0 or eps at x = a x0 + s eps, in float32 (VP form).</summary>
public static class PredictionConversions
{
    /// <summary>x0 from output m: (x - s m) / a for epsilon (Ho et al. 2020, Eq. 15), m for sample, a x - s m for v.</summary>
    public static Tensor ToX0(this PredictionType prediction, Tensor m, Tensor x, float a, float s) => Map(m, x, prediction switch
    {
        PredictionType.Epsilon => (mi, xi) => (xi - s * mi) / a,
        PredictionType.Sample => (mi, _) => mi,
        _ => (mi, xi) => a * xi - s * mi,
    });

    /// <summary>eps from output m: m for epsilon, (x - a m) / s for sample, a m + s x for v (Salimans and Ho 2022, Sec. 4).</summary>
    public static Tensor ToEps(this PredictionType prediction, Tensor m, Tensor x, float a, float s) => Map(m, x, prediction switch
    {
        PredictionType.Epsilon => (mi, _) => mi,
        PredictionType.Sample => (mi, xi) => (xi - a * mi) / s,
        _ => (mi, xi) => a * mi + s * xi,
    });

    /// <summary><see cref="ToX0(PredictionType, Tensor, Tensor, float, float)"/> with per-sample a, s broadcast against x, as differentiable tensor operations.</summary>
    public static Tensor ToX0(this PredictionType prediction, Tensor m, Tensor x, Tensor a, Tensor s) => prediction switch
    {
        PredictionType.Epsilon => (x - s * m) / a,
        PredictionType.Sample => m,
        _ => a * x - s * m,
    };

    /// <summary><see cref="ToEps(PredictionType, Tensor, Tensor, float, float)"/> with per-sample a, s broadcast against x, as differentiable tensor operations.</summary>
    public static Tensor ToEps(this PredictionType prediction, Tensor m, Tensor x, Tensor a, Tensor s) => prediction switch
    {
        PredictionType.Epsilon => m,
        PredictionType.Sample => (x - a * m) / s,
        _ => a * m + s * x,
    };

    private static Tensor Map(Tensor m, Tensor x, Func<float, float, float> f)
    {
        if (m.Shape != x.Shape) throw new ArgumentException($"Expected a model output of shape {x.Shape} (the sample's), got {m.Shape}.");
        var y = Tensor.Empty(x.Shape);
        ReadOnlySpan<float> ms = m.Span, xs = x.Span;
        var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = f(ms[i], xs[i]);
        return y;
    }
}
