using System.Numerics.Tensors;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>
/// Group and layer normalisation kernels. Statistics come from one pass of double-lane sums (sum and sum of squares),
/// the output from one fused scale-and-shift pass; work is split over (sample, group) or rows.
/// </summary>
public static class NormKernels
{
    /// <summary>
    /// Group norm forward on x [n, c, spatial]: y = (x - mean) * rstd * w[c] + b[c] per (sample, group);
    /// writes mean and rstd per (sample, group) for the backward pass. w and b may be null (1 and 0).
    /// </summary>
    public static void GroupNormForward(float[] x, float[] y, int n, int c, int spatial, int groups,
        float[]? w, float[]? b, float eps, float[] mean, float[] rstd) => GroupNormForward(x, y, n, c, spatial, groups, w, b, eps, mean, rstd, silu: false);

    /// <summary>As the group norm forward above; with <paramref name="silu"/> each channel's output is replaced by
    /// y * sigmoid(y) while it is still in cache (the norm-then-SiLU of inference, one pass over memory instead of two).
    /// With <paramref name="addNC"/> ([n, c]) the input is x + addNC[sample, channel], added in float32 as a separate
    /// broadcast add would, and written to y before the group's statistics are taken (a resnet's time embedding).</summary>
    public static void GroupNormForward(float[] x, float[] y, int n, int c, int spatial, int groups,
        float[]? w, float[]? b, float eps, float[] mean, float[] rstd, bool silu, float[]? addNC = null)
    {
        int cg = c / groups, m = cg * spatial;
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, m));
        Threading.ForDynamic(n * groups, grain, (s, e) =>
        {
            for (int ng = s; ng < e; ng++)
            {
                int ni = ng / groups, gi = ng % groups;
                int off = (ni * c + gi * cg) * spatial;
                var src = x;
                if (addNC != null)
                {
                    for (int k = 0; k < cg; k++)
                        System.Numerics.Tensors.TensorPrimitives.Add(x.AsSpan(off + k * spatial, spatial), addNC[ni * c + gi * cg + k], y.AsSpan(off + k * spatial, spatial));
                    src = y;
                }
                var (sum, sq) = Reduce.SumAndSquares(src.AsSpan(off, m));
                double mu = m > 0 ? sum / m : 0;
                double v = m > 0 ? Math.Max(sq / m - mu * mu, 0) : 0;
                float r = (float)(1.0 / Math.Sqrt(v + eps));
                mean[ng] = (float)mu;
                rstd[ng] = r;
                for (int k = 0; k < cg; k++)
                {
                    int ch = gi * cg + k;
                    float scale = r * (w?[ch] ?? 1f);
                    float shift = (b?[ch] ?? 0f) - (float)mu * scale;
                    int co = off + k * spatial;
                    Affine.ScaleShift(src.AsSpan(co, spatial), scale, shift, y.AsSpan(co, spatial));
                    if (silu) Elementwise.Unary<SiluOp>(y.AsSpan(co, spatial), y.AsSpan(co, spatial));
                }
            }
        });
    }

    /// <summary>
    /// Group norm backward: dx (written, may be null) and per-(sample, channel) partial sums of g * xhat and g
    /// (written into <paramref name="dwPart"/>, <paramref name="dbPart"/> of length n * c, may be null).
    /// dx = rstd * (w g - mean(w g) - xhat * mean(w g xhat)) over each group.
    /// </summary>
    public static void GroupNormBackward(float[] x, float[] g, float[]? dx, int n, int c, int spatial, int groups,
        float[]? w, float[] mean, float[] rstd, double[]? dwPart, double[]? dbPart)
    {
        int cg = c / groups, m = cg * spatial;
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, m));
        Threading.For(n * groups, grain, (s, e) =>
        {
            var gsum = new double[cg];
            var gxsum = new double[cg];
            for (int ng = s; ng < e; ng++)
            {
                int ni = ng / groups, gi = ng % groups;
                int off = (ni * c + gi * cg) * spatial;
                double mu = mean[ng], r = rstd[ng];
                double a = 0, bsum = 0;
                for (int k = 0; k < cg; k++)
                {
                    int ch = gi * cg + k, co = off + k * spatial;
                    var gs = g.AsSpan(co, spatial);
                    (gsum[k], gxsum[k]) = Reduce.SumAndDot(gs, x.AsSpan(co, spatial));
                    double wc = w?[ch] ?? 1.0;
                    double gxhat = r * (gxsum[k] - mu * gsum[k]);  // sum over the channel of g * xhat
                    a += wc * gsum[k];
                    bsum += wc * gxhat;
                    if (dwPart != null) dwPart[ni * c + ch] = gxhat;
                    if (dbPart != null) dbPart[ni * c + ch] = gsum[k];
                }
                if (dx == null) continue;
                // dx = (r w_c) g + bx x + c0 with bx = -r^2 B / m and c0 = r (mu r B - A) / m.
                float bx = (float)(-r * r * bsum / m);
                float c0 = (float)(r * (mu * r * bsum - a) / m);
                for (int k = 0; k < cg; k++)
                {
                    int ch = gi * cg + k, co = off + k * spatial;
                    float ac = (float)(r * (w?[ch] ?? 1.0));
                    Affine.Combine(g.AsSpan(co, spatial), ac, x.AsSpan(co, spatial), bx, c0, dx.AsSpan(co, spatial));
                }
            }
        });
    }

    /// <summary>
    /// Backward of SiLU(group norm(x + addNC)) as <see cref="GroupNormForward(float[], float[], int, int, int, int, float[], float[], float, float[], float[], bool, float[])"/>
    /// computes it with silu: the pre-activation z = xhat w + b is recomputed per channel from x, mean and rstd (the
    /// forward's own float32 operations), g_z = g silu'(z) is kept in cache for the group, and dx follows as in
    /// <see cref="GroupNormBackward"/>. <paramref name="dAddPart"/> (may be null) receives each (sample, channel)'s sum of
    /// dx, the gradient of addNC.
    /// </summary>
    public static void GroupNormSiluBackward(float[] x, float[]? addNC, float[] g, float[]? dx, int n, int c, int spatial, int groups,
        float[]? w, float[]? b, float[] mean, float[] rstd, double[]? dwPart, double[]? dbPart, double[]? dAddPart)
    {
        int cg = c / groups, m = cg * spatial;
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, m));
        Threading.For(n * groups, grain, (s, e) =>
        {
            var gsum = new double[cg];
            var gxsum = new double[cg];
            var gz = TensorPool.Rent(m, clear: false);
            var xin = addNC != null ? TensorPool.Rent(m, clear: false) : null;
            try
            {
                for (int ng = s; ng < e; ng++)
                {
                    int ni = ng / groups, gi = ng % groups;
                    int off = (ni * c + gi * cg) * spatial;
                    float muf = mean[ng], r = rstd[ng];
                    double mu = muf, rd = r;
                    // the normalised input of this group: x itself, or x + addNC as the forward added it
                    var xs = xin != null ? xin.AsSpan(0, m) : x.AsSpan(off, m);
                    double a = 0, bsum = 0;
                    for (int k = 0; k < cg; k++)
                    {
                        int ch = gi * cg + k, co = off + k * spatial;
                        var xk = xs.Slice(k * spatial, spatial);
                        if (xin != null) TensorPrimitives.Add(x.AsSpan(co, spatial), addNC![ni * c + ch], xk);
                        var gk = gz.AsSpan(k * spatial, spatial);
                        float scale = r * (w?[ch] ?? 1f);
                        Affine.ScaleShift(xk, scale, (b?[ch] ?? 0f) - muf * scale, gk);
                        Elementwise.Binary<SiluGradOp>(gk, g.AsSpan(co, spatial), gk);
                        (gsum[k], gxsum[k]) = Reduce.SumAndDot(gk, xk);
                        double wc = w?[ch] ?? 1.0;
                        double gxhat = rd * (gxsum[k] - mu * gsum[k]);  // sum over the channel of g_z * xhat
                        a += wc * gsum[k];
                        bsum += wc * gxhat;
                        if (dwPart != null) dwPart[ni * c + ch] = gxhat;
                        if (dbPart != null) dbPart[ni * c + ch] = gsum[k];
                    }
                    if (dx == null) continue;
                    float bx = (float)(-rd * rd * bsum / m);
                    float c0 = (float)(rd * (mu * rd * bsum - a) / m);
                    for (int k = 0; k < cg; k++)
                    {
                        int ch = gi * cg + k, co = off + k * spatial;
                        float ac = (float)(rd * (w?[ch] ?? 1.0));
                        var dk = dx.AsSpan(co, spatial);
                        Affine.Combine(gz.AsSpan(k * spatial, spatial), ac, xs.Slice(k * spatial, spatial), bx, c0, dk);
                        if (dAddPart != null) dAddPart[ni * c + ch] = Reduce.Sum(dk);
                    }
                }
            }
            finally
            {
                TensorPool.Return(gz);
                if (xin != null) TensorPool.Return(xin);
            }
        });
    }

    /// <summary>Layer norm forward over rows of length d: y = (x - mean) * rstd * w + b; writes mean and rstd per row.</summary>
    public static void LayerNormForward(float[] x, float[] y, int rows, int d, float[]? w, float[]? b, float eps, float[] mean, float[] rstd)
    {
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, d));
        Threading.For(rows, grain, (s, e) =>
        {
            for (int i = s; i < e; i++)
            {
                var xs = x.AsSpan(i * d, d);
                var ys = y.AsSpan(i * d, d);
                var (sum, sq) = Reduce.SumAndSquares(xs);
                double mu = d > 0 ? sum / d : 0;
                double v = d > 0 ? Math.Max(sq / d - mu * mu, 0) : 0;
                float r = (float)(1.0 / Math.Sqrt(v + eps));
                mean[i] = (float)mu;
                rstd[i] = r;
                Affine.ScaleShift(xs, r, -(float)mu * r, ys);
                if (w != null && b != null) TensorPrimitives.FusedMultiplyAdd(ys, w.AsSpan(0, d), b.AsSpan(0, d), ys);
                else if (w != null) TensorPrimitives.Multiply(ys, w.AsSpan(0, d), ys);
                else if (b != null) TensorPrimitives.Add(ys, b.AsSpan(0, d), ys);
            }
        });
    }

    /// <summary>
    /// Layer norm backward: dx (may be null) and sums over rows of g * xhat and g into <paramref name="dw"/>, <paramref name="db"/> (may be null).
    /// </summary>
    public static void LayerNormBackward(float[] x, float[] g, float[]? dx, int rows, int d, float[]? w, float[] mean, float[] rstd,
        double[]? dw, double[]? db)
    {
        int grain = Math.Max(1, ParallelMap.Grain / Math.Max(1, d));
        var gate = new object();
        Threading.For(rows, grain, (s, e) =>
        {
            var xhat = new float[d];
            var dxhat = new float[d];
            var dwAcc = dw != null ? new double[d] : null;
            var dbAcc = db != null ? new double[d] : null;
            for (int i = s; i < e; i++)
            {
                var xs = x.AsSpan(i * d, d);
                var gs = g.AsSpan(i * d, d);
                float r = rstd[i];
                Affine.ScaleShift(xs, r, -mean[i] * r, xhat);
                if (dbAcc != null) Reduce.AccumulateInto(dbAcc, gs);
                if (dwAcc != null)
                {
                    TensorPrimitives.Multiply(gs, xhat, dxhat);
                    Reduce.AccumulateInto(dwAcc, dxhat);
                }
                if (dx == null) continue;
                if (w != null) TensorPrimitives.Multiply(gs, w.AsSpan(0, d), dxhat);
                else gs.CopyTo(dxhat);
                double a = Reduce.Sum(dxhat), bsum = Reduce.Dot(dxhat, xhat);
                var ds = dx.AsSpan(i * d, d);
                // dx = r * (dxhat - A/d - xhat * B/d)
                Affine.ScaleShift(xhat, (float)(-r * bsum / d), (float)(-r * a / d), ds);
                TensorPrimitives.MultiplyAdd(dxhat, r, ds, ds);
            }
            if (dwAcc == null && dbAcc == null) return;
            lock (gate)
            {
                if (dwAcc != null) for (int j = 0; j < d; j++) dw![j] += dwAcc[j];
                if (dbAcc != null) for (int j = 0; j < d; j++) db![j] += dbAcc[j];
            }
        });
    }
}
