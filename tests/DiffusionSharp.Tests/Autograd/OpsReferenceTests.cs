using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

/// <summary>Forward outputs and gradients against PyTorch 1.13 (fixtures/ops_ref.safetensors, made by tools/make_ops_fixtures.py).</summary>
public class OpsReferenceTests
{
    private static readonly Dictionary<string, Func<Dictionary<string, Tensor>, Tensor>> Cases = new()
    {
        ["exp"] = t => t["x"].Exp(),
        ["log"] = t => t["x"].Log(),
        ["sqrt"] = t => t["x"].Sqrt(),
        ["pow3"] = t => t["x"].Pow(3f),
        ["pow0_5"] = t => t["x"].Pow(0.5f),
        ["abs"] = t => t["x"].Abs(),
        ["clamp"] = t => t["x"].Clamp(-0.5f, 0.7f),
        ["tanh"] = t => t["x"].Tanh(),
        ["sigmoid"] = t => t["x"].Sigmoid(),
        ["silu"] = t => t["x"].Silu(),
        ["gelu"] = t => t["x"].Gelu(),
        ["add_scalar"] = t => t["x"] + 1.5f,
        ["mul_scalar"] = t => t["x"] * -2.5f,
        ["rsub_scalar"] = t => 1.5f - t["x"],
        ["rdiv_scalar"] = t => 3f / t["x"],
        ["div_scalar"] = t => t["x"] / 4f,
        ["softmax_last"] = t => t["x"].Softmax(-1),
        ["softmax_mid"] = t => t["x"].Softmax(1),
        ["log_softmax_last"] = t => t["x"].LogSoftmax(-1),
        ["log_softmax_mid"] = t => t["x"].LogSoftmax(1),
        ["sum_023"] = t => t["x"].Sum(new[] { 0, 2, 3 }),
        ["sum_1_keep"] = t => t["x"].Sum(new[] { 1 }, keepDim: true),
        ["mean_23_keep"] = t => t["x"].Mean(new[] { 2, 3 }, keepDim: true),
        ["mean_0"] = t => t["x"].Mean(new[] { 0 }),
        ["var_123"] = t => t["x"].Var(new[] { 1, 2, 3 }),
        ["var_1_unbiased_keep"] = t => t["x"].Var(new[] { 1 }, keepDim: true, unbiased: true),
        ["sum_all"] = t => t["x"].SumAll(),
        ["mean_all"] = t => t["x"].MeanAll(),
        ["permute_2031"] = t => t["x"].Permute(2, 0, 3, 1),
        ["transpose_last"] = t => t["x"].Transpose(-1, -2),
        ["concat_1"] = t => Tensor.Concat(new[] { t["x"], t["x2"], t["x3"] }, 1),
        ["narrow_2"] = t => t["x"].Narrow(2, 1, 3),
        ["group_norm"] = t => t["x"].GroupNorm(32, t["w"], t["b"], 1e-5f),
        ["group_norm_plain"] = t => t["x"].GroupNorm(3, null, null, 1e-6f),
        ["layer_norm"] = t => t["x"].LayerNorm(t["w"], t["b"], 1e-5f),
        ["upsample"] = t => t["x"].UpsampleNearest2x(),
        ["avg_pool"] = t => t["x"].AvgPool2x2(),
        ["embedding"] = t => Tensor.Embedding(t["w"], t["idx"].ToArray().Select(v => (int)v).ToArray()),
        ["mse"] = t => Tensor.MseLoss(t["x"], t["x2"]),
    };

    public static TheoryData<string> Names()
    {
        var d = new TheoryData<string>();
        foreach (var k in Cases.Keys) d.Add(k);
        return d;
    }

    [Fact]
    public void EveryFixtureCaseIsChecked()
    {
        var inFile = Fixtures.Load("ops_ref.safetensors").Keys.Select(k => k.Split('/')[0]).ToHashSet();
        Assert.Equal(inFile.OrderBy(s => s), Cases.Keys.OrderBy(s => s));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void MatchesPyTorch(string name)
    {
        var all = Fixtures.Load("ops_ref.safetensors");
        var inputs = new Dictionary<string, Tensor>();
        foreach (var (k, v) in all)
        {
            var parts = k.Split('/');
            if (parts[0] != name || parts[1] is "y" or "gy" || parts[1].StartsWith("g_")) continue;
            var c = v.Clone();
            if (parts[1] != "idx") c.RequiresGrad = true;
            inputs[parts[1]] = c;
        }
        var y = Cases[name](inputs);
        var expected = all[name + "/y"];
        Assert.Equal(expected.Shape, y.Shape);
        GradCheck.AssertClose(y.Span, expected.Span, 2e-6, 2e-5, name + " forward");
        y.Backward(all[name + "/gy"]);
        foreach (var (k, x) in inputs)
        {
            if (!all.TryGetValue($"{name}/g_{k}", out var gref)) continue;
            Assert.NotNull(x.Grad);
            Assert.Equal(gref.Shape, x.Grad!.Shape);
            GradCheck.AssertClose(x.Grad.Span, gref.Span, 2e-5, 1e-4, $"{name} grad {k}");
        }
    }
}
