using DiffusionSharp.Tensors;

namespace DiffusionSharp.IO;

/// <summary>
/// A raster image with interleaved channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), row-major, 8 or 16 bits per sample.
/// 8-bit samples live in <see cref="Data"/>; 16-bit samples in <see cref="Data16"/>.
/// </summary>
public sealed class Image
{
    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>Samples per pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.</summary>
    public int Channels { get; }

    /// <summary>Bits per sample: 8 or 16.</summary>
    public int BitDepth { get; }

    private readonly byte[]? _data;
    private readonly ushort[]? _data16;

    /// <summary>8-bit samples (Height * Width * Channels, interleaved); throws for a 16-bit image.</summary>
    public byte[] Data => _data ?? throw new InvalidOperationException("This image has 16-bit samples; use Data16 or To8Bit().");

    /// <summary>16-bit samples (Height * Width * Channels, interleaved); throws for an 8-bit image.</summary>
    public ushort[] Data16 => _data16 ?? throw new InvalidOperationException("This image has 8-bit samples; use Data.");

    /// <summary>Number of samples (Width * Height * Channels).</summary>
    public int SampleCount => Width * Height * Channels;

    /// <summary>Creates an 8-bit image over <paramref name="data"/> (not copied); a zeroed buffer when null.</summary>
    public Image(int width, int height, int channels, byte[]? data = null)
    {
        Validate(width, height, channels);
        Width = width; Height = height; Channels = channels; BitDepth = 8;
        long n = (long)width * height * channels;
        _data = data ?? new byte[n];
        if (_data.Length != n)
            throw new ArgumentException($"An 8-bit {width}x{height} image with {channels} channels needs {n} samples, got {_data.Length}.");
    }

    /// <summary>Creates a 16-bit image over <paramref name="data"/> (not copied).</summary>
    public Image(int width, int height, int channels, ushort[] data)
    {
        Validate(width, height, channels);
        Width = width; Height = height; Channels = channels; BitDepth = 16;
        long n = (long)width * height * channels;
        _data16 = data;
        if (data.Length != n)
            throw new ArgumentException($"A 16-bit {width}x{height} image with {channels} channels needs {n} samples, got {data.Length}.");
    }

