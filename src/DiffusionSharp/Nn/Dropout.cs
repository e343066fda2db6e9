using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>Inverted dropout: in training, zeroes elements with probability p and scales the rest by 1/(1-p); identity in eval mode.</summary>
public sealed class Dropout : Module
{
    /// <summary>Drop probability.</summary>
    public float P { get; }

    /// <summary>Random source for the masks.</summary>
    public Generator Generator { get; set; }

    /// <summary>Creates the layer.</summary>
    public Dropout(float p, Generator? generator = null)
    {
        if (!(p >= 0f && p < 1f)) throw new ArgumentException($"Dropout probability must be in [0, 1), got {p}.");
        P = p;
        Generator = generator ?? Init.DefaultGenerator;
    }

    /// <summary>Applies dropout when training and p &gt; 0.</summary>
    public Tensor Forward(Tensor x) => Training && P > 0f ? x.Dropout(P, Generator, true) : x;
}
