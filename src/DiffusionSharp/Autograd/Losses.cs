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
        var y = Scalar((float)(Reduce.SquaredDistance(a.Span, b.Span) / a.Size));
        int n = a.Size;
        y.Track(g =>
        {
            // d/da = 2 (a - b) / n, d/db = -d/da
            float scale = 2f * g.Item() / n;
            var ga = MapNew(TensorPrimitives.Subtract, a, b);
            TensorPrimitives.Multiply(ga.Span, scale, ga.Span);
            if (b.RequiresGrad) b.AccumulateGrad(ga.MapNew(TensorPrimitives.Negate), owned: true);
            a.AccumulateGrad(ga, owned: true);
        }, a, b);
        return y;
    }
}
