using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace DiffusionSharp.IO;

/// <summary>One frame of an animated PNG, already composited onto the full canvas.</summary>
public sealed record PngFrame(Image Image, int DelayNumerator, int DelayDenominator)
{
    /// <summary>Frame delay in seconds (a zero denominator means 1/100 s units, as the APNG spec says).</summary>
    public double DelaySeconds => DelayNumerator / (double)(DelayDenominator == 0 ? 100 : DelayDenominator);
}

/// <summary>
/// PNG decoding (ISO/IEC 15948): every colour type and bit depth, palette with tRNS, Adam7 interlace, all five filters,
/// CRC checked; and APNG frame decoding. 1/2/4-bit samples are scaled to 8 bits, palettes expanded to RGB(A),
/// gray/RGB tRNS keys become an alpha channel; 16-bit files decode to 16-bit images.
/// </summary>
public static class Png
{
    /// <summary>Largest accepted width or height.</summary>
    public const int MaxDimension = 1 << 15;

    /// <summary>Largest accepted pixel count (keeps a hostile header from causing an absurd allocation).</summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>Largest PNG file read, in bytes.</summary>
    public const long MaxFileBytes = 256L << 20;

    internal static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Reads and decodes the PNG file at <paramref name="path"/> (the default image of an APNG).</summary>
    public static Image Read(string path) => Decode(ReadFile(path), path);

    /// <summary>Decodes PNG bytes; <paramref name="source"/> names the data in error messages.</summary>
    public static Image Decode(byte[] png, string source = "PNG data")
    {
        var file = Parse(png, source);
        return file.DecodeImage(file.IdatRanges, file.Width, file.Height);
    }

    /// <summary>Reads every frame of an animated PNG composited onto the canvas (a plain PNG gives one frame).</summary>
    public static List<PngFrame> ReadFrames(string path) => DecodeFrames(ReadFile(path), path);

    /// <summary>Decodes every frame of an animated PNG composited onto the canvas (a plain PNG gives one frame).</summary>
    public static List<PngFrame> DecodeFrames(byte[] png, string source = "PNG data")
    {
        var file = Parse(png, source);
        return file.DecodeAnimation();
    }

    private static byte[] ReadFile(string path)
    {
        try
        {
            // bounded read: a device such as /dev/zero or a huge file must not grow memory without limit
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var ms = new MemoryStream();
            var buf = new byte[1 << 16];
            int k;
            while ((k = fs.Read(buf, 0, buf.Length)) > 0)
            {
                if (ms.Length + k > MaxFileBytes) throw new InvalidDataException($"{path}: larger than the {MaxFileBytes >> 20} MiB limit for a PNG file.");
                ms.Write(buf, 0, k);
            }
            return ms.ToArray();
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new FileNotFoundException($"PNG file not found: {path}", path, e);
        }
    }

    private static PngFile Parse(byte[] png, string source)
    {
        var f = new PngFile(png, source);
        f.ParseChunks();
        return f;
    }

    internal sealed class FrameControl
    {
        public int Sequence, Width, Height, X, Y, DelayNum, DelayDen, Dispose, Blend;
        public List<(int Start, int Length)> Data = new();
    }

    private sealed class PngFile(byte[] bytes, string source)
    {
        public int Width, Height, BitDepth, ColorType, Interlace;
        public byte[]? Palette;          // RGB triples
        public byte[]? PaletteAlpha;     // per-entry alpha from tRNS
        public ushort[]? TransparentKey; // gray or RGB key from tRNS
        public readonly List<(int Start, int Length)> IdatRanges = new();
        public int AnimationFrames = -1, AnimationPlays;
        public readonly List<FrameControl> Frames = new();
        public bool DefaultImageIsFrame;

        // Every decoding problem is an InvalidDataException whose message starts with the file name.
        private InvalidDataException Fail(string what, Exception? inner = null) => new($"{source}: {what}", inner);

        private int SourceChannels => ColorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };

        public int OutChannels => ColorType switch
        {
            0 => TransparentKey != null ? 2 : 1,
            2 => TransparentKey != null ? 4 : 3,
            3 => PaletteAlpha != null ? 4 : 3,
            4 => 2,
            _ => 4,
        };

