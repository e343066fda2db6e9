using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>
/// Sinusoidal timestep features (diffusers <c>Timesteps</c>): freq_i = exp(-ln(10000) i / (half - shift)),
/// features [sin(t freq), cos(t freq)] (or cos first when flipped); Sec. 3.5 of Vaswani et al. 2017. Has no parameters.
/// </summary>
public sealed class Timesteps : Module
{
    /// <summary>Output size.</summary>
    public int NumChannels { get; }

    /// <summary>Put the cosine half first.</summary>
    public bool FlipSinToCos { get; }

    /// <summary>diffusers' <c>downscale_freq_shift</c> (0 or 1 in practice).</summary>
    public float DownscaleFreqShift { get; }

    /// <summary>Multiplies the arguments (1 in UNet2DModel).</summary>
    public float Scale { get; }

    /// <summary>Creates the projection.</summary>
    public Timesteps(int numChannels, bool flipSinToCos, float downscaleFreqShift, float scale = 1f)
    {
        if (numChannels < 2) throw new ArgumentException($"Timestep embedding needs at least 2 channels, got {numChannels}.");
        NumChannels = numChannels;
        FlipSinToCos = flipSinToCos;
        DownscaleFreqShift = downscaleFreqShift;
        Scale = scale;
    }

    /// <summary>Features [n, NumChannels] for timesteps [n] (no gradient flows to timesteps).</summary>
    public Tensor Forward(Tensor timesteps)
    {
        if (timesteps.Rank > 1) throw new ArgumentException($"Timesteps must be 1-D [batch], got {timesteps.Shape}.");
        var t = timesteps.Span;
        int n = t.Length, half = NumChannels / 2;
        var y = Tensor.Zeros(n, NumChannels);
        var ys = y.Span;
        // Float32 operation order as in diffusers' get_timestep_embedding, so features round the same way.
        var freq = new float[half];
        float negLog = (float)-Math.Log(10000.0), denom = half - DownscaleFreqShift;
        for (int i = 0; i < half; i++) freq[i] = (float)Math.Exp((float)(negLog * (float)i) / denom);
        for (int b = 0; b < n; b++)
        {
            var row = ys.Slice(b * NumChannels, NumChannels);
            int sinAt = FlipSinToCos ? half : 0, cosAt = FlipSinToCos ? 0 : half;
            for (int i = 0; i < half; i++)
            {
                float arg = Scale * (t[b] * freq[i]);
                row[sinAt + i] = (float)Math.Sin(arg);
                row[cosAt + i] = (float)Math.Cos(arg);
            }
        }
        return y;
    }
}

/// <summary>
/// Random Fourier features of log(sigma) (diffusers <c>GaussianFourierProjection</c>, NCSN++ of Song et al. 2021):
/// [sin(2 pi w log t), cos(2 pi w log t)] with fixed w ~ N(0, scale^2), stored as the non-trainable parameter <c>weight</c>.
/// </summary>
public sealed class GaussianFourierProjection : Module
{
    /// <summary>Frequencies [embeddingSize] (not trained).</summary>
    public Tensor Weight { get; }

    /// <summary>Take log of the input first.</summary>
    public bool Log { get; }

    /// <summary>Put the cosine half first.</summary>
    public bool FlipSinToCos { get; }

    /// <summary>Creates the projection with output size 2 * <paramref name="embeddingSize"/>.</summary>
    public GaussianFourierProjection(int embeddingSize = 256, float scale = 1f, bool log = true, bool flipSinToCos = false, Generator? generator = null)
    {
        var w = Tensor.Randn(generator ?? Init.DefaultGenerator, embeddingSize);
        var s = w.Span;
        for (int i = 0; i < s.Length; i++) s[i] *= scale;
        Weight = RegisterParameter("weight", w, trainable: false);
        Log = log;
        FlipSinToCos = flipSinToCos;
    }

    /// <summary>Features [n, 2 * embeddingSize] for inputs [n].</summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank > 1) throw new ArgumentException($"Fourier projection input must be 1-D [batch], got {x.Shape}.");
        int n = x.Size, e = Weight.Size;
        var y = Tensor.Empty(n, 2 * e);
        var ys = y.Span;
        var w = Weight.Span;
        var xs = x.Span;
        for (int b = 0; b < n; b++)
        {
            float v = Log ? (float)Math.Log(xs[b]) : xs[b];
            int sinAt = FlipSinToCos ? e : 0, cosAt = FlipSinToCos ? 0 : e;
            for (int i = 0; i < e; i++)
            {
                float arg = v * w[i] * 2f * MathF.PI;
                ys[b * 2 * e + sinAt + i] = (float)Math.Sin(arg);
                ys[b * 2 * e + cosAt + i] = (float)Math.Cos(arg);
            }
        }
        return y;
    }
}

/// <summary>The timestep MLP (diffusers <c>TimestepEmbedding</c>): linear_2(act(linear_1(x))).</summary>
public sealed class TimestepEmbedding : Module
{
    /// <summary>First projection.</summary>
    public Linear Linear1 { get; }

    /// <summary>Second projection.</summary>
    public Linear Linear2 { get; }

    private readonly Func<Tensor, Tensor> _act;

    /// <summary>Creates the MLP in -&gt; dim -&gt; outDim (default dim).</summary>
    public TimestepEmbedding(int inChannels, int timeEmbedDim, string actFn = "silu", int? outDim = null, Generator? generator = null)
    {
        Linear1 = RegisterModule("linear_1", new Linear(inChannels, timeEmbedDim, generator: generator));
        _act = Activations.Get(actFn);
        Linear2 = RegisterModule("linear_2", new Linear(timeEmbedDim, outDim ?? timeEmbedDim, generator: generator));
    }

    /// <summary>Embeds x [n, in].</summary>
    public Tensor Forward(Tensor x) => Linear2.Forward(_act(Linear1.Forward(x)));
}
