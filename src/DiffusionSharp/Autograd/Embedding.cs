namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Rows of <paramref name="weight"/> [vocab, dim] picked by <paramref name="indices"/>, as [indices.Length, dim].
    /// Backward scatter-adds the output gradient into the picked rows (repeats accumulate).
    /// </summary>
    public static Tensor Embedding(Tensor weight, ReadOnlySpan<int> indices)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2) throw new ArgumentException($"Embedding weight must be [vocab, dim], got shape {weight.Shape}.");
        int vocab = weight.Shape[0], dim = weight.Shape[1];
        var idx = indices.ToArray();
        for (int i = 0; i < idx.Length; i++)
            if ((uint)idx[i] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(indices), $"Embedding index {idx[i]} at position {i} is outside [0, {vocab}) for weight of shape {weight.Shape}.");
        var y = Empty(idx.Length, dim);
        var w = weight.Span;
        var o = y.Span;
        for (int i = 0; i < idx.Length; i++) w.Slice(idx[i] * dim, dim).CopyTo(o.Slice(i * dim, dim));
        y.Track(g =>
        {
            var gw = Zeros(weight.Shape);
            var gd = gw.Span;
            var gs = g.Span;
            for (int i = 0; i < idx.Length; i++) Kernels.Elementwise.AddInPlace(gd.Slice(idx[i] * dim, dim), gs.Slice(i * dim, dim));
            weight.AccumulateGrad(gw, owned: true);
        }, weight);
        return y;
    }
}
