using System.Runtime.InteropServices;
using Google.Protobuf;

namespace DiffusionSharp.IO.Onnx;

/// <summary>Collects nodes, weights and graph inputs/outputs and writes them as an ONNX ModelProto.</summary>
internal sealed class OnnxGraphBuilder
{
    private readonly List<byte[]> _nodes = new();
    private readonly List<byte[]> _initializers = new();
    private readonly List<byte[]> _inputs = new();
    private readonly List<byte[]> _outputs = new();
    private readonly Dictionary<string, string> _int64Constants = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private int _counter;

    /// <summary>A fresh value name starting with <paramref name="hint"/>.</summary>
    public string Fresh(string hint) => $"{hint}_{_counter++}";

    public void Input(string name, OnnxDataType type, params object[] dims) => _inputs.Add(OnnxProto.ValueInfo(name, type, dims));

    public void Output(string name, OnnxDataType type, params object[] dims) => _outputs.Add(OnnxProto.ValueInfo(name, type, dims));

    /// <summary>A float32 weight named <paramref name="name"/> with the given dims.</summary>
    public string Weight(string name, ReadOnlySpan<float> data, params long[] dims)
    {
        long count = dims.Aggregate(1L, (a, d) => a * d);
        if (count != data.Length) throw new ArgumentException($"ONNX weight '{name}': {data.Length} values for dims [{string.Join(", ", dims)}].");
        if (!_names.Add(name)) throw new InvalidOperationException($"ONNX value name '{name}' is used twice.");
        _initializers.Add(OnnxProto.Tensor(name, OnnxDataType.Float, dims, MemoryMarshal.AsBytes(data)));
        return name;
    }

    /// <summary>A float32 scalar constant (rank 0).</summary>
    public string Scalar(float v) => Weight(Fresh("const"), new[] { v });

    /// <summary>An int64 1-D constant (shapes, axes, split sizes); equal constants are shared.</summary>
    public string Int64s(params long[] values)
    {
        var key = string.Join(",", values);
        if (_int64Constants.TryGetValue(key, out var existing)) return existing;
        var name = Fresh("shape");
        _initializers.Add(OnnxProto.Tensor(name, OnnxDataType.Int64, new long[] { values.Length }, MemoryMarshal.AsBytes(values.AsSpan())));
        _int64Constants[key] = name;
        return name;
    }

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    public string Op(string opType, string[] inputs, params (string, object)[] attributes) => Op(opType, inputs, 1, attributes)[0];

    /// <summary>Adds a node with <paramref name="outputCount"/> outputs.</summary>
    public string[] Op(string opType, string[] inputs, int outputCount, params (string, object)[] attributes)
    {
        var outs = new string[outputCount];
        for (int i = 0; i < outputCount; i++) outs[i] = Fresh(opType.ToLowerInvariant());
        _nodes.Add(OnnxProto.Node(opType, outs[0] + "_node", inputs, outs, attributes));
        return outs;
    }

    /// <summary>Renames the value <paramref name="value"/> to <paramref name="name"/> through an Identity node.</summary>
    public void Identity(string value, string name) =>
        _nodes.Add(OnnxProto.Node("Identity", name + "_node", new[] { value }, new[] { name }, Array.Empty<(string, object)>()));

    /// <summary>The serialized ModelProto (IR version 8, default domain at <paramref name="opset"/>).</summary>
    public byte[] ToModel(string graphName, int opset, string producerVersion, string docString)
    {
        // GraphProto: node = 1, name = 2, initializer = 5, doc_string = 10, input = 11, output = 12
        var graph = OnnxProto.Message(o =>
        {
            foreach (var n in _nodes) OnnxProto.Bytes(o, 1, n);
            OnnxProto.String(o, 2, graphName);
            foreach (var t in _initializers) OnnxProto.Bytes(o, 5, t);
            foreach (var i in _inputs) OnnxProto.Bytes(o, 11, i);
            foreach (var x in _outputs) OnnxProto.Bytes(o, 12, x);
        });
        // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, doc_string = 6, graph = 7, opset_import = 8
        return OnnxProto.Message(o =>
        {
            OnnxProto.Int64(o, 1, 8);
            OnnxProto.String(o, 2, "DiffusionSharp");
            OnnxProto.String(o, 3, producerVersion);
            OnnxProto.String(o, 6, docString);
            OnnxProto.Bytes(o, 7, graph);
            // OperatorSetIdProto: domain = 1, version = 2
            OnnxProto.Bytes(o, 8, OnnxProto.Message(s => { OnnxProto.String(s, 1, ""); OnnxProto.Int64(s, 2, opset); }));
        });
    }
}
