using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    private static Tensor BinarySameShape<TOp>(Tensor a, Tensor b) where TOp : struct, IBinaryOperator
    {
        var y = Empty(a.Shape);
        ParallelMap.Binary<TOp>(a.Storage, b.Storage, y.Storage, y.Size);
        return y;
    }

    // Returns the storage of expanded operands (not the caller's own tensors) to the pool; a graph node keeps its place.
    private static void ReleaseBroadcastCopies(Tensor ae, Tensor a, Tensor be, Tensor b)
    {
        if (!ReferenceEquals(ae, a)) ae.ReleaseData();
        if (!ReferenceEquals(be, b)) be.ReleaseData();
    }

    /// <summary>Elementwise a + b with broadcasting.</summary>
    public static Tensor Add(Tensor a, Tensor b)
    {
        var s = Shape.Broadcast(a.Shape, b.Shape);
        Tensor ae = a.Expand(s), be = b.Expand(s);
        var y = BinarySameShape<AddOp>(ae, be);
        y.Track(g =>
        {
            ae.AccumulateGrad(g, owned: false);
            be.AccumulateGrad(g, owned: false);
        }, ae, be);
        ReleaseBroadcastCopies(ae, a, be, b);  // backward reads neither operand
        return y;
    }

    /// <summary>Elementwise a - b with broadcasting.</summary>
    public static Tensor Sub(Tensor a, Tensor b)
    {
        var s = Shape.Broadcast(a.Shape, b.Shape);
        Tensor ae = a.Expand(s), be = b.Expand(s);
        var y = BinarySameShape<SubOp>(ae, be);
        y.Track(g =>
        {
            ae.AccumulateGrad(g, owned: false);
            if (be.RequiresGrad) be.AccumulateGrad(g.Neg(), owned: true);
        }, ae, be);
        ReleaseBroadcastCopies(ae, a, be, b);  // backward reads neither operand
        return y;
    }

    /// <summary>Elementwise a * b with broadcasting.</summary>
    public static Tensor Mul(Tensor a, Tensor b)
    {
        var s = Shape.Broadcast(a.Shape, b.Shape);
        Tensor ae = a.Expand(s), be = b.Expand(s);
        var y = BinarySameShape<MulOp>(ae, be);
        if (!y.Track(g =>
        {
            if (ae.RequiresGrad) ae.AccumulateGrad(BinarySameShape<MulOp>(g, be), owned: true);
            if (be.RequiresGrad) be.AccumulateGrad(BinarySameShape<MulOp>(g, ae), owned: true);
        }, ae, be))
        {
            ReleaseBroadcastCopies(ae, a, be, b);  // broadcast copies are only needed by a recorded backward
        }
        return y;
    }

    /// <summary>Elementwise a / b with broadcasting.</summary>
    public static Tensor Div(Tensor a, Tensor b)
    {
        var s = Shape.Broadcast(a.Shape, b.Shape);
        Tensor ae = a.Expand(s), be = b.Expand(s);
        var y = BinarySameShape<DivOp>(ae, be);
        if (!y.Track(g =>
        {
            if (ae.RequiresGrad) ae.AccumulateGrad(BinarySameShape<DivOp>(g, be), owned: true);
            if (be.RequiresGrad)
            {
                // d(a/b)/db = -y / b
                var gb = BinarySameShape<MulOp>(g, y);
                Elementwise.Binary<DivOp>(gb.Span, be.Span, gb.Span);
                Elementwise.Unary<NegOp>(gb.Span, gb.Span);
                be.AccumulateGrad(gb, owned: true);
            }
        }, ae, be))
            ReleaseBroadcastCopies(ae, a, be, b);  // broadcast copies are only needed by a recorded backward
        return y;
    }

    /// <summary>Elementwise negation.</summary>
    public Tensor Neg()
    {
        var y = Empty(Shape);
        Elementwise.Unary<NegOp>(Span, y.Span);
        var x = this;
        y.Track(g => x.AccumulateGrad(g.Neg(), owned: true), this);
        return y;
    }

    public static Tensor operator +(Tensor a, Tensor b) => Add(a, b);
    public static Tensor operator -(Tensor a, Tensor b) => Sub(a, b);
    public static Tensor operator *(Tensor a, Tensor b) => Mul(a, b);
    public static Tensor operator /(Tensor a, Tensor b) => Div(a, b);
    public static Tensor operator -(Tensor a) => a.Neg();
}
