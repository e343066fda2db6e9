using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Losses;

/// <summary>A noise schedule gamma(t) = -log SNR(t) on t in [0, 1] with its time derivative, both differentiable in the schedule's parameters.</summary>
public interface IGammaSchedule
{
    /// <summary>gamma(t) and d gamma / dt for t [B]; both [B].</summary>
    (Tensor Gamma, Tensor DGamma) Evaluate(Tensor t);
    /// <summary>gamma(0) as a [1, 1] tensor.</summary>
    Tensor Gamma0 { get; }
    /// <summary>gamma(1) as a [1, 1] tensor.</summary>
    Tensor Gamma1 { get; }
}

/// <summary>gamma(t) = gamma0 + (gamma1 - gamma0) t (VDM's fixed linear schedule, defaults -13.3 and 5).</summary>
public sealed class LinearGammaSchedule(double gamma0 = -13.3, double gamma1 = 5.0) : IGammaSchedule
{
    /// <inheritdoc/>
    public Tensor Gamma0 { get; } = Tensor.FromArray(new[] { (float)gamma0 }, 1, 1);
    /// <inheritdoc/>
    public Tensor Gamma1 { get; } = Tensor.FromArray(new[] { (float)gamma1 }, 1, 1);

    /// <inheritdoc/>
    public (Tensor Gamma, Tensor DGamma) Evaluate(Tensor t)
    {
        var g = Tensor.Empty(t.Shape); var d = Tensor.Full(t.Shape, (float)(gamma1 - gamma0));
        for (int i = 0; i < t.Size; i++) g.Span[i] = (float)(gamma0 + (gamma1 - gamma0) * t.Span[i]);
        return (g, d);
    }
}

/// <summary>
/// VDM's learned monotone schedule (Kingma et al. 2021 App. H): gamma-tilde(t) = l1(t) + l3(sigmoid(l2(l1(t)))) with positive
/// weights (softplus of free parameters), rescaled so gamma(0) = gamma0 and gamma(1) = gamma1 (both learned):
/// gamma(t) = gamma0 + (gamma1 - gamma0) (gamma-tilde(t) - gamma-tilde(0)) / (gamma-tilde(1) - gamma-tilde(0)).
/// The time derivative is formed analytically from the same tensors so it is differentiable too.
/// </summary>
public sealed class LearnedGammaSchedule : IGammaSchedule
{
    /// <summary>Free parameter w1 [1, 1].</summary>
    public Tensor W1 { get; }
    /// <summary>Free parameter b1 [1].</summary>
    public Tensor B1 { get; }
    /// <summary>Free parameter w2 [H, 1].</summary>
    public Tensor W2 { get; }
    /// <summary>Free parameter b2 [H].</summary>
    public Tensor B2 { get; }
    /// <summary>Free parameter w3 [1, H].</summary>
    public Tensor W3 { get; }
    /// <inheritdoc/>
    public Tensor Gamma0 { get; }
    /// <inheritdoc/>
    public Tensor Gamma1 { get; }

    /// <summary>All trainable tensors.</summary>
    public Tensor[] Parameters => new[] { W1, B1, W2, B2, W3, Gamma0, Gamma1 };

    /// <summary>Random small initialisation with <paramref name="hidden"/> sigmoid units (VDM uses 1024).</summary>
    public LearnedGammaSchedule(Generator generator, int hidden = 16, double gamma0 = -13.3, double gamma1 = 5.0)
    {
        Tensor R(params int[] s) { var t = Tensor.Randn(generator, s); for (int i = 0; i < t.Size; i++) t.Span[i] *= 0.5f; return t; }
        W1 = R(1, 1); B1 = R(1); W2 = R(hidden, 1); B2 = R(hidden); W3 = R(1, hidden);
        Gamma0 = Tensor.FromArray(new[] { (float)gamma0 }, 1, 1); Gamma1 = Tensor.FromArray(new[] { (float)gamma1 }, 1, 1);
        foreach (var p in Parameters) p.RequiresGrad = true;
    }

    /// <summary>Uses the given tensors as parameters (shapes as <see cref="Parameters"/>).</summary>
    public LearnedGammaSchedule(Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor w3, Tensor gamma0, Tensor gamma1)
    {
        W1 = w1; B1 = b1; W2 = w2; B2 = b2; W3 = w3; Gamma0 = gamma0; Gamma1 = gamma1;
        int h = w2.Dim(0);
        w1.ExpectShape(new Shape(1, 1), "w1"); w2.ExpectShape(new Shape(h, 1), "w2"); w3.ExpectShape(new Shape(1, h), "w3");
    }

