using Google.Protobuf;

namespace DiffusionSharp.IO.Onnx;

/// <summary>ONNX tensor element types (TensorProto.DataType in onnx.proto).</summary>
public enum OnnxDataType
{
    /// <summary>float32.</summary>
    Float = 1,
    /// <summary>int64.</summary>
    Int64 = 7,
}

/// <summary>
/// The few onnx.proto messages an exported graph needs, written with Google.Protobuf's <see cref="CodedOutputStream"/>
/// (field numbers from onnx.proto; messages are length-delimited, so each is built into bytes before its parent).
/// </summary>
internal static class OnnxProto
{
    // AttributeProto.AttributeType
    internal const int AttrFloat = 1, AttrInt = 2, AttrString = 3, AttrFloats = 6, AttrInts = 7;

    /// <summary>Builds one message into bytes.</summary>
    internal static byte[] Message(Action<CodedOutputStream> write)
    {
        using var ms = new MemoryStream();
        using (var o = new CodedOutputStream(ms, leaveOpen: true)) write(o);
        return ms.ToArray();
    }

    internal static void Bytes(CodedOutputStream o, int field, byte[] payload)
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(UnsafeByteOperations.UnsafeWrap(payload));
    }

    internal static void String(CodedOutputStream o, int field, string s)
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteString(s);
    }

    internal static void Int64(CodedOutputStream o, int field, long v)
    {
        o.WriteTag(field, WireFormat.WireType.Varint);
        o.WriteInt64(v);
    }

    internal static void PackedInt64(CodedOutputStream o, int field, IReadOnlyList<long> values)
    {
        var payload = Message(p => { foreach (var v in values) p.WriteInt64(v); });
        Bytes(o, field, payload);
    }

    /// <summary>TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian).</summary>
    internal static byte[] Tensor(string name, OnnxDataType type, IReadOnlyList<long> dims, ReadOnlySpan<byte> raw)
    {
        var rawCopy = raw.ToArray();
        return Message(o =>
        {
            foreach (var d in dims) Int64(o, 1, d);
            Int64(o, 2, (int)type);
            String(o, 8, name);
            Bytes(o, 9, rawCopy);
        });
    }

    /// <summary>ValueInfoProto (name = 1, type = 2) of a tensor; a dimension is a number or a symbolic name.</summary>
    internal static byte[] ValueInfo(string name, OnnxDataType type, IReadOnlyList<object> dims) => Message(o =>
    {
        String(o, 1, name);
        // TensorShapeProto.Dimension: dim_value = 1, dim_param = 2
        var shape = Message(s =>
        {
            foreach (var d in dims)
                Bytes(s, 1, Message(dim => { if (d is string p) String(dim, 2, p); else Int64(dim, 1, Convert.ToInt64(d)); }));
        });
        // TypeProto.Tensor: elem_type = 1, shape = 2; TypeProto: tensor_type = 1
        var tensorType = Message(t => { Int64(t, 1, (int)type); Bytes(t, 2, shape); });
        Bytes(o, 2, Message(t => Bytes(t, 1, tensorType)));
    });

    /// <summary>AttributeProto: name = 1, f = 2, i = 3, s = 4, floats = 7, ints = 8, type = 20.</summary>
    internal static byte[] Attribute(string name, object value) => Message(o =>
    {
        String(o, 1, name);
        switch (value)
        {
            case float f:
                o.WriteTag(2, WireFormat.WireType.Fixed32); o.WriteFloat(f); Int64(o, 20, AttrFloat); break;
            case int or long:
                Int64(o, 3, Convert.ToInt64(value)); Int64(o, 20, AttrInt); break;
            case string s:
                Bytes(o, 4, System.Text.Encoding.UTF8.GetBytes(s)); Int64(o, 20, AttrString); break;
            case long[] ls:
                foreach (var v in ls) Int64(o, 8, v);
                Int64(o, 20, AttrInts); break;
            case int[] ints:
                foreach (var v in ints) Int64(o, 8, v);
                Int64(o, 20, AttrInts); break;
            default:
                throw new ArgumentException($"Unsupported ONNX attribute value type {value.GetType().Name} for '{name}'.");
        }
    });

    /// <summary>NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.</summary>
    internal static byte[] Node(string opType, string name, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs,
        IReadOnlyList<(string Name, object Value)> attributes) => Message(o =>
    {
        foreach (var i in inputs) String(o, 1, i);
        foreach (var x in outputs) String(o, 2, x);
        String(o, 3, name);
        String(o, 4, opType);
        foreach (var (n, v) in attributes) Bytes(o, 5, Attribute(n, v));
    });
}
