using DiffusionSharp.Autograd;
using DiffusionSharp.Diffusion.Losses;
using DiffusionSharp.Diffusion.Samplers;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion;

/// <summary>How the reverse-process variance is chosen.</summary>
public enum ModelVarianceType
{
    /// <summary>Posterior variance beta-tilde_t (the lower bound).</summary>
    FixedSmall,
    /// <summary>beta_t, with beta-tilde_1 at t = 0 (the upper bound).</summary>
    FixedLarge,
    /// <summary>The network outputs log sigma^2 directly in the second half of axis 1.</summary>
    Learned,
    /// <summary>The network outputs v in [-1, 1]; log sigma^2 = v' log beta + (1 - v') log beta-tilde, v' = (v+1)/2 (Nichol and Dhariwal Eq. 15).</summary>
    LearnedRange,
}

/// <summary>The training objective.</summary>
public enum DiffusionLossType
{
    /// <summary>L_simple: mean squared error against the mean-type target.</summary>
    Simple,
    /// <summary>L_vlb only (KL terms and the decoder NLL).</summary>
    Kl,
    /// <summary>L_hybrid = L_simple + lambda L_vlb with the vlb term stopped from moving the mean (Nichol and Dhariwal Sec. 3.1).</summary>
    Hybrid,
}

/// <summary>A denoising network: (x_t [B, ...], timesteps [B] on the original 0..T-1 scale) -> prediction.</summary>
public delegate Tensor DenoiserModel(Tensor x, Tensor timesteps);

/// <summary>Mean and variance of p(x_{t-1} | x_t) and the predictions behind them.</summary>
public sealed record PMeanVariance(Tensor Mean, Tensor LogVariance, Tensor PredXStart, Tensor PredEpsilon)
{
    /// <summary>exp(LogVariance), computed without autograd.</summary>
    public Tensor Variance()
    {
        using var _ = GradMode.NoGrad();
        return LogVariance.Exp();
    }
}

/// <summary>Per-sample training-loss terms, each [B].</summary>
public sealed record DiffusionLossTerms(Tensor Loss, Tensor? Mse, Tensor? Vb);

/// <summary>Per-sample results of the full-chain likelihood bound, in bits per dimension.</summary>
public sealed record BpdResult(double[] TotalBpd, double[] PriorBpd, double[,] VbTerms, double[,] XStartMse, double[,] EpsMse);

/// <summary>
/// Discrete-time Gaussian diffusion (DDPM, Ho et al. 2020; improved DDPM, Nichol and Dhariwal 2021) over a beta table
/// held in double. Optional timestep map makes it a respaced process whose step i is original step Map[i].
/// </summary>
public sealed class GaussianDiffusion
{
    /// <summary>Betas of this process.</summary>
    public double[] Betas { get; }
    /// <summary>alpha_bar_t = prod_{s&lt;=t} (1 - beta_s).</summary>
    public double[] AlphasCumprod { get; }
    /// <summary>alpha_bar_{t-1}, 1 at t = 0.</summary>
    public double[] AlphasCumprodPrev { get; }
    /// <summary>alpha_bar_{t+1}, 0 at t = T-1.</summary>
    public double[] AlphasCumprodNext { get; }
    /// <summary>q(x_{t-1} | x_t, x_0) at each step: mean coefficients and beta-tilde_t (Ho et al. Eq. 6-7).</summary>
    public DdpmPosterior[] Posterior { get; }
    /// <summary>log beta-tilde with the t = 0 entry replaced by t = 1 (beta-tilde_0 = 0).</summary>
    public double[] PosteriorLogVarianceClipped { get; }
    /// <summary>Original timestep of each step (identity unless respaced).</summary>
    public int[] TimestepMap { get; }
    /// <summary>Number of steps T.</summary>
    public int NumTimesteps => Betas.Length;

    /// <summary>Prediction target.</summary>
    public PredictionType MeanType { get; }
    /// <summary>Variance choice.</summary>
    public ModelVarianceType VarianceType { get; }
    /// <summary>Objective used by <see cref="TrainingLosses"/>.</summary>
    public DiffusionLossType LossType { get; }
    /// <summary>lambda of L_hybrid (0.001 in Nichol and Dhariwal).</summary>
    public double HybridLambda { get; init; } = 0.001;
    /// <summary>When set, weights L_simple by min(SNR, gamma) relative to the target (Hang et al. 2023).</summary>
    public double? MinSnrGamma { get; init; }

