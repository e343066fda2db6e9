using DiffusionSharp.IO;
using DiffusionSharp.Optim;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Optim;

/// <summary>Parity with torch.optim.Adam / AdamW and clip_grad_norm_ over 10 steps of a tanh MLP (fixtures/optim.*).</summary>
public class AdamTests
{
    private static readonly string[] Names = { "w1", "b1", "w2", "b2" };
    private const int Steps = 10;

    private static Dictionary<string, Tensor> F => Fixtures.Load("optim.safetensors");

    private static Tensor[] InitialParams()
    {
        var ps = Names.Select(n => F["init." + n].Clone()).ToArray();
        for (int i = 0; i < ps.Length; i++) { ps[i].RequiresGrad = true; ps[i].Name = Names[i]; }
        return ps;
    }

    private static Adam Make(string run, Tensor[] ps) => run switch
    {
        "adam" => new Adam(ps, lr: 0.01),
        "adam_l2" => new Adam(ps, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05),
        "adamw" => new AdamW(ps, lr: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1),
        "adamw_clip" => new AdamW(ps, lr: 0.02, weightDecay: 0.01),
        _ => throw new ArgumentException(run),
    };

    private static double? ClipOf(string run) => run == "adamw_clip" ? 0.1 : null;

    /// <summary>y = linear(tanh(linear(x, w1, b1)), w2, b2); loss = mean squared error, all through our autograd.</summary>
    private static Tensor Loss(Tensor[] ps)
    {
        var h = Tensor.Linear(F["x"], ps[0], ps[1]).Tanh();
        var y = Tensor.Linear(h, ps[2], ps[3]);
        return Tensor.MseLoss(y, F["target"]);
    }

