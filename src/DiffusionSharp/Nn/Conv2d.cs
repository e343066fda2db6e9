using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>2-D convolution over NCHW input with square kernel, stride and symmetric zero padding (PyTorch <c>nn.Conv2d</c>).</summary>
public sealed class Conv2d : Module
{
    /// <summary>Weight [out, in, k, k].</summary>
    public Tensor Weight { get; }

    /// <summary>Bias [out], or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>Kernel size.</summary>
    public int KernelSize { get; }

    /// <summary>Stride.</summary>
    public int Stride { get; }

    /// <summary>Zero padding on every side.</summary>
    public int Padding { get; }

    /// <summary>Creates the layer with PyTorch's default uniform initialisation.</summary>
    public Conv2d(int inChannels, int outChannels, int kernelSize, int stride = 1, int padding = 0, bool bias = true, Generator? generator = null)
    {
        if (inChannels <= 0 || outChannels <= 0 || kernelSize <= 0 || stride <= 0 || padding < 0)
            throw new ArgumentException($"Invalid Conv2d(in={inChannels}, out={outChannels}, k={kernelSize}, stride={stride}, padding={padding}).");
        var g = generator ?? Init.DefaultGenerator;
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        int fanIn = inChannels * kernelSize * kernelSize;
        Weight = RegisterParameter("weight", Init.UniformFanIn(g, fanIn, outChannels, inChannels, kernelSize, kernelSize));
        if (bias) Bias = RegisterParameter("bias", Init.UniformFanIn(g, fanIn, outChannels));
    }

    /// <summary>Applies the convolution to x [N, in, H, W].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Dim(1) != InChannels)
            throw new ArgumentException($"Conv2d expects input [N, {InChannels}, H, W], got {x.Shape}.");
        if (FlopCounter.Active) FlopCounter.Add((double)x.Dim(0) * Flops(x.Dim(2), x.Dim(3)));
        return Tensor.Conv2d(x, Weight, Bias, Stride, Padding);
    }

    /// <summary>Multiply-add count per output element times outputs: forward FLOPs (2 per MAC) for input height/width.</summary>
    public long Flops(int height, int width)
    {
        int ho = (height + 2 * Padding - KernelSize) / Stride + 1, wo = (width + 2 * Padding - KernelSize) / Stride + 1;
        return 2L * OutChannels * ho * wo * InChannels * KernelSize * KernelSize;
    }
}