        public void ParseChunks()
        {
            int len = bytes.Length;
            if (len < 8 || !bytes.AsSpan(0, 8).SequenceEqual(Signature))
            {
                var got = Convert.ToHexString(bytes.AsSpan(0, Math.Min(8, len)));
                if (len == 0) throw Fail("empty file (0 bytes); expected a PNG signature");
                throw Fail(len < 8 && bytes.AsSpan(0, len).SequenceEqual(Signature[..len])
                    ? $"truncated: {len} bytes, shorter than the 8-byte PNG signature"
                    : $"bad signature: not a PNG file (first bytes {(got.Length == 0 ? "<empty>" : got)}, expected 89504E470D0A1A0A)");
            }
            int pos = 8;
            bool seenIhdr = false, seenIdat = false, idatEnded = false, seenPlte = false;
            FrameControl? current = null;
            int expectedSeq = 0;
            while (true)
            {
                if (pos == len) throw Fail($"file ends at offset {pos} without an IEND chunk (truncated?)");
                if (len - pos < 8) throw Fail($"truncated chunk header at offset {pos}: {len - pos} bytes left, a chunk header needs 8");
                uint length = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(pos));
                var typeBytes = bytes.AsSpan(pos + 4, 4);
                foreach (byte b in typeBytes)
                    if (!((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z')))
                        throw Fail($"invalid chunk type {Convert.ToHexString(typeBytes)} at offset {pos} (corrupt file?)");
                string type = Encoding.ASCII.GetString(typeBytes);
                if (length > int.MaxValue) throw Fail($"chunk '{type}' at offset {pos} declares length {length}, over the PNG limit of 2^31-1");
                if ((long)pos + 12 + length > len)
                    throw Fail($"truncated chunk '{type}' at offset {pos}: needs {12 + (long)length} bytes, only {len - pos} remain");
                int dataStart = pos + 8, n = (int)length;
                uint stored = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(dataStart + n));
                uint computed = Crc32.Compute(bytes.AsSpan(pos + 4, n + 4));
                if (stored != computed)
                    throw Fail($"CRC mismatch in chunk '{type}' at offset {pos}: stored 0x{stored:X8}, computed 0x{computed:X8}");
                var data = bytes.AsSpan(dataStart, n);
                if (!seenIhdr && type != "IHDR") throw Fail($"missing IHDR: the first chunk (offset {pos}) is '{type}'");
                if (seenIdat && type != "IDAT") idatEnded = true;
                switch (type)
                {
                    case "IHDR":
                        if (seenIhdr) throw Fail($"second IHDR chunk at offset {pos}");
                        ReadHeader(data, pos);
                        seenIhdr = true;
                        break;
                    case "PLTE":
                        if (seenIdat) throw Fail($"PLTE chunk at offset {pos} comes after IDAT");
                        if (n % 3 != 0 || n == 0 || n > 768) throw Fail($"PLTE chunk at offset {pos} has length {n}; expected a multiple of 3 between 3 and 768");
                        if (ColorType == 0 || ColorType == 4) throw Fail($"PLTE chunk at offset {pos} is not allowed for gray colour type {ColorType}");
                        if (ColorType == 3 && n / 3 > (1 << BitDepth)) throw Fail($"PLTE chunk at offset {pos} has {n / 3} entries, more than {1 << BitDepth} allowed at bit depth {BitDepth}");
                        if (ColorType == 3) Palette = data.ToArray();
                        seenPlte = true;
                        break;
                    case "tRNS":
                        if (seenIdat) throw Fail($"tRNS chunk at offset {pos} comes after IDAT");
                        ReadTransparency(data, pos);
                        break;
                    case "IDAT":
                        if (idatEnded) throw Fail($"IDAT chunk at offset {pos} is not consecutive with the earlier IDAT chunks");
                        if (ColorType == 3 && !seenPlte) throw Fail($"palette image has no PLTE chunk before the first IDAT (offset {pos})");
                        if (!seenIdat && Frames.Count == 1) DefaultImageIsFrame = true;  // fcTL before IDAT: the default image is frame 0
                        if (DefaultImageIsFrame && Frames.Count == 1) current!.Data.Add((dataStart, n));
                        IdatRanges.Add((dataStart, n));
                        seenIdat = true;
                        break;
                    case "acTL":
                        if (n != 8) throw Fail($"acTL chunk at offset {pos} has length {n}, expected 8");
                        AnimationFrames = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data));
                        AnimationPlays = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data[4..]));
                        break;
                    case "fcTL":
                    {
                        if (n != 26) throw Fail($"fcTL chunk at offset {pos} has length {n}, expected 26");
                        int seq = (int)BinaryPrimitives.ReadUInt32BigEndian(data);
                        if (seq != expectedSeq) throw Fail($"fcTL chunk at offset {pos} has sequence number {seq}, expected {expectedSeq}");
                        expectedSeq++;
                        current = new FrameControl
                        {
                            Sequence = seq,
                            Width = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data[4..])),
                            Height = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data[8..])),
                            X = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data[12..])),
                            Y = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(data[16..])),
                            DelayNum = BinaryPrimitives.ReadUInt16BigEndian(data[20..]),
                            DelayDen = BinaryPrimitives.ReadUInt16BigEndian(data[22..]),
                            Dispose = data[24],
                            Blend = data[25],
                        };
                        if (current.Width <= 0 || current.Height <= 0 || (long)current.X + current.Width > Width || (long)current.Y + current.Height > Height)
                            throw Fail($"fcTL chunk at offset {pos}: frame {current.Width}x{current.Height} at ({current.X}, {current.Y}) does not fit the {Width}x{Height} canvas");
                        if (current.Dispose > 2 || current.Blend > 1)
                            throw Fail($"fcTL chunk at offset {pos}: dispose op {current.Dispose} / blend op {current.Blend} not defined by APNG");
                        Frames.Add(current);
                        break;
                    }
                    case "fdAT":
                    {
                        if (n < 4) throw Fail($"fdAT chunk at offset {pos} has length {n}, shorter than its 4-byte sequence number");
                        int seq = (int)BinaryPrimitives.ReadUInt32BigEndian(data);
                        if (seq != expectedSeq) throw Fail($"fdAT chunk at offset {pos} has sequence number {seq}, expected {expectedSeq}");
                        expectedSeq++;
                        if (current == null || (Frames.Count == 1 && DefaultImageIsFrame))
                            throw Fail($"fdAT chunk at offset {pos} has no fcTL before it");
                        current.Data.Add((dataStart + 4, n - 4));
                        break;
                    }
                    case "IEND":
                        if (!seenIdat) throw Fail("missing IDAT: no image data before IEND");
                        return;
                    default:
                        if ((typeBytes[0] & 0x20) == 0) throw Fail($"unsupported critical chunk '{type}' at offset {pos}");
                        break; // ancillary chunks we do not need are skipped
                }
                pos += 12 + n;
            }
        }

        private void ReadHeader(ReadOnlySpan<byte> d, int pos)
        {
            if (d.Length != 13) throw Fail($"IHDR chunk at offset {pos} has length {d.Length}, expected 13");
            uint w = BinaryPrimitives.ReadUInt32BigEndian(d), h = BinaryPrimitives.ReadUInt32BigEndian(d[4..]);
            BitDepth = d[8]; ColorType = d[9]; Interlace = d[12];
            if (w == 0 || h == 0) throw Fail($"IHDR declares an empty image ({w}x{h})");
            if (w > MaxDimension || h > MaxDimension || (long)w * h > MaxPixels)
                throw Fail($"IHDR declares {w}x{h} pixels, over the supported limit ({MaxDimension} per side, {MaxPixels} pixels)");
            Width = (int)w; Height = (int)h;
            bool ok = ColorType switch
            {
                0 => BitDepth is 1 or 2 or 4 or 8 or 16,
                3 => BitDepth is 1 or 2 or 4 or 8,
                2 or 4 or 6 => BitDepth is 8 or 16,
                _ => false,
            };
            if (!ok) throw Fail($"unsupported colour type {ColorType} with bit depth {BitDepth} (PNG allows gray 1/2/4/8/16, RGB 8/16, palette 1/2/4/8, gray+alpha 8/16, RGBA 8/16)");
            if (d[10] != 0) throw Fail($"unknown compression method {d[10]} in IHDR");
            if (d[11] != 0) throw Fail($"unknown filter method {d[11]} in IHDR");
            if (Interlace > 1) throw Fail($"unknown interlace method {Interlace} in IHDR");
        }

        private void ReadTransparency(ReadOnlySpan<byte> d, int pos)
        {
            switch (ColorType)
            {
                case 3:
                    if (Palette == null) throw Fail($"tRNS chunk at offset {pos} comes before PLTE");
                    if (d.Length > Palette.Length / 3) throw Fail($"tRNS chunk at offset {pos} has {d.Length} entries but the palette has {Palette.Length / 3}");
                    PaletteAlpha = new byte[Palette.Length / 3];
                    PaletteAlpha.AsSpan().Fill(255);
                    d.CopyTo(PaletteAlpha);
                    break;
                case 0:
                    if (d.Length != 2) throw Fail($"tRNS chunk at offset {pos} has length {d.Length}, expected 2 for a gray image");
                    TransparentKey = [BinaryPrimitives.ReadUInt16BigEndian(d)];
                    break;
                case 2:
                    if (d.Length != 6) throw Fail($"tRNS chunk at offset {pos} has length {d.Length}, expected 6 for an RGB image");
                    TransparentKey = [BinaryPrimitives.ReadUInt16BigEndian(d), BinaryPrimitives.ReadUInt16BigEndian(d[2..]), BinaryPrimitives.ReadUInt16BigEndian(d[4..])];
                    break;
                default:
                    break; // not allowed with an alpha channel; ignored as libpng does
            }
        }

        // Adam7 passes: x start, y start, x step, y step.
        private static readonly int[][] Adam7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];

        private long RowBytes(int w) => ((long)w * SourceChannels * BitDepth + 7) / 8;

        public Image DecodeImage(List<(int Start, int Length)> ranges, int width, int height)
        {
            long expected = 0;
            if (Interlace == 0) expected = height * (1 + RowBytes(width));
            else
                foreach (var p in Adam7)
                {
                    int pw = (width - p[0] + p[2] - 1) / p[2], ph = (height - p[1] + p[3] - 1) / p[3];
                    if (pw > 0 && ph > 0) expected += ph * (1 + RowBytes(pw));
                }
            long compressed = 0;
            foreach (var r in ranges) compressed += r.Length;
            // Deflate cannot expand more than about 1032:1, so fewer compressed bytes than this is certainly short.
            if (compressed * 1032 + 1024 < expected)
                throw Fail($"image data is {compressed} compressed bytes, far too few for {width}x{height} pixels ({expected} bytes after inflation); truncated or corrupt IDAT");
            var raw = Inflate(ranges, expected);

            int outC = OutChannels;
            bool wide = BitDepth == 16;
            var out8 = wide ? null : new byte[(long)width * height * outC];
            var out16 = wide ? new ushort[(long)width * height * outC] : null;
            int bpp = Math.Max(1, SourceChannels * BitDepth / 8);
            int offset = 0;
            if (Interlace == 0) offset = DecodePass(raw, offset, width, height, 0, 0, 1, 1, bpp, width, out8, out16);
            else
                foreach (var p in Adam7)
                {
                    int pw = (width - p[0] + p[2] - 1) / p[2], ph = (height - p[1] + p[3] - 1) / p[3];
                    if (pw > 0 && ph > 0) offset = DecodePass(raw, offset, pw, ph, p[0], p[1], p[2], p[3], bpp, width, out8, out16);
                }
            return wide ? new Image(width, height, outC, out16!) : new Image(width, height, outC, out8);
        }

        private byte[] Inflate(List<(int Start, int Length)> ranges, long expected)
        {
            var raw = new byte[expected];
            var joined = new MemoryStream();
            foreach (var r in ranges) joined.Write(bytes, r.Start, r.Length);
            joined.Position = 0;
            int got = 0;
            try
            {
                using var z = new ZLibStream(joined, CompressionMode.Decompress);
                while (got < raw.Length)
                {
                    int k = z.Read(raw, got, raw.Length - got);
                    if (k == 0) break;
                    got += k;
                }
            }
            catch (InvalidDataException e) { throw Fail($"corrupt zlib stream in IDAT after {got} of {expected} inflated bytes: {e.Message}", e); }
            if (got < raw.Length) throw Fail($"image data ends after {got} of {expected} bytes (truncated or corrupt IDAT)");
            return raw;
        }

        private int DecodePass(byte[] raw, int offset, int pw, int ph, int x0, int y0, int dx, int dy, int bpp, int width,
            byte[]? out8, ushort[]? out16)
        {
            int rowBytes = (int)RowBytes(pw);
            var prev = new byte[rowBytes];
            var cur = new byte[rowBytes];
            int outC = OutChannels;
            for (int r = 0; r < ph; r++)
            {
                int filter = raw[offset];
                raw.AsSpan(offset + 1, rowBytes).CopyTo(cur);
                offset += 1 + rowBytes;
                Unfilter(filter, cur, prev, bpp, r, y0 + r * dy);
                int y = y0 + r * dy;
                if (out8 != null && dx == 1 && BitDepth == 8 && ColorType != 3 && TransparentKey == null)
                {
                    cur.AsSpan(0, rowBytes).CopyTo(out8.AsSpan(y * width * outC));  // samples are already the output layout
                    (prev, cur) = (cur, prev);
                    continue;
                }
                for (int i = 0; i < pw; i++)
                {
                    int o = ((y * width) + x0 + i * dx) * outC;
                    EmitPixel(cur, i, o, out8, out16);
                }
                (prev, cur) = (cur, prev);
            }
            return offset;
        }

        private void Unfilter(int filter, byte[] cur, byte[] prev, int bpp, int passRow, int y)
        {
            int n = cur.Length;
            switch (filter)
            {
                case 0: break;
                case 1: for (int i = bpp; i < n; i++) cur[i] += cur[i - bpp]; break;
                case 2: for (int i = 0; i < n; i++) cur[i] += prev[i]; break;
                case 3:
                    for (int i = 0; i < bpp; i++) cur[i] += (byte)(prev[i] >> 1);
                    for (int i = bpp; i < n; i++) cur[i] += (byte)((cur[i - bpp] + prev[i]) >> 1);
                    break;
                case 4:
                    for (int i = 0; i < bpp; i++) cur[i] += prev[i];
                    for (int i = bpp; i < n; i++) cur[i] += PngFilters.Paeth(cur[i - bpp], prev[i], prev[i - bpp]);
                    break;
                default:
                    throw Fail($"bad filter type {filter} on row {passRow} (image row {y}){(Interlace == 1 ? " of an interlaced pass" : "")}; PNG defines 0..4");
            }
        }

        private int Sample(byte[] row, int index)
        {
            switch (BitDepth)
            {
                case 8: return row[index];
                case 16: return (row[2 * index] << 8) | row[2 * index + 1];
                default:
                {
                    int bit = index * BitDepth;
                    int shift = 8 - BitDepth - (bit & 7);
                    return (row[bit >> 3] >> shift) & ((1 << BitDepth) - 1);
                }
            }
        }

        private void EmitPixel(byte[] row, int i, int o, byte[]? out8, ushort[]? out16)
        {
            int sc = SourceChannels;
            if (ColorType == 3)
            {
                int idx = Sample(row, i);
                if (3 * idx + 2 >= Palette!.Length) throw Fail($"palette index {idx} out of range (palette has {Palette.Length / 3} entries)");
                out8![o] = Palette[3 * idx]; out8[o + 1] = Palette[3 * idx + 1]; out8[o + 2] = Palette[3 * idx + 2];
                if (PaletteAlpha != null) out8[o + 3] = idx < PaletteAlpha.Length ? PaletteAlpha[idx] : (byte)255;
                return;
            }
            if (out16 != null)
            {
                bool keyed = TransparentKey != null;
                for (int c = 0; c < sc; c++)
                {
                    int v = Sample(row, i * sc + c);
                    out16[o + c] = (ushort)v;
                    if (keyed && v != TransparentKey![c]) keyed = false;
                }
                if (TransparentKey != null) out16[o + sc] = keyed ? (ushort)0 : ushort.MaxValue;
                return;
            }
            {
                int scale = BitDepth switch { 1 => 255, 2 => 85, 4 => 17, _ => 1 };
                bool keyed = TransparentKey != null;
                for (int c = 0; c < sc; c++)
                {
                    int v = Sample(row, i * sc + c);
                    out8![o + c] = (byte)(v * scale);
                    if (keyed && v != TransparentKey![c]) keyed = false;
                }
                if (TransparentKey != null) out8![o + sc] = keyed ? (byte)0 : (byte)255;
            }
        }

        public List<PngFrame> DecodeAnimation()
        {
            var result = new List<PngFrame>();
            if (AnimationFrames < 0 || Frames.Count == 0)
            {
                result.Add(new PngFrame(DecodeImage(IdatRanges, Width, Height), 0, 0));
                return result;
            }
            if (Frames.Count != AnimationFrames)
                throw Fail($"acTL declares {AnimationFrames} frames but the file has {Frames.Count} fcTL chunks");
            Image? canvas = null;
            foreach (var fc in Frames)
            {
                if (fc.Data.Count == 0) throw Fail($"APNG frame {result.Count} (fcTL sequence {fc.Sequence}) has no image data");
                var frame = DecodeImage(fc.Data, fc.Width, fc.Height);
                canvas ??= frame.BitDepth == 16
                    ? new Image(Width, Height, frame.Channels, new ushort[(long)Width * Height * frame.Channels])
                    : new Image(Width, Height, frame.Channels);
                var before = fc.Dispose == 2 ? Copy(canvas) : null;
                Compose(canvas, frame, fc.X, fc.Y, fc.Blend == 1 && canvas.HasAlpha);
                result.Add(new PngFrame(Copy(canvas), fc.DelayNum, fc.DelayDen));
                bool first = result.Count == 1;
                if (fc.Dispose == 1 || (fc.Dispose == 2 && first)) ClearRegion(canvas, fc.X, fc.Y, fc.Width, fc.Height);
                else if (fc.Dispose == 2) canvas = before!;
            }
            return result;
        }

        private static Image Copy(Image im) => im.BitDepth == 16
            ? new Image(im.Width, im.Height, im.Channels, (ushort[])im.Data16.Clone())
            : new Image(im.Width, im.Height, im.Channels, (byte[])im.Data.Clone());

        private static void ClearRegion(Image canvas, int x0, int y0, int w, int h)
        {
            int c = canvas.Channels;
            for (int y = y0; y < y0 + h; y++)
            {
                int o = (y * canvas.Width + x0) * c;
                if (canvas.BitDepth == 16) canvas.Data16.AsSpan(o, w * c).Clear();
                else canvas.Data.AsSpan(o, w * c).Clear();
            }
        }

        // APNG blend_op OVER is Porter-Duff "over" with non-premultiplied alpha.
        private static void Compose(Image canvas, Image frame, int x0, int y0, bool over)
        {
            int c = canvas.Channels;
            double max = canvas.BitDepth == 16 ? 65535.0 : 255.0;
            for (int y = 0; y < frame.Height; y++)
                for (int x = 0; x < frame.Width; x++)
                {
                    int si = (y * frame.Width + x) * c, di = ((y0 + y) * canvas.Width + x0 + x) * c;
                    if (!over)
                    {
                        for (int k = 0; k < c; k++)
                            if (canvas.BitDepth == 16) canvas.Data16[di + k] = frame.Data16[si + k];
                            else canvas.Data[di + k] = frame.Data[si + k];
                        continue;
                    }
                    double sa = Get(frame, si + c - 1) / max, da = Get(canvas, di + c - 1) / max;
                    double oa = sa + da * (1 - sa);
                    for (int k = 0; k < c - 1; k++)
                    {
                        double v = oa == 0 ? 0 : (Get(frame, si + k) * sa + Get(canvas, di + k) * da * (1 - sa)) / oa;
                        Set(canvas, di + k, v);
                    }
                    Set(canvas, di + c - 1, oa * max);
                }
        }

        private static double Get(Image im, int i) => im.BitDepth == 16 ? im.Data16[i] : im.Data[i];

        private static void Set(Image im, int i, double v)
        {
            if (im.BitDepth == 16) im.Data16[i] = (ushort)Math.Clamp(Math.Round(v), 0, 65535);
            else im.Data[i] = (byte)Math.Clamp(Math.Round(v), 0, 255);
        }
    }
}
