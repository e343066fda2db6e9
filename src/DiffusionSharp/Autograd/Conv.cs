using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// 2-D convolution (cross-correlation, PyTorch semantics) of x [N, Cin, H, W] with w [Cout, Cin, kh, kw],
    /// optional bias [Cout], square stride and zero padding. Result [N, Cout, Ho, Wo].
    /// </summary>
    public static Tensor Conv2d(Tensor x, Tensor w, Tensor? b, int stride = 1, int padding = 0)
    {
        if (x.Rank != 4) throw new ArgumentException($"Conv2d input must be [N, C, H, W], got {x.Shape}.");
        if (w.Rank != 4) throw new ArgumentException($"Conv2d weight must be [Cout, Cin, kh, kw], got {w.Shape}.");
        if (w.Dim(1) != x.Dim(1)) throw new ArgumentException($"Conv2d weight {w.Shape} expects {w.Dim(1)} input channels, input {x.Shape} has {x.Dim(1)}.");
        if (b != null && (b.Rank != 1 || b.Dim(0) != w.Dim(0))) throw new ArgumentException($"Conv2d bias must be [{w.Dim(0)}], got {b.Shape}.");
        if (stride < 1) throw new ArgumentOutOfRangeException(nameof(stride), $"Conv2d stride must be >= 1, got {stride}.");
        if (padding < 0) throw new ArgumentOutOfRangeException(nameof(padding), $"Conv2d padding must be >= 0, got {padding}.");
        var s = new ConvShape(x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3), w.Dim(0), w.Dim(2), w.Dim(3), stride, padding);
        if (s.H + 2 * padding < s.Kh || s.W + 2 * padding < s.Kw)
            throw new ArgumentException($"Conv2d kernel {s.Kh}x{s.Kw} is larger than the padded input {x.Shape} (padding {padding}).");
        var y = Empty(s.N, s.Cout, s.Ho, s.Wo);
        // Without a graph (inference) the same filters are expected again: Winograd layers keep their transformed filters.
        if (y.Size > 0) Convolution.Forward(s, x.Span, w.Span, b == null ? default : b.Span, y.Span, reuseFilters: !Autograd.GradMode.Enabled);
        Tensor[] inputs = b == null ? [x, w] : [x, w, b];
        y.Track(g =>
        {
            var gx = x.RequiresGrad ? Empty(x.Shape) : null;
            var gw = w.RequiresGrad ? Empty(w.Shape) : null;
            var gb = b != null && b.RequiresGrad ? Empty(b.Shape) : null;
            Convolution.Backward(s, x.Span, w.Span, g.Span, gx == null ? default : gx.Span, gw == null ? default : gw.Span, gb == null ? default : gb.Span);
            if (gx != null) x.AccumulateGrad(gx, owned: true);
            if (gw != null) w.AccumulateGrad(gw, owned: true);
            if (gb != null) b!.AccumulateGrad(gb, owned: true);
        }, inputs);
        return y;
    }
}