    /// <summary>Builds the process tables from <paramref name="betas"/>.</summary>
    public GaussianDiffusion(double[] betas, PredictionType meanType = PredictionType.Epsilon,
        ModelVarianceType varianceType = ModelVarianceType.FixedSmall, DiffusionLossType lossType = DiffusionLossType.Simple,
        int[]? timestepMap = null)
    {
        ArgumentNullException.ThrowIfNull(betas);
        if (betas.Length == 0) throw new ArgumentException("Expected at least one beta.");
        foreach (var b in betas)
            if (!(b > 0 && b <= 1)) throw new ArgumentException($"Betas must lie in (0, 1], found {b}.");
        if (timestepMap != null && timestepMap.Length != betas.Length)
            throw new ArgumentException($"Timestep map has {timestepMap.Length} entries, expected {betas.Length}.");
        Betas = (double[])betas.Clone();
        MeanType = meanType; VarianceType = varianceType; LossType = lossType;
        int n = betas.Length;
        TimestepMap = timestepMap != null ? (int[])timestepMap.Clone() : Enumerable.Range(0, n).ToArray();
        AlphasCumprod = new double[n]; AlphasCumprodPrev = new double[n]; AlphasCumprodNext = new double[n];
        Posterior = new DdpmPosterior[n]; PosteriorLogVarianceClipped = new double[n];
        double acc = 1;
        for (int i = 0; i < n; i++) { acc *= 1 - betas[i]; AlphasCumprod[i] = acc; }
        for (int i = 0; i < n; i++)
        {
            AlphasCumprodPrev[i] = i == 0 ? 1 : AlphasCumprod[i - 1];
            AlphasCumprodNext[i] = i == n - 1 ? 0 : AlphasCumprod[i + 1];
            Posterior[i] = DdpmPosterior.Between(AlphasCumprod[i], AlphasCumprodPrev[i]);
        }
        for (int i = 0; i < n; i++)
            PosteriorLogVarianceClipped[i] = Math.Log(Posterior[n > 1 && i == 0 ? 1 : i].Variance);
        if (n == 1) PosteriorLogVarianceClipped[0] = Math.Log(betas[0]);
    }

    /// <summary>
    /// A process over a subsequence of this one's steps: betas recomputed so alpha_bar at the kept steps is unchanged
    /// (improved-diffusion's SpacedDiffusion). <paramref name="useTimesteps"/> may be a spec such as "ddim100" via DiffusionBetas.SpaceTimesteps.
    /// </summary>
    public GaussianDiffusion Respace(IEnumerable<int> useTimesteps)
    {
        var keep = new SortedSet<int>(useTimesteps);
        if (keep.Count == 0) throw new ArgumentException("Respacing needs at least one timestep.");
        var betas = new List<double>(); var map = new List<int>();
        double last = 1;
        for (int i = 0; i < NumTimesteps; i++)
        {
            if (!keep.Contains(i)) continue;
            betas.Add(1 - AlphasCumprod[i] / last);
            last = AlphasCumprod[i];
            map.Add(TimestepMap[i]);
        }
        if (map.Count != keep.Count) throw new ArgumentException($"Respacing asked for steps outside 0..{NumTimesteps - 1}.");
        return new GaussianDiffusion(betas.ToArray(), MeanType, VarianceType, LossType, map.ToArray())
        {
            HybridLambda = HybridLambda, MinSnrGamma = MinSnrGamma,
        };
    }

    private void CheckT(Tensor x, int[] t)
    {
        if (x.Rank < 1 || x.Dim(0) != t.Length) throw new ArgumentException($"Expected {t.Length} samples (one per timestep), got x of shape {x.Shape}.");
        foreach (var s in t)
            if ((uint)s >= (uint)NumTimesteps) throw new ArgumentOutOfRangeException(nameof(t), $"Timestep {s} outside 0..{NumTimesteps - 1}.");
    }

    private static Tensor Coef(Func<int, double> f, int[] t, Shape like)
    {
        var v = new double[t.Length];
        for (int i = 0; i < t.Length; i++) v[i] = f(t[i]);
        return Tensor.PerSample(v, like);
    }

    /// <summary>x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise (Ho et al. Eq. 4).</summary>
    public Tensor QSample(Tensor x0, int[] t, Tensor noise)
    {
        CheckT(x0, t);
        noise.ExpectShape(x0.Shape, "noise");
        var (a, s) = Scales(t, x0.Shape);
        return a * x0 + s * noise;
    }

