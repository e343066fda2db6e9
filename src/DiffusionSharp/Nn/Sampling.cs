using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>
/// Halves H and W (diffusers <c>Downsample2D</c>): a 3x3 stride-2 conv, or a 2x2 average pool when <c>useConv</c> is false.
/// With padding 0 the input is first zero-padded by one row/column at the bottom/right, as diffusers does.
/// </summary>
public sealed class Downsample2D : Module
{
    /// <summary>The stride-2 convolution, or null for average pooling.</summary>
    public Conv2d? Conv { get; }

    /// <summary>Input channels.</summary>
    public int Channels { get; }

    /// <summary>Creates the layer.</summary>
    public Downsample2D(int channels, bool useConv, int? outChannels = null, int padding = 1, Generator? generator = null)
    {
        Channels = channels;
        int cout = outChannels ?? channels;
        if (useConv)
            Conv = RegisterModule("conv", new Conv2d(channels, cout, 3, stride: 2, padding: padding, generator: generator));
        else if (cout != channels)
            throw new ArgumentException($"Average-pool downsampling keeps the channel count; got {channels} -> {cout}.");
    }

    /// <summary>Downsamples x [N, C, H, W].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Dim(1) != Channels) throw new ArgumentException($"Downsample2D expects [N, {Channels}, H, W], got {x.Shape}.");
        if (Conv == null) return x.AvgPool2x2();
        if (Conv.Padding != 0) return Conv.Forward(x);
        var padded = NnOps.PadBottomRight(x, 1);
        var y = Conv.Forward(padded);
        NnOps.Free(padded);
        return y;
    }
}

/// <summary>Doubles H and W with nearest-neighbour upsampling, optionally followed by a 3x3 conv (diffusers <c>Upsample2D</c>).</summary>
public sealed class Upsample2D : Module
{
    /// <summary>The 3x3 convolution after upsampling, or null.</summary>
    public Conv2d? Conv { get; }

    /// <summary>Input channels.</summary>
    public int Channels { get; }

    /// <summary>Creates the layer.</summary>
    public Upsample2D(int channels, bool useConv, int? outChannels = null, Generator? generator = null)
    {
        Channels = channels;
        int cout = outChannels ?? channels;
        if (useConv) Conv = RegisterModule("conv", new Conv2d(channels, cout, 3, padding: 1, generator: generator));
        else if (cout != channels) throw new ArgumentException($"Upsampling without conv keeps the channel count; got {channels} -> {cout}.");
    }

    /// <summary>Upsamples x [N, C, H, W].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Dim(1) != Channels) throw new ArgumentException($"Upsample2D expects [N, {Channels}, H, W], got {x.Shape}.");
        var y = x.UpsampleNearest2x();
        if (Conv == null) return y;
        var c = Conv.Forward(y);
        NnOps.Free(y);
        return c;
    }
}
