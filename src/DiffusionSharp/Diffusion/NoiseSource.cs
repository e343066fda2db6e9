using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion;

/// <summary>
/// Where a stochastic step gets its standard-normal noise: a <see cref="Generator"/> or any callback
/// (e.g. to replay recorded noise), so every sampler is reproducible and testable.
/// </summary>
public sealed class NoiseSource
{
    private readonly Action<Span<float>> _fill;
    private readonly Func<double>? _uniform;

    /// <summary>Noise from a Philox generator (uniforms for accept/resample decisions from the same stream).</summary>
    public NoiseSource(Generator generator)
    {
        ArgumentNullException.ThrowIfNull(generator);
        _fill = generator.Normal;
        _uniform = generator.NextDouble;
    }

    /// <summary>Noise from a callback that fills a span with standard-normal values.</summary>
    public NoiseSource(Action<Span<float>> fillNormal, Func<double>? uniform = null)
    {
        _fill = fillNormal ?? throw new ArgumentNullException(nameof(fillNormal));
        _uniform = uniform;
    }

    /// <summary>Fills <paramref name="dest"/> with standard-normal values.</summary>
    public void Normal(Span<float> dest) => _fill(dest);

    /// <summary>Fills <paramref name="dest"/> with standard-normal values (drawn as float32).</summary>
    public void Normal(Span<double> dest)
    {
        var tmp = new float[dest.Length];
        _fill(tmp);
        for (int i = 0; i < tmp.Length; i++) dest[i] = tmp[i];
    }

    /// <summary>A tensor of standard-normal values.</summary>
    public Tensor Randn(Shape shape)
    {
        var t = Tensor.Empty(shape);
        _fill(t.Span);
        return t;
    }

    /// <summary>A uniform double in [0, 1) (needs a generator or a uniform callback).</summary>
    public double Uniform() => _uniform != null ? _uniform() : throw new InvalidOperationException("This noise source was built without a uniform callback.");

    /// <summary>Wraps a generator.</summary>
    public static implicit operator NoiseSource(Generator generator) => new(generator);
}
