using System.Buffers.Binary;
using DiffusionSharp.Data;
using Xunit;

namespace DiffusionSharp.Tests.Data;

public class IdxTests
{
    // An IDX file written byte by byte from the format description (independent of Idx.Write).
    internal static byte[] RawIdx(byte type, int[] dims, byte[] data)
    {
        var b = new byte[4 + 4 * dims.Length + data.Length];
        b[2] = type; b[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(b, 4 + 4 * dims.Length);
        return b;
    }

    internal static byte[] Gzip(byte[] data)
    {
        var ms = new MemoryStream();
        using (var z = new System.IO.Compression.GZipStream(ms, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true)) z.Write(data);
        return ms.ToArray();
    }

    [Fact]
    public void ReadsRawAndGzipFiles()
    {
        using var dir = new TempDir();
        var data = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)(i * 7)).ToArray();
        File.WriteAllBytes(dir.File("a-idx3-ubyte"), RawIdx(0x08, [2, 3, 4], data));
        File.WriteAllBytes(dir.File("a.gz"), Gzip(RawIdx(0x08, [2, 3, 4], data)));
        foreach (var name in new[] { "a-idx3-ubyte", "a.gz" })
        {
            var a = Idx.Read(dir.File(name));
            Assert.Equal(IdxType.UInt8, a.Type);
            Assert.Equal(new[] { 2, 3, 4 }, a.Dims);
            Assert.Equal(data, a.Raw);
        }
        // big-endian int32 and float32 elements
        var ints = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(ints, -5);
        BinaryPrimitives.WriteInt32BigEndian(ints.AsSpan(4), 70000);
        File.WriteAllBytes(dir.File("i"), RawIdx(0x0C, [2], ints));
        Assert.Equal(new[] { -5f, 70000f }, Idx.Read(dir.File("i")).ToFloat());
        var fl = new byte[4];
        BinaryPrimitives.WriteSingleBigEndian(fl, 1.25f);
        File.WriteAllBytes(dir.File("f"), RawIdx(0x0D, [1, 1], fl));
        Assert.Equal(new[] { 1.25f }, Idx.Read(dir.File("f")).ToFloat());
    }

    [Fact]
    public void WriterMatchesFormat()
    {
        using var dir = new TempDir();
        var arr = new IdxArray(IdxType.UInt8, [3, 2], [1, 2, 3, 4, 5, 6]);
        Idx.Write(dir.File("w"), arr);
        Assert.Equal(RawIdx(0x08, [3, 2], [1, 2, 3, 4, 5, 6]), File.ReadAllBytes(dir.File("w")));
        Idx.Write(dir.File("w.gz"), arr, gzip: true);
        Assert.Equal(arr.Raw, Idx.Read(dir.File("w.gz")).Raw);
    }

    [Fact]
    public void TruncatedFilesReportPathAndSizes()
    {
        using var dir = new TempDir();
        var full = RawIdx(0x08, [5, 4, 4], new byte[80]);
        for (int cut = 0; cut < full.Length; cut += 7)
        {
            var p = dir.File($"cut{cut}");
            File.WriteAllBytes(p, full[..cut]);
            var ex = Assert.Throws<InvalidDataException>(() => Idx.Read(p));
            Assert.StartsWith(p + ":", ex.Message);
            Assert.Contains("truncated", ex.Message);
        }
        File.WriteAllBytes(dir.File("t"), full[..50]);
        var m = Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("t"))).Message;
        Assert.Contains("need 80 data bytes after the 16-byte header", m);
        Assert.Contains("50 bytes", m);
        // gzip: cut the compressed stream and cut the content before compressing
        var gz = Gzip(full);
        File.WriteAllBytes(dir.File("g1.gz"), gz[..(gz.Length / 2)]);
        Assert.StartsWith(dir.File("g1.gz") + ":", Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("g1.gz"))).Message);
        File.WriteAllBytes(dir.File("g2.gz"), Gzip(full[..60]));
        var m2 = Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("g2.gz"))).Message;
        Assert.Contains("found 44 (data ends at offset 60)", m2);
    }

    [Fact]
    public void WrongMagicAndExtraDataAreRejected()
    {
        using var dir = new TempDir();
        var bad = RawIdx(0x08, [2], [1, 2]);
        bad[2] = 0x07;
        File.WriteAllBytes(dir.File("m"), bad);
        Assert.Contains("bad IDX magic number 00000701", Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("m"))).Message);
        File.WriteAllBytes(dir.File("png"), [0x89, 0x50, 0x4E, 0x47, 0, 0, 0, 0]);
        Assert.Contains("bad IDX magic", Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("png"))).Message);
        File.WriteAllBytes(dir.File("long"), RawIdx(0x08, [2], [1, 2, 3]));
        Assert.Contains("longer than", Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("long"))).Message);
        File.WriteAllBytes(dir.File("huge"), RawIdx(0x08, [65536, 65536, 65536], [1]));
        Assert.Contains("exceed", Assert.Throws<InvalidDataException>(() => Idx.Read(dir.File("huge"))).Message);
        Assert.Throws<FileNotFoundException>(() => Idx.Read(dir.File("none")));
    }
}