    /// <summary>Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (Ho et al. Eq. 6-7). The mean is differentiable.</summary>
    public (Tensor Mean, Tensor Variance, Tensor LogVariance) QPosteriorMeanVariance(Tensor x0, Tensor xt, int[] t)
    {
        CheckT(xt, t);
        x0.ExpectShape(xt.Shape, "x_0");
        var mean = Coef(s => Posterior[s].CoefX0, t, xt.Shape) * x0 + Coef(s => Posterior[s].CoefXt, t, xt.Shape) * xt;
        return (mean, Coef(s => Posterior[s].Variance, t, xt.Shape).Expand(xt.Shape).Clone(),
            Coef(s => PosteriorLogVarianceClipped[s], t, xt.Shape).Expand(xt.Shape).Clone());
    }

    /// <summary>sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) per sample, broadcastable against <paramref name="like"/>: the a, s of x_t = a x_0 + s eps.</summary>
    public (Tensor Signal, Tensor Noise) Scales(int[] t, Shape like) =>
        (Coef(s => Math.Sqrt(AlphasCumprod[s]), t, like), Coef(s => Math.Sqrt(1 - AlphasCumprod[s]), t, like));

    /// <summary>v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0.</summary>
    public Tensor VelocityFrom(Tensor x0, Tensor eps, int[] t)
    {
        CheckT(x0, t);
        var (a, s) = Scales(t, x0.Shape);
        return a * eps - s * x0;
    }

    /// <summary>Timesteps on the original scale as a float tensor, for the network.</summary>
    public Tensor ModelTimesteps(int[] t)
    {
        var ts = Tensor.Empty(t.Length);
        for (int i = 0; i < t.Length; i++) ts.Span[i] = TimestepMap[t[i]];
        return ts;
    }

    /// <summary>Runs the network and derives p(x_{t-1} | x_t); differentiable when grad mode is on.</summary>
    public PMeanVariance PMeanVariance(DenoiserModel model, Tensor x, int[] t, bool clipDenoised = false, Func<Tensor, Tensor>? denoisedFn = null)
    {
        CheckT(x, t);
        var (meanOut, varOut) = SplitOutput(model(x, ModelTimesteps(t)), x.Shape);
        return PMeanVarianceFromOutput(meanOut, varOut, x, t, clipDenoised, denoisedFn);
    }

    // The prediction and, for learned variances, the variance half of axis 1 (Nichol and Dhariwal 2021, Sec. 3.1).
    private (Tensor Mean, Tensor? Variance) SplitOutput(Tensor output, Shape sample)
    {
        if (VarianceType is not (ModelVarianceType.Learned or ModelVarianceType.LearnedRange))
        {
            output.ExpectShape(sample, "model output");
            return (output, null);
        }
        var expected = sample.ToArray(); expected[1] *= 2;
        output.ExpectShape(new Shape(expected), "model output (mean and variance channels)");
        return (output.Narrow(1, 0, sample[1]), output.Narrow(1, sample[1], sample[1]));
    }

    /// <summary>p(x_{t-1} | x_t) from already computed network outputs (mean part and, for learned variances, variance part).</summary>
    public PMeanVariance PMeanVarianceFromOutput(Tensor meanOut, Tensor? varOut, Tensor x, int[] t, bool clipDenoised = false, Func<Tensor, Tensor>? denoisedFn = null)
    {
        Tensor logVar;
        switch (VarianceType)
        {
            case ModelVarianceType.Learned:
                logVar = varOut ?? throw new ArgumentException("Learned variance needs the variance output.");
                break;
            case ModelVarianceType.LearnedRange:
                {
                    if (varOut == null) throw new ArgumentException("Learned-range variance needs the variance output.");
                    var minLog = Coef(s => PosteriorLogVarianceClipped[s], t, x.Shape);
                    var maxLog = Coef(s => Math.Log(Betas[s]), t, x.Shape);
                    var frac = (varOut + 1f) * 0.5f;  // Eq. 15 of Nichol and Dhariwal 2021
                    logVar = frac * maxLog + (Tensor.Scalar(1f) - frac) * minLog;
                    break;
                }
            case ModelVarianceType.FixedLarge:
                logVar = Coef(s => Math.Log(s == 0 && NumTimesteps > 1 ? Posterior[1].Variance : Betas[s]), t, x.Shape).Expand(x.Shape).Clone();
                break;
            default:
                logVar = Coef(s => PosteriorLogVarianceClipped[s], t, x.Shape).Expand(x.Shape).Clone();
                break;
        }
        Tensor Process(Tensor x0)
        {
            if (denoisedFn != null) x0 = denoisedFn(x0);
            return clipDenoised ? x0.Clamp(-1f, 1f) : x0;
        }
        CheckT(x, t);
        var (a, sd) = Scales(t, x.Shape);
        var predX0 = Process(MeanType.ToX0(meanOut, x, a, sd));
        var eps = PredictionType.Sample.ToEps(predX0, x, a, sd);
        var (mean, _, _) = QPosteriorMeanVariance(predX0, x, t);
        return new PMeanVariance(mean, logVar, predX0, eps);
    }

