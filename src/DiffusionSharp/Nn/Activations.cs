using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>Activation functions selected by diffusers' <c>act_fn</c> names.</summary>
public static class Activations
{
    /// <summary>Names accepted by <see cref="Get"/>.</summary>
    public static readonly IReadOnlyList<string> Supported = new[] { "silu", "swish", "gelu" };

    /// <summary>Returns the activation for <paramref name="name"/> (silu = swish = x*sigmoid(x); gelu is the exact erf form).</summary>
    public static Func<Tensor, Tensor> Get(string name) => name switch
    {
        "silu" or "swish" => x => x.Silu(),
        "gelu" => x => x.Gelu(),
        _ => throw new ArgumentException($"Unsupported activation '{name}'; expected one of: {string.Join(", ", Supported)}."),
    };
}
