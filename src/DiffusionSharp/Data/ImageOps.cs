using DiffusionSharp.IO;

namespace DiffusionSharp.Data;

/// <summary>How an image is fitted to a square model size.</summary>
public enum FitMode
{
    /// <summary>Scale the shorter side to the size, then cut the centre square.</summary>
    CenterCrop,
    /// <summary>Scale both sides to the size, ignoring the aspect ratio.</summary>
    Stretch,
    /// <summary>Scale the shorter side to the size, then cut a square at a seeded random position.</summary>
    RandomCrop,
}

/// <summary>Resizing, cropping and layout conversions for 8-bit images.</summary>
public static class ImageOps
{
    // Per output index, the contributing input indices and weights (summing to 1) for one axis.
    private static (int[] Start, float[][] Weights) AxisWeights(int inSize, int outSize)
    {
        var start = new int[outSize];
        var weights = new float[outSize][];
        double scale = (double)inSize / outSize;
        for (int o = 0; o < outSize; o++)
        {
            if (outSize < inSize)
            {
                // Area averaging: output pixel o covers input interval [o * scale, (o + 1) * scale).
                double a = o * scale, b = (o + 1) * scale;
                int i0 = (int)Math.Floor(a), i1 = Math.Min(inSize - 1, (int)Math.Ceiling(b) - 1);
                var w = new float[i1 - i0 + 1];
                for (int i = i0; i <= i1; i++) w[i - i0] = (float)((Math.Min(b, i + 1) - Math.Max(a, i)) / scale);
                start[o] = i0; weights[o] = w;
            }
            else
            {
                // Bilinear with half-pixel centres (align_corners = false), edges clamped.
                double src = (o + 0.5) * scale - 0.5;
                if (src < 0) src = 0;
                int i0 = Math.Min((int)Math.Floor(src), inSize - 1);
                int i1 = Math.Min(i0 + 1, inSize - 1);
                float f = (float)(src - i0);
                start[o] = i0;
                weights[o] = i1 == i0 ? [1f] : [1f - f, f];
            }
        }
        return (start, weights);
    }

    /// <summary>
    /// Resizes an 8-bit image to <paramref name="width"/> x <paramref name="height"/>, separably per axis:
    /// area averaging where the axis shrinks, bilinear (half-pixel centres) where it grows.
    /// </summary>
    public static Image Resize(Image src, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"Resize target must be positive, got {width}x{height}.");
        src = src.To8Bit();
        if (width == src.Width && height == src.Height) return src;
        int c = src.Channels, sw = src.Width, sh = src.Height;
        var (xs, xw) = AxisWeights(sw, width);
        var (ys, yw) = AxisWeights(sh, height);
        var tmp = new float[sh * width * c];
        var s = src.Data;
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < width; x++)
                for (int ch = 0; ch < c; ch++)
                {
                    float acc = 0;
                    var w = xw[x];
                    for (int k = 0; k < w.Length; k++) acc += w[k] * s[(y * sw + xs[x] + k) * c + ch];
                    tmp[(y * width + x) * c + ch] = acc;
                }
        var d = new byte[width * height * c];
        for (int y = 0; y < height; y++)
        {
            var w = yw[y];
            for (int x = 0; x < width; x++)
                for (int ch = 0; ch < c; ch++)
                {
                    float acc = 0;
                    for (int k = 0; k < w.Length; k++) acc += w[k] * tmp[((ys[y] + k) * width + x) * c + ch];
                    d[(y * width + x) * c + ch] = (byte)Math.Clamp((int)MathF.Round(acc), 0, 255);
                }
        }
        return new Image(width, height, c, d);
    }

    /// <summary>The <paramref name="width"/> x <paramref name="height"/> region with top-left (x0, y0).</summary>
    public static Image Crop(Image src, int x0, int y0, int width, int height)
    {
        src = src.To8Bit();
        if (x0 < 0 || y0 < 0 || width <= 0 || height <= 0 || x0 + width > src.Width || y0 + height > src.Height)
            throw new ArgumentException($"Crop {width}x{height} at ({x0}, {y0}) does not fit a {src.Width}x{src.Height} image.");
        int c = src.Channels;
        var d = new byte[width * height * c];
        for (int y = 0; y < height; y++)
            src.Data.AsSpan(((y0 + y) * src.Width + x0) * c, width * c).CopyTo(d.AsSpan(y * width * c));
        return new Image(width, height, c, d);
    }

    /// <summary>Fits an image to a <paramref name="size"/> x <paramref name="size"/> square.</summary>
    public static Image FitSquare(Image src, int size, FitMode mode = FitMode.CenterCrop)
    {
        if (mode == FitMode.Stretch || src.Width == src.Height) return Resize(src, size, size);
        // Scale so the shorter side equals size (rounded), then cut the centre.
        double scale = (double)size / Math.Min(src.Width, src.Height);
        int w = Math.Max(size, (int)Math.Round(src.Width * scale)), h = Math.Max(size, (int)Math.Round(src.Height * scale));
        var r = Resize(src, w, h);
        return Crop(r, (w - size) / 2, (h - size) / 2, size, size);
    }

    /// <summary>Interleaved image samples to planar [C, H, W] bytes.</summary>
    public static void ToPlanar(Image img, Span<byte> dest)
    {
        var s = img.To8Bit().Data;
        int c = img.Channels, plane = img.Width * img.Height;
        if (dest.Length != plane * c) throw new ArgumentException($"Destination holds {dest.Length} bytes, the image needs {plane * c}.");
        for (int ch = 0; ch < c; ch++)
            for (int p = 0; p < plane; p++) dest[ch * plane + p] = s[p * c + ch];
    }

    /// <summary>Planar [C, H, W] bytes to an interleaved image.</summary>
    public static Image FromPlanar(ReadOnlySpan<byte> src, int channels, int height, int width)
    {
        int plane = width * height;
        var d = new byte[plane * channels];
        for (int ch = 0; ch < channels; ch++)
            for (int p = 0; p < plane; p++) d[p * channels + ch] = src[ch * plane + p];
        return new Image(width, height, channels, d);
    }
}
