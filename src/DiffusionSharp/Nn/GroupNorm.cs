using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>Group normalisation with per-channel affine weight and bias (PyTorch <c>nn.GroupNorm</c>, weight 1 and bias 0 at start).</summary>
public sealed class GroupNorm : Module
{
    /// <summary>Scale [C].</summary>
    public Tensor Weight { get; }

    /// <summary>Shift [C].</summary>
    public Tensor Bias { get; }

    /// <summary>Number of groups.</summary>
    public int NumGroups { get; }

    /// <summary>Number of channels.</summary>
    public int NumChannels { get; }

    /// <summary>Added to the variance.</summary>
    public float Eps { get; }

    /// <summary>Creates the layer; <paramref name="numChannels"/> must be divisible by <paramref name="numGroups"/>.</summary>
    public GroupNorm(int numGroups, int numChannels, float eps = 1e-5f)
    {
        if (numGroups <= 0 || numChannels <= 0 || numChannels % numGroups != 0)
            throw new ArgumentException($"GroupNorm needs channels divisible by groups, got {numChannels} channels and {numGroups} groups.");
        NumGroups = numGroups;
        NumChannels = numChannels;
        Eps = eps;
        Weight = RegisterParameter("weight", Tensor.Ones(numChannels));
        Bias = RegisterParameter("bias", Tensor.Zeros(numChannels));
    }

    /// <summary>Normalises x [N, C, ...].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank < 2 || x.Dim(1) != NumChannels)
            throw new ArgumentException($"GroupNorm expects input [N, {NumChannels}, ...], got {x.Shape}.");
        return x.GroupNorm(NumGroups, Weight, Bias, Eps);
    }

    /// <summary>SiLU of <see cref="Forward"/> in one pass (recorded as one op while gradients are recorded). With
    /// <paramref name="addNC"/> ([N, C]) it normalises x + addNC broadcast over the spatial axes without storing the sum.</summary>
    internal Tensor ForwardSilu(Tensor x, Tensor? addNC = null)
    {
        if (x.Rank < 2 || x.Dim(1) != NumChannels)
            throw new ArgumentException($"GroupNorm expects input [N, {NumChannels}, ...], got {x.Shape}.");
        return Autograd.GradMode.Enabled ? x.GroupNormSilu(NumGroups, Weight, Bias, Eps, addNC) : x.GroupNormSiluInference(NumGroups, Weight, Bias, Eps, addNC);
    }
}
