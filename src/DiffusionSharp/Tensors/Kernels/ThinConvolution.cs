using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>
/// Direct stride-1 convolution for layers with few input or output channels (a U-Net's conv_in and conv_out): each output
/// plane is built from shifted input rows times scalar weights, with no im2col buffer, forward and both gradients. Per
/// element the products are fused-multiply-added in the same order at every vector width, and channel sums are blocked
/// (a partial of at most <see cref="PartialTerms"/> products, or one channel's taps, is added to the total), like the GEMM path.
/// </summary>
internal static unsafe class ThinConvolution
{
    /// <summary>At most this many input channels (an image's colours)...</summary>
    internal const int MaxThinIn = 4;
    /// <summary>...or at most this many output channels (noise, or noise and variance) make a layer thin.</summary>
    internal const int MaxThinOut = 8;

    /// <summary>Whether <paramref name="s"/> runs here: stride 1, padding below the kernel size, a thin side, not pointwise.</summary>
    public static bool Applies(in ConvShape s) =>
        s.Stride == 1 && !s.IsPointwise && s.Pad < s.Kh && s.Pad < s.Kw && s.H + 2 * s.Pad >= s.Kh && s.W + 2 * s.Pad >= s.Kw
        && (s.Cin <= MaxThinIn || s.Cout <= MaxThinOut);

    /// <summary>Products per output element summed in one partial before it is added to the total (as the Winograd kernels).</summary>
    internal const int PartialTerms = 16;

    // Channels per partial sum: each adds kh*kw products per output element (one channel for 3x3).
    private static int ChannelBlock(in ConvShape s) => Math.Max(1, PartialTerms / (s.Kh * s.Kw));

    /// <summary>y = conv(x, w) + bias over [N, Cin, H, W] -> [N, Cout, Ho, Wo].</summary>
    public static void Forward(ConvShape s, float* x, float* w, float* bias, float* y)
    {
        int taps = s.Kh * s.Kw, outPlane = s.P, block = ChannelBlock(s);
        var pad = new Padding(s.Cin, s.H, s.W, s.Pad, s.Pad);
        nint px = (nint)x, pw = (nint)w, pb = (nint)bias, py = (nint)y;
        Threading.For(s.N * s.Cout, 1, (t0, t1) =>
        {
            var scratch = TensorPool.Rent(outPlane + pad.Floats, clear: true);
            try
            {
                fixed (float* sc = scratch)
                {
                    float* padded = sc + outPlane;
                    int padded_n = -1;
                    for (int t = t0; t < t1; t++)
                    {
                        int n = t / s.Cout, co = t % s.Cout;
                        if (n != padded_n) { pad.Copy((float*)px + (nint)n * s.Cin * s.H * s.W, padded); padded_n = n; }
                        float* dst = (float*)py + (nint)t * outPlane;
                        float b0 = pb != 0 ? ((float*)pb)[co] : 0f;
                        if (s.Cin <= block) { CorrelateAdd(dst, s.Ho, s.Wo, padded, pad.Plane, pad.Pitch, (float*)pw + (nint)co * s.Cin * taps, s.Kh, s.Kw, s.Cin, b0); continue; }
                        new Span<float>(dst, outPlane).Fill(b0);
                        SumCorrelations(dst, sc, s.Ho, s.Wo, padded, pad, (float*)pw + (nint)co * s.Cin * taps, s.Kh, s.Kw, s.Cin, block);
                    }
                }
            }
            finally { TensorPool.Return(scratch); }
        });
    }