    /// <summary>One ancestral step x_{t-1} = mean + sigma z (no noise at t = 0). The optional hook alters p before sampling (guidance).</summary>
    public Tensor PSample(DenoiserModel model, Tensor x, int[] t, NoiseSource noise, bool clipDenoised = false,
        Func<PMeanVariance, Tensor, int[], PMeanVariance>? guide = null)
    {
        PMeanVariance p;
        using (GradMode.NoGrad()) p = PMeanVariance(model, x, t, clipDenoised);
        if (guide != null) p = guide(p, x, t);  // guidance may differentiate a classifier, so it runs with grad mode on
        using var _ = GradMode.NoGrad();
        var noiseMask = Coef(s => s == 0 ? 0 : 1, t, x.Shape);  // no noise at t = 0
        return p.Mean + noiseMask * (p.LogVariance * 0.5f).Exp() * noise.Randn(x.Shape);
    }

    /// <summary>Ancestral sampling from x_T ~ N(0, I) (or <paramref name="xT"/> at step <paramref name="fromStep"/>, default T-1) down to x_0 (Ho et al. Alg. 2).</summary>
    public Tensor PSampleLoop(DenoiserModel model, Shape shape, NoiseSource noise, bool clipDenoised = false, Tensor? xT = null,
        Func<PMeanVariance, Tensor, int[], PMeanVariance>? guide = null, int? fromStep = null) =>
        SampleLoop(shape, noise, xT, (x, t) => PSample(model, x, t, noise, clipDenoised, guide), fromStep);

    /// <summary>DDIM sampling loop (Song et al. 2021; deterministic unless <paramref name="eta"/> &gt; 0).</summary>
    public Tensor DdimSampleLoop(DenoiserModel model, Shape shape, NoiseSource noise, double eta = 0, bool clipDenoised = false, Tensor? xT = null,
        Func<PMeanVariance, Tensor, int[], PMeanVariance>? guide = null) =>
        SampleLoop(shape, noise, xT, (x, t) => DdimSample(model, x, t, eta, noise, clipDenoised, guide));

    // x_T (given or drawn), then one step per timestep fromStep (T-1 unless given), ..., 0
    private Tensor SampleLoop(Shape shape, NoiseSource noise, Tensor? xT, Func<Tensor, int[], Tensor> step, int? fromStep = null)
    {
        var x = xT?.Clone() ?? noise.Randn(shape);
        x.ExpectShape(shape, "x_T");
        for (int i = fromStep ?? NumTimesteps - 1; i >= 0; i--)
        {
            var next = step(x, Enumerable.Repeat(i, shape[0]).ToArray());
            x.Dispose();
            x = next;
        }
        return x;
    }

    /// <summary>One DDIM step (Song et al. 2021 Eq. 12) from step t to t-1; eta = 0 is deterministic.</summary>
    public Tensor DdimSample(DenoiserModel model, Tensor x, int[] t, double eta = 0, NoiseSource? noise = null, bool clipDenoised = false,
        Func<PMeanVariance, Tensor, int[], PMeanVariance>? guide = null)
    {
        PMeanVariance p;
        using (GradMode.NoGrad()) p = PMeanVariance(model, x, t, clipDenoised);
        if (guide != null) p = guide(p, x, t);
        Tensor? z = eta > 0 ? (noise ?? throw new ArgumentException("eta > 0 needs a noise source.")).Randn(x.Shape) : null;
        var sigma = t.Select(s => Ddim.Sigma(AlphasCumprod[s], AlphasCumprodPrev[s], eta)).ToArray();
        return Ddim.Step(p.PredXStart, p.PredEpsilon, t.Select(s => (float)AlphasCumprodPrev[s]).ToArray(), sigma, z);
    }

