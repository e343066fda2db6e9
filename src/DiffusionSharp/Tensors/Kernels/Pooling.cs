using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>2x nearest upsampling and 2x2 average pooling over planes (N*C planes of H x W), parallel over planes.</summary>
public static class PoolKernels
{
    private static int PlaneGrain(int planeSize) => Math.Max(1, (1 << 15) / Math.Max(1, planeSize));

    /// <summary>dst (2h x 2w per plane) = src (h x w per plane) with every element repeated in a 2x2 block.</summary>
    public static void Upsample2x(float[] src, float[] dst, int planes, int h, int w)
    {
        int w2 = 2 * w, plane = h * w;
        Threading.For(planes, PlaneGrain(4 * plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = 0; i < h; i++)
                {
                    var row = src.AsSpan(p * plane + i * w, w);
                    var d0 = dst.AsSpan(p * 4 * plane + 2 * i * w2, w2);
                    for (int j = 0; j < w; j++) { float v = row[j]; d0[2 * j] = v; d0[2 * j + 1] = v; }
                    d0.CopyTo(dst.AsSpan(p * 4 * plane + (2 * i + 1) * w2, w2));
                }
        });
    }

    /// <summary>dst (h x w per plane) = scale * sum of each 2x2 block of src (2h x 2w per plane).</summary>
    public static void Sum2x2(float[] src, float[] dst, int planes, int h, int w, float scale)
    {
        int w2 = 2 * w, plane = h * w;
        Threading.For(planes, PlaneGrain(4 * plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = 0; i < h; i++)
                {
                    var r0 = src.AsSpan(p * 4 * plane + 2 * i * w2, w2);
                    var r1 = src.AsSpan(p * 4 * plane + (2 * i + 1) * w2, w2);
                    var d = dst.AsSpan(p * plane + i * w, w);
                    for (int j = 0; j < w; j++) d[j] = scale * ((r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]));
                }
        });
    }

    /// <summary>dst (h/2 x w/2 per plane) = mean of each 2x2 block of src (h x w per plane); an odd last row/column is ignored.</summary>
    public static void Pool2x2(float[] src, float[] dst, int planes, int h, int w)
    {
        int ho = h / 2, wo = w / 2, plane = h * w, oplane = ho * wo;
        Threading.For(planes, PlaneGrain(plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
                for (int i = 0; i < ho; i++)
                {
                    var r0 = src.AsSpan(p * plane + 2 * i * w, w);
                    var r1 = src.AsSpan(p * plane + (2 * i + 1) * w, w);
                    var d = dst.AsSpan(p * oplane + i * wo, wo);
                    for (int j = 0; j < wo; j++) d[j] = 0.25f * ((r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]));
                }
        });
    }

    /// <summary>Average-pool backward: each element of a 2x2 block gets a quarter of its output's gradient; dropped edges get 0.</summary>
    public static void Pool2x2Backward(float[] g, float[] gx, int planes, int h, int w)
    {
        int ho = h / 2, wo = w / 2, plane = h * w, oplane = ho * wo;
        Threading.For(planes, PlaneGrain(plane), (s, e) =>
        {
            for (int p = s; p < e; p++)
            {
                var px = gx.AsSpan(p * plane, plane);
                if ((h & 1) != 0 || (w & 1) != 0) px.Clear();
                for (int i = 0; i < ho; i++)
                {
                    var gr = g.AsSpan(p * oplane + i * wo, wo);
                    var d0 = px.Slice(2 * i * w, w);
                    for (int j = 0; j < wo; j++) { float v = 0.25f * gr[j]; d0[2 * j] = v; d0[2 * j + 1] = v; }
                    d0.CopyTo(px.Slice((2 * i + 1) * w, w));
                }
            }
        });
    }
}
