using System.Buffers.Binary;
using System.Text.Json;
using DiffusionSharp.IO;

namespace DiffusionSharp.Tests.Evaluation;

/// <summary>The F64 tensors and JSON figures of fixtures/fid_ref.* (made by tools/make_fid_fixtures.py with numpy and scipy).</summary>
public static class FidFixture
{
    private static readonly Lazy<Dictionary<string, (double[] Data, int[] Shape)>> Tensors = new(LoadTensors);
    private static readonly Lazy<JsonElement> Doc = new(() => JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("fid_ref.json"))).RootElement);

    /// <summary>The JSON description, with scipy's results per case.</summary>
    public static JsonElement Json => Doc.Value;

    /// <summary>A tensor as float64 values (our loader widens to float32, so F64 data is read here directly).</summary>
    public static (double[] Data, int[] Shape) Get(string name) => Tensors.Value[name];

    private static Dictionary<string, (double[], int[])> LoadTensors()
    {
        var path = Fixtures.PathOf("fid_ref.safetensors");
        var header = SafeTensors.ReadHeader(path);
        var bytes = File.ReadAllBytes(path);
        var d = new Dictionary<string, (double[], int[])>();
        foreach (var t in header.Tensors)
        {
            if (t.DType != SafeTensorDType.F64) throw new InvalidDataException($"{t.Name}: expected F64, found {t.DType}");
            var values = new double[t.ElementCount];
            var span = bytes.AsSpan((int)(header.DataStart + t.DataBegin), (int)t.ByteLength);
            for (int i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadDoubleLittleEndian(span.Slice(8 * i, 8));
            d[t.Name] = (values, t.Shape);
        }
        return d;
    }
}
