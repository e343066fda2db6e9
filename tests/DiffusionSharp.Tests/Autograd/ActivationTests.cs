using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class ActivationTests
{
    [Theory]
    [InlineData(new[] { 3, 7 }, -1)]
    [InlineData(new[] { 3, 7 }, 0)]
    [InlineData(new[] { 2, 5, 4 }, 1)]
    [InlineData(new[] { 2, 300 }, 1)]
    public void SoftmaxAndLogSoftmaxMatchDoubleReference(int[] shape, int axis)
    {
        var x = GradCheck.Rand(1, shape).Mul(4f);
        int ax = axis < 0 ? axis + shape.Length : axis;
        int outer = shape.Take(ax).Aggregate(1, (a, b) => a * b), len = shape[ax], inner = shape.Skip(ax + 1).Aggregate(1, (a, b) => a * b);
        var xs = x.ToArray();
        var sm = new float[xs.Length];
        var lsm = new float[xs.Length];
        for (int o = 0; o < outer; o++)
            for (int i = 0; i < inner; i++)
            {
                double max = double.NegativeInfinity;
                for (int a = 0; a < len; a++) max = Math.Max(max, xs[(o * len + a) * inner + i]);
                double z = 0;
                for (int a = 0; a < len; a++) z += Math.Exp(xs[(o * len + a) * inner + i] - max);
                for (int a = 0; a < len; a++)
                {
                    int k = (o * len + a) * inner + i;
                    sm[k] = (float)(Math.Exp(xs[k] - max) / z);
                    lsm[k] = (float)(xs[k] - max - Math.Log(z));
                }
            }
        GradCheck.AssertClose(x.Softmax(axis).Span, sm, 1e-7, 1e-5, "softmax");
        GradCheck.AssertClose(x.LogSoftmax(axis).Span, lsm, 1e-5, 1e-5, "logsoftmax");
    }

    [Fact]
    public void SoftmaxGradients()
    {
        GradCheck.Check(t => t[0].Softmax(-1), new[] { GradCheck.Rand(1, 3, 6) });
        GradCheck.Check(t => t[0].Softmax(1), new[] { GradCheck.Rand(2, 2, 4, 3) });
        GradCheck.Check(t => t[0].LogSoftmax(-1), new[] { GradCheck.Rand(3, 3, 6) });
        GradCheck.Check(t => t[0].LogSoftmax(0), new[] { GradCheck.Rand(4, 4, 3) });
    }

    [Fact]
    public void SoftmaxHandlesLargeLogits()
    {
        var y = Tensor.FromValues(1000f, 1000f, -1000f).Softmax(0).ToArray();
        Assert.Equal(new[] { 0.5f, 0.5f, 0f }, y);
    }

    [Fact]
    public void DropoutKeepsExpectedFractionAndScales()
    {
        var x = Tensor.Ones(100_000);
        var y = x.Dropout(0.3f, new Generator(5), training: true);
        int kept = 0, wrong = 0;
        foreach (var v in y.Span)
        {
            if (v != 0f) { kept++; if (Math.Abs(v - 1f / 0.7f) > 1e-6f) wrong++; }
        }
        Assert.Equal(0, wrong);
        Assert.InRange(kept / 100_000.0, 0.69, 0.71);
        Assert.Same(x, x.Dropout(0.3f, new Generator(5), training: false));
        // same generator state gives the same mask
        Assert.Equal(y.ToArray(), x.Dropout(0.3f, new Generator(5), training: true).ToArray());
        Assert.All(x.Dropout(1f, new Generator(1), true).ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void DropoutGradientUsesTheSameMask()
    {
        GradCheck.Check(t => t[0].Dropout(0.4f, new Generator(3), training: true), new[] { GradCheck.Rand(1, 4, 5) });
        var x = GradCheck.Rand(2, 50);
        x.RequiresGrad = true;
        var y = x.Dropout(0.5f, new Generator(9), training: true);
        y.SumAll().Backward();
        var ys = y.ToArray();
        var g = x.Grad!.ToArray();
        for (int i = 0; i < ys.Length; i++) Assert.Equal(ys[i] == 0f ? 0f : 2f, g[i]);
    }
}
