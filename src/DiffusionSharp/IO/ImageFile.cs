using DiffusionSharp.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using SixLabors.ImageSharp.Processing.Processors.Transforms;

namespace DiffusionSharp.IO;

/// <summary>The resampling filter used when an image is resized.</summary>
public enum ResizeFilter
{
    /// <summary>Box filter: each output pixel averages the input area it covers (the usual choice for shrinking).</summary>
    Area,
    /// <summary>Bicubic (Catmull-Rom style cubic convolution).</summary>
    Bicubic,
}

/// <summary>What happens to an alpha channel when an image is read.</summary>
public enum AlphaMode
{
    /// <summary>Keep the colour values and drop alpha.</summary>
    Drop,
    /// <summary>Composite over white: c = a c + (1 - a) 255.</summary>
    White,
    /// <summary>Composite over black: c = a c.</summary>
    Black,
}

/// <summary>How <see cref="ImageFile.Load"/> decodes and fits one image.</summary>
public sealed record ImageLoadOptions
{
    /// <summary>Square output size (null keeps the image's own size).</summary>
    public int? Size { get; init; }
    /// <summary>How the image is fitted to <see cref="Size"/>.</summary>
    public FitMode Fit { get; init; } = FitMode.CenterCrop;
    /// <summary>Resampling filter.</summary>
    public ResizeFilter Filter { get; init; } = ResizeFilter.Area;
    /// <summary>Alpha handling (the alpha channel never reaches the result).</summary>
    public AlphaMode Alpha { get; init; } = AlphaMode.Drop;
    /// <summary>Seed of the crop position for <see cref="FitMode.RandomCrop"/>.</summary>
    public ulong CropSeed { get; init; }
}

/// <summary>
/// Reads PNG, JPEG, BMP, GIF, TIFF and WebP files through ImageSharp: EXIF orientation applied, colour reduced to gray
/// or RGB, alpha dropped or composited, optional resize and crop. Errors name the file.
/// </summary>
public static class ImageFile
{
    /// <summary>Largest accepted image, in pixels (checked from the header before the pixels are decoded).</summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>File extensions read as images (lower case, with the dot).</summary>
    public static readonly IReadOnlyList<string> Extensions = new[] { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp" };

    /// <summary>True when the file name has one of <see cref="Extensions"/>.</summary>
    public static bool HasImageExtension(string path) => Extensions.Contains(Path.GetExtension(path).ToLowerInvariant());

    /// <summary>
    /// Reads an image at its own size, alpha dropped: 1 channel for a gray PNG (colour type 0/4) or, in other formats, when
    /// every pixel is gray; else 3 (RGB).
    /// </summary>
    public static Image Read(string path) => Load(path, new ImageLoadOptions());

    /// <summary>Largest accepted image file, in bytes.</summary>
    public const long MaxFileBytes = 256L << 20;

    // A device such as /dev/zero reports length 0 and never ends: the read itself stops at the limit.
    private static byte[] ReadBounded(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var ms = new MemoryStream();
        var buf = new byte[1 << 16];
        int k;
        while ((k = fs.Read(buf, 0, buf.Length)) > 0)
        {
            if (ms.Length + k > MaxFileBytes) throw new InvalidDataException($"{path}: larger than the limit of {MaxFileBytes:N0} bytes for an image file.");
            ms.Write(buf, 0, k);
        }
        return ms.ToArray();
    }

    /// <summary>Reads an image and fits it as <paramref name="options"/> say; channels as in <see cref="Read"/>.</summary>
    public static Image Load(string path, ImageLoadOptions options)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Image not found: {path}", path);
        long length = new FileInfo(path).Length;
        if (length > MaxFileBytes) throw new InvalidDataException($"{path}: {length:N0} bytes is larger than the limit of {MaxFileBytes:N0} for an image file.");
        return Decode(ReadBounded(path), path, options);
    }

