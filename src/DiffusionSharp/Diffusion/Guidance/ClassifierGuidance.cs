using DiffusionSharp.Autograd;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Guidance;

/// <summary>A noisy-image classifier: (x_t, timesteps) -> logits [B, classes].</summary>
public delegate Tensor NoisyClassifier(Tensor x, Tensor timesteps);

/// <summary>
/// Classifier guidance (Dhariwal and Nichol 2021): s grad_x log p(y | x_t) from the classifier by our autograd, added to the
/// mean scaled by the variance (Alg. 1) or subtracted from eps scaled by sqrt(1 - alpha_bar) (Alg. 2).
/// </summary>
public sealed class ClassifierGuidance(GaussianDiffusion diffusion, NoisyClassifier classifier, int[] labels, double scale)
{
    /// <summary>s grad_x log softmax(classifier(x, t))[y] per sample.</summary>
    public Tensor Gradient(Tensor x, int[] t)
    {
        if (x.Dim(0) != labels.Length) throw new ArgumentException($"Expected {labels.Length} samples for {labels.Length} labels, got x of shape {x.Shape}.");
        if (!GradMode.Enabled) throw new InvalidOperationException("Classifier guidance needs gradient recording; call it outside a NoGrad scope.");
        var xin = x.Clone();
        xin.RequiresGrad = true;
        var logits = classifier(xin, diffusion.ModelTimesteps(t));
        if (logits.Rank != 2 || logits.Dim(0) != labels.Length)
            throw new ArgumentException($"Expected classifier logits [{labels.Length}, classes], got {logits.Shape}.");
        var logp = logits.LogSoftmax(1);
        int k = logits.Dim(1);
        var select = Tensor.Zeros(labels.Length, k);
        for (int i = 0; i < labels.Length; i++)
        {
            if ((uint)labels[i] >= (uint)k) throw new ArgumentOutOfRangeException($"Label {labels[i]} outside 0..{k - 1}.", (Exception?)null);
            select.Span[i * k + labels[i]] = 1;
        }
        (logp * select).SumAll().Backward();
        return (xin.Grad ?? Tensor.Zeros(x.Shape)) * (float)scale;
    }

    /// <summary>Alg. 1: mu + Sigma s grad log p(y | x_t).</summary>
    public PMeanVariance ConditionMean(PMeanVariance p, Tensor x, int[] t)
    {
        return p with { Mean = p.Mean + p.Variance() * Gradient(x, t) };
    }

    /// <summary>Alg. 2: eps-hat = eps - sqrt(1 - alpha_bar) s grad log p(y | x_t), then x_0 and the mean from eps-hat.</summary>
    public PMeanVariance ConditionScore(PMeanVariance p, Tensor x, int[] t)
    {
        var (a, s) = diffusion.Scales(t, x.Shape);
        var eps = p.PredEpsilon - s * Gradient(x, t);
        var x0 = PredictionType.Epsilon.ToX0(eps, x, a, s);
        var (mean, _, _) = diffusion.QPosteriorMeanVariance(x0, x, t);
        return p with { Mean = mean, PredXStart = x0, PredEpsilon = eps };
    }

}
