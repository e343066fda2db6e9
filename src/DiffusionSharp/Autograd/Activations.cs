using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>SiLU (swish): x * sigmoid(x). Backward is fused from the saved input.</summary>
    public Tensor Silu()
    {
        var y = MapNew<SiluOp>();
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew<SiluGradOp>(x, g), owned: true), this);
        return y;
    }

    /// <summary>GELU with the exact normal CDF: x * Phi(x) (PyTorch's default, approximate='none').</summary>
    public Tensor Gelu()
    {
        var y = MapNew<GeluOp>();
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew<GeluGradOp>(x, g), owned: true), this);
        return y;
    }

    /// <summary>Softmax over <paramref name="axis"/> (negative counts from the end).</summary>
    public Tensor Softmax(int axis) => SoftmaxImpl(axis, log: false);

    /// <summary>Log-softmax over <paramref name="axis"/> (negative counts from the end).</summary>
    public Tensor LogSoftmax(int axis) => SoftmaxImpl(axis, log: true);

    private Tensor SoftmaxImpl(int axis, bool log)
    {
        if (Rank == 0) throw new ArgumentException($"{(log ? "LogSoftmax" : "Softmax")} needs at least one dimension, got shape {Shape}.");
        var (outer, len, inner) = SplitAround(Shape.Axis(axis));
        var y = Empty(Shape);
        SoftmaxKernels.Forward(Storage, y.Storage, outer, len, inner, log);
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            SoftmaxKernels.Backward(y.Storage, g.Storage, gx.Storage, outer, len, inner, log);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>
    /// Inverted dropout: in training zeroes each element with probability <paramref name="p"/> (mask drawn from
    /// <paramref name="generator"/>) and scales the rest by 1/(1-p); in evaluation (or p = 0) returns this tensor itself.
    /// </summary>
    public Tensor Dropout(float p, Generator generator, bool training)
    {
        if (!(p >= 0f && p <= 1f)) throw new ArgumentOutOfRangeException(nameof(p), $"Dropout probability must be in [0, 1], got {p}.");
        ArgumentNullException.ThrowIfNull(generator);
        if (!training || p == 0f) return this;
        int n = Size;
        var maskBuf = TensorPool.Rent(n, clear: false);
        var mask = maskBuf.AsSpan(0, n);
        generator.Uniform(mask);
        float scale = p >= 1f ? 0f : 1f / (1f - p);
        Affine.ThresholdMask(mask, p, scale);
        var y = Empty(Shape);
        System.Numerics.Tensors.TensorPrimitives.Multiply(Span, mask, y.Span);
        if (!Autograd.GradMode.Enabled || !RequiresGrad) { TensorPool.Return(maskBuf); return y; }
        // Backward keeps one byte per element instead of the float mask (a quarter of the memory).
        var keep = GC.AllocateUninitializedArray<byte>(n);
        for (int i = 0; i < n; i++) keep[i] = mask[i] != 0f ? (byte)1 : (byte)0;
        TensorPool.Return(maskBuf);
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            var gs = g.Span;
            var d = gx.Span;
            for (int i = 0; i < d.Length; i++) d[i] = gs[i] * (keep[i] != 0 ? scale : 0f);  // = g * mask, exactly
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }
}