    /// <summary>One deterministic DDIM step forward in time, t to t+1 (inversion, eta = 0).</summary>
    public Tensor DdimReverseSample(DenoiserModel model, Tensor x, int[] t, bool clipDenoised = false)
    {
        using var _ = GradMode.NoGrad();
        var p = PMeanVariance(model, x, t, clipDenoised);
        return Ddim.Step(p.PredXStart, p.PredEpsilon, t.Select(s => (float)AlphasCumprodNext[s]).ToArray(), [0f], null);
    }

    /// <summary>
    /// One term of the bound in bits per dimension: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t &gt; 0 and the discretised
    /// decoder NLL -log p(x_0 | x_1) at t = 0 (Ho et al. Eq. 5 and Sec. 3.3). Differentiable in p.
    /// </summary>
    public Tensor VbTermsBpd(Tensor x0, Tensor xt, int[] t, PMeanVariance p)
    {
        var (trueMean, _, trueLogVar) = QPosteriorMeanVariance(x0, xt, t);
        var kl = GaussianLosses.NormalKl(trueMean, trueLogVar, p.Mean, p.LogVariance).MeanPerSample() * (float)(1 / Math.Log(2));
        var nll = GaussianLosses.DiscretizedGaussianLogLikelihood(x0, p.Mean, p.LogVariance * 0.5f).MeanPerSample() * (float)(-1 / Math.Log(2));
        var isZero = Tensor.FromArray(t.Select(s => s == 0 ? 1f : 0f).ToArray(), t.Length);
        return nll * isZero + kl * (1f - isZero);
    }

    /// <summary>Weight of the MSE per sample for min-SNR-gamma (Hang et al. 2023): min(SNR, g) divided by SNR, 1 or SNR + 1 for eps, x_0, v targets.</summary>
    public double MinSnrWeight(int t, double gamma)
    {
        double snr = AlphasCumprod[t] / (1 - AlphasCumprod[t]), w = Math.Min(snr, gamma);  // SNR = alpha_bar / (1 - alpha_bar)
        return MeanType switch
        {
            PredictionType.Epsilon => w / snr,
            PredictionType.VPrediction => w / (snr + 1),
            _ => w,
        };
    }

    /// <summary>
    /// Per-sample training loss at timesteps t with the given noise (x_t from <see cref="QSample"/>).
    /// Hybrid: Mse + lambda T Vb, where Vb sees the mean output detached so only the variance learns from it.
    /// </summary>
    public DiffusionLossTerms TrainingLosses(DenoiserModel model, Tensor x0, int[] t, Tensor noise)
    {
        CheckT(x0, t);
        var xt = QSample(x0, t, noise);
        var (meanOut, varOut) = SplitOutput(model(xt, ModelTimesteps(t)), x0.Shape);
        bool learned = varOut != null;

        if (LossType == DiffusionLossType.Kl)
        {
            var vbOnly = VbTermsBpd(x0, xt, t, PMeanVarianceFromOutput(meanOut, varOut, xt, t));
            return new DiffusionLossTerms(vbOnly * NumTimesteps, null, vbOnly);  // L_vlb estimate: T times a uniformly drawn term
        }

        Tensor target = MeanType switch
        {
            PredictionType.Epsilon => noise,
            PredictionType.Sample => x0,
            _ => VelocityFrom(x0, noise, t),
        };
        var diff = meanOut - target;
        var mse = (diff * diff).MeanPerSample();
        if (MinSnrGamma is double gamma)
        {
            var w = new double[t.Length];
            for (int i = 0; i < t.Length; i++) w[i] = MinSnrWeight(t[i], gamma);
            mse = mse * Tensor.PerSample(w, mse.Shape);
        }
        if (LossType == DiffusionLossType.Hybrid)
        {
            if (!learned) throw new InvalidOperationException("The hybrid loss needs a learned variance (Learned or LearnedRange).");
            var vb = VbTermsBpd(x0, xt, t, PMeanVarianceFromOutput(meanOut.Detach(), varOut, xt, t));
            return new DiffusionLossTerms(mse + vb * (float)(HybridLambda * NumTimesteps), mse, vb);
        }
        return new DiffusionLossTerms(mse, mse, null);
    }

