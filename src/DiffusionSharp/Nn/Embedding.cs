using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>A lookup table of <c>num</c> vectors of size <c>dim</c> (PyTorch <c>nn.Embedding</c>, N(0, 1) initialisation).</summary>
public sealed class Embedding : Module
{
    /// <summary>Table [num, dim].</summary>
    public Tensor Weight { get; }

    /// <summary>Number of entries.</summary>
    public int NumEmbeddings { get; }

    /// <summary>Vector size.</summary>
    public int EmbeddingDim { get; }

    /// <summary>Creates the table.</summary>
    public Embedding(int numEmbeddings, int embeddingDim, Generator? generator = null)
    {
        if (numEmbeddings <= 0 || embeddingDim <= 0) throw new ArgumentException($"Embedding needs positive sizes, got {numEmbeddings} x {embeddingDim}.");
        NumEmbeddings = numEmbeddings;
        EmbeddingDim = embeddingDim;
        Weight = RegisterParameter("weight", Tensor.Randn(generator ?? Init.DefaultGenerator, numEmbeddings, embeddingDim));
    }

    /// <summary>Rows for <paramref name="indices"/>: [n, dim].</summary>
    public Tensor Forward(ReadOnlySpan<int> indices)
    {
        foreach (var i in indices)
            if (i < 0 || i >= NumEmbeddings) throw new ArgumentOutOfRangeException(nameof(indices), $"Embedding index {i} is outside [0, {NumEmbeddings}).");
        return Tensor.Embedding(Weight, indices);
    }

    /// <summary>Rows for integer-valued indices held in a float tensor [n].</summary>
    public Tensor Forward(Tensor indices) => Forward(ToIndices(indices, "embedding indices"));

    internal static int[] ToIndices(Tensor t, string what)
    {
        var s = t.Span;
        var r = new int[s.Length];
        for (int i = 0; i < s.Length; i++)
        {
            float v = s[i];
            if (v != MathF.Round(v)) throw new ArgumentException($"{what} must be integers, got {v} at position {i}.");
            r[i] = (int)v;
        }
        return r;
    }
}
