using DiffusionSharp.Optim;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Optim;

public class GradClipTests
{
    private static Tensor WithGrad(float[] value, float[]? grad)
    {
        var t = Tensor.FromArray(value, value.Length);
        t.RequiresGrad = true;
        if (grad != null) t.Grad = Tensor.FromArray(grad, grad.Length);
        return t;
    }

    [Fact]
    public void ClipsToMaxNormAndReturnsTheTotal()
    {
        // Norms 5 and 12 -> total 13 (a 5-12-13 triangle); coef = 1.3 / (13 + 1e-6).
        var a = WithGrad(new float[2], new float[] { 3, 4 });
        var b = WithGrad(new float[1], new float[] { 12 });
        var c = WithGrad(new float[1], null);
        float total = GradClip.ClipGlobalNorm(new[] { a, b, c }, 1.3);
        Assert.Equal(13f, total);
        float coef = 1.3f / (13f + 1e-6f);
        Assert.Equal(new[] { 3 * coef, 4 * coef }, a.Grad!.ToArray());
        Assert.Equal(12 * coef, b.Grad!.Item());
        Assert.Null(c.Grad);
    }

    [Fact]
    public void LargeGradientNormMatchesDoubleReference()
    {
        var g = new Generator(4);
        var a = Tensor.Zeros(10_007);
        a.RequiresGrad = true;
        a.Grad = Tensor.Randn(g, 10_007);
        var b = Tensor.Zeros(5);
        b.RequiresGrad = true;
        b.Grad = Tensor.Randn(g, 5);
        double na = Math.Sqrt(a.Grad.ToArray().Sum(x => (double)x * x));
        double nb = Math.Sqrt(b.Grad.ToArray().Sum(x => (double)x * x));
        double expect = Math.Sqrt(na * na + nb * nb);
        var before = a.Grad.ToArray();
        float total = GradClip.ClipGlobalNorm(new[] { a, b }, 2.0);
        Assert.Equal(expect, total, expect * 2e-7);
        float coef = 2f / (total + 1e-6f);
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i] * coef, a.Grad.Span[i]);
    }

    [Fact]
    public void SmallGradientsAreLeftAlone()
    {
        var a = WithGrad(new float[2], new float[] { 0.3f, 0.4f });
        Assert.Equal(0.5f, GradClip.ClipGlobalNorm(new[] { a }, 1.0), 1e-7f);
        Assert.Equal(new[] { 0.3f, 0.4f }, a.Grad!.ToArray());
    }

    [Fact]
    public void MaxNormTypeAndEdgeCases()
    {
        var a = WithGrad(new float[3], new float[] { 1, -6, 2 });
        Assert.Equal(6f, GradClip.ClipGlobalNorm(new[] { a }, 3, double.PositiveInfinity));
        Assert.Equal(-6f * (3f / (6f + 1e-6f)), a.Grad!.Span[1]);
        Assert.Equal(0f, GradClip.ClipGlobalNorm(new[] { WithGrad(new float[1], null) }, 1));
        var n = WithGrad(new float[1], new[] { float.NaN });
        Assert.Throws<InvalidOperationException>(() => GradClip.ClipGlobalNorm(new[] { n }, 1, errorIfNonfinite: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ClipGlobalNorm(new[] { a }, 1, normType: 1));
    }
}

public class EmaTests
{
    [Fact]
    public void DecayScheduleMatchesDiffusersClosedForm()
    {
        var ema = new Ema(new[] { Tensor.Zeros(1) }, decay: 0.999);
        Assert.Equal(0, ema.DecayAt(1));                   // s = 0: shadow jumps to the weights
        Assert.Equal(2.0 / 11, ema.DecayAt(2), 15);          // (1 + 1) / (10 + 1)
        Assert.Equal(100.0 / 109, ema.DecayAt(100), 15);     // s = 99
        Assert.Equal(0.999, ema.DecayAt(1_000_000), 15);     // capped at max decay
        var after = new Ema(new[] { Tensor.Zeros(1) }, updateAfterStep: 5, minDecay: 0.5);
        Assert.Equal(0, after.DecayAt(6));
        Assert.Equal(0.5, after.DecayAt(7));                 // 2/11 raised to min decay
        var warm = new Ema(new[] { Tensor.Zeros(1) }, decay: 0.9999, useWarmup: true, invGamma: 1, power: 2.0 / 3);
        Assert.Equal(1 - Math.Pow(2, -2.0 / 3), warm.DecayAt(2), 15);
        Assert.Equal(0.999, warm.DecayAt(31623 + 1), 6);     // 1 - 31623^(-2/3) ~ 0.999
        var warm2 = new Ema(new[] { Tensor.Zeros(1) }, useWarmup: true, invGamma: 10, power: 1);
        Assert.Equal(1 - 1 / (1 + 5 / 10.0), warm2.DecayAt(6), 15);
    }

