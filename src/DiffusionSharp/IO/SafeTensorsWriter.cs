using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.IO;

/// <summary>Writes float32 tensors in the safetensors format (u64 header length, JSON header padded to 8 bytes, raw data).</summary>
public static class SafeTensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> (in their enumeration order) as F32 to <paramref name="path"/>.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata != null)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t) in tensors)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (var d in t.Shape.Dims) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + 4L * t.Size);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += 4L * t.Size;
            }
            w.WriteEndObject();
        }
        var header = ms.ToArray();
        int padded = (header.Length + 7) / 8 * 8;
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
        fs.Write(len);
        fs.Write(header);
        for (int i = header.Length; i < padded; i++) fs.WriteByte((byte)' ');
        var buf = new byte[1 << 16];
        foreach (var (_, t) in tensors)
        {
            var s = t.Span;
            int i = 0;
            while (i < s.Length)
            {
                int n = Math.Min(s.Length - i, buf.Length / 4);
                for (int k = 0; k < n; k++) BinaryPrimitives.WriteSingleLittleEndian(buf.AsSpan(4 * k), s[i + k]);
                fs.Write(buf, 0, 4 * n);
                i += n;
            }
        }
    }
}
