using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Losses;

/// <summary>Elementwise Gaussian divergences and likelihoods with analytic gradients (math in double).</summary>
public static class GaussianLosses
{
    /// <summary>
    /// KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, inputs broadcast together.
    /// = 0.5 (-1 + lv2 - lv1 + e^(lv1-lv2) + (m1-m2)^2 e^-lv2).
    /// </summary>
    public static Tensor NormalKl(Tensor mean1, Tensor logVar1, Tensor mean2, Tensor logVar2)
    {
        var shape = Shape.Broadcast(Shape.Broadcast(mean1.Shape, logVar1.Shape), Shape.Broadcast(mean2.Shape, logVar2.Shape));
        Tensor m1 = mean1.Expand(shape), l1 = logVar1.Expand(shape), m2 = mean2.Expand(shape), l2 = logVar2.Expand(shape);
        var y = Tensor.Empty(shape);
        {
            var a = m1.Span; var b = l1.Span; var c = m2.Span; var d = l2.Span; var o = y.Span;
            for (int i = 0; i < o.Length; i++)
            {
                double dm = (double)a[i] - c[i];
                o[i] = (float)(0.5 * (-1.0 + d[i] - b[i] + Math.Exp((double)b[i] - d[i]) + dm * dm * Math.Exp(-(double)d[i])));
            }
        }
        y.Track(g =>
        {
            var gs = g.Span;
            Tensor? gm1 = m1.RequiresGrad ? Tensor.Empty(shape) : null, gm2 = m2.RequiresGrad ? Tensor.Empty(shape) : null;
            Tensor? gl1 = l1.RequiresGrad ? Tensor.Empty(shape) : null, gl2 = l2.RequiresGrad ? Tensor.Empty(shape) : null;
            var a = m1.Span; var b = l1.Span; var c = m2.Span; var d = l2.Span;
            for (int i = 0; i < gs.Length; i++)
            {
                double dm = (double)a[i] - c[i], r = Math.Exp((double)b[i] - d[i]), iv2 = Math.Exp(-(double)d[i]);
                if (gm1 != null) gm1.Span[i] = (float)(gs[i] * dm * iv2);
                if (gm2 != null) gm2.Span[i] = (float)(-gs[i] * dm * iv2);
                if (gl1 != null) gl1.Span[i] = (float)(gs[i] * 0.5 * (r - 1));
                if (gl2 != null) gl2.Span[i] = (float)(gs[i] * 0.5 * (1 - r - dm * dm * iv2));
            }
            if (gm1 != null) m1.AccumulateGrad(gm1, owned: true);
            if (gl1 != null) l1.AccumulateGrad(gl1, owned: true);
            if (gm2 != null) m2.AccumulateGrad(gm2, owned: true);
            if (gl2 != null) l2.AccumulateGrad(gl2, owned: true);
        }, m1, l1, m2, l2);
        return y;
    }

    /// <summary>Smallest probability the decoder reports, so that log stays finite (as improved-diffusion's clamp).</summary>
    public const double MinProbability = 1e-12;

    /// <summary>
    /// log-likelihood of 8-bit data x in [-1, 1] under a Gaussian discretised into bins of width 2/255,
    /// the edge bins extended to +-infinity (Ho et al. 2020 Sec. 3.3, Eq. 13). Gradients flow to mean and logScale.
    /// </summary>
    public static Tensor DiscretizedGaussianLogLikelihood(Tensor x, Tensor mean, Tensor logScale)
    {
        var shape = Shape.Broadcast(Shape.Broadcast(x.Shape, mean.Shape), logScale.Shape);
        Tensor xe = x.Expand(shape), me = mean.Expand(shape), le = logScale.Expand(shape);
        var y = Tensor.Empty(shape);
        var gMean = new double[shape.Size];
        var gLog = new double[shape.Size];
        {
            var xs = xe.Span; var ms = me.Span; var ls = le.Span; var o = y.Span;
            for (int i = 0; i < o.Length; i++)
                o[i] = (float)DiscretizedLogProb(xs[i], ms[i], ls[i], out gMean[i], out gLog[i]);
        }
        y.Track(g =>
        {
            var gs = g.Span;
            if (me.RequiresGrad)
            {
                var t = Tensor.Empty(shape);
                for (int i = 0; i < gs.Length; i++) t.Span[i] = (float)(gs[i] * gMean[i]);
                me.AccumulateGrad(t, owned: true);
            }
            if (le.RequiresGrad)
            {
                var t = Tensor.Empty(shape);
                for (int i = 0; i < gs.Length; i++) t.Span[i] = (float)(gs[i] * gLog[i]);
                le.AccumulateGrad(t, owned: true);
            }
        }, me, le);
        return y;
    }

    /// <summary>Scalar discretised log-probability with its derivatives with respect to the mean and the log-scale.</summary>
    public static double DiscretizedLogProb(double x, double mean, double logScale, out double dMean, out double dLogScale)
    {
        const double half = 1.0 / 255.0;
        double inv = Math.Exp(-logScale), centered = x - mean;
        double hi = inv * (centered + half), lo = inv * (centered - half);
        double p, dpHi, dpLo;  // p and its partials with respect to hi and lo
        if (x < -0.999) { p = NormalMath.Phi(hi); dpHi = NormalMath.PhiDensity(hi); dpLo = 0; }
        else if (x > 0.999) { p = NormalMath.Phi(-lo); dpHi = 0; dpLo = -NormalMath.PhiDensity(lo); }
        else { p = NormalMath.PhiDelta(lo, hi); dpHi = NormalMath.PhiDensity(hi); dpLo = -NormalMath.PhiDensity(lo); }
        if (p < MinProbability) { dMean = 0; dLogScale = 0; return Math.Log(MinProbability); }
        // d hi/d mean = d lo/d mean = -inv; d hi/d logScale = -hi, d lo/d logScale = -lo
        dMean = -inv * (dpHi + dpLo) / p;
        dLogScale = -(dpHi * hi + dpLo * lo) / p;
        return Math.Log(p);
    }
}
