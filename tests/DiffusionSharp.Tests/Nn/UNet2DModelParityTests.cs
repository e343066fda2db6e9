using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace DiffusionSharp.Tests.Nn;

/// <summary>Parity of <see cref="UNet2DModel"/> with diffusers 0.30.3 on the unet_tiny fixtures (forward, activations, every gradient).</summary>
public class UNet2DModelParityTests(ITestOutputHelper output)
{
    private const double OutAtol = 1e-5, OutRtol = 1e-4;

    [Fact]
    public void TinyMatchesDiffusersOutputsActivationsAndGradients()
    {
        var fx = Fixtures.Load("unet_tiny.safetensors");
        var model = new UNet2DModel(UNetFixture.ConfigOf("unet_tiny.json"));
        Assert.Equal(702_499, model.ParameterCount);
        model.LoadStateDict(UNetFixture.Weights("unet_tiny.safetensors"));
        model.Eval();

        var acts = new Dictionary<string, Tensor>();
        model.ActivationHook = (name, t) => acts[name] = t.Clone();
        var x = fx["x"].Clone();
        x.RequiresGrad = true;
        var y = model.Forward(x, fx["t"], null);
        model.ActivationHook = null;

        GradCheck.AssertClose(y.Span, fx["out"].Span, OutAtol, OutRtol, "out");
        output.WriteLine($"out max abs err {UNetFixture.MaxAbs(y.Span, fx["out"].Span):G3}");
        var expectedActs = fx.Keys.Where(k => k.StartsWith("act.", StringComparison.Ordinal)).ToList();
        Assert.Equal(10, expectedActs.Count);
        foreach (var k in expectedActs)
        {
            var name = k["act.".Length..];
            Assert.True(acts.ContainsKey(name), $"no activation recorded for {name}");
            Assert.Equal(fx[k].Shape, acts[name].Shape);
            GradCheck.AssertClose(acts[name].Span, fx[k].Span, OutAtol, OutRtol, k);
            output.WriteLine($"{k} max abs err {UNetFixture.MaxAbs(acts[name].Span, fx[k].Span):G3}");
        }

        var loss = (y * fx["R"]).SumAll();
        Assert.Equal(fx["loss"].Item(), loss.Item(), 1e-4 * Math.Abs(fx["loss"].Item()) + 1e-4);
        loss.Backward();
        GradCheck.AssertClose(x.Grad!.Span, fx["grad.x"].Span, OutAtol, OutRtol, "grad.x");
        output.WriteLine($"grad.x max abs err {UNetFixture.MaxAbs(x.Grad.Span, fx["grad.x"].Span):G3}");

        int checkedGrads = 0;
        double worst = 0;
        string worstName = "";
        foreach (var (name, p) in model.NamedParameters())
        {
            var expected = fx["grad.model." + name];
            Assert.NotNull(p.Grad);
            Assert.Equal(expected.Shape, p.Grad!.Shape);
            if (name.EndsWith(".to_k.bias", StringComparison.Ordinal))
            {
                // Mathematically zero (softmax ignores a per-query constant); the fixture holds rounding noise.
                double abs = UNetFixture.MaxAbs(p.Grad.Span, expected.Span);
                Assert.True(abs <= 1e-6, $"{name}: max abs err {abs:G3} > 1e-6");
            }
            else
            {
                double rel = UNetFixture.MaxRelToMax(p.Grad.Span, expected.Span);
                Assert.True(rel <= 1e-4, $"grad of {name}: max|a-b| / max|b| = {rel:G3} > 1e-4");
                if (rel > worst) { worst = rel; worstName = name; }
            }
            checkedGrads++;
        }
        Assert.Equal(fx.Keys.Count(k => k.StartsWith("grad.model.", StringComparison.Ordinal)), checkedGrads);
        output.WriteLine($"{checkedGrads} parameter grads; worst max|a-b|/max|b| = {worst:G3} ({worstName})");
    }

    [Fact]
    public void TinyClassConditionalMatchesDiffusers()
    {
        var fx = Fixtures.Load("unet_tiny_class.safetensors");
        var tiny = Fixtures.Load("unet_tiny.safetensors");
        var model = new UNet2DModel(UNetFixture.ConfigOf("unet_tiny_class.json"));
        Assert.Equal(10, model.Config.NumClassEmbeds);
        model.LoadStateDict(UNetFixture.Weights("unet_tiny.safetensors", "unet_tiny_class.safetensors"));
        model.Eval();

        var x = (fx.TryGetValue("x", out var fxX) ? fxX : tiny["x"]).Clone();
        x.RequiresGrad = true;
        var t = fx.TryGetValue("t", out var fxT) ? fxT : tiny["t"];
        var r = fx.TryGetValue("R", out var fxR) ? fxR : tiny["R"];
        var y = model.Forward(x, t, fx["class_labels"]);
        GradCheck.AssertClose(y.Span, fx["out"].Span, OutAtol, OutRtol, "out");
        output.WriteLine($"class out max abs err {UNetFixture.MaxAbs(y.Span, fx["out"].Span):G3}");

        // Different labels must change the output (the class embedding is really used).
        using (DiffusionSharp.Autograd.GradMode.NoGrad())
        {
            var other = model.Forward(x.Detach(), t, Tensor.FromValues(0f, 1f));
            Assert.True(UNetFixture.MaxAbs(other.Span, fx["out"].Span) > 1e-3);
        }

        var loss = (y * r).SumAll();
        loss.Backward();
        GradCheck.AssertClose(x.Grad!.Span, fx["grad.x"].Span, OutAtol, OutRtol, "grad.x");
        var grads = model.StateDict();
        int n = 0;
        foreach (var k in fx.Keys.Where(k => k.StartsWith("grad.model.", StringComparison.Ordinal)))
        {
            var name = k["grad.model.".Length..];
            var g = grads[name].Grad!;
            double rel = UNetFixture.MaxRelToMax(g.Span, fx[k].Span);
            Assert.True(rel <= 1e-4, $"grad of {name}: {rel:G3}");
            n++;
        }
        Assert.True(n >= 10, $"expected the class fixture to hold parameter gradients, found {n}");
        Assert.Contains("grad.model.class_embedding.weight", fx.Keys);
    }
}
