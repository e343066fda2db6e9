using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Editing;
using DiffusionSharp.Diffusion.Guidance;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>
/// Guidance and editing on the 2-D mixture, where the exact answer is known: guiding towards class k (the mixture component)
/// must give component k, inpainting one coordinate must give the exact conditional of the other. Tolerances as in MixtureSamplingTests (5 SE).
/// </summary>
public class GuidanceEditingTests(ITestOutputHelper output)
{
    private const int N = 2000;
    private static readonly GaussianMixture2D Mix = GaussianMixture2D.Default();
    private static readonly GaussianDiffusion Base = new(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange);
    private static readonly GaussianDiffusion Spaced = Base.Respace(DiffusionBetas.SpaceTimesteps(1000, "100"));

    private static GaussianMixture2D Component(int k) => new(new[] { 1.0 }, new[] { Mix.Means[k] }, new[] { Mix.Covs[k] });

    private static double[] D(Tensor t) => t.ToArray().Select(v => (double)v).ToArray();

    /// <summary>Exact p(y = k | x_t) of the mixture as logits built from tensor ops (so its gradient comes from our autograd).</summary>
    private static NoisyClassifier MixtureClassifier() => (x, ts) =>
    {
        int b = x.Dim(0);
        var logits = new List<Tensor>();
        var x0 = x.Narrow(1, 0, 1); var x1 = x.Narrow(1, 1, 1);
        for (int k = 0; k < Mix.K; k++)
        {
            var c = Mix.Covs[k];
            float[] m0 = new float[b], m1 = new float[b], p00 = new float[b], p01 = new float[b], p11 = new float[b], cst = new float[b];
            for (int i = 0; i < b; i++)
            {
                double ab = Base.AlphasCumprod[(int)ts.Span[i]], a = Math.Sqrt(ab), s2 = 1 - ab;
                double c00 = ab * c[0] + s2, c01 = ab * c[1], c11 = ab * c[2] + s2, det = c00 * c11 - c01 * c01;
                m0[i] = (float)(a * Mix.Means[k][0]); m1[i] = (float)(a * Mix.Means[k][1]);
                p00[i] = (float)(c11 / det); p01[i] = (float)(-c01 / det); p11[i] = (float)(c00 / det);
                cst[i] = (float)(Math.Log(Mix.Weights[k]) - 0.5 * Math.Log(det));
            }
            var d0 = x0 - Tensor.FromArray(m0, b, 1); var d1 = x1 - Tensor.FromArray(m1, b, 1);
            var q = d0 * d0 * Tensor.FromArray(p00, b, 1) + 2f * (d0 * d1 * Tensor.FromArray(p01, b, 1)) + d1 * d1 * Tensor.FromArray(p11, b, 1);
            logits.Add(Tensor.FromArray(cst, b, 1) - 0.5f * q);
        }
        return Tensor.Concat(logits, 1);
    };

