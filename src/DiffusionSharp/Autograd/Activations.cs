using DiffusionSharp.Runtime;
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
        var uBuf = TensorPool.Rent(n, clear: false);
        generator.Uniform(uBuf.AsSpan(0, n));
        float scale = p >= 1f ? 0f : 1f / (1f - p);
        var y = Empty(Shape);
        // One bit per element keeps the mask for the backward (1/32 of a float mask); pieces of 64 elements own whole bytes.
        var keep = GC.AllocateUninitializedArray<byte>((n + 7) / 8);
        var x = this;
        int pieces = (n + 63) / 64;
        Threading.For(pieces, 256, (s, e) =>
        {
            int i0 = s * 64, len = Math.Min(n, e * 64) - i0;
            Affine.DropoutForward(x.Span.Slice(i0, len), uBuf.AsSpan(i0, len), p, scale, y.Span.Slice(i0, len), keep.AsSpan(i0 / 8));
        });
        TensorPool.Return(uBuf);
        if (!Autograd.GradMode.Enabled || !RequiresGrad) return y;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            Threading.For(pieces, 256, (s, e) =>
            {
                int i0 = s * 64, len = Math.Min(n, e * 64) - i0;
                Affine.DropoutBackward(g.Span.Slice(i0, len), keep.AsSpan(i0 / 8), scale, gx.Span.Slice(i0, len));  // = g * mask, exactly
            });
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }
}
