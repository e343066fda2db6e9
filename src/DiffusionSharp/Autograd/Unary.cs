using System.Numerics.Tensors;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>A new tensor of this shape holding map(this).</summary>
    internal Tensor MapNew(SpanMap map)
    {
        var y = Empty(Shape);
        ParallelMap.Map(map, Storage, y.Storage, Size);
        return y;
    }

    /// <summary>A new tensor of this shape holding TOp(this).</summary>
    internal Tensor MapNew<TOp>() where TOp : struct, IUnaryOperator
    {
        var y = Empty(Shape);
        ParallelMap.Unary<TOp>(Storage, y.Storage, Size);
        return y;
    }

    /// <summary>A new tensor holding TOp(a, b) for same-shape a and b.</summary>
    internal static Tensor MapNew<TOp>(Tensor a, Tensor b) where TOp : struct, IBinaryOperator
    {
        if (a.Shape != b.Shape) throw new ArgumentException($"Shapes {a.Shape} and {b.Shape} must match.");
        var y = Empty(a.Shape);
        ParallelMap.Binary<TOp>(a.Storage, b.Storage, y.Storage, a.Size);
        return y;
    }

    /// <summary>A new tensor holding map(a, b) for same-shape a and b.</summary>
    internal static Tensor MapNew(SpanMap2 map, Tensor a, Tensor b)
    {
        if (a.Shape != b.Shape) throw new ArgumentException($"Shapes {a.Shape} and {b.Shape} must match.");
        var y = Empty(a.Shape);
        ParallelMap.Map(map, a.Storage, b.Storage, y.Storage, a.Size);
        return y;
    }

    /// <summary>Elementwise e^x.</summary>
    public Tensor Exp()
    {
        var y = MapNew(TensorPrimitives.Exp);
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew(TensorPrimitives.Multiply, g, y), owned: true), this);
        return y;
    }

    /// <summary>Elementwise natural logarithm.</summary>
    public Tensor Log()
    {
        var y = MapNew(TensorPrimitives.Log);
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew(TensorPrimitives.Divide, g, x), owned: true), this);
        return y;
    }

    /// <summary>Elementwise square root.</summary>
    public Tensor Sqrt()
    {
        var y = MapNew(TensorPrimitives.Sqrt);
        var x = this;
        y.Track(g =>
        {
            // d sqrt(x) = g / (2 sqrt(x))
            var gx = MapNew(TensorPrimitives.Divide, g, y);
            TensorPrimitives.Multiply(gx.Span, 0.5f, gx.Span);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>Elementwise x^p.</summary>
    public Tensor Pow(float p)
    {
        Tensor y;
        if (p == 2f) y = MapNew(TensorPrimitives.Multiply, this, this);
        else y = MapNew((a, d) => TensorPrimitives.Pow(a, p, d));
        var x = this;
        y.Track(g =>
        {
            Tensor gx;
            if (p == 0f) gx = Zeros(x.Shape);
            else if (p == 2f) { gx = MapNew(TensorPrimitives.Multiply, g, x); TensorPrimitives.Multiply(gx.Span, 2f, gx.Span); }
            else
            {
                // d x^p = p x^(p-1)
                gx = x.MapNew((a, d) => TensorPrimitives.Pow(a, p - 1f, d));
                TensorPrimitives.Multiply(gx.Span, g.Span, gx.Span);
                TensorPrimitives.Multiply(gx.Span, p, gx.Span);
            }
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>Elementwise |x| (gradient sign(x), 0 at 0).</summary>
    public Tensor Abs()
    {
        var y = MapNew(TensorPrimitives.Abs);
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew<AbsGradOp>(x, g), owned: true), this);
        return y;
    }

    /// <summary>Elementwise clamp to [min, max]; the gradient passes where min &lt;= x &lt;= max.</summary>
    public Tensor Clamp(float min, float max)
    {
        if (!(min <= max)) throw new ArgumentException($"Clamp needs min <= max, got min {min} and max {max}.");
        var y = MapNew((a, d) => TensorPrimitives.Clamp(a, min, max, d));
        var x = this;
        y.Track(g =>
        {
            var gx = MapNew((a, b, d) => Kernels.Affine.PassInside(a, b, min, max, d), x, g);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>Elementwise hyperbolic tangent.</summary>
    public Tensor Tanh()
    {
        var y = MapNew(TensorPrimitives.Tanh);
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew<TanhGradOp>(y, g), owned: true), this);
        return y;
    }

    /// <summary>Elementwise logistic sigmoid.</summary>
    public Tensor Sigmoid()
    {
        var y = MapNew<SigmoidOp>();
        var x = this;
        y.Track(g => x.AccumulateGrad(MapNew<SigmoidGradOp>(y, g), owned: true), this);
        return y;
    }

    // ---------- scalar forms ----------

    /// <summary>y = a * x + b elementwise (gradient a * g).</summary>
    private Tensor AffineMap(float a, float b)
    {
        var y = MapNew((s, d) => Kernels.Affine.ScaleShift(s, a, b, d));
        var x = this;
        y.Track(g =>
        {
            if (a == 1f) x.AccumulateGrad(g, owned: false);
            else x.AccumulateGrad(g.MapNew((s, d) => TensorPrimitives.Multiply(s, a, d)), owned: true);
        }, this);
        return y;
    }

    /// <summary>Adds a scalar to every element.</summary>
    public Tensor Add(float s) => AffineMap(1f, s);

    /// <summary>Multiplies every element by a scalar.</summary>
    public Tensor Mul(float s)
    {
        var y = MapNew((a, d) => TensorPrimitives.Multiply(a, s, d));
        var x = this;
        y.Track(g => x.AccumulateGrad(g.MapNew((a, d) => TensorPrimitives.Multiply(a, s, d)), owned: true), this);
        return y;
    }

    /// <summary>Divides every element by a scalar.</summary>
    public Tensor Div(float s)
    {
        var y = MapNew((a, d) => TensorPrimitives.Divide(a, s, d));
        var x = this;
        y.Track(g => x.AccumulateGrad(g.MapNew((a, d) => TensorPrimitives.Divide(a, s, d)), owned: true), this);
        return y;
    }

    /// <summary>s / x elementwise.</summary>
    public Tensor RDiv(float s)
    {
        var y = MapNew((a, d) => TensorPrimitives.Divide(s, a, d));
        var x = this;
        y.Track(g =>
        {
            // d(s/x)/dx = -y / x
            var gx = MapNew(TensorPrimitives.Multiply, g, y);
            TensorPrimitives.Divide(gx.Span, x.Span, gx.Span);
            TensorPrimitives.Negate(gx.Span, gx.Span);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    public static Tensor operator +(Tensor a, float s) => a.Add(s);
    public static Tensor operator +(float s, Tensor a) => a.Add(s);
    public static Tensor operator -(Tensor a, float s) => a.Add(-s);
    public static Tensor operator -(float s, Tensor a) => a.AffineMap(-1f, s);
    public static Tensor operator *(Tensor a, float s) => a.Mul(s);
    public static Tensor operator *(float s, Tensor a) => a.Mul(s);
    public static Tensor operator /(Tensor a, float s) => a.Div(s);
    public static Tensor operator /(float s, Tensor a) => a.RDiv(s);
}
