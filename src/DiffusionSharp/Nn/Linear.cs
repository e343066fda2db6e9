using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>y = x W^T + b with W of shape [out, in] (PyTorch <c>nn.Linear</c>).</summary>
public sealed class Linear : Module
{
    /// <summary>Weight [out, in].</summary>
    public Tensor Weight { get; }

    /// <summary>Bias [out], or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>Input features.</summary>
    public int InFeatures { get; }

    /// <summary>Output features.</summary>
    public int OutFeatures { get; }

    /// <summary>Creates the layer with PyTorch's default uniform initialisation.</summary>
    public Linear(int inFeatures, int outFeatures, bool bias = true, Generator? generator = null)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new ArgumentException($"Linear needs positive sizes, got in={inFeatures}, out={outFeatures}.");
        var g = generator ?? Init.DefaultGenerator;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = RegisterParameter("weight", Init.UniformFanIn(g, inFeatures, outFeatures, inFeatures));
        if (bias) Bias = RegisterParameter("bias", Init.UniformFanIn(g, inFeatures, outFeatures));
    }

    /// <summary>Applies the layer to x of shape [..., in].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank == 0 || x.Dim(-1) != InFeatures)
            throw new ArgumentException($"Linear expects input [..., {InFeatures}], got {x.Shape}.");
        if (FlopCounter.Active) FlopCounter.Add(2.0 * (x.Size / InFeatures) * InFeatures * OutFeatures);
        return Tensor.Linear(x, Weight, Bias);
    }
}
