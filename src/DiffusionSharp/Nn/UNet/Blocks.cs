using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn.UNet;

/// <summary>Settings shared by every resnet of a U-Net block (diffusers' resnet_* arguments).</summary>
public sealed record ResnetSettings(int TembChannels, float Dropout, int Groups, float Eps, string ActFn,
    TimeEmbeddingNorm TimeEmbeddingNorm, float OutputScaleFactor = 1f, bool SkipTimeAct = false)
{
    internal ResnetBlock2D Make(int cin, int cout, Generator? g, bool up = false, bool down = false) =>
        new(cin, cout, TembChannels, Dropout, Groups, null, Eps, ActFn, TimeEmbeddingNorm, OutputScaleFactor, up, down, SkipTimeAct, g);
}

/// <summary>The attention layers of an attention block: one per resnet, heads of <c>attention_head_dim</c> channels.</summary>
internal static class UNetAttentions
{
    internal static ModuleList<Attention> Create(string blockType, int numLayers, int channels, int attentionHeadDim, ResnetSettings rs, Generator? g)
    {
        if (channels % attentionHeadDim != 0)
            throw new ArgumentException($"{blockType}: {channels} channels are not divisible by attention_head_dim {attentionHeadDim}.");
        var list = new ModuleList<Attention>();
        for (int i = 0; i < numLayers; i++)
            list.Add(new Attention(channels, channels / attentionHeadDim, attentionHeadDim, rs.Groups, rs.Eps, rs.OutputScaleFactor, generator: g));
        return list;
    }
}

/// <summary>
/// An encoder stage: <c>layers</c> resnets (each optionally followed by attention), then an optional downsampler.
/// Covers diffusers' DownBlock2D, AttnDownBlock2D and ResnetDownsampleBlock2D; returns every intermediate as a skip.
/// </summary>
public sealed class UNetDownBlock : Module
{
    /// <summary>The diffusers class name this block reproduces.</summary>
    public string BlockType { get; }
    /// <summary>Resnets.</summary>
    public ModuleList<ResnetBlock2D> Resnets { get; }
    /// <summary>Attention after each resnet, or null.</summary>
    public ModuleList<Attention>? Attentions { get; }
    /// <summary>Conv downsampler (<c>downsamplers.0</c>), or null.</summary>
    public Downsample2D? ConvDownsampler { get; }
    /// <summary>Resnet downsampler (<c>downsamplers.0</c>, BigGAN style), or null.</summary>
    public ResnetBlock2D? ResnetDownsampler { get; }

    /// <summary>Builds the block. <paramref name="downsampleType"/> is "conv" or "resnet" (AttnDownBlock2D only).</summary>
    public UNetDownBlock(string blockType, int numLayers, int inChannels, int outChannels, ResnetSettings rs, bool addDownsample,
        int attentionHeadDim, int downsamplePadding, string downsampleType, Generator? g = null)
    {
        BlockType = blockType;
        bool attn = blockType == "AttnDownBlock2D";
        if (attn) Attentions = RegisterModule("attentions", UNetAttentions.Create(blockType, numLayers, outChannels, attentionHeadDim, rs, g));
        Resnets = RegisterModule("resnets", new ModuleList<ResnetBlock2D>());
        for (int i = 0; i < numLayers; i++) Resnets.Add(rs.Make(i == 0 ? inChannels : outChannels, outChannels, g));
        if (!addDownsample) return;
        var ds = RegisterModule("downsamplers", new ModuleList<Module>());
        bool resnetDown = blockType switch
        {
            "DownBlock2D" => false,
            "ResnetDownsampleBlock2D" => true,
            "AttnDownBlock2D" => downsampleType switch
            {
                "conv" => false,
                "resnet" => true,
                _ => throw new ArgumentException($"Unknown downsample_type '{downsampleType}'; expected 'conv' or 'resnet'."),
            },
            _ => throw new ArgumentException($"Unsupported down block type '{blockType}'."),
        };
        if (resnetDown) ResnetDownsampler = (ResnetBlock2D)ds.Add(rs.Make(outChannels, outChannels, g, down: true));
        else ConvDownsampler = (Downsample2D)ds.Add(new Downsample2D(outChannels, true, outChannels, downsamplePadding, g));
    }

    /// <summary>Runs the block; <paramref name="skips"/> receives the output of every resnet/attention pair and of the downsampler.</summary>
    public Tensor Forward(Tensor h, Tensor temb, List<Tensor> skips)
    {
        for (int i = 0; i < Resnets.Count; i++)
        {
            h = Resnets[i].Forward(h, temb);
            if (Attentions != null)
            {
                var a = Attentions[i].Forward(h);
                NnOps.Free(h, a);
                h = a;
            }
            skips.Add(h);  // block inputs and outputs are all skips: they are freed by the up blocks
        }
        if (ConvDownsampler != null) { h = ConvDownsampler.Forward(h); skips.Add(h); }
        else if (ResnetDownsampler != null) { h = ResnetDownsampler.Forward(h, temb); skips.Add(h); }
        return h;
    }
}

