using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using DiffusionSharp.IO;
using Xunit;

namespace DiffusionSharp.Tests.IO;

public class PngTests
{
    private static string Dir => Fixtures.PathOf("png");

    private static List<JsonElement> Manifest()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "manifest.json")));
        return doc.RootElement.EnumerateArray().Select(e => e.Clone()).ToList();
    }

    public static IEnumerable<object[]> StillFixtures() =>
        Manifest().Where(e => e.TryGetProperty("expected", out _)).Select(e => new object[] { e.GetProperty("file").GetString()! });

    private static void AssertSamples(Image img, string binFile, int bitDepth)
    {
        var raw = File.ReadAllBytes(Path.Combine(Dir, binFile));
        if (bitDepth == 16)
        {
            var exp = new ushort[raw.Length / 2];
            for (int i = 0; i < exp.Length; i++) exp[i] = BinaryPrimitives.ReadUInt16LittleEndian(raw.AsSpan(2 * i));
            Assert.Equal(exp, img.Data16);
        }
        else Assert.Equal(raw, img.Data);
    }

    [Theory]
    [MemberData(nameof(StillFixtures))]
    public void DecodesReferencePng(string file)
    {
        var e = Manifest().Single(m => m.GetProperty("file").GetString() == file);
        var img = Png.Read(Path.Combine(Dir, file));
        Assert.Equal(e.GetProperty("width").GetInt32(), img.Width);
        Assert.Equal(e.GetProperty("height").GetInt32(), img.Height);
        Assert.Equal(e.GetProperty("channels").GetInt32(), img.Channels);
        int depth = e.GetProperty("bitDepth").GetInt32();
        Assert.Equal(depth, img.BitDepth);
        AssertSamples(img, e.GetProperty("expected").GetString()!, depth);
    }

    [Fact]
    public void FixturesCoverEveryFormatFeature()
    {
        // Guards the fixture set itself: each colour type/bit depth, interlace and all five filter types appear.
        var seen = new HashSet<string>();
        var filters = new HashSet<int>();
        foreach (var e in Manifest())
        {
            var bytes = File.ReadAllBytes(Path.Combine(Dir, e.GetProperty("file").GetString()!));
            int ct = bytes[25], depth = bytes[24], interlace = bytes[28];
            seen.Add($"{ct}/{depth}/{interlace}");
            if (interlace == 0) filters.UnionWith(RowFilters(bytes));
        }
        foreach (var combo in new[] { "0/1", "0/2", "0/4", "0/8", "0/16", "2/8", "2/16", "3/1", "3/2", "3/4", "3/8", "4/8", "4/16", "6/8", "6/16" })
        {
            Assert.Contains(combo + "/0", seen);
            Assert.Contains(combo + "/1", seen);
        }
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, filters.Order().ToArray());
    }

    // Filter byte of each row of a non-interlaced PNG (inflated independently of the decoder's row logic).
    private static IEnumerable<int> RowFilters(byte[] png)
    {
        int w = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)), h = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20));
        int depth = png[24], ct = png[25];
        int ch = ct switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        int rowBytes = (w * ch * depth + 7) / 8;
        var idat = new MemoryStream();
        int pos = 8;
        while (pos < png.Length)
        {
            int len = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            if (Encoding.ASCII.GetString(png, pos + 4, 4) == "IDAT") idat.Write(png, pos + 8, len);
            pos += 12 + len;
        }
        idat.Position = 0;
        var raw = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionMode.Decompress)) z.CopyTo(raw);
        var r = raw.ToArray();
        for (int y = 0; y < h; y++) yield return r[y * (rowBytes + 1)];
    }

    [Fact]
    public void DecodesPillowApngFrames()
    {
        var e = Manifest().Single(m => m.GetProperty("file").GetString() == "pil_apng.png");
        var frames = Png.ReadFrames(Path.Combine(Dir, "pil_apng.png"));
        var expected = e.GetProperty("frames").EnumerateArray().ToList();
        Assert.Equal(expected.Count, frames.Count);
        for (int k = 0; k < frames.Count; k++)
        {
            AssertSamples(frames[k].Image, expected[k].GetProperty("expected").GetString()!, 8);
            Assert.Equal(expected[k].GetProperty("delayMs").GetInt32() / 1000.0, frames[k].DelaySeconds, 6);
        }
        // The default image is frame 0.
        AssertSamples(Png.Read(Path.Combine(Dir, "pil_apng.png")), expected[0].GetProperty("expected").GetString()!, 8);
    }

    private static Image RandomImage(int w, int h, int c, int depth, int seed)
    {
        var rng = new Random(seed);
        if (depth == 16)
        {
            var d = new ushort[w * h * c];
            for (int i = 0; i < d.Length; i++) d[i] = (ushort)(i % 7 == 0 ? rng.Next(65536) : (i * 37) % 65536);
            return new Image(w, h, c, d);
        }
        var b = new byte[w * h * c];
        for (int i = 0; i < b.Length; i++) b[i] = (byte)(i % 5 == 0 ? rng.Next(256) : (i / c + (i / (w * c)) * 3) % 256);
        return new Image(w, h, c, b);
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(2, 8)]
    [InlineData(3, 8)]
    [InlineData(4, 8)]
    [InlineData(1, 16)]
    [InlineData(4, 16)]
    public void EncoderRoundTripsEveryFilterMode(int channels, int depth)
    {
        var img = RandomImage(29, 17, channels, depth, channels * 100 + depth);
        foreach (var mode in Enum.GetValues<PngFilterMode>())
        {
            var back = Png.Decode(PngEncoder.Encode(img, mode), $"encoded {mode}");
            Assert.Equal(img.Channels, back.Channels);
            Assert.Equal(img.BitDepth, back.BitDepth);
            if (depth == 16) Assert.Equal(img.Data16, back.Data16);
            else Assert.Equal(img.Data, back.Data);
        }
    }

    [Fact]
    public void AdaptiveFilterPicksTheCheapestRowFilter()
    {
        // A horizontal gradient favours Sub, a vertical one Up; adaptive must not do worse than any fixed filter.
        var img = new Image(64, 64, 1);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++) img.Data[y * 64 + x] = (byte)(y < 32 ? x * 3 : (y * 5 + (x & 1) * 90));
        var filters = RowFilters(PngEncoder.Encode(img, PngFilterMode.Adaptive)).ToArray();
        Assert.Equal(1, filters[0]);    // first row x*3 (nothing above): Sub leaves constant 3s
        Assert.Equal(2, filters[10]);   // identical to the row above: Up leaves zeros
        Assert.Equal(2, filters[40]);   // rows repeating the row above plus 5: Up leaves constant 5s
        var adaptive = PngEncoder.Encode(img, PngFilterMode.Adaptive).Length;
        Assert.True(adaptive <= PngEncoder.Encode(img, PngFilterMode.None).Length);
    }

    [Fact]
    public void ApngWriterRoundTrips()
    {
        var w = new ApngWriter(10, 6, 3, loops: 2);
        var frames = Enumerable.Range(0, 4).Select(k => RandomImage(10, 6, 3, 8, 50 + k)).ToList();
        for (int k = 0; k < frames.Count; k++) w.AddFrame(frames[k], 40 * (k + 1));
        var bytes = w.ToArray();
        var back = Png.DecodeFrames(bytes, "apng");
        Assert.Equal(4, back.Count);
        for (int k = 0; k < 4; k++)
        {
            Assert.Equal(frames[k].Data, back[k].Image.Data);
            Assert.Equal(0.04 * (k + 1), back[k].DelaySeconds, 9);
        }
        Assert.Equal(frames[0].Data, Png.Decode(bytes).Data);
        Assert.Throws<ArgumentException>(() => w.AddFrame(RandomImage(10, 6, 1, 8, 1)));
    }

    [Fact]
    public void ApngFramesFromBatchTensors()
    {
        var w = new ApngWriter();
        var g = new DiffusionSharp.Tensors.Generator(5);
        var batches = Enumerable.Range(0, 3).Select(_ => DiffusionSharp.Tensors.Tensor.Rand(g, 4, 3, 5, 5)).ToList();
        foreach (var b in batches) w.AddFrame(b, 50, nrow: 2, padding: 1);
        Assert.Equal((13, 13, 3), (w.Width, w.Height, w.Channels));
        var frames = Png.DecodeFrames(w.ToArray());
        for (int k = 0; k < 3; k++) Assert.Equal(ImageGrid.Make(batches[k], 2, 1).Data, frames[k].Image.Data);
    }

    [Fact]
    public void TensorConversionMapsMinusOneToOneOntoFullRange()
    {
        var img = new Image(2, 1, 3, new byte[] { 0, 128, 255, 10, 20, 30 });
        var t = img.ToTensor();
        Assert.Equal(new[] { 3, 1, 2 }, t.Shape.ToArray());
        Assert.Equal(-1f, t.Span[0]);             // c0 x0
        Assert.Equal(10 / 127.5f - 1, t.Span[1], 6); // c0 x1
        Assert.Equal(1f, t.Span[4]);              // c2 x0
        Assert.Equal(img.Data, Image.FromTensor(t).Data);
        var clamped = Image.FromTensor(DiffusionSharp.Tensors.Tensor.FromArray(new[] { -3f, 0f, 7f, float.NaN }, 1, 4));
        Assert.Equal(new byte[] { 0, 128, 255, 0 }, clamped.Data);
    }

    [Fact]
    public void SixteenBitSamplesScaleToTensorAndEightBit()
    {
        var img = new Image(3, 1, 1, new ushort[] { 0, 32768, 65535 });
        Assert.Equal(new[] { -1f, 32768 * 2f / 65535 - 1, 1f }, img.ToTensor().ToArray());
        Assert.Equal(new byte[] { 0, 128, 255 }, img.To8Bit().Data);   // round(v * 255 / 65535)
        var rgb = new Image(1, 1, 3, new byte[] { 255, 0, 0 });
        Assert.Equal(76, rgb.ConvertChannels(1).Data[0]);              // 0.299 * 255 = 76.2
        Assert.Equal(new byte[] { 255, 0, 0, 255 }, rgb.ConvertChannels(4).Data);
        var ga = new Image(1, 1, 2, new byte[] { 9, 3 });
        Assert.Equal(new byte[] { 9, 9, 9 }, ga.ConvertChannels(3).Data);
    }

    // ---------- corrupt input ----------

    private static byte[] Chunk(string type, byte[] data)
    {
        var ms = new MemoryStream();
        PngEncoder.WriteChunk(ms, type, data);
        return ms.ToArray();
    }

    private static byte[] Build(params byte[][] chunks)
    {
        var ms = new MemoryStream();
        ms.Write(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A });
        foreach (var c in chunks) ms.Write(c);
        return ms.ToArray();
    }

    private static byte[] Ihdr(int w, int h, int depth, int ct, int interlace = 0)
    {
        var d = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(d, w);
        BinaryPrimitives.WriteInt32BigEndian(d.AsSpan(4), h);
        d[8] = (byte)depth; d[9] = (byte)ct; d[12] = (byte)interlace;
        return Chunk("IHDR", d);
    }

    private static byte[] Zlib(byte[] raw)
    {
        var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Fastest, leaveOpen: true)) z.Write(raw);
        return ms.ToArray();
    }

    private static string Fails(byte[] png, string name = "bad.png")
    {
        var ex = Assert.Throws<InvalidDataException>(() => Png.Decode(png, name));
        Assert.StartsWith(name + ":", ex.Message);
        return ex.Message;
    }

    [Fact]
    public void EveryTruncationIsReportedWithoutCrashing()
    {
        var png = PngEncoder.Encode(RandomImage(7, 5, 4, 8, 3));
        for (int n = 0; n < png.Length; n++) Fails(png[..n], $"cut{n}.png");
        Assert.Contains("truncated chunk 'IDAT' at offset 33", Fails(png[..50]));
        Assert.Contains("without an IEND", Fails(png[..(png.Length - 12)]));
        Assert.Contains("truncated chunk header at offset 33", Fails(png[..36]));
    }

    [Fact]
    public void CrcMismatchNamesChunkAndOffset()
    {
        var png = PngEncoder.Encode(RandomImage(7, 5, 3, 8, 4));
        int idatLen = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(33));
        png[33 + 8 + idatLen] ^= 0x01;   // flip a bit of the IDAT CRC
        Assert.Contains("CRC mismatch in chunk 'IDAT' at offset 33", Fails(png));
        var png2 = PngEncoder.Encode(RandomImage(7, 5, 3, 8, 4));
        png2[20] ^= 0x40;                // a data byte of IHDR
        Assert.Contains("CRC mismatch in chunk 'IHDR' at offset 8", Fails(png2));
    }

    [Fact]
    public void StructuralErrorsAreExplained()
    {
        var ok = PngEncoder.Encode(RandomImage(4, 4, 1, 8, 5));
        var bad = (byte[])ok.Clone(); bad[1] = (byte)'J';
        Assert.Contains("bad signature", Fails(bad));
        Assert.Contains("bad signature", Fails(Encoding.ASCII.GetBytes("GIF89a....")));
        Assert.Contains("empty file", Fails(Array.Empty<byte>()));
        Assert.Contains("shorter than the 8-byte PNG signature", Fails(ok[..5]));
        var idat = Chunk("IDAT", Zlib(new byte[5 * 4]));
        var iend = Chunk("IEND", Array.Empty<byte>());
        Assert.Contains("missing IHDR", Fails(Build(idat, iend)));
        Assert.Contains("missing IDAT", Fails(Build(Ihdr(4, 4, 8, 0), iend)));
        Assert.Contains("colour type 2 with bit depth 4", Fails(Build(Ihdr(4, 4, 4, 2), idat, iend)));
        Assert.Contains("colour type 5", Fails(Build(Ihdr(4, 4, 8, 5), idat, iend)));
        Assert.Contains("no PLTE", Fails(Build(Ihdr(4, 4, 8, 3), idat, iend)));
        Assert.Contains("unsupported critical chunk 'ABCD'", Fails(Build(Ihdr(4, 4, 8, 0), Chunk("ABCD", new byte[3]), idat, iend)));
        // filter type 7 on the first row
        var raw = new byte[5 * 4]; raw[0] = 7;
        Assert.Contains("bad filter type 7 on row 0", Fails(Build(Ihdr(4, 4, 8, 0), Chunk("IDAT", Zlib(raw)), iend)));
        // too little image data
        Assert.Contains("ends after 10 of 20 bytes", Fails(Build(Ihdr(4, 4, 8, 0), Chunk("IDAT", Zlib(new byte[10])), iend)));
        Assert.Contains("corrupt zlib stream", Fails(Build(Ihdr(4, 4, 8, 0), Chunk("IDAT", new byte[] { 0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF }), iend)));
        // palette index past the palette
        var pal = Chunk("PLTE", new byte[] { 1, 2, 3, 4, 5, 6 });
        var idx = new byte[5 * 4]; idx[3] = 9;
        Assert.Contains("palette index 9 out of range (palette has 2 entries)", Fails(Build(Ihdr(4, 4, 8, 3), pal, Chunk("IDAT", Zlib(idx)), iend)));
    }

    [Fact]
    public void HostileDimensionsDoNotAllocate()
    {
        var iend = Chunk("IEND", Array.Empty<byte>());
        var idat = Chunk("IDAT", Zlib(new byte[64]));
        Assert.Contains("over the supported limit", Fails(Build(Ihdr(1 << 30, 1 << 30, 16, 6), idat, iend)));
        Assert.Contains("over the supported limit", Fails(Build(Ihdr(100000, 1, 8, 0), idat, iend)));
        // Within limits but a tiny IDAT: rejected before inflating into a 400 MB buffer.
        Assert.Contains("far too few", Fails(Build(Ihdr(8192, 8192, 16, 6), idat, iend)));
    }

    [Fact]
    public void MissingFileNamesThePath()
    {
        var p = Path.Combine(Path.GetTempPath(), "no-such-dir-ds", "x.png");
        var ex = Assert.Throws<FileNotFoundException>(() => Png.Read(p));
        Assert.Contains(p, ex.Message);
    }
}

