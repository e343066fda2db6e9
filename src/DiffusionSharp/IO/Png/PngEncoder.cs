using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace DiffusionSharp.IO;

/// <summary>How the encoder chooses the PNG filter of each row.</summary>
public enum PngFilterMode
{
    /// <summary>Per row, the filter (of all five) whose output has the smallest sum of absolute signed bytes.</summary>
    Adaptive,
    /// <summary>Filter 0 on every row.</summary>
    None,
    /// <summary>Filter 1 on every row.</summary>
    Sub,
    /// <summary>Filter 2 on every row.</summary>
    Up,
    /// <summary>Filter 3 on every row.</summary>
    Average,
    /// <summary>Filter 4 on every row.</summary>
    Paeth,
}

/// <summary>The five PNG row filters (ISO/IEC 15948 section 9).</summary>
internal static class PngFilters
{
    /// <summary>Paeth predictor: whichever of left, up, upper-left is closest to left + up - upper-left.</summary>
    public static byte Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
    }

    /// <summary>Writes row <paramref name="cur"/> filtered with <paramref name="filter"/> into <paramref name="dest"/>.</summary>
    public static void Apply(int filter, ReadOnlySpan<byte> cur, ReadOnlySpan<byte> prev, int bpp, Span<byte> dest)
    {
        int n = cur.Length;
        switch (filter)
        {
            case 0: cur.CopyTo(dest); break;
            case 1:
                for (int i = 0; i < n; i++) dest[i] = (byte)(cur[i] - (i >= bpp ? cur[i - bpp] : 0));
                break;
            case 2:
                for (int i = 0; i < n; i++) dest[i] = (byte)(cur[i] - prev[i]);
                break;
            case 3:
                for (int i = 0; i < n; i++) dest[i] = (byte)(cur[i] - (((i >= bpp ? cur[i - bpp] : 0) + prev[i]) >> 1));
                break;
            default:
                for (int i = 0; i < n; i++)
                    dest[i] = (byte)(cur[i] - (i >= bpp ? Paeth(cur[i - bpp], prev[i], prev[i - bpp]) : prev[i]));
                break;
        }
    }

    /// <summary>Sum of the filtered bytes read as signed values, the usual "minimum sum of absolute differences" heuristic.</summary>
    public static long Cost(ReadOnlySpan<byte> row)
    {
        long s = 0;
        foreach (byte b in row) s += b < 128 ? b : 256 - b;
        return s;
    }
}

/// <summary>PNG encoding of 8-bit or 16-bit gray, gray+alpha, RGB and RGBA images (non-interlaced).</summary>
public static class PngEncoder
{
    /// <summary>Encodes <paramref name="image"/> to PNG bytes.</summary>
    public static byte[] Encode(Image image, PngFilterMode filter = PngFilterMode.Adaptive, CompressionLevel level = CompressionLevel.Optimal)
    {
        var ms = new MemoryStream();
        ms.Write(Png.Signature);
        WriteChunk(ms, "IHDR", Header(image.Width, image.Height, image.Channels, image.BitDepth));
        WriteChunk(ms, "IDAT", CompressImageData(image, filter, level));
        WriteChunk(ms, "IEND", ReadOnlySpan<byte>.Empty);
        return ms.ToArray();
    }

    /// <summary>Encodes <paramref name="image"/> and writes it to <paramref name="path"/> (parent folders are created).</summary>
    public static void Write(string path, Image image, PngFilterMode filter = PngFilterMode.Adaptive, CompressionLevel level = CompressionLevel.Optimal)
    {
        var bytes = Encode(image, filter, level);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        File.WriteAllBytes(path, bytes);
    }

    internal static byte ColorType(int channels) => channels switch { 1 => 0, 2 => 4, 3 => 2, _ => 6 };

    internal static byte[] Header(int width, int height, int channels, int bitDepth)
    {
        var h = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(h, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(4), (uint)height);
        h[8] = (byte)bitDepth;
        h[9] = ColorType(channels);
        return h;  // compression 0, filter method 0, no interlace
    }

