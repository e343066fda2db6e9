using DiffusionSharp.Tensors;

namespace DiffusionSharp.Data;

/// <summary>A labelled set of square images, each read as a [Channels, Size, Size] tensor scaled to [-1, 1].</summary>
public interface IDataset
{
    /// <summary>Number of items.</summary>
    int Count { get; }

    /// <summary>Channels per image (1 gray or 3 RGB).</summary>
    int Channels { get; }

    /// <summary>Height and width of every image.</summary>
    int Size { get; }

    /// <summary>Class names indexed by label (empty when the set has no labels).</summary>
    IReadOnlyList<string> ClassNames { get; }

    /// <summary>Writes item <paramref name="index"/> as [C, H, W] floats in [-1, 1] into <paramref name="dest"/> and returns its label. Thread-safe.</summary>
    int Load(int index, Span<float> dest);

    /// <summary>Item <paramref name="index"/> as a [C, H, W] tensor in [-1, 1] and its label.</summary>
    (Tensor Image, int Label) Get(int index)
    {
        var t = Tensor.Empty(Channels, Size, Size);
        int label = Load(index, t.Span);
        return (t, label);
    }
}

/// <summary>Images held in memory as 8-bit planar [N, C, S, S] samples with integer labels.</summary>
public sealed class InMemoryImageDataset : IDataset
{
    private readonly byte[] _pixels;
    private readonly int[] _labels;

    /// <inheritdoc/>
    public int Count { get; }

    /// <inheritdoc/>
    public int Channels { get; }

    /// <inheritdoc/>
    public int Size { get; }

    /// <inheritdoc/>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Where the data came from (shown in logs and messages).</summary>
    public string Description { get; }

    /// <summary>Wraps <paramref name="pixels"/> (planar [N, C, S, S], not copied) and <paramref name="labels"/>.</summary>
    public InMemoryImageDataset(byte[] pixels, int[] labels, int channels, int size, IReadOnlyList<string>? classNames = null, string description = "in-memory images")
    {
        if (channels < 1 || size < 1) throw new ArgumentException($"Channels and size must be positive, got {channels} and {size}.");
        long per = (long)channels * size * size;
        if (pixels.LongLength != per * labels.Length)
            throw new ArgumentException($"{description}: {labels.Length} labels of {channels}x{size}x{size} images need {per * labels.Length} bytes, got {pixels.LongLength}.");
        _pixels = pixels; _labels = labels;
        Count = labels.Length; Channels = channels; Size = size;
        ClassNames = classNames ?? Array.Empty<string>();
        Description = description;
    }

    /// <summary>Bytes of one image.</summary>
    public int ImageBytes => Channels * Size * Size;

    /// <summary>The 8-bit planar [C, S, S] samples of item <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> Pixels(int index) => _pixels.AsSpan(Index(index) * ImageBytes, ImageBytes);

    /// <summary>Label of item <paramref name="index"/>.</summary>
    public int Label(int index) => _labels[Index(index)];

    private int Index(int index) =>
        (uint)index < (uint)Count ? index : throw new ArgumentOutOfRangeException(nameof(index), $"Index {index} is outside a dataset of {Count} items.");

    /// <inheritdoc/>
    public int Load(int index, Span<float> dest)
    {
        var src = Pixels(index);
        if (dest.Length != src.Length) throw new ArgumentException($"Destination holds {dest.Length} floats; an image of {Description} is [{Channels}, {Size}, {Size}] = {src.Length}.");
        for (int i = 0; i < src.Length; i++) dest[i] = src[i] * (2f / 255f) - 1f;
        return _labels[index];
    }

    /// <summary>Item <paramref name="index"/> as a [C, H, W] tensor in [-1, 1] and its label.</summary>
    public (Tensor Image, int Label) Get(int index)
    {
        var t = Tensor.Empty(Channels, Size, Size);
        int label = Load(index, t.Span);
        return (t, label);
    }

    /// <summary>
    /// A copy with every image converted to <paramref name="channels"/> channels and resized to <paramref name="size"/>
    /// (area averaging to shrink, bilinear to enlarge); returns this when nothing changes.
    /// </summary>
    public InMemoryImageDataset Transform(int? size = null, int? channels = null)
    {
        int s = size ?? Size, c = channels ?? Channels;
        if (c != 1 && c != 3) throw new ArgumentException($"Channels must be 1 or 3, got {c}.");
        if (s == Size && c == Channels) return this;
        var outPix = new byte[(long)Count * c * s * s];
        Runtime.Threading.For(Count, 64, (a, b) =>
        {
            for (int i = a; i < b; i++)
            {
                var img = ImageOps.FromPlanar(Pixels(i), Channels, Size, Size).ConvertChannels(c);
                img = ImageOps.Resize(img, s, s);
                ImageOps.ToPlanar(img, outPix.AsSpan(i * c * s * s, c * s * s));
            }
        });
        return new InMemoryImageDataset(outPix, _labels, c, s, ClassNames, Description);
    }
}
