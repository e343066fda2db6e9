using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion.Editing;

/// <summary>
/// RePaint inpainting (Lugmayr et al. 2022, Alg. 1): known pixels (mask = 1) are re-noised from the reference at every step,
/// unknown ones come from the reverse process, and the schedule jumps back in time (re-noising one step at a time) to harmonise them.
/// </summary>
public static class Inpainting
{
    /// <summary>
    /// RePaint's time schedule: from T-1 down to -1, after reaching each multiple of <paramref name="jumpLength"/> (below T - jumpLength)
    /// going back up <paramref name="jumpLength"/> steps, <paramref name="jumpCount"/> - 1 times.
    /// </summary>
    public static List<int> JumpSchedule(int numTimesteps, int jumpLength = 10, int jumpCount = 10)
    {
        if (jumpLength < 1 || jumpCount < 1) throw new ArgumentException($"Expected jumpLength and jumpCount >= 1, got {jumpLength}, {jumpCount}.");
        var jumps = new Dictionary<int, int>();
        for (int j = 0; j < numTimesteps - jumpLength; j += jumpLength) jumps[j] = jumpCount - 1;
        var ts = new List<int> { numTimesteps };
        int t = numTimesteps;
        while (t >= 1)
        {
            t--;
            ts.Add(t);
            if (jumps.TryGetValue(t, out int left) && left > 0)
            {
                jumps[t] = left - 1;
                for (int k = 0; k < jumpLength; k++) { t++; ts.Add(t); }
            }
        }
        ts.Add(-1);
        return ts;
    }

    /// <summary>
    /// Inpaints <paramref name="reference"/> where <paramref name="mask"/> is 0 (mask broadcast against x: 1 = known).
    /// The walk follows <see cref="JumpSchedule"/>; jumpCount = 1 gives plain replacement-based inpainting.
    /// </summary>
    public static Tensor Sample(GaussianDiffusion diffusion, DenoiserModel model, Tensor reference, Tensor mask, NoiseSource noise,
        int jumpLength = 10, int jumpCount = 10, bool clipDenoised = false)
    {
        var shape = reference.Shape;
        var m = mask.Expand(shape).Clone();
        int b = shape[0];
        var schedule = JumpSchedule(diffusion.NumTimesteps, jumpLength, jumpCount);
        var x = noise.Randn(shape);
        // schedule[0] = T means "x is pure noise at T"; each pair (last, cur) is one step down (denoise) or up (re-noise)
        for (int k = 1; k < schedule.Count - 1; k++)
        {
            int last = schedule[k - 1], cur = schedule[k];
            if (cur < last)
            {
                var t = Enumerable.Repeat(cur, b).ToArray();
                var known = diffusion.QSample(reference, t, noise.Randn(shape));  // x_t of the known region from q(x_t | x_0)
                Blend(x, known, m);
                known.Dispose();
                var next = diffusion.PSample(model, x, t, noise, clipDenoised);
                x.Dispose();
                x = next;
            }
            else
            {
                // one forward step from level last to last + 1: q = N(sqrt(1 - beta) x, beta I), beta = Betas[last] (step index last produces level last)
                double beta = diffusion.Betas[last];
                var z = noise.Randn(shape);
                var xs = x.Span; var zs = z.Span;
                for (int i = 0; i < xs.Length; i++) xs[i] = (float)(Math.Sqrt(1 - beta) * xs[i] + Math.Sqrt(beta) * zs[i]);
                z.Dispose();
            }
        }
        Blend(x, reference, m);
        return x;
    }

    // x <- m * known + (1 - m) * x
    private static void Blend(Tensor x, Tensor known, Tensor m)
    {
        var xs = x.Span; var ks = known.Span; var ms = m.Span;
        for (int i = 0; i < xs.Length; i++) xs[i] = ms[i] * ks[i] + (1 - ms[i]) * xs[i];
    }
}