    private static void AssertRelClose(Tensor actual, Tensor expected, double rel, string what)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var a = actual.Span;
        var e = expected.Span;
        double maxAbs = 0, maxDiff = 0;
        for (int i = 0; i < e.Length; i++) { maxAbs = Math.Max(maxAbs, Math.Abs(e[i])); maxDiff = Math.Max(maxDiff, Math.Abs(a[i] - e[i])); }
        // Relative to the tensor's largest magnitude: per-element relative error is meaningless at values near 0.
        Assert.True(maxDiff <= rel * Math.Max(maxAbs, 1e-30), $"{what}: max |diff| {maxDiff:G3} exceeds {rel:G2} x max|ref| {maxAbs:G4}");
    }

    public static IEnumerable<object[]> Runs() => new[] { "adam", "adam_l2", "adamw", "adamw_clip" }.Select(r => new object[] { r });

    [Theory]
    [MemberData(nameof(Runs))]
    public void TenStepsWithOurAutogradMatchPyTorch(string run)
    {
        var ps = InitialParams();
        var opt = Make(run, ps);
        for (int k = 1; k <= Steps; k++)
        {
            opt.ZeroGrad();
            var loss = Loss(ps);
            Assert.Equal(F[$"{run}.loss"].Span[k - 1], loss.Item(), 5e-6f * F[$"{run}.loss"].Span[k - 1]);
            loss.Backward();
            for (int i = 0; i < ps.Length; i++)
                AssertRelClose(ps[i].Grad!, F[$"{run}.grad{k}.{Names[i]}"], 1e-5, $"{run} grad step {k} {Names[i]}");
            if (ClipOf(run) is double c)
            {
                float total = GradClip.ClipGlobalNorm(ps, c);
                Assert.Equal(F[$"{run}.total_norm"].Span[k - 1], total, 1e-5f * total);
            }
            opt.Step();
            for (int i = 0; i < ps.Length; i++)
                AssertRelClose(ps[i], F[$"{run}.step{k}.{Names[i]}"], 1e-6, $"{run} step {k} {Names[i]}");
        }
        Assert.All(Enumerable.Range(0, ps.Length), i => Assert.Equal(Steps, opt.StepOf(i)));
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void TenStepsFedPyTorchGradientsMatchTightly(string run)
    {
        // Isolates the update rule from autograd: feed torch's own gradients, expect float32 round-off only.
        var ps = InitialParams();
        var opt = Make(run, ps);
        for (int k = 1; k <= Steps; k++)
        {
            opt.ZeroGrad();
            for (int i = 0; i < ps.Length; i++) ps[i].Grad = F[$"{run}.grad{k}.{Names[i]}"].Clone();
            if (ClipOf(run) is double c)
                Assert.Equal(F[$"{run}.total_norm"].Span[k - 1], GradClip.ClipGlobalNorm(ps, c), 2e-7f * F[$"{run}.total_norm"].Span[k - 1]);
            opt.Step();
            for (int i = 0; i < ps.Length; i++)
                AssertRelClose(ps[i], F[$"{run}.step{k}.{Names[i]}"], 2e-7, $"{run} step {k} {Names[i]}");
        }
    }

    [Fact]
    public void StateRoundTripsThroughSafetensorsAndResumesIdentically()
    {
        var ps = InitialParams();
        var opt = Make("adamw", ps);
        void FeedStep(Tensor[] p, Adam o, int k)
        {
            o.ZeroGrad();
            for (int i = 0; i < p.Length; i++) p[i].Grad = F[$"adamw.grad{k}.{Names[i]}"].Clone();
            o.Step();
        }
        for (int k = 1; k <= 4; k++) FeedStep(ps, opt, k);

        var path = Path.Combine(Path.GetTempPath(), $"ds-optim-{Guid.NewGuid():N}.safetensors");
        try
        {
            var state = opt.StateDict("optimizer.");
            Assert.Equal(3 * ps.Length, state.Count);
            Assert.Equal(4f, state["optimizer.2.step"].Item());
            SafeTensors.Save(path, state);

            var resumed = ps.Select(p => p.Clone()).ToArray();
            foreach (var r in resumed) r.RequiresGrad = true;
            var opt2 = Make("adamw", resumed);
            opt2.LoadStateDict(SafeTensors.Load(path), "optimizer.");
            for (int k = 5; k <= Steps; k++) { FeedStep(ps, opt, k); FeedStep(resumed, opt2, k); }
            for (int i = 0; i < ps.Length; i++)
            {
                Assert.Equal(ps[i].ToArray(), resumed[i].ToArray());
                AssertRelClose(resumed[i], F[$"adamw.step{Steps}.{Names[i]}"], 2e-7, $"resumed {Names[i]}");
            }
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void LoadStateRejectsMismatchedState()
    {
        var ps = InitialParams();
        var opt = new Adam(ps);
        var bad = new Dictionary<string, Tensor>
        {
            ["0.step"] = Tensor.Scalar(3), ["0.exp_avg"] = Tensor.Zeros(2, 2), ["0.exp_avg_sq"] = Tensor.Zeros(8, 5),
        };
        var e = Assert.Throws<InvalidDataException>(() => opt.LoadStateDict(bad));
        Assert.Contains("[2, 2]", e.Message);
        Assert.Contains("[8, 5]", e.Message);
        Assert.Contains("incomplete", Assert.Throws<InvalidDataException>(() =>
            opt.LoadStateDict(new Dictionary<string, Tensor> { ["1.step"] = Tensor.Scalar(1) })).Message);
        Assert.Contains("there are 4", Assert.Throws<InvalidDataException>(() =>
            opt.LoadStateDict(new Dictionary<string, Tensor> { ["7.step"] = Tensor.Scalar(1) })).Message);
        Assert.Contains("non-negative integer", Assert.Throws<InvalidDataException>(() => opt.LoadStateDict(new Dictionary<string, Tensor>
        {
            ["1.step"] = Tensor.Scalar(1.5f), ["1.exp_avg"] = Tensor.Zeros(8), ["1.exp_avg_sq"] = Tensor.Zeros(8),
        })).Message);
        Assert.Equal(0, opt.StepOf(0));  // a failed load leaves the state untouched
    }

    [Fact]
    public void ParametersWithoutGradAreNotStepped()
    {
        var a = Tensor.FromValues(1f, 2f);
        var b = Tensor.FromValues(3f);
        a.RequiresGrad = b.RequiresGrad = true;
        var opt = new Adam(new[] { a, b }, lr: 0.1);
        a.Grad = Tensor.FromValues(1f, -1f);
        opt.Step();
        // First Adam step moves each element by lr * g / (|g| + eps') = lr * sign(g).
        Assert.Equal(0.9f, a.Span[0], 1e-6f);
        Assert.Equal(2.1f, a.Span[1], 1e-6f);
        Assert.Equal(3f, b.Item());
        Assert.Equal(1, opt.StepOf(0));
        Assert.Equal(0, opt.StepOf(1));
        Assert.Null(opt.ExpAvg(1));
        opt.ZeroGrad();
        Assert.Null(a.Grad);
    }

    [Fact]
    public void LearningRateIsSettableBetweenSteps()
    {
        var p = Tensor.FromValues(0f);
        p.RequiresGrad = true;
        var opt = new Adam(new[] { p }, lr: 0.5);
        p.Grad = Tensor.FromValues(2f);
        opt.Step();
        Assert.Equal(-0.5f, p.Item(), 1e-6f);
        opt.LearningRate = 0.25;
        opt.ZeroGrad();
        p.Grad = Tensor.FromValues(2f);
        opt.Step();
        // Constant gradient: m_hat = g and v_hat = g^2 at every step, so each step moves by lr.
        Assert.Equal(-0.75f, p.Item(), 1e-6f);
    }

    [Fact]
    public void LargeParameterUsesEveryVectorWidthConsistently()
    {
        // 16-wide, 8-wide and scalar tails (and threaded chunks) must agree with a per-element double reference.
        int n = 100_003;
        var g = new Generator(9);
        var p = Tensor.Randn(g, n);
        var start = p.ToArray();
        p.RequiresGrad = true;
        var grads = new[] { Tensor.Randn(g, n), Tensor.Randn(g, n), Tensor.Randn(g, n) };
        var opt = new AdamW(new[] { p }, lr: 0.01, beta1: 0.8, beta2: 0.9, eps: 1e-3, weightDecay: 0.3);
        foreach (var gr in grads) { opt.ZeroGrad(); p.Grad = gr.Clone(); opt.Step(); }
        var result = p.ToArray();
        for (int i = 0; i < n; i++)
        {
            double pi = start[i], m = 0, v = 0;
            for (int t = 1; t <= 3; t++)
            {
                double gi = grads[t - 1].Span[i];
                pi *= 1 - 0.01 * 0.3;
                m = 0.8 * m + 0.2 * gi;
                v = 0.9 * v + 0.1 * gi * gi;
                pi -= 0.01 / (1 - Math.Pow(0.8, t)) * m / (Math.Sqrt(v) / Math.Sqrt(1 - Math.Pow(0.9, t)) + 1e-3);
            }
            Assert.True(Math.Abs(result[i] - pi) <= 1e-6 * Math.Max(1, Math.Abs(pi)), $"element {i}: {result[i]} vs {pi}");
        }
    }

    [Fact]
    public void ConstructorRejectsBadArguments()
    {
        var p = Tensor.Zeros(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(new[] { p }, beta1: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(new[] { p }, lr: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW(new[] { p }, weightDecay: double.NaN));
        Assert.Contains("more than once", Assert.Throws<ArgumentException>(() => new Adam(new[] { p, p })).Message);
    }
}