    /// <summary>
    /// Decodes an encoded image held in memory (<paramref name="source"/> names it in errors); every malformed input gives an
    /// <see cref="InvalidDataException"/> whose message starts with "<paramref name="source"/>:".
    /// </summary>
    public static Image Decode(byte[] data, string source, ImageLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Size is <= 0) throw new ArgumentException($"Image size must be positive, got {options.Size}.");
        Image<Rgba32> img;
        bool? storedColour = null;
        if (data.AsSpan().StartsWith(PngSignature))
        {
            var png = Png.Decode(data, source).To8Bit();
            storedColour = png.Channels >= 3;
            img = FromOurs(png);
        }
        else try
        {
            var info = SixLabors.ImageSharp.Image.Identify(new MemoryStream(data, writable: false))
                ?? throw new InvalidDataException($"{source}: not an image in a supported format ({string.Join(", ", Extensions)}).");
            if ((long)info.Width * info.Height > MaxPixels)
                throw new InvalidDataException($"{source}: {info.Width}x{info.Height} is larger than the limit of {MaxPixels:N0} pixels.");
            img = SixLabors.ImageSharp.Image.Load<Rgba32>(new MemoryStream(data, writable: false));
        }
        catch (Exception e) when (e is not OutOfMemoryException && !(e is InvalidDataException && e.Message.StartsWith(source + ":", StringComparison.Ordinal)))
        {
            // ImageSharp reports malformed data with several exception types (format, content, end of stream, ...).
            throw new InvalidDataException($"{source}: cannot decode image: {OneLine(e.Message)}", e);
        }
        using (img)
        {
            try
            {
                img.Mutate(x => x.AutoOrient());
                if (options.Size is int s) Fit(img, s, options);
            }
            catch (Exception e) when (e is ImageProcessingException or InvalidImageContentException)
            {
                throw new InvalidDataException($"{source}: cannot process image: {OneLine(e.Message)}", e);
            }
            return ToImage(img, options.Alpha, storedColour);
        }
    }

    // PNG goes through our decoder: ImageSharp 2.1.13 loops without end on some corrupt interlaced PNGs that ours rejects.
    private static ReadOnlySpan<byte> PngSignature => new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 };

    private static Image<Rgba32> FromOurs(Image src)
    {
        int n = src.Width * src.Height, c = src.Channels;
        var px = new Rgba32[n];
        var d = src.Data;
        for (int i = 0; i < n; i++)
        {
            int k = i * c;
            px[i] = c switch
            {
                1 => new Rgba32(d[k], d[k], d[k], 255),
                2 => new Rgba32(d[k], d[k], d[k], d[k + 1]),
                3 => new Rgba32(d[k], d[k + 1], d[k + 2], 255),
                _ => new Rgba32(d[k], d[k + 1], d[k + 2], d[k + 3]),
            };
        }
        return SixLabors.ImageSharp.Image.LoadPixelData<Rgba32>(px, src.Width, src.Height);
    }

    private static void Fit(Image<Rgba32> img, int size, ImageLoadOptions o)
    {
        IResampler sampler = o.Filter == ResizeFilter.Bicubic ? KnownResamplers.Bicubic : KnownResamplers.Box;
        if (o.Fit == FitMode.Stretch || img.Width == img.Height)
        {
            if (img.Width != size || img.Height != size) img.Mutate(x => x.Resize(size, size, sampler));
            return;
        }
        // Shorter side to size, then a size x size window: centred, or at a seeded random offset.
        double scale = (double)size / Math.Min(img.Width, img.Height);
        int w = Math.Max(size, (int)Math.Round(img.Width * scale)), h = Math.Max(size, (int)Math.Round(img.Height * scale));
        int x0 = (w - size) / 2, y0 = (h - size) / 2;
        if (o.Fit == FitMode.RandomCrop)
        {
            var rng = new Random((int)(o.CropSeed ^ (o.CropSeed >> 32)));
            x0 = rng.Next(w - size + 1);
            y0 = rng.Next(h - size + 1);
        }
        img.Mutate(x => x.Resize(w, h, sampler).Crop(new Rectangle(x0, y0, size, size)));
    }

    private static Image ToImage(Image<Rgba32> img, AlphaMode alpha, bool? storedColour)
    {
        int n = img.Width * img.Height;
        var px = new Rgba32[n];
        img.CopyPixelDataTo(px);
        bool gray = true;
        var rgb = new byte[3 * n];
        for (int i = 0; i < n; i++)
        {
            var p = px[i];
            byte r = p.R, g = p.G, b = p.B;
            if (alpha != AlphaMode.Drop && p.A != 255)
            {
                // c = a c + (1 - a) background, rounded
                int bg = alpha == AlphaMode.White ? 255 : 0;
                r = (byte)((r * p.A + bg * (255 - p.A) + 127) / 255);
                g = (byte)((g * p.A + bg * (255 - p.A) + 127) / 255);
                b = (byte)((b * p.A + bg * (255 - p.A) + 127) / 255);
            }
            rgb[3 * i] = r; rgb[3 * i + 1] = g; rgb[3 * i + 2] = b;
            gray &= r == g && g == b;
        }
        if (storedColour ?? !gray) return new Image(img.Width, img.Height, 3, rgb);
        var l = new byte[n];
        for (int i = 0; i < n; i++) l[i] = rgb[3 * i];
        return new Image(img.Width, img.Height, 1, l);
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}