    /// <summary>gx = conv^T(gy, w) (overwritten): the correlation of gy with the 180-degree rotated kernels, padding k - 1 - pad.</summary>
    public static void BackwardData(ConvShape s, float* w, float* gy, float* gx)
    {
        int taps = s.Kh * s.Kw, inPlane = s.H * s.W, outPlane = s.P, block = ChannelBlock(s);
        // wr[ci, co, tap] = w[co, ci, kh-1-ki, kw-1-kj]
        var wr = TensorPool.Rent(s.Cout * s.Cin * taps, clear: false);
        for (int co = 0; co < s.Cout; co++)
            for (int ci = 0; ci < s.Cin; ci++)
                for (int k = 0; k < taps; k++)
                    wr[((nint)ci * s.Cout + co) * taps + k] = w[((nint)co * s.Cin + ci) * taps + taps - 1 - k];
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(wr, System.Runtime.InteropServices.GCHandleType.Pinned);
        nint pwr = handle.AddrOfPinnedObject(), pgy = (nint)gy, pgx = (nint)gx;
        var pad = new Padding(s.Cout, s.Ho, s.Wo, s.Kh - 1 - s.Pad, s.Kw - 1 - s.Pad);
        try
        {
            Threading.For(s.N * s.Cin, 1, (t0, t1) =>
            {
                var scratch = TensorPool.Rent(inPlane + pad.Floats, clear: true);
                try
                {
                    fixed (float* sc = scratch)
                    {
                        float* padded = sc + inPlane;
                        int padded_n = -1;
                        for (int t = t0; t < t1; t++)
                        {
                            int n = t / s.Cin, ci = t % s.Cin;
                            if (n != padded_n) { pad.Copy((float*)pgy + (nint)n * s.Cout * outPlane, padded); padded_n = n; }
                            float* dst = (float*)pgx + (nint)t * inPlane;
                            new Span<float>(dst, inPlane).Clear();
                            SumCorrelations(dst, sc, s.H, s.W, padded, pad, (float*)pwr + (nint)ci * s.Cout * taps, s.Kh, s.Kw, s.Cout, block);
                        }
                    }
                }
                finally { TensorPool.Return(scratch); }
            });
        }
        finally
        {
            handle.Free();
            TensorPool.Return(wr);
        }
    }

    /// <summary>
    /// gw[co, ci, ki, kj] = sum over images and output pixels of gy[n, co] * x[n, ci] shifted by the tap (overwritten). The
    /// images are summed in <see cref="Convolution.WeightPartials"/> fixed groups, so the thread count does not change the rounding.
    /// </summary>
    public static void BackwardWeight(ConvShape s, float* x, float* gy, float* gw)
    {
        int taps = s.Kh * s.Kw, outPlane = s.P, size = s.Cout * s.Cin * taps;
        int chunks = Math.Min(s.N, Convolution.WeightPartials);
        var pad = new Padding(s.Cin, s.H, s.W, s.Pad, s.Pad);
        var partial = new float[chunks][];
        nint px = (nint)x, pgy = (nint)gy;
        Threading.For(chunks, 1, (c0, c1) =>
        {
            var scratch = TensorPool.Rent(pad.Floats, clear: true);
            try
            {
                fixed (float* padded = scratch)
                {
                    Span<float> sums = stackalloc float[taps];
                    for (int c = c0; c < c1; c++)
                    {
                        var part = new float[size];
                        partial[c] = part;
                        int n0 = (int)((long)s.N * c / chunks), n1 = (int)((long)s.N * (c + 1) / chunks);
                        for (int n = n0; n < n1; n++)
                        {
                            pad.Copy((float*)px + (nint)n * s.Cin * s.H * s.W, padded);
                            for (int co = 0; co < s.Cout; co++)
                                for (int ci = 0; ci < s.Cin; ci++)
                                {
                                    TapSums((float*)pgy + ((nint)n * s.Cout + co) * outPlane, s.Ho, s.Wo, padded + (nint)ci * pad.Plane, pad.Pitch, s.Kh, s.Kw, sums);
                                    var dst = part.AsSpan(((co * s.Cin) + ci) * taps, taps);
                                    for (int k = 0; k < taps; k++) dst[k] += sums[k];
                                }
                        }
                    }
                }
            }
            finally { TensorPool.Return(scratch); }
        });
        var total = new Span<float>(gw, size);
        partial[0].CopyTo(total);
        for (int c = 1; c < chunks; c++) Elementwise.AddInPlace(total, partial[c]);
    }

    /// <summary>Zero-padded copies of C planes [h, w]: padH rows above and below, padW columns left and right.</summary>
    private readonly record struct Padding(int Channels, int H, int W, int PadH, int PadW)
    {
        public int Pitch => W + 2 * PadW;
        public int Rows => H + 2 * PadH;
        public int Plane => Rows * Pitch;
        public int Floats => Channels * Plane;

        // Writes the interior only: the border stays zero from the cleared scratch it lives in.
        public void Copy(float* src, float* dst)
        {
            for (int c = 0; c < Channels; c++)
                for (int i = 0; i < H; i++)
                    new ReadOnlySpan<float>(src + ((nint)c * H + i) * W, W).CopyTo(new Span<float>(dst + (nint)c * Plane + (i + PadH) * Pitch + PadW, W));
        }
    }

    /// <summary>Channel partials added into a group sum before the group is added to the total (three short chains instead of one long one).</summary>
    internal const int GroupPartials = 8;

