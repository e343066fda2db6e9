using DiffusionSharp.Autograd;
using DiffusionSharp.Diffusion.Sde;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Samplers;

/// <summary>A batched score s(x, t) ~ grad_x log p_t(x): x and score hold <paramref name="count"/> samples back to back.</summary>
public delegate void ScoreFunction(ReadOnlySpan<double> x, int count, double t, Span<double> score);

/// <summary>A score with a vector-Jacobian product: vjp_n = v_n^T (d score / d x)(x_n) for each sample n.</summary>
public delegate void ScoreVjpFunction(ReadOnlySpan<double> x, int count, double t, ReadOnlySpan<double> v, Span<double> score, Span<double> vjp);

/// <summary>Adapters from tensor networks (with our autograd) to the double-precision score delegates.</summary>
public static class ScoreModels
{
    private static Tensor ToTensor(ReadOnlySpan<double> x, int count, Shape sampleShape)
    {
        var dims = new int[sampleShape.Rank + 1];
        dims[0] = count;
        for (int i = 0; i < sampleShape.Rank; i++) dims[i + 1] = sampleShape[i];
        var t = Tensor.Empty(dims);
        var s = t.Span;
        if (x.Length != s.Length) throw new ArgumentException($"Expected {s.Length} values for {count} samples of shape {sampleShape}, got {x.Length}.");
        for (int i = 0; i < s.Length; i++) s[i] = (float)x[i];
        return t;
    }

    /// <summary>Wraps a network (x [count, ...sampleShape], t) -> score.</summary>
    public static ScoreFunction FromTensor(Func<Tensor, double, Tensor> scoreNet, Shape sampleShape) => (x, count, t, score) =>
    {
        using var _ = GradMode.NoGrad();
        using var xt = ToTensor(x, count, sampleShape);
        using var y = scoreNet(xt, t);
        y.ExpectShape(xt.Shape, "score");
        var s = y.Span;
        for (int i = 0; i < s.Length; i++) score[i] = s[i];
    };

    /// <summary>Wraps a network as a score with vector-Jacobian products by one backward pass of sum(score * v).</summary>
    public static ScoreVjpFunction FromTensorWithVjp(Func<Tensor, double, Tensor> scoreNet, Shape sampleShape) => (x, count, t, v, score, vjp) =>
    {
        var xt = ToTensor(x, count, sampleShape);
        xt.RequiresGrad = true;
        var y = scoreNet(xt, t);
        y.ExpectShape(xt.Shape, "score");
        var vt = ToTensor(v, count, sampleShape);
        (y * vt).SumAll().Backward();
        var s = y.Span; var g = xt.Grad!.Span;
        for (int i = 0; i < s.Length; i++) { score[i] = s[i]; vjp[i] = g[i]; }
    };

    /// <summary>Score from a noise predictor under an SDE: s = -eps(x, t) / s(t) (Song et al. App. C).</summary>
    public static ScoreFunction FromEpsilon(ScoreFunction epsilon, Sde.Sde sde) => (x, count, t, score) =>
    {
        epsilon(x, count, t, score);
        double std = sde.Marginal(t).Std;
        for (int i = 0; i < score.Length; i++) score[i] = -score[i] / std;
    };
}