public class PngFuzzTests
{
    // Rewrites every chunk CRC so corruption reaches the chunk parsers and the pixel decoder.
    /// <summary>Copies of a fixture PNG with 1-4 random bit flips past the signature; every second one with its chunk CRCs repaired so the decoder reaches the data.</summary>
    internal static IEnumerable<byte[]> Corruptions(string file, int trials)
    {
        var original = File.ReadAllBytes(Path.Combine(Fixtures.PathOf("png"), file));
        var rng = new Random(file.Length);
        for (int trial = 0; trial < trials; trial++)
        {
            var b = (byte[])original.Clone();
            int flips = 1 + rng.Next(4);
            for (int k = 0; k < flips; k++) b[8 + rng.Next(b.Length - 8)] ^= (byte)(1 << rng.Next(8));
            if (trial % 2 == 0) FixCrcs(b);
            yield return b;
        }
    }

    internal static void FixCrcs(byte[] png)
    {
        int pos = 8;
        while (pos + 12 <= png.Length)
        {
            long len = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos));
            if (pos + 12 + len > png.Length) return;
            BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(pos + 8 + (int)len), Crc32.Compute(png.AsSpan(pos + 4, (int)len + 4)));
            pos += 12 + (int)len;
        }
    }

    [Theory]
    [InlineData("pal4_trns_i.png")]
    [InlineData("filt_rgb16.png")]
    [InlineData("gray2_i.png")]
    [InlineData("pil_apng.png")]
    public void RandomCorruptionEitherDecodesOrThrowsInvalidData(string file)
    {
        foreach (var b in Corruptions(file, 300))
        {
            try
            {
                Png.Decode(b, "fuzz.png");
                Png.DecodeFrames(b, "fuzz.png");
            }
            catch (InvalidDataException e)
            {
                Assert.StartsWith("fuzz.png:", e.Message);
            }
        }
    }
}
