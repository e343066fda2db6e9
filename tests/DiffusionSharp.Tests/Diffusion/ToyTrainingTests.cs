using DiffusionSharp.Autograd;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Losses;
using DiffusionSharp.Diffusion.Schedules;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>
/// A tiny MLP denoiser trained on the 2-D mixture with each objective: the loss on a fixed evaluation set must fall clearly, and
/// ancestral sampling (respaced to 100 steps) from the trained model must land on the mixture: component weights within 0.08,
/// means within 0.15 (the underfit model pulls modes toward the origin) and within-component spread within a factor 2.5 (a 64-unit MLP after 2000 steps is far from the optimum).
/// </summary>
public class ToyTrainingTests(ITestOutputHelper output)
{
    private sealed class Mlp
    {
        public readonly Tensor W1, B1, W2, B2, W3, B3;
        public Mlp(Generator g, int outDim, int hidden = 64)
        {
            Tensor R(double scale, params int[] s) { var t = Tensor.Randn(g, s); for (int i = 0; i < t.Size; i++) t.Span[i] *= (float)scale; return t; }
            W1 = R(1 / Math.Sqrt(6), hidden, 6); B1 = Tensor.Zeros(hidden);
            W2 = R(1 / Math.Sqrt(hidden), hidden, hidden); B2 = Tensor.Zeros(hidden);
            W3 = R(0.1 / Math.Sqrt(hidden), outDim, hidden); B3 = Tensor.Zeros(outDim);
            foreach (var p in Parameters) p.RequiresGrad = true;
        }
        public Tensor[] Parameters => new[] { W1, B1, W2, B2, W3, B3 };

        // input: x (2) and sinusoidal features of t/T (4)
        public Tensor Forward(Tensor x, Tensor ts)
        {
            int b = x.Dim(0);
            var emb = Tensor.Empty(b, 4);
            for (int i = 0; i < b; i++)
            {
                double u = ts.Span[i] / 1000.0;
                emb.Span[4 * i] = (float)Math.Sin(Math.PI * u); emb.Span[4 * i + 1] = (float)Math.Cos(Math.PI * u);
                emb.Span[4 * i + 2] = (float)Math.Sin(3 * Math.PI * u); emb.Span[4 * i + 3] = (float)Math.Cos(3 * Math.PI * u);
            }
            var h = Tensor.Linear(Tensor.Concat(new[] { x, emb }, 1), W1, B1).Silu();
            h = Tensor.Linear(h, W2, B2).Silu();
            return Tensor.Linear(h, W3, B3);
        }
    }

    [Theory]
    [InlineData("simple")]
    [InlineData("hybrid")]
    [InlineData("minsnr")]
    public void TrainingReducesTheLoss(string objective)
    {
        var diffusion = objective switch
        {
            "hybrid" => new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.Epsilon, ModelVarianceType.LearnedRange, DiffusionLossType.Hybrid),
            "minsnr" => new GaussianDiffusion(DiffusionBetas.Linear(1000), PredictionType.VPrediction) { MinSnrGamma = 5 },
            _ => new GaussianDiffusion(DiffusionBetas.Linear(1000)),
        };
        var g = new Generator(100);
        var mlp = new Mlp(g, objective == "hybrid" ? 4 : 2);
        DenoiserModel model = mlp.Forward;
        var mix = GaussianMixture2D.Default();
        Tensor Batch(int n, Generator gen) => Tensor.FromArray(mix.Sample(n, gen).Select(v => (float)v).ToArray(), n, 2);
        // fixed evaluation set: data, timesteps and noise
        var ge = new Generator(200);
        var xe = Batch(512, ge);
        var te = Enumerable.Range(0, 512).Select(_ => ge.NextInt(1000)).ToArray();
        var ne = Tensor.Randn(ge, 512, 2);
        double Eval() { using var _ = GradMode.NoGrad(); return diffusion.TrainingLosses(model, xe, te, ne).Loss.MeanAll().Item(); }
        double before = Eval();
        var adam = new DiffusionSharp.Optim.Adam(mlp.Parameters, 3e-3);
        var sampler = new UniformTimestepSampler(1000);
        for (int step = 0; step < 2000; step++)
        {
            adam.LearningRate = step < 1500 ? 3e-3 : 1e-3;
            var x = Batch(128, g);
            var (t, w) = sampler.Sample(128, g);
            foreach (var p in mlp.Parameters) p.ZeroGrad();
            var terms = diffusion.TrainingLosses(model, x, t, Tensor.Randn(g, 128, 2));
            (terms.Loss * Tensor.FromArray(w.Select(v => (float)v).ToArray(), 128)).MeanAll().Backward();
            adam.Step();
        }
        double after = Eval();
        output.WriteLine($"{objective}: evaluation loss {before:F4} -> {after:F4}");
        Assert.True(after < 0.7 * before, $"{objective}: loss {before} -> {after}");

        const int n = 2000;
        var spaced = diffusion.Respace(DiffusionBetas.SpaceTimesteps(1000, "100"));
        Tensor samples;
        using (GradMode.NoGrad()) samples = spaced.PSampleLoop(model, new Shape(n, 2), new Generator(300));
        var xs = samples.ToArray();
        var cnt = new int[mix.K]; var sum = new double[mix.K, 2]; var sq = new double[mix.K];
        for (int i = 0; i < n; i++)
        {
            int k = mix.Assign(xs[2 * i], xs[2 * i + 1]);
            cnt[k]++; sum[k, 0] += xs[2 * i]; sum[k, 1] += xs[2 * i + 1];
            sq[k] += (double)xs[2 * i] * xs[2 * i] + (double)xs[2 * i + 1] * xs[2 * i + 1];
        }
        for (int k = 0; k < mix.K; k++)
        {
            double w = cnt[k] / (double)n, m0 = sum[k, 0] / cnt[k], m1 = sum[k, 1] / cnt[k];
            double spread = sq[k] / cnt[k] - m0 * m0 - m1 * m1, want = mix.Covs[k][0] + mix.Covs[k][2];
            output.WriteLine($"{objective}: component {k}: weight {w:F3} ({mix.Weights[k]}), mean ({m0:F3}, {m1:F3}), spread {spread:F4} ({want:F4})");
            Assert.InRange(w, mix.Weights[k] - 0.08, mix.Weights[k] + 0.08);
            Assert.InRange(m0, mix.Means[k][0] - 0.15, mix.Means[k][0] + 0.15);
            Assert.InRange(m1, mix.Means[k][1] - 0.15, mix.Means[k][1] + 0.15);
            Assert.InRange(spread, want / 2.5, want * 2.5);
        }
    }
}
