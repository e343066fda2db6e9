using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>How a <see cref="ResnetBlock2D"/> injects the time embedding.</summary>
public enum TimeEmbeddingNorm
{
    /// <summary>h = norm2(h + proj(temb)) (Ho et al. 2020).</summary>
    Default,
    /// <summary>h = norm2(h) * (1 + scale) + shift with [scale, shift] = proj(temb) ("AdaGN", Dhariwal &amp; Nichol 2021).</summary>
    ScaleShift,
}

/// <summary>
/// Pre-norm residual block (diffusers <c>ResnetBlock2D</c>): norm1, act, [up/down], conv1, + time embedding, norm2, act,
/// dropout, conv2, plus the (1x1-projected when channels change) shortcut, divided by output_scale_factor.
/// </summary>
public sealed class ResnetBlock2D : Module
{
    /// <summary>First group norm.</summary>
    public GroupNorm Norm1 { get; }
    /// <summary>First 3x3 conv.</summary>
    public Conv2d Conv1 { get; }
    /// <summary>Time-embedding projection (null without time embedding).</summary>
    public Linear? TimeEmbProj { get; }
    /// <summary>Second group norm.</summary>
    public GroupNorm Norm2 { get; }
    /// <summary>Dropout before conv2.</summary>
    public Dropout Dropout { get; }
    /// <summary>Second 3x3 conv.</summary>
    public Conv2d Conv2 { get; }
    /// <summary>1x1 shortcut projection when channels change, else null.</summary>
    public Conv2d? ConvShortcut { get; }
    /// <summary>BigGAN-style upsampling inside the block (nearest x2), or null.</summary>
    public Upsample2D? Upsample { get; }
    /// <summary>BigGAN-style downsampling inside the block (2x2 average pool), or null.</summary>
    public Downsample2D? Downsample { get; }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }
    /// <summary>Output channels.</summary>
    public int OutChannels { get; }
    /// <summary>Time-embedding mode.</summary>
    public TimeEmbeddingNorm TimeEmbeddingNorm { get; }
    /// <summary>The output is divided by this.</summary>
    public float OutputScaleFactor { get; }
    /// <summary>Skip the activation on the time embedding before the projection.</summary>
    public bool SkipTimeAct { get; }

    private readonly Func<Tensor, Tensor> _act;
    private readonly bool _silu;

    /// <summary>Creates the block (argument names follow diffusers).</summary>
    public ResnetBlock2D(int inChannels, int? outChannels = null, int? tembChannels = 512, float dropout = 0f, int groups = 32,
        int? groupsOut = null, float eps = 1e-6f, string nonLinearity = "swish", TimeEmbeddingNorm timeEmbeddingNorm = TimeEmbeddingNorm.Default,
        float outputScaleFactor = 1f, bool up = false, bool down = false, bool skipTimeAct = false, Generator? generator = null)
    {
        int cout = outChannels ?? inChannels;
        InChannels = inChannels;
        OutChannels = cout;
        TimeEmbeddingNorm = timeEmbeddingNorm;
        OutputScaleFactor = outputScaleFactor;
        SkipTimeAct = skipTimeAct;
        _act = Activations.Get(nonLinearity);
        _silu = nonLinearity is "silu" or "swish";
        Norm1 = RegisterModule("norm1", new GroupNorm(groups, inChannels, eps));
        Conv1 = RegisterModule("conv1", new Conv2d(inChannels, cout, 3, padding: 1, generator: generator));
        if (tembChannels is int tc)
            TimeEmbProj = RegisterModule("time_emb_proj", new Linear(tc, timeEmbeddingNorm == TimeEmbeddingNorm.ScaleShift ? 2 * cout : cout, generator: generator));
        Norm2 = RegisterModule("norm2", new GroupNorm(groupsOut ?? groups, cout, eps));
        Dropout = RegisterModule("dropout", new Dropout(dropout, generator));
        Conv2 = RegisterModule("conv2", new Conv2d(cout, cout, 3, padding: 1, generator: generator));
        if (up && down) throw new ArgumentException("A ResnetBlock2D cannot both upsample and downsample.");
        if (up) Upsample = new Upsample2D(inChannels, useConv: false);
        if (down) Downsample = new Downsample2D(inChannels, useConv: false);
        if (inChannels != cout)
            ConvShortcut = RegisterModule("conv_shortcut", new Conv2d(inChannels, cout, 1, generator: generator));
    }

    /// <summary>Applies the block to x [N, in, H, W] with time embedding temb [N, tembChannels] (or null).</summary>
    public Tensor Forward(Tensor x, Tensor? temb)
    {
        if (x.Rank != 4 || x.Dim(1) != InChannels) throw new ArgumentException($"ResnetBlock2D expects [N, {InChannels}, H, W], got {x.Shape}.");
        var input = x;
        // Each group norm runs fused with the SiLU after it (one pass over the activations instead of two; in training one
        // recorded op whose backward is one pass too).
        bool fuse = _silu;
        Tensor h;
        if (fuse) h = Norm1.ForwardSilu(x);
        else
        {
            var n1 = Norm1.Forward(x);
            h = _act(n1);
            NnOps.Free(n1, h);
        }
        if (Upsample != null || Downsample != null)
        {
            var hs = Upsample != null ? Upsample.Forward(h) : Downsample!.Forward(h);
            NnOps.Free(h, hs);
            h = hs;
            input = Upsample != null ? Upsample.Forward(input) : Downsample!.Forward(input);
        }
        var c1 = Conv1.Forward(h);
        NnOps.Free(h, x);
        h = c1;

        Tensor? t = null;
        if (TimeEmbProj != null && temb != null)
        {
            if (temb.Rank != 2 || temb.Dim(0) != x.Dim(0))
                throw new ArgumentException($"Time embedding must be [{x.Dim(0)}, {TimeEmbProj.InFeatures}], got {temb.Shape}.");
            t = TimeEmbProj.Forward(SkipTimeAct ? temb : _act(temb));
        }
        int n = h.Dim(0), c = OutChannels;
        if (TimeEmbeddingNorm == TimeEmbeddingNorm.ScaleShift)
        {
            if (t == null) throw new ArgumentException("ResnetBlock2D with scale_shift needs a time embedding.");
            var scale = t.Narrow(1, 0, c).Reshape(n, c, 1, 1);
            var shift = t.Narrow(1, c, c).Reshape(n, c, 1, 1);
            var n2 = Norm2.Forward(h);
            NnOps.Free(h);
            var scaled = n2 * (scale + 1f);
            NnOps.Free(n2);
            h = scaled + shift;
            NnOps.Free(scaled);
        }
        else if (fuse)
        {
            // The time embedding is added inside the fused norm (same float32 sums as adding it first).
            var f2 = Norm2.ForwardSilu(h, t);
            NnOps.Free(h);
            h = f2;
        }
        else
        {
            if (t != null)
            {
                var ht = h + t.Reshape(n, c, 1, 1);
                NnOps.Release(h);  // the conv output: nothing reads it in backward
                h = ht;
            }
            var n2 = Norm2.Forward(h);
            NnOps.Free(h);
            h = n2;
        }
        bool activated = fuse && TimeEmbeddingNorm != TimeEmbeddingNorm.ScaleShift;
        var a2 = activated ? h : _act(h);
        if (!activated) NnOps.Free(h, a2);
        var d2 = Dropout.Forward(a2);
        if (!ReferenceEquals(d2, a2)) NnOps.Release(a2);  // dropout's backward needs its mask, the activation's its input
        h = Conv2.Forward(d2);
        NnOps.Free(d2);
        NnOps.Free(a2, d2);
        if (ConvShortcut != null)
        {
            var s = ConvShortcut.Forward(input);
            NnOps.Free(input, x);
            input = s;
        }
        var y = input + h;
        NnOps.Release(h);
        NnOps.Free(input, x);
        if (OutputScaleFactor == 1f) return y;
        var scaledY = y / OutputScaleFactor;
        NnOps.Free(y);
        return scaledY;
    }
}
