using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

public class ConvTests
{
    // Direct 7-loop convolution in double.
    private static float[] NaiveConv(Tensor x, Tensor w, Tensor? b, int stride, int pad)
    {
        int N = x.Dim(0), C = x.Dim(1), H = x.Dim(2), W = x.Dim(3), Co = w.Dim(0), kh = w.Dim(2), kw = w.Dim(3);
        int Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
        var xs = x.ToArray(); var ws = w.ToArray(); var bs = b?.ToArray();
        var y = new float[N * Co * Ho * Wo];
        for (int n = 0; n < N; n++)
            for (int o = 0; o < Co; o++)
                for (int oh = 0; oh < Ho; oh++)
                    for (int ow = 0; ow < Wo; ow++)
                    {
                        double acc = bs?[o] ?? 0;
                        for (int c = 0; c < C; c++)
                            for (int i = 0; i < kh; i++)
                                for (int j = 0; j < kw; j++)
                                {
                                    int ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    acc += (double)xs[((n * C + c) * H + ih) * W + iw] * ws[((o * C + c) * kh + i) * kw + j];
                                }
                        y[((n * Co + o) * Ho + oh) * Wo + ow] = (float)acc;
                    }
        return y;
    }

    [Theory]
    [InlineData(2, 3, 7, 6, 4, 3, 3, 1, 1)]
    [InlineData(3, 2, 8, 8, 5, 3, 3, 2, 1)]
    [InlineData(2, 4, 5, 5, 3, 1, 1, 1, 0)]
    [InlineData(1, 3, 9, 7, 2, 2, 3, 2, 0)]
    [InlineData(4, 5, 6, 6, 6, 5, 5, 1, 2)]
    [InlineData(3, 3, 6, 5, 2, 1, 1, 2, 1)]
    public void ForwardMatchesDirectConvolution(int n, int cin, int h, int w, int cout, int kh, int kw, int stride, int pad)
    {
        var x = GradCheck.Rand(1, n, cin, h, w);
        var wt = GradCheck.Rand(2, cout, cin, kh, kw);
        var b = GradCheck.Rand(3, cout);
        var y = Tensor.Conv2d(x, wt, b, stride, pad);
        GradCheck.AssertClose(y.Span, NaiveConv(x, wt, b, stride, pad), 1e-5, 1e-4, "Conv2d");
        var y0 = Tensor.Conv2d(x, wt, null, stride, pad);
        GradCheck.AssertClose(y0.Span, NaiveConv(x, wt, null, stride, pad), 1e-5, 1e-4, "Conv2d no bias");
    }

    [Theory]
    [InlineData(2, 2, 5, 4, 3, 3, 1, 1)]
    [InlineData(3, 2, 6, 6, 2, 3, 2, 1)]
    [InlineData(2, 3, 4, 4, 2, 1, 1, 0)]
    [InlineData(1, 2, 5, 5, 2, 2, 2, 0)]
    public void GradientsMatchFiniteDifferences(int n, int cin, int h, int w, int cout, int k, int stride, int pad)
    {
        var x = GradCheck.Rand(4, n, cin, h, w);
        var wt = GradCheck.Rand(5, cout, cin, k, k);
        var b = GradCheck.Rand(6, cout);
        GradCheck.Check(t => Tensor.Conv2d(t[0], t[1], t[2], stride, pad), new[] { x, wt, b });
    }

    public static IEnumerable<object[]> TorchCases() =>
        Fixtures.Load("conv_ref.safetensors").Keys.Where(k => k.EndsWith(".x")).Select(k => new object[] { k[..^2] }).OrderBy(c => (string)c[0]);

    [Theory]
    [MemberData(nameof(TorchCases))]
    public void ForwardAndBackwardMatchPyTorch(string name)
    {
        var f = Fixtures.Load("conv_ref.safetensors");
        var parts = name.Split('_');
        int stride = int.Parse(parts[1][1..]), pad = int.Parse(parts[2][1..]);
        var x = f[name + ".x"].Clone();
        var w = f[name + ".w"].Clone();
        var b = f[name + ".b"].Clone();
        x.RequiresGrad = true; w.RequiresGrad = true; b.RequiresGrad = true;
        var y = Tensor.Conv2d(x, w, b, stride, pad);
        Assert.Equal(f[name + ".y"].Shape, y.Shape);
        GradCheck.AssertClose(y.Span, f[name + ".y"].Span, 1e-5, 1e-4, name + " y");
        y.Backward(f[name + ".gy"]);
        GradCheck.AssertClose(x.Grad!.Span, f[name + ".gx"].Span, 1e-5, 1e-4, name + " grad_input");
        GradCheck.AssertClose(w.Grad!.Span, f[name + ".gw"].Span, 1e-5, 1e-4, name + " grad_weight");
        GradCheck.AssertClose(b.Grad!.Span, f[name + ".gb"].Span, 1e-5, 1e-4, name + " grad_bias");
    }

    [Fact]
    public void RowChunkedIm2ColMatchesPyTorch()
    {
        // Force one output row per chunk so every chunk boundary, padding row and stride offset is exercised.
        int saved = DiffusionSharp.Tensors.Kernels.Convolution.ChunkTargetFloats;
        DiffusionSharp.Tensors.Kernels.Convolution.ChunkTargetFloats = 1;
        try
        {
            foreach (var c in TorchCases()) ForwardAndBackwardMatchPyTorch((string)c[0]);
        }
        finally { DiffusionSharp.Tensors.Kernels.Convolution.ChunkTargetFloats = saved; }
    }

    [Fact]
    public void BadShapesAreRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Tensor.Zeros(1, 3, 4, 4), Tensor.Zeros(2, 4, 3, 3), null));
        Assert.Contains("[1, 3, 4, 4]", ex.Message);
        Assert.Throws<ArgumentException>(() => Tensor.Conv2d(Tensor.Zeros(1, 3, 2, 2), Tensor.Zeros(2, 3, 3, 3), null));
    }
}
