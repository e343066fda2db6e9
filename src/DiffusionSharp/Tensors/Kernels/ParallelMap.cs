using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>A span-to-span map such as <c>TensorPrimitives.Exp</c>.</summary>
public delegate void SpanMap(ReadOnlySpan<float> x, Span<float> dst);

/// <summary>A two-input span map such as <c>TensorPrimitives.Multiply</c>.</summary>
public delegate void SpanMap2(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> dst);

/// <summary>Elementwise loops split over <see cref="Threading"/> for large arrays (chunks stay cache-line aligned).</summary>
public static class ParallelMap
{
    /// <summary>Minimum elements per parallel chunk for memory-bound kernels (several microseconds of work, above the cost of a
    /// fork to the spinning kernel threads; a single image's 32x32x64 or 16x16x128 maps split in two).</summary>
    public const int Grain = 1 << 14;

    /// <summary>dst[i] = TOp(x[i]) for i in [0, n).</summary>
    public static void Unary<TOp>(float[] x, float[] dst, int n) where TOp : struct, IUnaryOperator
    {
        if (n < 2 * Grain) { Elementwise.Unary<TOp>(x.AsSpan(0, n), dst.AsSpan(0, n)); return; }
        Chunked(n, (s, e) => Elementwise.Unary<TOp>(x.AsSpan(s, e - s), dst.AsSpan(s, e - s)));
    }

    /// <summary>dst[i] = TOp(x[i], y[i]) for i in [0, n).</summary>
    public static void Binary<TOp>(float[] x, float[] y, float[] dst, int n) where TOp : struct, IBinaryOperator
    {
        if (n < 2 * Grain) { Elementwise.Binary<TOp>(x.AsSpan(0, n), y.AsSpan(0, n), dst.AsSpan(0, n)); return; }
        Chunked(n, (s, e) => Elementwise.Binary<TOp>(x.AsSpan(s, e - s), y.AsSpan(s, e - s), dst.AsSpan(s, e - s)));
    }

    /// <summary>Runs a span map over [0, n) in parallel chunks.</summary>
    public static void Map(SpanMap map, float[] x, float[] dst, int n)
    {
        if (n < 2 * Grain) { map(x.AsSpan(0, n), dst.AsSpan(0, n)); return; }
        Chunked(n, (s, e) => map(x.AsSpan(s, e - s), dst.AsSpan(s, e - s)));
    }

    /// <summary>Runs a two-input span map over [0, n) in parallel chunks.</summary>
    public static void Map(SpanMap2 map, float[] x, float[] y, float[] dst, int n)
    {
        if (n < 2 * Grain) { map(x.AsSpan(0, n), y.AsSpan(0, n), dst.AsSpan(0, n)); return; }
        Chunked(n, (s, e) => map(x.AsSpan(s, e - s), y.AsSpan(s, e - s), dst.AsSpan(s, e - s)));
    }

    // Splits [0, n) into chunks whose starts are multiples of 16 floats (one 64-byte line).
    private static void Chunked(int n, Action<int, int> body)
    {
        int blocks = (n + 15) / 16;
        Threading.For(blocks, Grain / 16, (bs, be) => body(bs * 16, Math.Min(n, be * 16)));
    }
}