    // dst += sum over channels c of correlate(padded[c], k[c]), summed as partials of `block` channels, groups of
    // GroupPartials partials, then the total; scratch holds one output plane.
    private static void SumCorrelations(float* dst, float* scratch, int ho, int wo, float* padded, in Padding pad, float* k, int kh, int kw,
        int channels, int block)
    {
        if (channels <= block) { CorrelateAdd(dst, ho, wo, padded, pad.Plane, pad.Pitch, k, kh, kw, channels); return; }
        int plane = ho * wo, taps = kh * kw;
        var grpS = new Span<float>(scratch, plane);
        for (int g0 = 0; g0 < channels; g0 += block * GroupPartials)
        {
            grpS.Clear();
            for (int c0 = g0; c0 < Math.Min(channels, g0 + block * GroupPartials); c0 += block)
                CorrelateAdd(scratch, ho, wo, padded + (nint)c0 * pad.Plane, pad.Plane, pad.Pitch, k + c0 * taps, kh, kw, Math.Min(block, channels - c0));
            Elementwise.AddInPlace(new Span<float>(dst, plane), grpS);
        }
    }

    /// <summary>
    /// dst[oh, ow] += (sum over the channels c, then (ki, kj), of k[c, ki, kj] * src[c, oh + ki, ow + kj]) on zero-padded source
    /// planes of row pitch <paramref name="pitch"/>: the partial is a chain of fused multiply-adds from zero in that order for
    /// every element, at every vector width, and then one addition to dst.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void CorrelateAdd(float* dst, int ho, int wo, float* src, int plane, int pitch, float* k, int kh, int kw, int channels, float? start = null)
    {
        // start: dst's old values are ignored and start + partial is written (the same rounding as dst filled with start)
        bool fresh = start.HasValue;
        float st = start.GetValueOrDefault();
        var st8 = Vector256.Create(st);
        var st4 = Vector128.Create(st);
        int taps = kh * kw;
        bool three = kh == 3 && kw == 3 && channels == 1 && Vector256.IsHardwareAccelerated;
        Vector256<float> k0 = default, k1 = default, k2 = default, k3 = default, k4 = default, k5 = default, k6 = default, k7 = default, k8 = default;
        if (three)
        {
            k0 = Vector256.Create(k[0]); k1 = Vector256.Create(k[1]); k2 = Vector256.Create(k[2]);
            k3 = Vector256.Create(k[3]); k4 = Vector256.Create(k[4]); k5 = Vector256.Create(k[5]);
            k6 = Vector256.Create(k[6]); k7 = Vector256.Create(k[7]); k8 = Vector256.Create(k[8]);
        }
        for (int oh = 0; oh < ho; oh++)
        {
            float* d = dst + (nint)oh * wo;
            float* s0 = src + (nint)oh * pitch;
            int ow = 0;
            if (three)
                for (; ow + 8 <= wo; ow += 8)
                {
                    // the general loop below unrolled for one channel of a 3x3 kernel: the same chain of fused multiply-adds
                    float* r0 = s0 + ow, r1 = r0 + pitch, r2 = r1 + pitch;
                    var acc = Vector256.FusedMultiplyAdd(k0, Vector256.Load(r0), Vector256<float>.Zero);
                    acc = Vector256.FusedMultiplyAdd(k1, Vector256.Load(r0 + 1), acc);
                    acc = Vector256.FusedMultiplyAdd(k2, Vector256.Load(r0 + 2), acc);
                    acc = Vector256.FusedMultiplyAdd(k3, Vector256.Load(r1), acc);
                    acc = Vector256.FusedMultiplyAdd(k4, Vector256.Load(r1 + 1), acc);
                    acc = Vector256.FusedMultiplyAdd(k5, Vector256.Load(r1 + 2), acc);
                    acc = Vector256.FusedMultiplyAdd(k6, Vector256.Load(r2), acc);
                    acc = Vector256.FusedMultiplyAdd(k7, Vector256.Load(r2 + 1), acc);
                    acc = Vector256.FusedMultiplyAdd(k8, Vector256.Load(r2 + 2), acc);
                    ((fresh ? st8 : Vector256.Load(d + ow)) + acc).Store(d + ow);
                }
            if (Vector256.IsHardwareAccelerated)
                for (; ow + 8 <= wo; ow += 8)
                {
                    var acc = Vector256<float>.Zero;
                    for (int c = 0; c < channels; c++)
                        for (int ki = 0; ki < kh; ki++)
                        {
                            float* row = s0 + (nint)c * plane + ki * pitch + ow;
                            float* kr = k + c * taps + ki * kw;
                            for (int kj = 0; kj < kw; kj++)
                                acc = Vector256.FusedMultiplyAdd(Vector256.Create(kr[kj]), Vector256.Load(row + kj), acc);
                        }
                    ((fresh ? st8 : Vector256.Load(d + ow)) + acc).Store(d + ow);
                }
            if (Vector128.IsHardwareAccelerated)
                for (; ow + 4 <= wo; ow += 4)
                {
                    var acc = Vector128<float>.Zero;
                    for (int c = 0; c < channels; c++)
                        for (int ki = 0; ki < kh; ki++)
                        {
                            float* row = s0 + (nint)c * plane + ki * pitch + ow;
                            float* kr = k + c * taps + ki * kw;
                            for (int kj = 0; kj < kw; kj++)
                                acc = Vector128.FusedMultiplyAdd(Vector128.Create(kr[kj]), Vector128.Load(row + kj), acc);
                        }
                    ((fresh ? st4 : Vector128.Load(d + ow)) + acc).Store(d + ow);
                }
            for (; ow < wo; ow++)
            {
                float acc = 0f;
                for (int c = 0; c < channels; c++)
                    for (int ki = 0; ki < kh; ki++)
                        for (int kj = 0; kj < kw; kj++)
                            acc = MathF.FusedMultiplyAdd(k[c * taps + ki * kw + kj], s0[(nint)c * plane + ki * pitch + ow + kj], acc);
                d[ow] = (fresh ? st : d[ow]) + acc;
            }
        }
    }