    [Fact]
    public void ClassifierGradientMatchesFiniteDifferencesOfLogPosterior()
    {
        var x = Tensor.FromArray(new float[] { -0.3f, 0.1f, 0.2f, -0.2f }, 2, 2);
        var guidance = new ClassifierGuidance(Base, MixtureClassifier(), new[] { 2, 0 }, 1.0);
        var g = guidance.Gradient(x, new[] { 300, 300 }).ToArray();
        double LogPost(double a0, double a1, int k)
        {
            double ab = Base.AlphasCumprod[300];
            var one = new GaussianMixture2D(new[] { Mix.Weights[k] }, new[] { Mix.Means[k] }, new[] { Mix.Covs[k] });
            return one.LogDensity(a0, a1, Math.Sqrt(ab), Math.Sqrt(1 - ab)) - Mix.LogDensity(a0, a1, Math.Sqrt(ab), Math.Sqrt(1 - ab));
        }
        int[] labels = { 2, 0 };
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < 2; j++)
            {
                double[] p = { x.Span[2 * b], x.Span[2 * b + 1] }, m = { x.Span[2 * b], x.Span[2 * b + 1] };
                p[j] += 1e-5; m[j] -= 1e-5;
                double num = (LogPost(p[0], p[1], labels[b]) - LogPost(m[0], m[1], labels[b])) / 2e-5;
                Assert.Equal(num, g[2 * b + j], 2);
            }
    }

    [Fact]
    public void ClassifierGuidanceAlg1AndAlg2SampleTheChosenComponent()
    {
        var labels = Enumerable.Repeat(2, N).ToArray();
        var guidance = new ClassifierGuidance(Spaced, MixtureClassifier(), labels, 1.0);
        var model = MixtureSamplingTests.OptimalLearnedRange(Mix, Base, Spaced);
        var a1 = Spaced.PSampleLoop(model, new Shape(N, 2), new Generator(51), guide: guidance.ConditionMean);
        double z1 = Component(2).AssertMatches(D(a1), N, 5, "classifier guidance Alg. 1");
        var eps = MixtureSamplingTests.OptimalEps(Mix, Base);
        var ddim = new GaussianDiffusion(DiffusionBetas.Linear(1000)).Respace(DiffusionBetas.SpaceTimesteps(1000, "ddim500"));
        var a2 = ddim.DdimSampleLoop(eps, new Shape(N, 2), new Generator(52), guide: new ClassifierGuidance(ddim, MixtureClassifier(), labels, 1.0).ConditionScore);
        double z2 = Component(2).AssertMatches(D(a2), N, 5, "classifier guidance Alg. 2 (DDIM)");
        output.WriteLine($"classifier guidance: Alg. 1 worst {z1:F2} SE, Alg. 2 worst {z2:F2} SE");
    }

    [Fact]
    public void ClassifierFreeGuidanceCombinesAndSamplesTheCondition()
    {
        var u = Tensor.FromValues(1, 2, 3); var c = Tensor.FromValues(2, 0, 3);
        Assert.Equal(new float[] { 4, -4, 3 }, ClassifierFreeGuidance.Combine(u, c, 3).ToArray());
        var dropped = ClassifierFreeGuidance.DropLabels(Enumerable.Repeat(1, 10000).ToArray(), 0.2, -1, new Generator(1));
        Assert.InRange(dropped.Count(v => v == -1) / 10000.0, 0.18, 0.22);  // 5 binomial SE = 0.02
        Assert.All(dropped, v => Assert.True(v is -1 or 1));

        var ddim = new GaussianDiffusion(DiffusionBetas.Linear(1000)).Respace(DiffusionBetas.SpaceTimesteps(1000, "ddim500"));
        var unc = MixtureSamplingTests.OptimalEps(Mix, Base);
        var conds = Enumerable.Range(0, 3).Select(k => MixtureSamplingTests.OptimalEps(Component(k), Base)).ToArray();
        ConditionalDenoiserModel model = (x, t, labels) =>
        {
            if (labels.Distinct().Count() != 1) throw new InvalidOperationException("test model expects one label per batch");
            return labels[0] < 0 ? unc(x, t) : conds[labels[0]](x, t);
        };
        var cfg = ClassifierFreeGuidance.Guide(model, Enumerable.Repeat(1, N).ToArray(), -1, 1.0);
        var x1 = ddim.DdimSampleLoop(cfg, new Shape(N, 2), new Generator(53));
        double z = Component(1).AssertMatches(D(x1), N, 5, "classifier-free s = 1");
        var x0 = ddim.DdimSampleLoop(ClassifierFreeGuidance.Guide(model, Enumerable.Repeat(1, N).ToArray(), -1, 0.0), new Shape(N, 2), new Generator(53));
        double z0 = Mix.AssertMatches(D(x0), N, 5, "classifier-free s = 0");
        // s > 1 sharpens the condition: samples move away from the other components' means (Ho and Salimans Fig. 2)
        var x3 = ddim.DdimSampleLoop(ClassifierFreeGuidance.Guide(model, Enumerable.Repeat(1, N).ToArray(), -1, 3.0), new Shape(N, 2), new Generator(53));
        double v1 = Var(D(x1)), v3 = Var(D(x3));
        output.WriteLine($"CFG: s=1 worst {z:F2} SE, s=0 worst {z0:F2} SE, total variance s=1 {v1:F4}, s=3 {v3:F4}");
        Assert.True(v3 < v1, "guidance scale 3 should concentrate the samples");
    }

    private static double Var(double[] x)
    {
        int n = x.Length / 2;
        double m0 = 0, m1 = 0, q = 0;
        for (int i = 0; i < n; i++) { m0 += x[2 * i]; m1 += x[2 * i + 1]; }
        m0 /= n; m1 /= n;
        for (int i = 0; i < n; i++) q += Math.Pow(x[2 * i] - m0, 2) + Math.Pow(x[2 * i + 1] - m1, 2);
        return q / n;
    }

    [Fact]
    public void JumpScheduleFollowsRePaint()
    {
        var s = Inpainting.JumpSchedule(20, 5, 2);
        // down to 14, back to 19? no: jumps happen at 0, 5, 10 (below 20 - 5 = 15), once each
        var expected = new List<int> { 20 };
        for (int t = 19; t >= 10; t--) expected.Add(t);
        expected.AddRange(new[] { 11, 12, 13, 14, 15 });
        for (int t = 14; t >= 5; t--) expected.Add(t);
        expected.AddRange(new[] { 6, 7, 8, 9, 10 });
        for (int t = 9; t >= 0; t--) expected.Add(t);
        expected.AddRange(new[] { 1, 2, 3, 4, 5 });
        for (int t = 4; t >= 0; t--) expected.Add(t);
        expected.Add(-1);
        Assert.Equal(expected, s);
    }

    /// <summary>
    /// RePaint on the mixture with x known: the known coordinate is kept exactly and y should follow the exact conditional p(y | x).
    /// Replacement-based conditioning is approximate (Lugmayr et al. Sec. 4.1); resampling with jumps must move the mode weight and
    /// the mode means closer to the exact conditional than plain replacement, and land within 0.08 of it (measured bias ~0.06 with 10 x 10 jumps).
    /// </summary>
    [Fact]
    public void RePaintInpaintingApproachesTheExactConditional()
    {
        const double xKnown = -0.25;
        const int n = 1000;
        var reference = new float[2 * n];
        for (int i = 0; i < n; i++) { reference[2 * i] = (float)xKnown; reference[2 * i + 1] = 0.9f; }
        var mask = Tensor.FromArray(new float[] { 1, 0 }, 1, 2);
        var model = MixtureSamplingTests.OptimalLearnedRange(Mix, Base, Spaced);
        // exact p(y | x) = sum_k w_k(x) N(y; mu_y + C_xy/C_xx (x - mu_x), C_yy - C_xy^2/C_xx), w_k prop. to pi_k N(x; mu_x, C_xx)
        var w = new double[3]; var cm = new double[3];
        for (int k = 0; k < 3; k++)
        {
            var c = Mix.Covs[k];
            w[k] = Mix.Weights[k] * Math.Exp(-0.5 * Math.Pow(xKnown - Mix.Means[k][0], 2) / c[0]) / Math.Sqrt(c[0]);
            cm[k] = Mix.Means[k][1] + c[1] / c[0] * (xKnown - Mix.Means[k][0]);
        }
        double ws = w.Sum();
        for (int k = 0; k < 3; k++) w[k] /= ws;
        (double Err, double Frac, double MLo, double MUp) Run(int jumpLength, int jumpCount)
        {
            var r = D(Inpainting.Sample(Spaced, model, Tensor.FromArray(reference, n, 2), mask, new Generator(61), jumpLength, jumpCount));
            Assert.All(Enumerable.Range(0, n), i => Assert.Equal(xKnown, r[2 * i], 6));
            var ys = Enumerable.Range(0, n).Select(i => r[2 * i + 1]).ToArray();  // components 0 (y ~ -0.3) and 2 (y ~ 0.5): split at 0
            var up = ys.Where(y => y > 0).ToArray(); var lo = ys.Where(y => y <= 0).ToArray();
            double frac = (double)up.Length / n, mUp = up.Average(), mLo = lo.Average();
            return (Math.Abs(frac - w[2]) + Math.Abs(mUp - cm[2]) + Math.Abs(mLo - cm[0]), frac, mLo, mUp);
        }
        var plain = Run(1, 1);
        var repaint = Run(10, 10);
        output.WriteLine($"inpainting exact: upper weight {w[2]:F4}, means {cm[0]:F4}/{cm[2]:F4}");
        output.WriteLine($"  replacement: {plain.Frac:F4}, {plain.MLo:F4}/{plain.MUp:F4} (error {plain.Err:F4}); RePaint 10x10: {repaint.Frac:F4}, {repaint.MLo:F4}/{repaint.MUp:F4} (error {repaint.Err:F4})");
        Assert.True(repaint.Err < plain.Err, "resampling should reduce the error");
        Assert.True(Math.Abs(repaint.Frac - w[2]) < 0.08 && Math.Abs(repaint.MLo - cm[0]) < 0.08 && Math.Abs(repaint.MUp - cm[2]) < 0.08);
    }

    [Fact]
    public void SdEditStrengthControlsFidelity()
    {
        var model = MixtureSamplingTests.OptimalLearnedRange(Mix, Base, Spaced);
        var guide = new float[2 * N];
        for (int i = 0; i < N; i++) { guide[2 * i] = 0.55f; guide[2 * i + 1] = -0.25f; }  // a point in component 1
        var g = Tensor.FromArray(guide, N, 2);
        var full = D(ImageEditing.SdEdit(Spaced, model, g, 1.0, new Generator(71)));
        double z = Mix.AssertMatches(full, N, 5, "SDEdit strength 1");  // from pure noise: the data distribution
        var low = D(ImageEditing.SdEdit(Spaced, model, g, 0.1, new Generator(72)));
        int stay = Enumerable.Range(0, N).Count(i => Mix.Assign(low[2 * i], low[2 * i + 1]) == 1);
        // exact: with the true reverse process the output is x_0 ~ p(x_0 | x_t0), so P(component 1) = E_{x_t0 ~ q(.|guide)}[p(k = 1 | x_t0)]
        int t0 = Spaced.TimestepMap[9];
        double ab = Base.AlphasCumprod[t0], a = Math.Sqrt(ab), s = Math.Sqrt(1 - ab);
        var gen = new Generator(73);
        var zz = new float[2 * 20000];
        gen.Normal(zz);
        var one = new GaussianMixture2D(new[] { Mix.Weights[1] }, new[] { Mix.Means[1] }, new[] { Mix.Covs[1] });
        double pStay = Enumerable.Range(0, 20000).Average(i =>
        {
            double u = a * 0.55 + s * zz[2 * i], v = a * -0.25 + s * zz[2 * i + 1];
            return Math.Exp(one.LogDensity(u, v, a, s) - Mix.LogDensity(u, v, a, s));
        });
        double se = Math.Sqrt(pStay * (1 - pStay) / N);
        output.WriteLine($"SDEdit: strength 1 worst {z:F2} SE; strength 0.1 keeps {stay}/{N} in the guide's component, exact {pStay:F4}");
        Assert.True(Math.Abs((double)stay / N - pStay) < 5 * se + 0.005, $"kept fraction {(double)stay / N} vs exact {pStay}");
        Assert.True(pStay < 0.99 && pStay > 0.5);
    }

    [Fact]
    public void DdimInversionGivesGaussianLatentsAndReconstructs()
    {
        var eps = MixtureSamplingTests.OptimalEps(Mix, Base);
        var ddim = new GaussianDiffusion(DiffusionBetas.Linear(1000)).Respace(DiffusionBetas.SpaceTimesteps(1000, "ddim500"));
        var x0 = Mix.Sample(N, new Generator(81));
        var x0t = Tensor.FromArray(x0.Select(v => (float)v).ToArray(), N, 2);
        var latent = ImageEditing.DdimInvert(ddim, eps, x0t);
        var std = new GaussianMixture2D(new[] { 1.0 }, new[] { new[] { 0.0, 0.0 } }, new[] { new[] { 1.0, 0.0, 1.0 } });
        double z = std.AssertMatches(D(latent), N, 5, "DDIM latents ~ N(0, I)");
        var back = D(ddim.DdimSampleLoop(eps, new Shape(N, 2), new Generator(82), xT: latent));
        double maxErr = Enumerable.Range(0, 2 * N).Max(i => Math.Abs(back[i] - x0[i]));
        double rms = Math.Sqrt(Enumerable.Range(0, 2 * N).Average(i => Math.Pow(back[i] - x0[i], 2)));
        output.WriteLine($"DDIM inversion: latent worst {z:F2} SE, reconstruction rms {rms:E2}, max {maxErr:E2}");
        Assert.True(rms < 0.02, $"reconstruction rms {rms}");
    }

    [Fact]
    public void SlerpKeepsNormAndInterpolatesTheAngle()
    {
        var a = Tensor.FromArray(new float[] { 1, 0, 0, 3, 4, 0 }, 2, 3);
        var b = Tensor.FromArray(new float[] { 0, 1, 0, 0, 0, 5 }, 2, 3);
        Assert.Equal(a.ToArray(), ImageEditing.Slerp(a, b, 0).ToArray());
        GradCheck.AssertClose(ImageEditing.Slerp(a, b, 1).Span, b.Span, 1e-6, 0);
        var m = ImageEditing.Slerp(a, b, 1.0 / 3).ToArray();
        Assert.Equal(Math.Cos(Math.PI / 6), m[0], 6);  // 30 degrees of the 90 between orthogonal unit vectors
        Assert.Equal(Math.Sin(Math.PI / 6), m[1], 6);
        Assert.Equal(5.0, Math.Sqrt(m[3] * m[3] + m[4] * m[4] + m[5] * m[5]), 5);
        var lin = ImageEditing.Slerp(a, a, 0.5).ToArray();  // parallel: linear fallback
        Assert.Equal(a.ToArray(), lin);
    }
}
