namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>Sum of all elements as a scalar tensor (accumulated in double).</summary>
    public Tensor SumAll()
    {
        double acc = 0;
        foreach (var v in Span) acc += v;
        var y = Scalar((float)acc);
        var x = this;
        y.Track(g => x.AccumulateGrad(Full(x.Shape, g.Item()), owned: true), this);
        return y;
    }
}