    [Fact]
    public void ShadowMatchesTheClosedFormWeightedSum()
    {
        // s_n = prod(d_k) s_0 + sum_k (1 - d_k) prod_{j>k} d_j p_k, with the weights p_k changing every step.
        var g = new Generator(21);
        var p = Tensor.Randn(g, 37);
        p.RequiresGrad = true;
        var s0 = p.ToArray();
        var ema = new Ema(new[] { p }, decay: 0.95);
        int steps = 40;
        var history = new List<float[]>();
        for (int k = 1; k <= steps; k++)
        {
            var pk = Tensor.Randn(g, 37).Span;
            pk.CopyTo(p.Span);
            history.Add(p.ToArray());
            ema.Step(new[] { p });
            Assert.Equal(ema.DecayAt(k), ema.CurrentDecay);
        }
        var shadow = ema.Shadow[0].ToArray();
        for (int i = 0; i < 37; i++)
        {
            double expect = s0[i];
            for (int k = 1; k <= steps; k++) expect *= ema.DecayAt(k);
            for (int k = 1; k <= steps; k++)
            {
                double w = 1 - ema.DecayAt(k);
                for (int j = k + 1; j <= steps; j++) w *= ema.DecayAt(j);
                expect += w * history[k - 1][i];
            }
            Assert.True(Math.Abs(shadow[i] - expect) <= 1e-5, $"element {i}: {shadow[i]} vs {expect}");
        }
        Assert.Equal(steps, ema.OptimizationStep);
    }

    [Fact]
    public void FrozenParametersAreCopiedAndCopyToStoreRestoreWork()
    {
        var trained = Tensor.FromValues(0f, 0f);
        trained.RequiresGrad = true;
        var frozen = Tensor.FromValues(5f);
        var ema = new Ema(new[] { trained, frozen }, decay: 0.5);
        ema.Step(new[] { trained, frozen });   // decay 0: shadow = weights
        trained.Span.Fill(10f);
        frozen.Span.Fill(7f);
        ema.Step(new[] { trained, frozen });   // decay min(0.5, 2/11) = 2/11
        float expect = 10f * (float)(1 - 2.0 / 11);
        Assert.Equal(expect, ema.Shadow[0].Span[0], 1e-5f);
        Assert.Equal(7f, ema.Shadow[1].Item());

        var ps = new[] { trained, frozen };
        ema.Store(ps);
        ema.CopyTo(ps);
        Assert.Equal(expect, trained.Span[1], 1e-5f);
        ema.Restore(ps);
        Assert.Equal(new[] { 10f, 10f }, trained.ToArray());
        Assert.Throws<InvalidOperationException>(() => ema.Restore(ps));
        Assert.Contains("[3]", Assert.Throws<ArgumentException>(() => ema.CopyTo(new[] { Tensor.Zeros(3), frozen })).Message);
    }

    [Fact]
    public void StateDictRoundTrips()
    {
        var p = Tensor.FromValues(1f, 2f, 3f);
        p.RequiresGrad = true;
        var ema = new Ema(new[] { p });
        for (int k = 0; k < 3; k++) { p.Span[0] += 1; ema.Step(new[] { p }); }
        var state = ema.StateDict("ema.");
        var ema2 = new Ema(new[] { Tensor.Zeros(3) });
        ema2.LoadStateDict(state, "ema.");
        Assert.Equal(3, ema2.OptimizationStep);
        Assert.Equal(ema.Shadow[0].ToArray(), ema2.Shadow[0].ToArray());
        p.Span[0] += 1;
        ema.Step(new[] { p });
        ema2.Step(new[] { p });
        Assert.Equal(ema.Shadow[0].ToArray(), ema2.Shadow[0].ToArray());
        state["ema.shadow.0"] = Tensor.Zeros(4);
        Assert.Contains("[4]", Assert.Throws<InvalidDataException>(() => ema2.LoadStateDict(state, "ema.")).Message);
    }
}

public class LinearWarmupTests
{
    [Fact]
    public void WarmupThenConstant()
    {
        var s = new LinearWarmup(1e-3, 4);
        Assert.Equal(new[] { 0, 0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3 }, Enumerable.Range(0, 6).Select(t => s.LearningRateAt(t)).ToArray());
    }

    [Fact]
    public void WarmupThenLinearDecay()
    {
        var s = new LinearWarmup(2.0, 2, AfterWarmup.Linear, totalSteps: 6);
        // After warm-up: (total - t) / (total - warmup) = (6 - t) / 4.
        Assert.Equal(new[] { 0, 1.0, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0 }, Enumerable.Range(0, 8).Select(t => s.LearningRateAt(t)).ToArray());
    }

    [Fact]
    public void WarmupThenCosine()
    {
        var s = new LinearWarmup(1.0, 10, AfterWarmup.Cosine, totalSteps: 110);
        Assert.Equal(0.5, s.LearningRateAt(5), 15);
        Assert.Equal(1.0, s.LearningRateAt(10), 15);
        Assert.Equal(0.5 * (1 + Math.Cos(Math.PI * 0.25)), s.LearningRateAt(35), 15);   // a quarter through the decay
        Assert.Equal(0.5, s.LearningRateAt(60), 12);                                      // halfway
        Assert.Equal(0.0, s.LearningRateAt(110), 15);
        var p = Tensor.Zeros(1);
        p.RequiresGrad = true;
        var opt = new Adam(new[] { p }, lr: 123);
        s.Apply(opt, 60);
        Assert.Equal(0.5, opt.LearningRate, 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinearWarmup(1, 10, AfterWarmup.Cosine, totalSteps: 5));
    }

    [Fact]
    public void ZeroWarmupStartsAtFullRate()
    {
        Assert.Equal(0.1, new LinearWarmup(0.1, 0).LearningRateAt(0));
    }
}