    /// <summary>The unnormalised monotone network and its derivative at rows of t [n, 1].</summary>
    private (Tensor G, Tensor D) Tilde(Tensor t)
    {
        var w1 = W1.Softplus(); var w2 = W2.Softplus(); var w3 = W3.Softplus();
        var l1 = Tensor.Linear(t, w1, B1);
        var s = Tensor.Linear(l1, w2, B2).Sigmoid();
        var g = l1 + Tensor.Linear(s, w3, null);
        // d/dt = w1 (1 + sum_j w3_j s_j (1 - s_j) w2_j)
        var ds = s * (1f - s) * w2.Reshape(1, w2.Dim(0));
        var d = (Tensor.Linear(ds, w3, null) + 1f) * w1;
        return (g, d);
    }

    /// <inheritdoc/>
    public (Tensor Gamma, Tensor DGamma) Evaluate(Tensor t)
    {
        int b = t.Size;
        var ends = Tensor.FromArray(new float[] { 0, 1 }, 2, 1);
        var (g, d) = Tilde(Tensor.Concat(new[] { t.Reshape(b, 1), ends }, 0));
        var g0 = g.Narrow(0, b, 1); var g1 = g.Narrow(0, b + 1, 1);
        var scale = (Gamma1 - Gamma0) / (g1 - g0);
        var gamma = Gamma0 + (g.Narrow(0, 0, b) - g0) * scale;
        var dgamma = d.Narrow(0, 0, b) * scale;
        return (gamma.Reshape(b), dgamma.Reshape(b));
    }
}

/// <summary>Per-sample VDM loss terms in nats, each [B].</summary>
public sealed record VdmLoss(Tensor Total, Tensor Diffusion, Tensor Prior, Tensor Reconstruction);

/// <summary>
/// Continuous-time variational diffusion loss (Kingma et al. 2021): z_t = alpha_t x + sigma_t eps with alpha^2 = sigmoid(-gamma),
/// sigma^2 = sigmoid(gamma); L_inf = -1/2 E[SNR'(t) ||x - x-hat||^2] = 1/2 E[gamma'(t) ||eps - eps-hat||^2] (Eq. 17),
/// plus the prior KL(q(z_1|x) || N(0, I)) and a Gaussian reconstruction -log N(x; z_0/alpha_0, e^gamma0) for continuous data.
/// </summary>
public static class VariationalDiffusion
{
    private static readonly int[] FeatureAxis = [1];

    /// <summary>The loss for data x [B, D] with a noise-prediction model (z_t, gamma_t [B]) -> eps-hat; t drawn low-discrepancy (VDM App. I.1).</summary>
    public static VdmLoss Loss(Func<Tensor, Tensor, Tensor> model, IGammaSchedule schedule, Tensor x, NoiseSource noise)
    {
        if (x.Rank != 2) throw new ArgumentException($"Expected data [B, D], got {x.Shape}.");
        int b = x.Dim(0), dim = x.Dim(1);
        double u0 = noise.Uniform();
        var t = Tensor.Empty(b);
        for (int i = 0; i < b; i++) t.Span[i] = (float)((u0 + (double)i / b) % 1.0);
        var eps = noise.Randn(x.Shape);
        return Loss(model, schedule, x, t, eps);
    }

    /// <summary>The loss at given times t [B] and noise eps [B, D].</summary>
    public static VdmLoss Loss(Func<Tensor, Tensor, Tensor> model, IGammaSchedule schedule, Tensor x, Tensor t, Tensor eps)
    {
        int b = x.Dim(0), dim = x.Dim(1);
        eps.ExpectShape(x.Shape, "noise");
        var (gamma, dgamma) = schedule.Evaluate(t);
        var g2 = gamma.Reshape(b, 1);
        var alpha = (-g2).Sigmoid().Sqrt(); var sigma = g2.Sigmoid().Sqrt();
        var z = alpha * x + sigma * eps;
        var epsHat = model(z, gamma);
        epsHat.ExpectShape(x.Shape, "model output");
        var err = eps - epsHat;
        var diffusion = (err * err).Sum(FeatureAxis) * dgamma * 0.5f;  // Eq. 17 of Kingma et al. 2021 in eps form
        var s1 = schedule.Gamma1.Sigmoid(); var a1 = (-schedule.Gamma1).Sigmoid();
        var xsq = (x * x).Sum(FeatureAxis);
        var prior = (xsq.Reshape(b, 1) * a1 + (s1 - s1.Log() - 1f) * dim).Reshape(b) * 0.5f;  // KL(N(a1 x, s1^2) || N(0, 1)) summed over D
        var recon = ((schedule.Gamma0 + (float)(1 + Math.Log(2 * Math.PI))) * (0.5f * dim)).Reshape(1) * Tensor.Ones(b);  // E_eps of -log N(x; z_0/a_0, e^gamma0)
        return new VdmLoss(diffusion + prior + recon, diffusion, prior, recon);
    }
}