    // sums[ki * kw + kj] = sum over output pixels of g[oh, ow] * src[oh + ki, ow + kj] (zero-padded source), per vector lane, then across lanes.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TapSums(float* g, int ho, int wo, float* src, int pitch, int kh, int kw, Span<float> sums)
    {
        int taps = kh * kw;
        if (Vector256.IsHardwareAccelerated && taps <= 9 && wo >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default, a8 = default;
            Span<float> tail = stackalloc float[9];
            tail.Clear();
            nint o1 = Offset(1, kw, pitch), o2 = Offset(2, kw, pitch), o3 = Offset(3, kw, pitch), o4 = Offset(4, kw, pitch);
            nint o5 = Offset(5, kw, pitch), o6 = Offset(6, kw, pitch), o7 = Offset(7, kw, pitch), o8 = Offset(8, kw, pitch);
            for (int oh = 0; oh < ho; oh++)
            {
                float* gr = g + (nint)oh * wo;
                float* s0 = src + (nint)oh * pitch;
                int ow = 0;
                for (; ow + 8 <= wo; ow += 8)
                {
                    var gv = Vector256.Load(gr + ow);
                    float* r = s0 + ow;
                    a0 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r), a0);
                    if (taps > 1) a1 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o1), a1);
                    if (taps > 2) a2 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o2), a2);
                    if (taps > 3) a3 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o3), a3);
                    if (taps > 4) a4 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o4), a4);
                    if (taps > 5) a5 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o5), a5);
                    if (taps > 6) a6 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o6), a6);
                    if (taps > 7) a7 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o7), a7);
                    if (taps > 8) a8 = Vector256.FusedMultiplyAdd(gv, Vector256.Load(r + o8), a8);
                }
                for (; ow < wo; ow++)
                    for (int t = 0; t < taps; t++) tail[t] = MathF.FusedMultiplyAdd(gr[ow], s0[ow + Offset(t, kw, pitch)], tail[t]);
            }
            sums[0] = Vector256.Sum(a0) + tail[0];
            if (taps > 1) sums[1] = Vector256.Sum(a1) + tail[1];
            if (taps > 2) sums[2] = Vector256.Sum(a2) + tail[2];
            if (taps > 3) sums[3] = Vector256.Sum(a3) + tail[3];
            if (taps > 4) sums[4] = Vector256.Sum(a4) + tail[4];
            if (taps > 5) sums[5] = Vector256.Sum(a5) + tail[5];
            if (taps > 6) sums[6] = Vector256.Sum(a6) + tail[6];
            if (taps > 7) sums[7] = Vector256.Sum(a7) + tail[7];
            if (taps > 8) sums[8] = Vector256.Sum(a8) + tail[8];
            return;
        }
        for (int t = 0; t < taps; t++)
        {
            float sum = 0f;
            for (int oh = 0; oh < ho; oh++)
                sum += System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>(g + (nint)oh * wo, wo),
                    new ReadOnlySpan<float>(src + (nint)oh * pitch + Offset(t, kw, pitch), wo));
            sums[t] = sum;
        }
    }

    // Offset of tap (ki, kj) = (tap / kw, tap % kw) in a source of row pitch `pitch`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nint Offset(int tap, int kw, int pitch) => (nint)(tap / kw) * pitch + tap % kw;
}
