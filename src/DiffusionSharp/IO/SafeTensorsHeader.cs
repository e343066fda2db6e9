using System.Text.Json;

namespace DiffusionSharp.IO;

/// <summary>One tensor described by a safetensors header; offsets are relative to the start of the data region.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorDType DType, int[] Shape, long DataBegin, long DataEnd)
{
    /// <summary>Number of elements (product of the shape).</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape) n *= d;
            return n;
        }
    }

    /// <summary>Size of the tensor's data in bytes.</summary>
    public long ByteLength => DataEnd - DataBegin;

    /// <summary>The shape as "[a, b]".</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>The parsed and validated header of a safetensors file: tensor names, dtypes, shapes, offsets, and metadata.</summary>
public sealed class SafeTensorsHeader
{
    /// <summary>Largest header accepted, as the reference implementation does (100 MB).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private readonly Dictionary<string, SafeTensorInfo> _byName;

    /// <summary>The file path (or "&lt;memory&gt;") the header came from.</summary>
    public string Source { get; }

    /// <summary>Length of the JSON header in bytes (including padding).</summary>
    public long HeaderLength { get; }

    /// <summary>Byte offset in the file where the data region starts (8 + header length).</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>Length of the data region in bytes.</summary>
    public long DataLength { get; }

    /// <summary>Tensors in header order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The string-to-string <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsHeader(string source, long headerLength, long dataLength, List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Source = source;
        HeaderLength = headerLength;
        DataLength = dataLength;
        Tensors = tensors;
        Metadata = metadata;
        _byName = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        foreach (var t in tensors) _byName[t.Name] = t;
    }

    /// <summary>Looks up a tensor by name.</summary>
    public bool TryGet(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    /// <summary>The tensor called <paramref name="name"/>, or a <see cref="KeyNotFoundException"/> naming the file.</summary>
    public SafeTensorInfo this[string name] =>
        _byName.TryGetValue(name, out var info) ? info : throw new KeyNotFoundException($"{Source}: no tensor named '{name}' (the file has {Tensors.Count}).");

    /// <summary>Whether a tensor of that name exists.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>
    /// Parses the 8-byte length prefix and returns the header length, checking it against the file size and the 100 MB cap.
    /// </summary>
    internal static long ParseLength(string source, ReadOnlySpan<byte> prefix, long fileLength)
    {
        if (fileLength < 8)
            throw SafeTensorsError.Create(source, $"file is {fileLength} bytes, shorter than the 8-byte header length prefix.");
        ulong n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderLength)
            throw SafeTensorsError.Create(source, $"header length {n} exceeds the {MaxHeaderLength}-byte limit (file is {fileLength} bytes); not a safetensors file?");
        if ((long)n > fileLength - 8)
            throw SafeTensorsError.Create(source, $"header length {n} runs past the end of the {fileLength}-byte file (truncated?).");
        if (n < 2)
            throw SafeTensorsError.Create(source, $"header length {n} is too short to hold a JSON object.");
        return (long)n;
    }

    /// <summary>Parses and validates the JSON header bytes against a file of <paramref name="fileLength"/> bytes.</summary>
    internal static SafeTensorsHeader Parse(string source, ReadOnlySpan<byte> json, long fileLength)
    {
        long headerLength = json.Length;
        long dataLength = fileLength - 8 - headerLength;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw SafeTensorsError.Create(source, $"header is not valid JSON ({e.Message})", e);
        }
        catch (ArgumentException e)
        {
            throw SafeTensorsError.Create(source, $"header is not valid UTF-8 JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw SafeTensorsError.Create(source, $"header must be a JSON object, found {root.ValueKind}.");

            var tensors = new List<SafeTensorInfo>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var prop in root.EnumerateObject())
            {
                string name = SafeString(source, () => prop.Name, "a tensor name");
                if (name == "__metadata__")
                {
                    if (sawMetadata) throw SafeTensorsError.Create(source, "header has '__metadata__' twice.");
                    sawMetadata = true;
                    ParseMetadata(source, prop.Value, metadata);
                    continue;
                }
                if (!seen.Add(name))
                    throw SafeTensorsError.Create(source, $"tensor '{name}' appears twice in the header.");
                tensors.Add(ParseTensor(source, name, prop.Value, dataLength));
            }
            CheckCoverage(source, tensors, dataLength);
            return new SafeTensorsHeader(source, headerLength, dataLength, tensors, metadata);
        }
    }

    private static string SafeString(string source, Func<string> get, string what)
    {
        try { return get(); }
        catch (InvalidOperationException e) { throw SafeTensorsError.Create(source, $"{what} is not valid UTF-8 text.", e); }
    }

    private static void ParseMetadata(string source, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw SafeTensorsError.Create(source, $"'__metadata__' must be an object of strings, found {value.ValueKind}.");
        foreach (var p in value.EnumerateObject())
        {
            string key = SafeString(source, () => p.Name, "a metadata key");
            if (p.Value.ValueKind != JsonValueKind.String)
                throw SafeTensorsError.Create(source, $"metadata value for '{key}' must be a string, found {p.Value.ValueKind}.");
            if (metadata.ContainsKey(key))
                throw SafeTensorsError.Create(source, $"metadata key '{key}' appears twice.");
            var v = p.Value;
            metadata[key] = SafeString(source, () => v.GetString()!, $"metadata value for '{key}'");
        }
    }

    private static SafeTensorInfo ParseTensor(string source, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw SafeTensorsError.Create(source, $"tensor '{name}' must be an object with dtype, shape and data_offsets, found {value.ValueKind}.");

        if (!value.TryGetProperty("dtype", out var dtypeEl))
            throw SafeTensorsError.Create(source, $"tensor '{name}' has no 'dtype'.");
        if (dtypeEl.ValueKind != JsonValueKind.String)
            throw SafeTensorsError.Create(source, $"tensor '{name}': 'dtype' must be a string, found {dtypeEl.ValueKind}.");
        string dtypeName = SafeString(source, () => dtypeEl.GetString()!, $"tensor '{name}' dtype");
        if (!SafeTensorDTypes.TryParse(dtypeName, out var dtype))
            throw SafeTensorsError.Create(source, $"tensor '{name}' has unknown dtype '{dtypeName}' (expected one of BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64).");

        if (!value.TryGetProperty("shape", out var shapeEl))
            throw SafeTensorsError.Create(source, $"tensor '{name}' has no 'shape'.");
        if (shapeEl.ValueKind != JsonValueKind.Array)
            throw SafeTensorsError.Create(source, $"tensor '{name}': 'shape' must be an array, found {shapeEl.ValueKind}.");
        var shape = new int[shapeEl.GetArrayLength()];
        long count = 1;
        bool overflow = false;
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim))
                throw SafeTensorsError.Create(source, $"tensor '{name}': shape entry {i} is {d.GetRawText()}, expected a non-negative integer.");
            if (dim < 0)
                throw SafeTensorsError.Create(source, $"tensor '{name}': shape entry {i} is negative ({dim}).");
            if (dim > int.MaxValue)
                throw SafeTensorsError.Create(source, $"tensor '{name}': shape entry {i} ({dim}) exceeds {int.MaxValue}.");
            shape[i++] = (int)dim;
            if (!overflow)
            {
                try { count = checked(count * dim); }
                catch (OverflowException) { overflow = true; }
            }
        }
        bool isEmpty = Array.IndexOf(shape, 0) >= 0;
        if (overflow && !isEmpty)
            throw SafeTensorsError.Create(source, $"tensor '{name}': shape [{string.Join(", ", shape)}] has more elements than fit in 64 bits.");
        if (isEmpty) count = 0;

        if (!value.TryGetProperty("data_offsets", out var offEl))
            throw SafeTensorsError.Create(source, $"tensor '{name}' has no 'data_offsets'.");
        if (offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw SafeTensorsError.Create(source, $"tensor '{name}': 'data_offsets' must be an array [begin, end], found {Truncate(offEl.GetRawText())}.");
        var offs = new long[2];
        int k = 0;
        foreach (var o in offEl.EnumerateArray())
        {
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out long v) || v < 0)
                throw SafeTensorsError.Create(source, $"tensor '{name}': data offset {Truncate(o.GetRawText())} is not a non-negative integer.");
            offs[k++] = v;
        }
        long begin = offs[0], end = offs[1];
        if (end < begin)
            throw SafeTensorsError.Create(source, $"tensor '{name}': data_offsets [{begin}, {end}] end before they begin.");
        if (end > dataLength)
            throw SafeTensorsError.Create(source, $"tensor '{name}': data_offsets [{begin}, {end}] run past the {dataLength}-byte data region (truncated file?).");
        long expectBytes;
        try { expectBytes = checked(count * dtype.SizeOf()); }
        catch (OverflowException)
        {
            throw SafeTensorsError.Create(source, $"tensor '{name}': shape [{string.Join(", ", shape)}] of {dtypeName} is larger than 2^63 bytes.");
        }
        if (end - begin != expectBytes)
            throw SafeTensorsError.Create(source, $"tensor '{name}': shape [{string.Join(", ", shape)}] of {dtypeName} needs {expectBytes} bytes but data_offsets [{begin}, {end}] span {end - begin}.");
        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "...";

    // The format requires the data region to be covered exactly, without holes or overlaps, so files cannot hide extra payloads.
    private static void CheckCoverage(string source, List<SafeTensorInfo> tensors, long dataLength)
    {
        var sorted = tensors.ToArray();
        Array.Sort(sorted, (a, b) => a.DataBegin != b.DataBegin ? a.DataBegin.CompareTo(b.DataBegin) : a.DataEnd.CompareTo(b.DataEnd));
        long pos = 0;
        SafeTensorInfo? prev = null;
        foreach (var t in sorted)
        {
            if (t.DataBegin < pos)
                throw SafeTensorsError.Create(source, $"tensors '{prev!.Name}' [{prev.DataBegin}, {prev.DataEnd}] and '{t.Name}' [{t.DataBegin}, {t.DataEnd}] overlap.");
            if (t.DataBegin > pos)
                throw SafeTensorsError.Create(source, $"data bytes [{pos}, {t.DataBegin}) before tensor '{t.Name}' belong to no tensor.");
            pos = t.DataEnd;
            prev = t;
        }
        if (pos != dataLength)
            throw SafeTensorsError.Create(source, $"data region is {dataLength} bytes but the tensors cover only {pos}; {dataLength - pos} trailing bytes belong to no tensor.");
    }
}
