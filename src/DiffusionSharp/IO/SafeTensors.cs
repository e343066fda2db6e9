using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.IO;

/// <summary>One tensor entry of a safetensors file, converted to float32; <see cref="DType"/> is the stored dtype name.</summary>
public sealed record SafeTensorEntry(string Name, string DType, int[] Shape, float[] Data);

/// <summary>A tensor to write with its own on-disk dtype.</summary>
public readonly record struct SafeTensorWriteItem(string Name, Tensor Tensor, SafeTensorDType DType = SafeTensorDType.F32);

/// <summary>
/// Reader and writer for the safetensors format: a u64 little-endian header length N, N bytes of JSON
/// <c>{name: {dtype, shape, data_offsets}, "__metadata__": {..}}</c>, then the raw little-endian data, covered exactly by the tensors.
/// Every malformed input raises a <see cref="InvalidDataException"/> naming the file and the problem.
/// </summary>
public static class SafeTensors
{
    /// <summary>Reads every tensor in <paramref name="path"/> as float32 tensors keyed by name (integers and halves are converted).</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.ReadAll();
    }

    /// <summary>Reads every tensor of an in-memory safetensors image.</summary>
    public static Dictionary<string, Tensor> Load(ReadOnlyMemory<byte> bytes, string source = "<memory>")
    {
        using var f = SafeTensorsFile.Open(bytes, source);
        return f.ReadAll();
    }

    /// <summary>Reads and validates only the header (names, dtypes, shapes, offsets, metadata); the data is not read.</summary>
    public static SafeTensorsHeader ReadHeader(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        return f.Header;
    }

    /// <summary>Reads every entry of a safetensors file, in header order, keeping the stored dtype name.</summary>
    public static List<SafeTensorEntry> ReadEntries(string path)
    {
        using var f = SafeTensorsFile.Open(path);
        var list = new List<SafeTensorEntry>(f.Header.Tensors.Count);
        foreach (var info in f.Header.Tensors)
        {
            using var t = f.Read(info);
            list.Add(new SafeTensorEntry(info.Name, info.DType.HeaderName(), (int[])info.Shape.Clone(), t.ToArray()));
        }
        return list;
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> as <paramref name="dtype"/>, sorted as the reference implementation does
    /// (larger dtypes first, then by name), atomically (temporary file in the same directory, flushed, then renamed).
    /// </summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, SafeTensorDType dtype = SafeTensorDType.F32,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        Save(path, SortedLikeUpstream(tensors.Select(kv => new SafeTensorWriteItem(kv.Key, kv.Value, dtype))), metadata);
    }

    /// <summary>Writes <paramref name="tensors"/> in the given order as <paramref name="dtype"/>, atomically.</summary>
    public static void Save(string path, IReadOnlyList<KeyValuePair<string, Tensor>> tensors, SafeTensorDType dtype = SafeTensorDType.F32,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        Save(path, tensors.Select(kv => new SafeTensorWriteItem(kv.Key, kv.Value, dtype)).ToList(), metadata);
    }

    /// <summary>Writes <paramref name="items"/> in the given order, each with its own dtype, atomically.</summary>
    public static void Save(string path, IReadOnlyList<SafeTensorWriteItem> items, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(items);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full) ?? ".";
        var temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Write(fs, items, metadata);
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Serialises <paramref name="items"/> in the given order to a byte array.</summary>
    public static byte[] Serialize(IReadOnlyList<SafeTensorWriteItem> items, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var ms = new MemoryStream();
        Write(ms, items, metadata);
        return ms.ToArray();
    }

    /// <summary>Writes a safetensors image of <paramref name="items"/> (in the given order) to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, IReadOnlyList<SafeTensorWriteItem> items, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(items);
        var header = BuildHeader(items, metadata);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        stream.Write(len);
        stream.Write(header);
        const int ChunkElements = 1 << 18;
        byte[]? buffer = null;
        try
        {
            foreach (var item in items)
            {
                var data = item.Tensor.Span;
                if (item.DType == SafeTensorDType.F32 && BitConverter.IsLittleEndian)
                {
                    stream.Write(MemoryMarshal.AsBytes(data));
                    continue;
                }
                int es = item.DType.SizeOf();
                buffer ??= ArrayPool<byte>.Shared.Rent(Math.Min(ChunkElements, Math.Max(1, items.Max(x => x.Tensor.Size))) * 8);  // reused across tensors
                for (int start = 0; start < data.Length; start += ChunkElements)
                {
                    int n = Math.Min(ChunkElements, data.Length - start);
                    var dst = buffer.AsSpan(0, n * es);
                    DTypeConversion.Encode(item.DType, data.Slice(start, n), dst);
                    stream.Write(dst);
                }
            }
        }
        finally
        {
            if (buffer != null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static byte[] BuildHeader(IReadOnlyList<SafeTensorWriteItem> items, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var it in items)
        {
            if (it.Name is null) throw new ArgumentException("A tensor name is null.");
            if (it.Tensor is null) throw new ArgumentException($"Tensor '{it.Name}' is null.");
            if (it.Name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor.");
            if (!names.Add(it.Name)) throw new ArgumentException($"Tensor name '{it.Name}' is given twice.");
            if (!DTypeConversion.CanEncode(it.DType))
                throw new ArgumentException($"Tensor '{it.Name}': writing {it.DType.HeaderName()} is not supported; use F32, F16 or BF16.");
        }
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (metadata != null)
            {
                w.WriteStartObject("__metadata__");
                foreach (var kv in metadata)
                {
                    if (kv.Value is null) throw new ArgumentException($"Metadata value for '{kv.Key}' is null; safetensors metadata holds strings.");
                    w.WriteString(kv.Key, kv.Value);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var it in items)
            {
                long bytes = (long)it.Tensor.Size * it.DType.SizeOf();
                w.WriteStartObject(it.Name);
                w.WriteString("dtype", it.DType.HeaderName());
                w.WriteStartArray("shape");
                foreach (var d in it.Tensor.Shape.Dims) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int len = (int)ms.Length;
        int padded = (len + 7) / 8 * 8;   // keeps the data region 8-byte aligned
        var header = new byte[padded];
        ms.GetBuffer().AsSpan(0, len).CopyTo(header);
        header.AsSpan(len).Fill((byte)' ');
        return header;
    }

    /// <summary>The items in the reference writer's order: larger dtypes first (keeps every tensor aligned), then by name.</summary>
    public static List<SafeTensorWriteItem> SortedLikeUpstream(IEnumerable<SafeTensorWriteItem> items)
    {
        var list = items.ToList();
        list.Sort(CompareUpstream);
        return list;
    }

    // Larger element sizes first (keeps every tensor aligned), then names by UTF-8 bytes, as the reference writer sorts.
    private static int CompareUpstream(SafeTensorWriteItem a, SafeTensorWriteItem b)
    {
        int c = b.DType.SizeOf().CompareTo(a.DType.SizeOf());
        if (c != 0) return c;
        return Encoding.UTF8.GetBytes(a.Name).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b.Name));
    }
}

/// <summary>An open safetensors file (or in-memory image) whose header is validated; tensors are read on demand.</summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle? _handle;
    private readonly ReadOnlyMemory<byte> _memory;
    private readonly long _length;

    /// <summary>The validated header.</summary>
    public SafeTensorsHeader Header { get; }

    /// <summary>The file path (or "&lt;memory&gt;").</summary>
    public string Source { get; }

    private SafeTensorsFile(string source, Microsoft.Win32.SafeHandles.SafeFileHandle? handle, ReadOnlyMemory<byte> memory, long length)
    {
        Source = source;
        _handle = handle;
        _memory = memory;
        _length = length;
        Span<byte> prefix = stackalloc byte[8];
        if (length >= 8) ReadAt(0, prefix);
        long n = SafeTensorsHeader.ParseLength(source, prefix, length);
        var json = new byte[n];
        ReadAt(8, json);
        Header = SafeTensorsHeader.Parse(source, json, length);
    }

    /// <summary>Opens <paramref name="path"/> and validates its header.</summary>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            return new SafeTensorsFile(path, handle, default, RandomAccess.GetLength(handle));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Wraps an in-memory safetensors image and validates its header.</summary>
    public static SafeTensorsFile Open(ReadOnlyMemory<byte> bytes, string source = "<memory>") =>
        new(source, null, bytes, bytes.Length);

    /// <summary>Tensor names in header order.</summary>
    public IEnumerable<string> Names => Header.Tensors.Select(t => t.Name);

    /// <summary>Reads the tensor called <paramref name="name"/> as float32.</summary>
    public Tensor Read(string name) => Read(Header[name]);

    /// <summary>Reads a tensor of this file's header as float32.</summary>
    public Tensor Read(SafeTensorInfo info)
    {
        long count = info.ElementCount;
        if (count > Array.MaxLength)
            throw SafeTensorsError.Create(Source, $"tensor '{info.Name}' {info.ShapeText} has {count} elements, more than one tensor can hold.");
        var t = Tensor.Empty(info.Shape);
        try
        {
            var dst = t.Span;
            long pos = Header.DataStart + info.DataBegin;
            if (info.DType == SafeTensorDType.F32 && BitConverter.IsLittleEndian)
            {
                ReadAt(pos, MemoryMarshal.AsBytes(dst));
                return t;
            }
            int es = info.DType.SizeOf();
            const int ChunkElements = 1 << 18;
            var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(ChunkElements, Math.Max(dst.Length, 1)) * es);
            try
            {
                for (int start = 0; start < dst.Length; start += ChunkElements)
                {
                    int n = Math.Min(ChunkElements, dst.Length - start);
                    var src = buffer.AsSpan(0, n * es);
                    ReadAt(pos + (long)start * es, src);
                    DTypeConversion.Decode(info.DType, src, dst.Slice(start, n));
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Reads every tensor, keyed by name.</summary>
    public Dictionary<string, Tensor> ReadAll()
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var info in Header.Tensors) result[info.Name] = Read(info);
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    private void ReadAt(long offset, Span<byte> dst)
    {
        if (offset + dst.Length > _length)
            throw SafeTensorsError.Create(Source, $"read of {dst.Length} bytes at {offset} runs past the end of the {_length}-byte file.");
        if (_handle == null)
        {
            _memory.Span.Slice((int)offset, dst.Length).CopyTo(dst);
            return;
        }
        while (dst.Length > 0)
        {
            int got = RandomAccess.Read(_handle, dst, offset);
            if (got <= 0) throw SafeTensorsError.Create(Source, $"file ended at byte {offset} while reading (was it truncated while open?).");
            dst = dst[got..];
            offset += got;
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle?.Dispose();
}
