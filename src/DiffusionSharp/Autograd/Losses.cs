using System.Numerics.Tensors;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>Mean squared error mean((a - b)^2) as a scalar; a and b must have the same shape.</summary>
    public static Tensor MseLoss(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Shape != b.Shape) throw new ArgumentException($"MseLoss needs equal shapes, got {a.Shape} and {b.Shape}.");
        if (a.Size == 0) throw new ArgumentException($"MseLoss of empty tensors of shape {a.Shape}.");
        var diff = MapNew(TensorPrimitives.Subtract, a, b);
        var y = Scalar((float)(Reduce.Dot(diff.Span, diff.Span) / a.Size));
        int n = a.Size;
        bool tracked = y.Track(g =>
        {
            // d/da = 2 (a - b) / n, d/db = -d/da
            float scale = 2f * g.Item() / n;
            if (a.RequiresGrad) a.AccumulateGrad(diff.MapNew((s, d) => TensorPrimitives.Multiply(s, scale, d)), owned: true);
            if (b.RequiresGrad) b.AccumulateGrad(diff.MapNew((s, d) => TensorPrimitives.Multiply(s, -scale, d)), owned: true);
            diff.Dispose();
        }, a, b);
        if (!tracked) diff.Dispose();
        return y;
    }
}
