using DiffusionSharp.Nn;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Autograd;

/// <summary>The recorded spatial attention op against finite differences, and the attention layer's training path against
/// the same layer run as separate recorded ops (projections, permutes, batched products, softmax) on every GEMM micro-kernel
/// and softmax width, with the same bits on 1, 2 and 3 threads.</summary>
[Collection("GEMM kernel alone")]
public class AttentionGradTests
{
    [Theory]
    [InlineData(2, 4, 2, 3, 2, 3, true, true, 2f)]    // inner 6 != 4 channels, biases, residual, rescale
    [InlineData(1, 3, 1, 5, 1, 2, false, false, 1f)]  // no biases, no residual
    [InlineData(3, 2, 3, 1, 2, 1, true, false, 1f)]
    public void GradientsMatchFiniteDifferences(int n, int c, int h, int w, int heads, int d, bool bias, bool residual, float rescale)
    {
        int inner = heads * d;
        var inputs = new List<Tensor> { GradCheck.Rand(1, n, c, h, w), GradCheck.Rand(2, inner, c), GradCheck.Rand(3, inner, c), GradCheck.Rand(4, inner, c), GradCheck.Rand(5, c, inner), GradCheck.Rand(6, c) };
        if (bias) inputs.AddRange([GradCheck.Rand(7, inner), GradCheck.Rand(8, inner), GradCheck.Rand(9, inner)]);
        if (residual) inputs.Add(GradCheck.Rand(10, n, c, h, w));
        float scale = 1f / MathF.Sqrt(d);
        GradCheck.Check(t => Tensor.SpatialSelfAttention(t[0], residual ? t[^1] : null, t[1], bias ? t[6] : null, t[2], bias ? t[7] : null,
            t[3], bias ? t[8] : null, t[4], t[5], heads, d, scale, rescale), [.. inputs], eps: 1e-2, atol: 3e-3, rtol: 2e-2);
    }

    [Theory]
    [InlineData(3, 32, 5, 7, 16, 8)]    // 35 positions: every vector width's tail; 2 heads of 16
    [InlineData(2, 64, 7, 7, 32, 16)]   // the 7x7 middle block of the 28x28 U-Nets
    [InlineData(9, 24, 3, 3, 8, 4)]     // more images than weight-gradient groups, 3 heads
    public void TrainingPathMatchesSeparateOps(int n, int c, int h, int w, int headDim, int groups)
    {
        var xs = TestArrays.Normal(11, n * c * h * w);
        var gy = TestArrays.Normal(12, xs.Length);
        var layer = new Attention(c, c / headDim, headDim, groups, rescaleOutputFactor: 1.5f, generator: new Generator(3));
        int seed = 20;
        foreach (var p in layer.Parameters())
        {
            // weights of the scale of the default initialisation (scores of order one), biases and norm affine random too
            new Generator((ulong)seed++).Normal(p.Span);
            float k = p.Rank == 2 ? 1f / MathF.Sqrt(p.Dim(1)) : 0.3f;
            foreach (ref var v in p.Span) v *= k;
        }
        (float[] Y, float[][] Grads) Run(bool fused)
        {
            bool saved = Attention.FusedTraining;
            Attention.FusedTraining = fused;
            try
            {
                var x = Tensor.FromArray((float[])xs.Clone(), n, c, h, w);
                x.RequiresGrad = true;
                foreach (var p in layer.Parameters()) p.ZeroGrad();
                var y = layer.Forward(x);
                var values = y.ToArray();
                y.Backward(Tensor.FromArray((float[])gy.Clone(), n, c, h, w));
                return (values, [x.Grad!.ToArray(), .. layer.Parameters().Select(p => p.Grad!.ToArray())]);
            }
            finally { Attention.FusedTraining = saved; }
        }
        // gradient 0 is the input's, then the parameters' in order; the key bias follows the key weight
        int keyBias = 1 + layer.NamedParameters().Select(kv => kv.Key).ToList().IndexOf("to_k.bias");
        Assert.True(keyBias > 1);
        int savedThreads = Threading.Threads, savedWidth = SoftmaxKernels.AttentionWidth;
        var savedKernel = Gemm.Kernel;
        try
        {
            foreach (var (kind, width) in new[] { (GemmKernel.Vector512, 512), (GemmKernel.Vector256, 256), (GemmKernel.Vector128, 0), (GemmKernel.Scalar, 0) })
            {
                if (!Gemm.IsSupported(kind) || (width == 512 && !System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated)) continue;
                Gemm.Kernel = kind;
                SoftmaxKernels.AttentionWidth = width;
                Threading.Threads = 2;
                var reference = Run(false);
                (float[] Y, float[][] Grads)? first = null;
                foreach (int threads in new[] { 1, 2, 3 })
                {
                    Threading.Threads = threads;
                    var got = Run(true);
                    // float32 rounding of differently ordered sums (and FastExp within 3e-7): within 1e-5 of each array's largest value
                    GradCheck.AssertClose(got.Y, reference.Y, 1e-5 * MaxAbs(reference.Y), 1e-5, $"{kind} y");
                    for (int i = 0; i < got.Grads.Length; i++)
                    {
                        if (i == keyBias)
                        {
                            // softmax ignores a per-row shift, so the key bias's true gradient is zero: both paths give rounding noise
                            double bound = 1e-5 * MaxAbs(reference.Grads[keyBias - 1]);
                            Assert.True(MaxAbs(got.Grads[i]) <= bound && MaxAbs(reference.Grads[i]) <= bound, $"{kind}: key bias gradient not ~0");
                            continue;
                        }
                        GradCheck.AssertClose(got.Grads[i], reference.Grads[i], 1e-5 * MaxAbs(reference.Grads[i]), 1e-5, $"{kind} gradient {i}");
                    }
                    if (first is { } f)
                    {
                        Assert.True(f.Y.AsSpan().SequenceEqual(got.Y), $"{kind}: y on {threads} threads differs from one");
                        for (int i = 0; i < got.Grads.Length; i++)
                            Assert.True(f.Grads[i].AsSpan().SequenceEqual(got.Grads[i]), $"{kind}: gradient {i} on {threads} threads differs from one");
                    }
                    else first = got;
                }
            }
        }
        finally { Threading.Threads = savedThreads; SoftmaxKernels.AttentionWidth = savedWidth; Gemm.Kernel = savedKernel; }
    }

    private static double MaxAbs(float[] a) => a.Max(v => Math.Abs((double)v));
}