    private static void Validate(int width, int height, int channels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"Image size must be positive, got {width}x{height}.");
        if (channels < 1 || channels > 4) throw new ArgumentException($"Image channels must be 1..4 (gray, gray+alpha, RGB, RGBA), got {channels}.");
        if ((long)width * height * channels > Array.MaxLength) throw new ArgumentException($"Image {width}x{height}x{channels} is too large.");
    }

    /// <summary>True when the last channel is alpha (2 or 4 channels).</summary>
    public bool HasAlpha => Channels == 2 || Channels == 4;

    /// <summary>Sample (x, y, c) scaled to [0, 1].</summary>
    public float GetUnit(int x, int y, int c)
    {
        int i = (y * Width + x) * Channels + c;
        return _data != null ? _data[i] / 255f : _data16![i] / 65535f;
    }

    /// <summary>An 8-bit copy (16-bit samples are rounded: v * 255 / 65535); returns this when already 8-bit.</summary>
    public Image To8Bit()
    {
        if (_data != null) return this;
        var d = new byte[_data16!.Length];
        for (int i = 0; i < d.Length; i++) d[i] = (byte)((_data16[i] * 255 + 32767) / 65535);
        return new Image(Width, Height, Channels, d);
    }

    /// <summary>
    /// An 8-bit copy with <paramref name="channels"/> channels: gray to RGB replicates, RGB to gray uses ITU-R 601 luma
    /// (0.299 R + 0.587 G + 0.114 B), alpha is dropped or set opaque.
    /// </summary>
    public Image ConvertChannels(int channels)
    {
        if (channels < 1 || channels > 4) throw new ArgumentException($"Channels must be 1..4, got {channels}.");
        var src = To8Bit();
        if (channels == Channels) return src == this ? new Image(Width, Height, Channels, (byte[])Data.Clone()) : src;
        var s = src.Data;
        int n = Width * Height, ci = Channels;
        var d = new byte[n * channels];
        bool srcColor = ci >= 3, srcAlpha = ci == 2 || ci == 4;
        for (int p = 0; p < n; p++)
        {
            int si = p * ci, di = p * channels;
            byte a = srcAlpha ? s[si + ci - 1] : (byte)255;
            byte r, g, b;
            if (srcColor) { r = s[si]; g = s[si + 1]; b = s[si + 2]; }
            else r = g = b = s[si];
            switch (channels)
            {
                case 1: d[di] = srcColor ? Luma(r, g, b) : r; break;
                case 2: d[di] = srcColor ? Luma(r, g, b) : r; d[di + 1] = a; break;
                case 3: d[di] = r; d[di + 1] = g; d[di + 2] = b; break;
                default: d[di] = r; d[di + 1] = g; d[di + 2] = b; d[di + 3] = a; break;
            }
        }
        return new Image(Width, Height, channels, d);
    }

    // Rounded fixed-point ITU-R 601-2 luma, the same weights as PIL's "L" conversion.
    private static byte Luma(byte r, byte g, byte b) => (byte)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);

    /// <summary>The image as a [C, H, W] tensor in [-1, 1] (0 maps to -1, full scale to 1).</summary>
    public Tensor ToTensor()
    {
        var t = Tensor.Empty(Channels, Height, Width);
        CopyToChw(t.Span);
        return t;
    }

    /// <summary>Writes the samples planar ([C, H, W]) scaled to [-1, 1] into <paramref name="dest"/>.</summary>
    public void CopyToChw(Span<float> dest)
    {
        int plane = Width * Height;
        if (dest.Length != plane * Channels) throw new ArgumentException($"Destination has {dest.Length} floats, image needs {plane * Channels}.");
        if (_data != null)
        {
            for (int c = 0; c < Channels; c++)
                for (int p = 0; p < plane; p++) dest[c * plane + p] = _data[p * Channels + c] * (2f / 255f) - 1f;
        }
        else
        {
            for (int c = 0; c < Channels; c++)
                for (int p = 0; p < plane; p++) dest[c * plane + p] = _data16![p * Channels + c] * (2f / 65535f) - 1f;
        }
    }

    /// <summary>
    /// An 8-bit image from a [C, H, W] (C in 1..4) or [H, W] tensor with values in [-1, 1]; values outside are clamped,
    /// and x maps to round((x + 1) / 2 * 255).
    /// </summary>
    public static Image FromTensor(Tensor t)
    {
        int c, h, w;
        if (t.Rank == 2) { c = 1; h = t.Dim(0); w = t.Dim(1); }
        else if (t.Rank == 3) { c = t.Dim(0); h = t.Dim(1); w = t.Dim(2); }
        else throw new ArgumentException($"Expected an image tensor of shape [C, H, W] or [H, W], got {t.Shape}.");
        if (c < 1 || c > 4) throw new ArgumentException($"Expected 1 to 4 channels in an image tensor [C, H, W], got shape {t.Shape}.");
        var img = new Image(w, h, c);
        FromChw(t.Span, c, h, w, img.Data);
        return img;
    }

    /// <summary>Converts planar [C, H, W] floats in [-1, 1] to interleaved 8-bit samples.</summary>
    internal static void FromChw(ReadOnlySpan<float> src, int c, int h, int w, Span<byte> dest)
    {
        int plane = h * w;
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < plane; p++) dest[p * c + ch] = ToByte(src[ch * plane + p]);
    }

    /// <summary>Maps [-1, 1] to 0..255 with clamping (NaN maps to 0).</summary>
    internal static byte ToByte(float x)
    {
        float v = (x + 1f) * 127.5f;
        if (!(v > 0f)) return 0;
        if (v >= 255f) return 255;
        return (byte)(v + 0.5f);
    }
}
