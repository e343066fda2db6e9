using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>Sum of all elements as a scalar tensor (accumulated in double).</summary>
    public Tensor SumAll()
    {
        var y = Scalar((float)Reduce.Sum(Span));
        var x = this;
        y.Track(g => x.AccumulateGrad(Full(x.Shape, g.Item()), owned: true), this);
        return y;
    }

    /// <summary>Mean of all elements as a scalar tensor (accumulated in double).</summary>
    public Tensor MeanAll()
    {
        if (Size == 0) throw new InvalidOperationException($"MeanAll of an empty tensor of shape {Shape}.");
        var y = Scalar((float)(Reduce.Sum(Span) / Size));
        var x = this;
        y.Track(g => x.AccumulateGrad(Full(x.Shape, g.Item() / x.Size), owned: true), this);
        return y;
    }

    /// <summary>Resolves reduction axes: flags per axis, the kept-dim shape, the output shape and the reduced count.</summary>
    private (bool[] Reduced, Shape KeepShape, Shape OutShape, int Count) ReductionAxes(int[] axes, bool keepDim, string op)
    {
        ArgumentNullException.ThrowIfNull(axes);
        if (axes.Length == 0) throw new ArgumentException($"{op} over no axes of shape {Shape}; use {op}All() to reduce everything.");
        var reduced = new bool[Rank];
        foreach (var a in axes)
        {
            int r = Shape.Axis(a);
            if (reduced[r]) throw new ArgumentException($"{op}: axis {a} is listed twice for shape {Shape}.");
            reduced[r] = true;
        }
        var keep = new int[Rank];
        var outd = new List<int>();
        int count = 1;
        for (int i = 0; i < Rank; i++)
        {
            keep[i] = reduced[i] ? 1 : Shape[i];
            if (reduced[i]) count *= Shape[i];
            if (!reduced[i] || keepDim) outd.Add(keep[i]);
        }
        return (reduced, new Shape(keep), new Shape(outd.ToArray()), count);
    }

    /// <summary>Sum over <paramref name="axes"/> (double accumulation); <paramref name="keepDim"/> keeps them as size 1.</summary>
    public Tensor Sum(int[] axes, bool keepDim = false)
    {
        var (reduced, keepShape, outShape, _) = ReductionAxes(axes, keepDim, "Sum");
        var y = Empty(outShape);
        Reduce.SumAxes(Span, Shape.Dims, reduced, y.Span);
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            ExpandKernel(g.Span, keepShape, gx.Span, x.Shape);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>Mean over <paramref name="axes"/> (double accumulation); <paramref name="keepDim"/> keeps them as size 1.</summary>
    public Tensor Mean(int[] axes, bool keepDim = false)
    {
        var (reduced, keepShape, outShape, count) = ReductionAxes(axes, keepDim, "Mean");
        if (count == 0) throw new InvalidOperationException($"Mean over empty axes of shape {Shape}.");
        var y = Empty(outShape);
        Reduce.SumAxes(Span, Shape.Dims, reduced, y.Span);
        System.Numerics.Tensors.TensorPrimitives.Divide(y.Span, count, y.Span);
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            ExpandKernel(g.Span, keepShape, gx.Span, x.Shape);
            System.Numerics.Tensors.TensorPrimitives.Divide(gx.Span, count, gx.Span);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>
    /// Variance over <paramref name="axes"/>: sum((x - mean)^2) / (n - 1 if <paramref name="unbiased"/> else n), two-pass in double.
    /// </summary>
    public Tensor Var(int[] axes, bool keepDim = false, bool unbiased = false)
    {
        var (reduced, keepShape, outShape, count) = ReductionAxes(axes, keepDim, "Var");
        int denom = unbiased ? count - 1 : count;
        if (denom <= 0) throw new InvalidOperationException($"Var over {count} element(s) of shape {Shape} with unbiased={unbiased} divides by {denom}.");
        var mean = Empty(keepShape);
        Reduce.SumAxes(Span, Shape.Dims, reduced, mean.Span);
        System.Numerics.Tensors.TensorPrimitives.Divide(mean.Span, count, mean.Span);
        var diff = Empty(Shape);
        ExpandKernel(mean.Span, keepShape, diff.Span, Shape);
        mean.Dispose();
        System.Numerics.Tensors.TensorPrimitives.Subtract(Span, diff.Span, diff.Span);
        var sq = MapNew(System.Numerics.Tensors.TensorPrimitives.Multiply, diff, diff);
        var y = Empty(outShape);
        Reduce.SumAxes(sq.Span, Shape.Dims, reduced, y.Span);
        sq.Dispose();
        System.Numerics.Tensors.TensorPrimitives.Divide(y.Span, denom, y.Span);
        var x = this;
        bool tracked = y.Track(g =>
        {
            // d var / dx = 2 (x - mean) / denom; the mean's own dependence cancels since sum(x - mean) = 0.
            var gx = Empty(x.Shape);
            ExpandKernel(g.Span, keepShape, gx.Span, x.Shape);
            System.Numerics.Tensors.TensorPrimitives.Multiply(gx.Span, diff.Span, gx.Span);
            System.Numerics.Tensors.TensorPrimitives.Multiply(gx.Span, 2f / denom, gx.Span);
            diff.Dispose();
            x.AccumulateGrad(gx, owned: true);
        }, this);
        if (!tracked) diff.Dispose();
        return y;
    }
}
