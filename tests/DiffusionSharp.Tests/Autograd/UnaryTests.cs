using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class UnaryTests
{
    // Inputs kept away from kinks and domain edges: positive for log/sqrt/pow, |x| >= 0.3 for abs/clamp.
    private static Tensor Input(string domain, int seed = 3, params int[] shape)
    {
        if (shape.Length == 0) shape = new[] { 3, 5 };
        var t = GradCheck.Rand(seed, shape);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++)
        {
            if (domain == "positive") s[i] = 0.5f + Math.Abs(s[i]);
            else if (domain == "nonzero") s[i] = (s[i] < 0 ? -1 : 1) * (0.3f + Math.Abs(s[i]));
        }
        return t;
    }

    public static TheoryData<string> Ops => new()
    {
        "exp", "log", "sqrt", "pow2", "pow3", "pow0.5", "pow-1.5", "abs", "clamp", "tanh", "sigmoid", "silu", "gelu",
        "add_s", "mul_s", "div_s", "s_div", "s_sub", "sub_s", "s_add", "s_mul",
    };

    private static (Func<Tensor, Tensor> F, Func<double, double> Ref, string Domain) Op(string name) => name switch
    {
        "exp" => (x => x.Exp(), Math.Exp, "any"),
        "log" => (x => x.Log(), Math.Log, "positive"),
        "sqrt" => (x => x.Sqrt(), Math.Sqrt, "positive"),
        "pow2" => (x => x.Pow(2f), v => v * v, "any"),
        "pow3" => (x => x.Pow(3f), v => v * v * v, "any"),
        "pow0.5" => (x => x.Pow(0.5f), v => Math.Pow(v, 0.5), "positive"),
        "pow-1.5" => (x => x.Pow(-1.5f), v => Math.Pow(v, -1.5), "positive"),
        "abs" => (x => x.Abs(), Math.Abs, "nonzero"),
        "clamp" => (x => x.Clamp(-0.25f, 0.8f), v => Math.Clamp(v, -0.25, 0.8), "any"),
        "tanh" => (x => x.Tanh(), Math.Tanh, "any"),
        "sigmoid" => (x => x.Sigmoid(), v => 1 / (1 + Math.Exp(-v)), "any"),
        "silu" => (x => x.Silu(), v => v / (1 + Math.Exp(-v)), "any"),
        "gelu" => (x => x.Gelu(), v => v * ReferenceMath.Phi(v), "any"),
        "add_s" => (x => x + 1.5f, v => v + 1.5, "any"),
        "s_add" => (x => 1.5f + x, v => v + 1.5, "any"),
        "sub_s" => (x => x - 1.5f, v => v - 1.5, "any"),
        "s_sub" => (x => 1.5f - x, v => 1.5 - v, "any"),
        "mul_s" => (x => x * -2.5f, v => v * -2.5, "any"),
        "s_mul" => (x => -2.5f * x, v => v * -2.5, "any"),
        "div_s" => (x => x / 4f, v => v / 4, "any"),
        "s_div" => (x => 3f / x, v => 3 / v, "positive"),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Ops))]
    public void ForwardMatchesDoubleReference(string name)
    {
        var (f, r, domain) = Op(name);
        var x = Input(domain, 11, 7, 37);
        var y = f(x);
        Assert.Equal(x.Shape, y.Shape);
        var xs = x.ToArray();
        var expected = xs.Select(v => (float)r(v)).ToArray();
        GradCheck.AssertClose(y.Span, expected, 1e-6, 2e-6, name);
    }

    [Theory]
    [MemberData(nameof(Ops))]
    public void GradientMatchesFiniteDifferences(string name)
    {
        var (f, _, domain) = Op(name);
        var x = Input(domain);
        if (name == "clamp")
        {
            // keep finite differences away from the clamp boundaries
            var s = x.Span;
            for (int i = 0; i < s.Length; i++) if (Math.Abs(s[i] + 0.25f) < 0.05f || Math.Abs(s[i] - 0.8f) < 0.05f) s[i] += 0.1f;
        }
        GradCheck.Check(t => f(t[0]), new[] { x }, eps: 1e-3, atol: 3e-3);
    }

    [Fact]
    public void ClampGradientIsZeroOutsideRange()
    {
        var x = Tensor.FromValues(-2f, 0f, 2f);
        x.RequiresGrad = true;
        x.Clamp(-1f, 1f).SumAll().Backward();
        Assert.Equal(new[] { 0f, 1f, 0f }, x.Grad!.ToArray());
    }

    [Fact]
    public void AbsGradientAtZeroIsZero()
    {
        var x = Tensor.FromValues(-2f, 0f, 2f);
        x.RequiresGrad = true;
        x.Abs().SumAll().Backward();
        Assert.Equal(new[] { -1f, 0f, 1f }, x.Grad!.ToArray());
    }

    [Fact]
    public void SiluAndGeluSaturateWithoutNaN()
    {
        var x = Tensor.FromValues(-200f, -90f, -20f, 0f, 20f, 90f, 200f);
        foreach (var y in new[] { x.Silu(), x.Gelu(), x.Sigmoid(), x.Tanh() })
            foreach (var v in y.ToArray()) Assert.False(float.IsNaN(v), y.ToString());
        Assert.Equal(200f, x.Silu().ToArray()[6]);
        Assert.Equal(200f, x.Gelu().ToArray()[6]);
        Assert.Equal(0f, x.Gelu().ToArray()[0]);
    }

    [Fact]
    public void ClampRejectsInvertedRange()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Zeros(2).Clamp(1f, 0f));
        Assert.Contains("min", ex.Message);
    }
}
