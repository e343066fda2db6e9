using System.Buffers.Binary;
using System.IO.Compression;

namespace DiffusionSharp.Data;

/// <summary>Element types of the IDX format (the third magic byte).</summary>
public enum IdxType : byte
{
    /// <summary>Unsigned byte.</summary>
    UInt8 = 0x08,
    /// <summary>Signed byte.</summary>
    Int8 = 0x09,
    /// <summary>Big-endian 16-bit integer.</summary>
    Int16 = 0x0B,
    /// <summary>Big-endian 32-bit integer.</summary>
    Int32 = 0x0C,
    /// <summary>Big-endian float32.</summary>
    Float32 = 0x0D,
    /// <summary>Big-endian float64.</summary>
    Float64 = 0x0E,
}

/// <summary>An IDX array: element type, dimensions and the raw big-endian element bytes.</summary>
public sealed record IdxArray(IdxType Type, int[] Dims, byte[] Raw)
{
    /// <summary>Number of elements.</summary>
    public long Count => Dims.Aggregate(1L, (a, d) => a * d);

    /// <summary>The elements as floats.</summary>
    public float[] ToFloat()
    {
        var r = new float[Count];
        for (int i = 0; i < r.Length; i++)
            r[i] = Type switch
            {
                IdxType.UInt8 => Raw[i],
                IdxType.Int8 => (sbyte)Raw[i],
                IdxType.Int16 => BinaryPrimitives.ReadInt16BigEndian(Raw.AsSpan(2 * i)),
                IdxType.Int32 => BinaryPrimitives.ReadInt32BigEndian(Raw.AsSpan(4 * i)),
                IdxType.Float32 => BinaryPrimitives.ReadSingleBigEndian(Raw.AsSpan(4 * i)),
                _ => (float)BinaryPrimitives.ReadDoubleBigEndian(Raw.AsSpan(8 * i)),
            };
        return r;
    }
}

/// <summary>Reader and writer for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed).</summary>
public static class Idx
{
    /// <summary>Largest data size in bytes accepted (256 MiB; guards against absurd dimensions in a corrupt header and gzip bombs).</summary>
    public const long MaxElements = 1L << 28;

    /// <summary>Bytes per element of <paramref name="type"/>.</summary>
    public static int ElementSize(IdxType type) => type switch
    {
        IdxType.UInt8 or IdxType.Int8 => 1,
        IdxType.Int16 => 2,
        IdxType.Int32 or IdxType.Float32 => 4,
        IdxType.Float64 => 8,
        _ => throw new ArgumentException($"Unknown IDX type 0x{(byte)type:X2}."),
    };

    /// <summary>Reads an IDX file; gzip compression is detected from the content, not the name.</summary>
    public static IdxArray Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX file not found: {path}", path);
        using var file = File.OpenRead(path);
        Span<byte> probe = stackalloc byte[2];
        int got = file.ReadAtLeast(probe, 2, throwOnEndOfStream: false);
        file.Position = 0;
        bool gz = got == 2 && probe[0] == 0x1F && probe[1] == 0x8B;
        Stream s = gz ? new GZipStream(file, CompressionMode.Decompress) : file;
        string where = gz ? " (after gzip decompression)" : "";
        try
        {
            var head = new byte[4];
            int n = ReadFull(s, head);
            if (n < 4) throw new InvalidDataException($"{path}: truncated: {n} bytes{where}, shorter than the 4-byte IDX magic number");
            if (head[0] != 0 || head[1] != 0 || !Enum.IsDefined((IdxType)head[2]) || head[3] == 0)
                throw new InvalidDataException($"{path}: bad IDX magic number {Convert.ToHexString(head)}{where}; expected 0000TTNN with type TT in 08/09/0B/0C/0D/0E and NN >= 1 dimensions");
            var type = (IdxType)head[2];
            int ndim = head[3];
            var dimBytes = new byte[4 * ndim];
            n = ReadFull(s, dimBytes);
            if (n < dimBytes.Length) throw new InvalidDataException($"{path}: truncated header{where}: {ndim} dimensions need {4 + dimBytes.Length} bytes, file has {4 + n}");
            var dims = new int[ndim];
            long count = 1;
            for (int i = 0; i < ndim; i++)
            {
                uint d = BinaryPrimitives.ReadUInt32BigEndian(dimBytes.AsSpan(4 * i));
                if (d > int.MaxValue) throw new InvalidDataException($"{path}: dimension {i} is {d}, too large");
                dims[i] = (int)d;
                count *= d;
                if (count * ElementSize(type) > MaxElements)
                    throw new InvalidDataException($"{path}: dimensions [{string.Join(", ", dims.Take(i + 1))}...] exceed the supported size of {MaxElements >> 20} MiB of data");
            }
            long expected = count * ElementSize(type);
            int headerLen = 4 + 4 * ndim;
            if (!gz && file.Length - headerLen < expected)
                throw new InvalidDataException($"{path}: truncated: dims [{string.Join(", ", dims)}] of {type} need {expected} data bytes after the {headerLen}-byte header (file size {headerLen + expected}), but the file is {file.Length} bytes");
            // Grow the buffer as data arrives so a lying header in a small gzip file cannot force a huge allocation.
            var ms = new MemoryStream((int)Math.Min(expected, 1 << 24));
            var buf = new byte[1 << 16];
            while (ms.Length < expected)
            {
                int k = s.Read(buf, 0, (int)Math.Min(buf.Length, expected - ms.Length));
                if (k == 0) break;
                ms.Write(buf, 0, k);
            }
            if (ms.Length < expected)
                throw new InvalidDataException($"{path}: truncated{where}: dims [{string.Join(", ", dims)}] of {type} need {expected} data bytes after the {headerLen}-byte header, found {ms.Length} (data ends at offset {headerLen + ms.Length})");
            if (s.Read(buf, 0, 1) != 0)
                throw new InvalidDataException($"{path}: {(gz ? "decompressed data" : "file")} is longer than the header's dims [{string.Join(", ", dims)}] of {type} allow ({headerLen + expected} bytes); wrong dimensions?");
            return new IdxArray(type, dims, ms.Length == ms.Capacity ? ms.GetBuffer() : ms.ToArray());
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{path}: corrupt or truncated gzip stream: {e.Message}", e);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: gzip stream ends early: {e.Message}", e);
        }
        finally
        {
            if (gz) s.Dispose();
        }
    }

    private static int ReadFull(Stream s, Span<byte> dest) => s.ReadAtLeast(dest, dest.Length, throwOnEndOfStream: false);

    /// <summary>Writes an IDX file (gzip-compressed when <paramref name="gzip"/>).</summary>
    public static void Write(string path, IdxArray array, bool gzip = false)
    {
        if (array.Raw.LongLength != array.Count * ElementSize(array.Type))
            throw new ArgumentException($"IDX data has {array.Raw.LongLength} bytes; dims [{string.Join(", ", array.Dims)}] of {array.Type} need {array.Count * ElementSize(array.Type)}.");
        using var file = File.Create(path);
        using Stream s = gzip ? new GZipStream(file, CompressionLevel.Fastest) : file;
        var head = new byte[4 + 4 * array.Dims.Length];
        head[2] = (byte)array.Type;
        head[3] = (byte)array.Dims.Length;
        for (int i = 0; i < array.Dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(head.AsSpan(4 + 4 * i), array.Dims[i]);
        s.Write(head);
        s.Write(array.Raw);
    }
}
