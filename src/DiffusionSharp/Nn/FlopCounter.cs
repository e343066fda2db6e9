using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>Counts forward FLOPs (2 per multiply-add) of convs, linears and attention matmuls while a count is running on this thread.</summary>
public static class FlopCounter
{
    [ThreadStatic] private static double _flops;
    [ThreadStatic] private static bool _active;

    internal static bool Active => _active;

    internal static void Add(double flops) => _flops += flops;

    /// <summary>Runs <paramref name="unet"/> once on <paramref name="x"/> without gradients and returns the FLOPs per image.</summary>
    public static double Count(UNet.UNet2DModel unet, Tensor x)
    {
        _flops = 0;
        _active = true;
        try
        {
            using (Autograd.GradMode.NoGrad()) unet.Forward(x, Tensor.FromValues(500f), ClassLabelsFor(unet, x.Dim(0)));
            return _flops / x.Dim(0);
        }
        finally { _active = false; }
    }

    private static Tensor? ClassLabelsFor(UNet.UNet2DModel unet, int n) =>
        unet.Config.NumClassEmbeds is not null || unet.Config.ClassEmbedType == "timestep" ? Tensor.Zeros(n)
        : unet.Config.ClassEmbedType == "identity" ? Tensor.Zeros(n, unet.Config.BlockOutChannels[0] * 4) : null;
}
