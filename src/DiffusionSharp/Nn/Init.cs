using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>Parameter initialisers matching PyTorch's defaults.</summary>
public static class Init
{
    /// <summary>
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights (kaiming_uniform with a = sqrt 5) and biases.
    /// </summary>
    public static Tensor UniformFanIn(Generator g, int fanIn, params int[] shape)
    {
        var t = Tensor.Rand(g, shape);
        float bound = 1f / MathF.Sqrt(Math.Max(1, fanIn));
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (2f * s[i] - 1f) * bound;
        return t;
    }

    /// <summary>A process-wide generator used when a layer is built without one.</summary>
    public static Generator DefaultGenerator { get; set; } = new(0);
}