    /// <summary>
    /// Full-chain negative log-likelihood bound in bits per dimension for 8-bit data in [-1, 1]: every vlb term, the decoder
    /// term and the prior KL(q(x_T|x_0) || N(0, I)) (improved-diffusion's calc_bpd_loop). Each timestep runs in its own
    /// <see cref="TensorScope"/>: tensors <paramref name="model"/> creates are disposed after the step.
    /// </summary>
    public BpdResult CalcBpdLoop(DenoiserModel model, Tensor x0, NoiseSource noise, bool clipDenoised = false) =>
        EstimateBpd(model, x0, noise, NumTimesteps - 1, new Generator(0), clipDenoised);  // T-1 strata of one t each: every term once

    /// <summary>
    /// Unbiased stratified Monte-Carlo estimate of the full-chain bound in bits per dimension: the prior and decoder terms exactly,
    /// the sum of the KL terms t = 1..T-1 as sum_k |S_k| L_{t_k} with one t_k drawn per image in each of <paramref name="strata"/>
    /// contiguous strata S_k (<see cref="StrataEdges"/>) (L_vlb = L_T + sum_t L_{t-1} + L_0, Ho et al. Eq. 5). With T-1 strata it is the full loop, term for term.
    /// </summary>
    public BpdResult EstimateBpd(DenoiserModel model, Tensor x0, NoiseSource noise, int strata, Generator timestepRng, bool clipDenoised = false)
    {
        int n = NumTimesteps;
        if (strata < Math.Min(1, n - 1) || strata > n - 1) throw new ArgumentOutOfRangeException(nameof(strata), $"Strata must be in 1..{n - 1} (T - 1), got {strata}.");
        using var _ = GradMode.NoGrad();
        int b = x0.Dim(0);
        var vb = new double[b, strata + 1]; var xmse = new double[b, strata + 1]; var emse = new double[b, strata + 1];
        var total = new double[b];
        var edges = StrataEdges(n, strata);
        for (int k = strata; k >= 0; k--)
        {
            using var scope = TensorScope.Begin();  // only numbers leave an iteration
            // column 0 is the decoder term at t = 0; column k > 0 is stratum k - 1 of 1..T-1
            int lo = k == 0 ? 0 : edges[k - 1], hi = k == 0 ? 1 : edges[k];
            var t = new int[b];
            for (int i = 0; i < b; i++) t[i] = hi - lo == 1 ? lo : lo + timestepRng.NextInt(hi - lo);
            var z = noise.Randn(x0.Shape);
            var xt = QSample(x0, t, z);
            var p = PMeanVariance(model, xt, t, clipDenoised);
            var terms = VbTermsBpd(x0, xt, t, p).ToArray();
            var d0 = ((p.PredXStart - x0) * (p.PredXStart - x0)).MeanPerSample().ToArray();
            var de = ((p.PredEpsilon - z) * (p.PredEpsilon - z)).MeanPerSample().ToArray();
            for (int i = 0; i < b; i++)
            {
                vb[i, k] = terms[i]; xmse[i, k] = d0[i]; emse[i, k] = de[i];
                total[i] += (hi - lo) * (double)terms[i];
            }
        }
        var prior = PriorBpd(x0);
        for (int i = 0; i < b; i++) total[i] += prior[i];
        return new BpdResult(total, prior, vb, xmse, emse);
    }

    /// <summary>
    /// Edges e_0 = 1 &lt; e_1 &lt; ... &lt; e_K = T of K strata of t in 1..T-1, spaced quadratically so the large, fast-varying
    /// terms at small t fall in narrow strata; every stratum holds at least one t.
    /// </summary>
    public static int[] StrataEdges(int numTimesteps, int strata)
    {
        var e = new int[strata + 1];
        e[0] = 1;
        for (int k = 1; k <= strata; k++)
        {
            double f = (double)k / strata;
            int want = 1 + (int)Math.Round((numTimesteps - 1) * f * f);
            e[k] = Math.Clamp(want, e[k - 1] + 1, numTimesteps - (strata - k));
        }
        return e;
    }

    /// <summary>KL(q(x_T | x_0) || N(0, I)) per sample in bits per dimension, in double.</summary>
    public double[] PriorBpd(Tensor x0)
    {
        int b = x0.Dim(0), per = x0.Size / b;
        double ab = AlphasCumprod[NumTimesteps - 1], v = 1 - ab;
        var r = new double[b];
        var xs = x0.Span;
        for (int k = 0; k < b; k++)
        {
            double s = 0;
            for (int j = k * per; j < (k + 1) * per; j++)
            {
                double m = Math.Sqrt(ab) * xs[j];
                s += 0.5 * (-1 - Math.Log(v) + v + m * m);
            }
            r[k] = s / per / Math.Log(2);
        }
        return r;
    }
}
