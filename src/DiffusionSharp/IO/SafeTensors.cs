using System.Buffers.Binary;
using System.Text.Json;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.IO;

/// <summary>One tensor entry of a safetensors file, converted to float32 (I64 values are cast).</summary>
public sealed record SafeTensorEntry(string Name, string DType, int[] Shape, float[] Data);

/// <summary>Reader and writer for the safetensors format (u64 header length, JSON header, raw little-endian data).</summary>
public static class SafeTensors
{
    /// <summary>Reads every tensor in <paramref name="path"/> as float32 tensors keyed by name.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var e in ReadEntries(path))
            result[e.Name] = Tensor.FromArray(e.Data, e.Shape);
        return result;
    }

    /// <summary>Reads every entry of a safetensors file.</summary>
    public static List<SafeTensorEntry> ReadEntries(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8) throw new InvalidDataException($"{path}: file is {bytes.Length} bytes, shorter than the 8-byte header length.");
        ulong headerLen = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLen > (ulong)(bytes.Length - 8)) throw new InvalidDataException($"{path}: header length {headerLen} runs past the end of the {bytes.Length}-byte file.");
        int dataStart = 8 + (int)headerLen;
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLen));
        var list = new List<SafeTensorEntry>();
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__") continue;
            var dtype = prop.Value.GetProperty("dtype").GetString()!;
            var shape = prop.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var offs = prop.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            long begin = dataStart + offs[0], end = dataStart + offs[1];
            int n = 1;
            foreach (var d in shape) n *= d;
            var data = new float[n];
            var src = bytes.AsSpan((int)begin, (int)(end - begin));
            switch (dtype)
            {
                case "F32":
                    for (int i = 0; i < n; i++) data[i] = BinaryPrimitives.ReadSingleLittleEndian(src.Slice(4 * i));
                    break;
                case "I64":
                    for (int i = 0; i < n; i++) data[i] = BinaryPrimitives.ReadInt64LittleEndian(src.Slice(8 * i));
                    break;
                default:
                    throw new InvalidDataException($"{path}: tensor '{prop.Name}' has unsupported dtype {dtype}.");
            }
            list.Add(new SafeTensorEntry(prop.Name, dtype, shape, data));
        }
        return list;
    }
}