    internal static void WriteChunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> head = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(head, (uint)data.Length);
        Encoding.ASCII.GetBytes(type, head[4..]);
        s.Write(head);
        s.Write(data);
        uint crc = Crc32.Update(Crc32.Compute(head[4..]), data);
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(tail, crc);
        s.Write(tail);
    }

    /// <summary>Filters every row and deflates the result (zlib format) into the IDAT payload.</summary>
    internal static byte[] CompressImageData(Image image, PngFilterMode mode, CompressionLevel level)
    {
        int bytesPerSample = image.BitDepth / 8;
        int bpp = image.Channels * bytesPerSample;
        int rowBytes = image.Width * bpp;
        var prev = new byte[rowBytes];
        var cur = new byte[rowBytes];
        var best = new byte[rowBytes];
        var trial = new byte[rowBytes];
        var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, level, leaveOpen: true))
        {
            for (int y = 0; y < image.Height; y++)
            {
                if (image.BitDepth == 8) image.Data.AsSpan(y * rowBytes, rowBytes).CopyTo(cur);
                else
                {
                    var src = image.Data16.AsSpan(y * image.Width * image.Channels, image.Width * image.Channels);
                    for (int i = 0; i < src.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(cur.AsSpan(2 * i), src[i]);
                }
                int chosen;
                if (mode == PngFilterMode.Adaptive)
                {
                    chosen = 0;
                    long bestCost = long.MaxValue;
                    for (int f = 0; f < 5; f++)
                    {
                        PngFilters.Apply(f, cur, prev, bpp, trial);
                        long cost = PngFilters.Cost(trial);
                        if (cost < bestCost) { bestCost = cost; chosen = f; (best, trial) = (trial, best); }
                    }
                }
                else
                {
                    chosen = (int)mode - 1;
                    PngFilters.Apply(chosen, cur, prev, bpp, best);
                }
                z.WriteByte((byte)chosen);
                z.Write(best);
                (prev, cur) = (cur, prev);
            }
        }
        return ms.ToArray();
    }
}

/// <summary>
/// Writes an animated PNG (APNG: acTL, fcTL, fdAT chunks) from full-canvas frames, e.g. the states of a denoising run.
/// Frames are compressed as they are added; viewers without APNG support show the first frame.
/// </summary>
public sealed class ApngWriter
{
    private readonly List<(byte[] Data, int DelayMs)> _frames = new();
    private readonly PngFilterMode _filter;
    private readonly CompressionLevel _level;

    /// <summary>Canvas width (0 until the first frame when the size was not given).</summary>
    public int Width { get; private set; }

    /// <summary>Canvas height (0 until the first frame when the size was not given).</summary>
    public int Height { get; private set; }

    /// <summary>Channels of every frame (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).</summary>
    public int Channels { get; private set; }

    /// <summary>Times to play the animation; 0 loops forever.</summary>
    public int Loops { get; }

    /// <summary>Frames added so far.</summary>
    public int FrameCount => _frames.Count;