/// <summary>
/// A decoder stage: resnets over [h, skip] concatenations (each optionally followed by attention), then an optional upsampler.
/// Covers diffusers' UpBlock2D, AttnUpBlock2D and ResnetUpsampleBlock2D.
/// </summary>
public sealed class UNetUpBlock : Module
{
    /// <summary>The diffusers class name this block reproduces.</summary>
    public string BlockType { get; }
    /// <summary>Resnets.</summary>
    public ModuleList<ResnetBlock2D> Resnets { get; }
    /// <summary>Attention after each resnet, or null.</summary>
    public ModuleList<Attention>? Attentions { get; }
    /// <summary>Conv upsampler (<c>upsamplers.0</c>), or null.</summary>
    public Upsample2D? ConvUpsampler { get; }
    /// <summary>Resnet upsampler (<c>upsamplers.0</c>, BigGAN style), or null.</summary>
    public ResnetBlock2D? ResnetUpsampler { get; }

    /// <summary>Builds the block. <paramref name="upsampleType"/> is "conv" or "resnet" (AttnUpBlock2D only).</summary>
    public UNetUpBlock(string blockType, int numLayers, int inChannels, int prevOutputChannels, int outChannels, ResnetSettings rs,
        bool addUpsample, int attentionHeadDim, string upsampleType, Generator? g = null)
    {
        BlockType = blockType;
        bool attn = blockType == "AttnUpBlock2D";
        if (attn) Attentions = RegisterModule("attentions", UNetAttentions.Create(blockType, numLayers, outChannels, attentionHeadDim, rs, g));
        Resnets = RegisterModule("resnets", new ModuleList<ResnetBlock2D>());
        for (int i = 0; i < numLayers; i++)
        {
            int skipCh = i == numLayers - 1 ? inChannels : outChannels;
            int resIn = i == 0 ? prevOutputChannels : outChannels;
            Resnets.Add(rs.Make(resIn + skipCh, outChannels, g));
        }
        if (!addUpsample) return;
        var us = RegisterModule("upsamplers", new ModuleList<Module>());
        bool resnetUp = blockType switch
        {
            "UpBlock2D" => false,
            "ResnetUpsampleBlock2D" => true,
            "AttnUpBlock2D" => upsampleType switch
            {
                "conv" => false,
                "resnet" => true,
                _ => throw new ArgumentException($"Unknown upsample_type '{upsampleType}'; expected 'conv' or 'resnet'."),
            },
            _ => throw new ArgumentException($"Unsupported up block type '{blockType}'."),
        };
        if (resnetUp) ResnetUpsampler = (ResnetBlock2D)us.Add(rs.Make(outChannels, outChannels, g, up: true));
        else ConvUpsampler = (Upsample2D)us.Add(new Upsample2D(outChannels, true, outChannels, g));
    }

    /// <summary>Runs the block, consuming skips from the end of <paramref name="skips"/> (last in, first out).</summary>
    public Tensor Forward(Tensor h, List<Tensor> skips, Tensor temb)
    {
        for (int i = 0; i < Resnets.Count; i++)
        {
            if (skips.Count == 0) throw new InvalidOperationException("U-Net skip connections ran out; down and up blocks do not match.");
            var skip = skips[^1];
            skips.RemoveAt(skips.Count - 1);
            var cat = Tensor.Concat(new[] { h, skip }, 1);
            NnOps.Free(h);
            NnOps.Free(skip);
            h = Resnets[i].Forward(cat, temb);
            NnOps.Free(cat, h);
            if (Attentions != null)
            {
                var a = Attentions[i].Forward(h);
                NnOps.Free(h, a);
                h = a;
            }
        }
        Tensor u = ConvUpsampler != null ? ConvUpsampler.Forward(h) : ResnetUpsampler != null ? ResnetUpsampler.Forward(h, temb) : h;
        NnOps.Free(h, u);
        return u;
    }
}

/// <summary>The bottleneck (diffusers <c>UNetMidBlock2D</c>): resnet, then (attention, resnet) per layer.</summary>
public sealed class UNetMidBlock2D : Module
{
    /// <summary>Attentions (one per layer; empty when attention is disabled).</summary>
    public ModuleList<Attention>? Attentions { get; }
    /// <summary>Resnets (layers + 1).</summary>
    public ModuleList<ResnetBlock2D> Resnets { get; }

    /// <summary>Builds the block. <paramref name="attnGroups"/> null means no group norm in the attention.</summary>
    public UNetMidBlock2D(int channels, ResnetSettings rs, int attentionHeadDim, int? attnGroups, bool addAttention, int numLayers = 1, Generator? g = null)
    {
        if (addAttention)
        {
            if (channels % attentionHeadDim != 0)
                throw new ArgumentException($"UNetMidBlock2D: {channels} channels are not divisible by attention_head_dim {attentionHeadDim}.");
            Attentions = RegisterModule("attentions", new ModuleList<Attention>());
            for (int i = 0; i < numLayers; i++)
                Attentions.Add(new Attention(channels, channels / attentionHeadDim, attentionHeadDim, attnGroups, rs.Eps, rs.OutputScaleFactor, generator: g));
        }
        Resnets = RegisterModule("resnets", new ModuleList<ResnetBlock2D>());
        for (int i = 0; i <= numLayers; i++) Resnets.Add(rs.Make(channels, channels, g));
    }

    /// <summary>Runs the block.</summary>
    public Tensor Forward(Tensor h, Tensor temb)
    {
        var input = h;
        h = Resnets[0].Forward(h, temb);
        for (int i = 1; i < Resnets.Count; i++)
        {
            if (Attentions != null)
            {
                var a = Attentions[i - 1].Forward(h);
                NnOps.Free(h, a, input);
                h = a;
            }
            var r = Resnets[i].Forward(h, temb);
            NnOps.Free(h, r, input);
            h = r;
        }
        return h;
    }
}
