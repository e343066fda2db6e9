using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Guidance;

/// <summary>A class-conditional denoiser: (x_t, timesteps, labels) -> prediction; a label equal to the null label means unconditional.</summary>
public delegate Tensor ConditionalDenoiserModel(Tensor x, Tensor timesteps, int[] labels);

/// <summary>Classifier-free guidance (Ho and Salimans 2022): train with dropped labels, sample with eps_u + s (eps_c - eps_u).</summary>
public static class ClassifierFreeGuidance
{
    /// <summary>Replaces each label by <paramref name="nullLabel"/> with probability <paramref name="dropProbability"/> (training-time condition dropout).</summary>
    public static int[] DropLabels(ReadOnlySpan<int> labels, double dropProbability, int nullLabel, Generator generator)
    {
        if (dropProbability is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(dropProbability), $"Expected a probability in [0, 1], got {dropProbability}.");
        var r = new int[labels.Length];
        for (int i = 0; i < r.Length; i++) r[i] = generator.NextDouble() < dropProbability ? nullLabel : labels[i];
        return r;
    }

    /// <summary>eps = eps_uncond + s (eps_cond - eps_uncond) (Ho and Salimans 2022 Eq. 6), elementwise.</summary>
    public static Tensor Combine(Tensor epsUncond, Tensor epsCond, double scale)
    {
        epsCond.ExpectShape(epsUncond.Shape, "conditional prediction");
        var y = Tensor.Empty(epsUncond.Shape);
        var u = epsUncond.Span; var c = epsCond.Span; var o = y.Span;
        for (int i = 0; i < o.Length; i++) o[i] = (float)(u[i] + scale * ((double)c[i] - u[i]));
        return y;
    }

    /// <summary>
    /// A denoiser that evaluates the conditional and unconditional predictions and combines them. With
    /// <paramref name="learnedVariance"/> the guided channels are the first half of axis 1 and the variance half is the conditional one (GLIDE).
    /// </summary>
    public static DenoiserModel Guide(ConditionalDenoiserModel model, int[] labels, int nullLabel, double scale, bool learnedVariance = false) => (x, t) =>
    {
        if (x.Dim(0) != labels.Length) throw new ArgumentException($"Expected {labels.Length} samples for {labels.Length} labels, got x of shape {x.Shape}.");
        var cond = model(x, t, labels);
        var uncond = model(x, t, Enumerable.Repeat(nullLabel, labels.Length).ToArray());
        if (!learnedVariance) return Combine(uncond, cond, scale);
        int c = cond.Dim(1) / 2;
        return Tensor.Concat([Combine(uncond.Narrow(1, 0, c), cond.Narrow(1, 0, c), scale), cond.Narrow(1, c, c)], 1);
    };
}