    /// <summary>Starts an animation of <paramref name="width"/> x <paramref name="height"/> 8-bit frames.</summary>
    public ApngWriter(int width, int height, int channels, int loops = 0, PngFilterMode filter = PngFilterMode.Adaptive,
        CompressionLevel level = CompressionLevel.Optimal)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"Animation size must be positive, got {width}x{height}.");
        if (channels < 1 || channels > 4) throw new ArgumentException($"Channels must be 1..4, got {channels}.");
        if (loops < 0) throw new ArgumentOutOfRangeException(nameof(loops), "Loop count cannot be negative.");
        Width = width; Height = height; Channels = channels; Loops = loops; _filter = filter; _level = level;
    }

    /// <summary>Starts an animation whose size and channels are taken from the first frame.</summary>
    public ApngWriter(int loops = 0)
    {
        if (loops < 0) throw new ArgumentOutOfRangeException(nameof(loops), "Loop count cannot be negative.");
        Loops = loops; _filter = PngFilterMode.Adaptive; _level = CompressionLevel.Optimal;
    }

    /// <summary>
    /// Adds a frame made from images in [-1, 1]: a [C, H, W] image or an [N, C, H, W] batch tiled with
    /// <see cref="ImageGrid.Make"/> (e.g. the current x_t of a sampling run).
    /// </summary>
    public void AddFrame(Tensors.Tensor images, int delayMs = 100, int nrow = 8, int padding = 2) =>
        AddFrame(images.Rank == 4 ? ImageGrid.Make(images, nrow, padding) : Image.FromTensor(images), delayMs);

    /// <summary>Adds a frame shown for <paramref name="delayMs"/> milliseconds (0..65535).</summary>
    public void AddFrame(Image frame, int delayMs = 100)
    {
        if (Width == 0)
        {
            Width = frame.Width; Height = frame.Height; Channels = frame.Channels;
        }
        if (frame.Width != Width || frame.Height != Height || frame.Channels != Channels || frame.BitDepth != 8)
            throw new ArgumentException($"Frame is {frame.Width}x{frame.Height}x{frame.Channels} at {frame.BitDepth} bits; this animation needs {Width}x{Height}x{Channels} at 8 bits.");
        if (delayMs < 0 || delayMs > ushort.MaxValue) throw new ArgumentOutOfRangeException(nameof(delayMs), $"Frame delay must be 0..65535 ms, got {delayMs}.");
        _frames.Add((PngEncoder.CompressImageData(frame, _filter, _level), delayMs));
    }

    /// <summary>The APNG file bytes.</summary>
    public byte[] ToArray()
    {
        if (_frames.Count == 0) throw new InvalidOperationException("An animated PNG needs at least one frame.");
        var ms = new MemoryStream();
        ms.Write(Png.Signature);
        PngEncoder.WriteChunk(ms, "IHDR", PngEncoder.Header(Width, Height, Channels, 8));
        var actl = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(actl, (uint)_frames.Count);
        BinaryPrimitives.WriteUInt32BigEndian(actl.AsSpan(4), (uint)Loops);
        PngEncoder.WriteChunk(ms, "acTL", actl);
        uint seq = 0;
        for (int i = 0; i < _frames.Count; i++)
        {
            var fc = new byte[26];
            BinaryPrimitives.WriteUInt32BigEndian(fc, seq++);
            BinaryPrimitives.WriteUInt32BigEndian(fc.AsSpan(4), (uint)Width);
            BinaryPrimitives.WriteUInt32BigEndian(fc.AsSpan(8), (uint)Height);
            // x/y offsets 0; delay = delayMs / 1000 s; dispose op 0 (none), blend op 0 (source)
            BinaryPrimitives.WriteUInt16BigEndian(fc.AsSpan(20), (ushort)_frames[i].DelayMs);
            BinaryPrimitives.WriteUInt16BigEndian(fc.AsSpan(22), 1000);
            PngEncoder.WriteChunk(ms, "fcTL", fc);
            if (i == 0) PngEncoder.WriteChunk(ms, "IDAT", _frames[0].Data);
            else
            {
                var fd = new byte[4 + _frames[i].Data.Length];
                BinaryPrimitives.WriteUInt32BigEndian(fd, seq++);
                _frames[i].Data.CopyTo(fd, 4);
                PngEncoder.WriteChunk(ms, "fdAT", fd);
            }
        }
        PngEncoder.WriteChunk(ms, "IEND", ReadOnlySpan<byte>.Empty);
        return ms.ToArray();
    }

    /// <summary>Writes the animation to <paramref name="path"/> (parent folders are created).</summary>
    public void Save(string path)
    {
        var bytes = ToArray();
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        File.WriteAllBytes(path, bytes);
    }
}
