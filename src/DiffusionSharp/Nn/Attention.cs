using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>
/// Spatial multi-head self-attention over the H*W positions of an NCHW map (diffusers <c>Attention</c> as built by the
/// UNet2D blocks): optional group norm, to_q/to_k/to_v, softmax(q k^T / sqrt(d)) v, to_out.0, plus the residual,
/// divided by rescale_output_factor.
/// </summary>
public sealed class Attention : Module
{
    /// <summary>Group norm on the input, or null.</summary>
    public GroupNorm? GroupNorm { get; }
    /// <summary>Query projection.</summary>
    public Linear ToQ { get; }
    /// <summary>Key projection.</summary>
    public Linear ToK { get; }
    /// <summary>Value projection.</summary>
    public Linear ToV { get; }
    /// <summary>Output projection (<c>to_out.0</c>).</summary>
    public Linear ToOut { get; }
    /// <summary>Dropout after the output projection (<c>to_out.1</c>).</summary>
    public Dropout OutDropout { get; }

    /// <summary>Channels of the input.</summary>
    public int QueryDim { get; }
    /// <summary>Number of heads.</summary>
    public int Heads { get; }
    /// <summary>Channels per head.</summary>
    public int DimHead { get; }
    /// <summary>The result is divided by this.</summary>
    public float RescaleOutputFactor { get; }
    /// <summary>Add the input back.</summary>
    public bool ResidualConnection { get; }

    /// <summary>Creates the layer; inner size is heads * dimHead.</summary>
    public Attention(int queryDim, int heads, int dimHead, int? normNumGroups, float eps = 1e-5f, float rescaleOutputFactor = 1f,
        bool residualConnection = true, bool bias = true, float dropout = 0f, Generator? generator = null)
    {
        if (heads <= 0 || dimHead <= 0) throw new ArgumentException($"Attention needs positive heads and head size, got {heads} x {dimHead}.");
        QueryDim = queryDim;
        Heads = heads;
        DimHead = dimHead;
        RescaleOutputFactor = rescaleOutputFactor;
        ResidualConnection = residualConnection;
        int inner = heads * dimHead;
        if (normNumGroups is int g) GroupNorm = RegisterModule("group_norm", new GroupNorm(g, queryDim, eps));
        ToQ = RegisterModule("to_q", new Linear(queryDim, inner, bias, generator));
        ToK = RegisterModule("to_k", new Linear(queryDim, inner, bias, generator));
        ToV = RegisterModule("to_v", new Linear(queryDim, inner, bias, generator));
        var toOut = RegisterModule("to_out", new ModuleList<Module>());
        ToOut = (Linear)toOut.Add(new Linear(inner, queryDim, true, generator));
        OutDropout = (Dropout)toOut.Add(new Dropout(dropout, generator));
    }

    /// <summary>Whether training (grad mode on, no dropout) runs the fused attention op; tests turn it off to compare with the separate ops.</summary>
    internal static bool FusedTraining = true;

    /// <summary>Attends over x [N, C, H, W].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Dim(1) != QueryDim) throw new ArgumentException($"Attention expects [N, {QueryDim}, H, W], got {x.Shape}.");
        int n = x.Dim(0), c = QueryDim, hh = x.Dim(2), ww = x.Dim(3), l = hh * ww, inner = Heads * DimHead;
        if (FlopCounter.Active) FlopCounter.Add(2.0 * 2.0 * n * Heads * l * l * DimHead);  // q k^T and p v
        var normed = GroupNorm != null ? GroupNorm.Forward(x) : x;
        if (!Autograd.GradMode.Enabled && !(OutDropout.Training && OutDropout.P > 0f))
        {
            // Inference: channel-major kernel with one fused q/k/v projection and no permute copies.
            if (FlopCounter.Active) FlopCounter.Add(4 * 2.0 * n * l * c * inner);  // the q, k, v and output projections
            var fused = Tensor.SpatialAttentionInference(normed, ResidualConnection ? x : null, ToQ.Weight, ToQ.Bias, ToK.Weight, ToK.Bias,
                ToV.Weight, ToV.Bias, ToOut.Weight, ToOut.Bias, Heads, DimHead, 1f / MathF.Sqrt(DimHead), RescaleOutputFactor);
            if (!ReferenceEquals(normed, x)) NnOps.Free(normed);
            return fused;
        }
        if (FusedTraining && !(OutDropout.Training && OutDropout.P > 0f))
        {
            // Training without dropout: one recorded op, channel-major like inference, its backward beside it.
            if (FlopCounter.Active) FlopCounter.Add(4 * 2.0 * n * l * c * inner);
            return Tensor.SpatialSelfAttention(normed, ResidualConnection ? x : null, ToQ.Weight, ToQ.Bias, ToK.Weight, ToK.Bias,
                ToV.Weight, ToV.Bias, ToOut.Weight, ToOut.Bias, Heads, DimHead, 1f / MathF.Sqrt(DimHead), RescaleOutputFactor);
        }
        var flat = normed.Reshape(n, c, l);
        var h = flat.Transpose(1, 2);                                   // [N, L, C]
        // Below, values that no backward function reads (outputs feeding only copies, sums and dropout) go back to the pool.
        if (!ReferenceEquals(flat, x)) NnOps.Release(flat);
        if (!ReferenceEquals(normed, x)) NnOps.Release(normed);
        // Scaling q before q k^T equals diffusers' baddbmm(alpha = 1/sqrt(d)) up to rounding, at L*d instead of L*L cost.
        var q0 = SplitHeads(ToQ.Forward(h), n, l);
        var q = q0 * (1f / MathF.Sqrt(DimHead));
        NnOps.Release(q0);  // scaling's backward reads only the gradient
        var k = SplitHeads(ToK.Forward(h), n, l);
        var v = SplitHeads(ToV.Forward(h), n, l);
        NnOps.Free(h);
        var kt = k.Transpose(2, 3);
        NnOps.Release(k);
        var scores = Tensor.MatMul(q, kt);                              // [N, heads, L, L]
        NnOps.Free(q);
        NnOps.Free(kt);
        var p = scores.Softmax(3);
        NnOps.Release(scores);  // softmax's backward reads its output, q k^T's its inputs
        var pv = Tensor.MatMul(p, v);
        NnOps.Free(p);
        NnOps.Free(v);
        var merged = pv.Permute(0, 2, 1, 3);
        NnOps.Release(pv);
        var o = merged.Reshape(n, l, inner);
        NnOps.Free(merged);  // the view keeps the storage alive
        var proj = ToOut.Forward(o);
        NnOps.Free(o);
        var dropped = OutDropout.Forward(proj);
        if (!ReferenceEquals(dropped, proj)) NnOps.Release(proj);
        var back = dropped.Transpose(1, 2);
        NnOps.Release(dropped);
        var y = back.Reshape(n, c, hh, ww);
        if (ResidualConnection)
        {
            var r = y + x;
            NnOps.Release(back);
            NnOps.Release(y);
            y = r;
        }
        else NnOps.Free(back);
        if (RescaleOutputFactor == 1f) return y;
        var scaled = y / RescaleOutputFactor;
        NnOps.Free(y);
        return scaled;
    }

    private Tensor SplitHeads(Tensor t, int n, int l)
    {
        var view = t.Reshape(n, l, Heads, DimHead);
        var split = view.Permute(0, 2, 1, 3);
        NnOps.Release(view);  // a projection's output: only the copy reads it
        NnOps.Release(t);
        return split;
    }
}
