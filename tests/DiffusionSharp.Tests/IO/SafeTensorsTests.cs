using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.IO;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "ds-st-" + Guid.NewGuid().ToString("N"));

    public SafeTensorsTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>A raw file image: u64 length, the JSON text, the data bytes.</summary>
    internal static byte[] Raw(string json, byte[]? data = null)
    {
        var h = Encoding.UTF8.GetBytes(json);
        data ??= Array.Empty<byte>();
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        return bytes;
    }

    private string Write(string name, byte[] bytes)
    {
        var p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    private static (long headerLen, JsonDocument doc) ParseRawHeader(byte[] file)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        return (n, JsonDocument.Parse(file.AsMemory(8, (int)n)));
    }

    [Fact]
    public void F32RoundTripIsBitExactWithMetadataAndUpstreamLayout()
    {
        var g = new Generator(11);
        var tensors = new Dictionary<string, Tensor>
        {
            ["zeta.weight"] = Tensor.Randn(g, 3, 5),
            ["alpha"] = Tensor.Randn(g, 7),
            ["scalar"] = Tensor.Scalar(-2.5f),
            ["empty"] = Tensor.Zeros(0, 4),
            ["Beta.bias"] = Tensor.Randn(g, 2, 1, 3),
        };
        tensors["alpha"].Span[0] = float.NaN;
        tensors["alpha"].Span[1] = float.NegativeInfinity;
        tensors["alpha"].Span[2] = -0f;
        tensors["alpha"].Span[3] = 1e-42f;   // subnormal
        var meta = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\"" };
        var path = Path.Combine(_dir, "rt.safetensors");
        SafeTensors.Save(path, tensors, SafeTensorDType.F32, meta);

        var back = SafeTensors.Load(path);
        Assert.Equal(tensors.Keys.OrderBy(k => k, StringComparer.Ordinal), back.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (k, t) in tensors)
        {
            Assert.Equal(t.Shape, back[k].Shape);
            var a = t.ToArray();
            var b = back[k].ToArray();
            for (int i = 0; i < a.Length; i++)
                Assert.Equal(BitConverter.SingleToInt32Bits(a[i]), BitConverter.SingleToInt32Bits(b[i]));
        }
        var header = SafeTensors.ReadHeader(path);
        Assert.Equal("pt", header.Metadata["format"]);
        Assert.Equal(meta["note"], header.Metadata["note"]);
        Assert.All(header.Tensors, t => Assert.Equal(SafeTensorDType.F32, t.DType));

        // Layout: header padded with spaces to a multiple of 8, names sorted bytewise, offsets contiguous from 0.
        var file = File.ReadAllBytes(path);
        var (n, doc) = ParseRawHeader(file);
        Assert.Equal(0, n % 8);
        Assert.Equal((byte)'}', file.AsSpan(8, (int)n).TrimEnd((byte)' ')[^1]);
        var names = new List<string>();
        long pos = 0;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            names.Add(p.Name);
            var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(pos, offs[0]);
            pos = offs[1];
        }
        Assert.Equal(new[] { "Beta.bias", "alpha", "empty", "scalar", "zeta.weight" }, names);
        Assert.Equal(file.Length - 8 - n, pos);
        Assert.Equal(names, header.Tensors.Select(t => t.Name));
    }

    [Fact]
    public void OrderedListKeepsTheGivenOrder()
    {
        var items = new List<KeyValuePair<string, Tensor>>
        {
            new("z", Tensor.FromValues(1, 2)),
            new("a", Tensor.FromValues(3)),
            new("m", Tensor.FromValues(4, 5, 6)),
        };
        var path = Path.Combine(_dir, "ordered.safetensors");
        SafeTensors.Save(path, items);
        var h = SafeTensors.ReadHeader(path);
        Assert.Equal(new[] { "z", "a", "m" }, h.Tensors.Select(t => t.Name));
        Assert.Equal(new long[] { 0, 8, 12 }, h.Tensors.Select(t => t.DataBegin));
        Assert.Equal(new float[] { 4, 5, 6 }, SafeTensors.Load(path)["m"].ToArray());
        Assert.Empty(h.Metadata);
    }

    [Fact]
    public void MixedDTypesSortLargestFirstLikeUpstream()
    {
        var list = new List<SafeTensorWriteItem>
        {
            new("h", Tensor.FromValues(1, 2, 3), SafeTensorDType.F16),
            new("f", Tensor.FromValues(4), SafeTensorDType.F32),
            new("b", Tensor.FromValues(5), SafeTensorDType.BF16),
            new("a", Tensor.FromValues(6), SafeTensorDType.F32),
        };
        var path = Path.Combine(_dir, "mixed.safetensors");
        SafeTensors.Save(path, list);
        var h = SafeTensors.ReadHeader(path);
        Assert.Equal(new[] { "h", "f", "b", "a" }, h.Tensors.Select(t => t.Name));   // list order is kept
        Assert.Equal(6 + 4 + 2 + 4, h.DataLength);
        SafeTensors.Save(path, SafeTensors.SortedLikeUpstream(list));
        h = SafeTensors.ReadHeader(path);
        Assert.Equal(new[] { "a", "f", "b", "h" }, h.Tensors.Select(t => t.Name));
        Assert.Equal(new long[] { 0, 4, 8, 10 }, h.Tensors.Select(t => t.DataBegin));
        var d = SafeTensors.Load(path);
        Assert.Equal(new float[] { 1, 2, 3 }, d["h"].ToArray());
        Assert.Equal(5f, d["b"].Item());
        Assert.Equal(6f, d["a"].Item());
    }

    [Fact]
    public void F16RoundTripMatchesSystemHalfRounding()
    {
        var g = new Generator(5);
        var t = Tensor.Randn(g, 4, 64);
        var s = t.Span;
        float[] special =
        {
            0f, -0f, 1f, 65504f, 65519.99f, 65520f, 1e6f, -1e6f, 6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.98023259e-08f,
            1f + 1f / 2048f,               // exact tie between 1 and 1+2^-10: rounds to even (1)
            1f + 3f / 2048f,               // tie between 1+2^-10 and 1+2^-9: rounds to even (1+2^-9)
            float.NaN, float.PositiveInfinity, float.NegativeInfinity, 3.14159265f, -123.456f, 1e-10f,
        };
        special.CopyTo(s);
        for (int i = special.Length; i < s.Length; i++) s[i] *= MathF.Pow(10, (i % 9) - 4);
        var path = Path.Combine(_dir, "half.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["x"] = t }, SafeTensorDType.F16);
        Assert.Equal(8 + SafeTensors.ReadHeader(path).HeaderLength + 2 * t.Size, new FileInfo(path).Length);
        Assert.Equal(SafeTensorDType.F16, SafeTensors.ReadHeader(path)["x"].DType);
        var back = SafeTensors.Load(path)["x"].ToArray();
        for (int i = 0; i < s.Length; i++)
        {
            float expect = (float)(Half)s[i];
            if (float.IsNaN(expect)) Assert.True(float.IsNaN(back[i]), $"element {i}");
            else Assert.Equal(BitConverter.SingleToInt32Bits(expect), BitConverter.SingleToInt32Bits(back[i]));
        }
        Assert.Equal(1f, back[12]);
        Assert.Equal(1f + 2f / 1024f, back[13]);
        Assert.Equal(float.PositiveInfinity, back[5]);  // 65520 rounds up past the largest half
        Assert.Equal(65504f, back[4]);
    }

    [Fact]
    public void BF16DecodesHandComputedValues()
    {
        // bits -> value, worked by hand: sign | 8-bit exponent (bias 127) | 7-bit mantissa.
        (ushort bits, float value)[] cases =
        {
            (0x3F80, 1f), (0xBF80, -1f), (0x4000, 2f), (0x4049, 3.140625f), (0x3E80, 0.25f), (0xC2F7, -123.5f),
            (0x0000, 0f), (0x7F80, float.PositiveInfinity), (0xFF80, float.NegativeInfinity), (0x0001, MathF.Pow(2, -133)),
            (0x7F7F, 3.3895314e38f), (0x3F81, 1.0078125f),
        };
        var data = new byte[2 * cases.Length];
        for (int i = 0; i < cases.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(2 * i), cases[i].bits);
        var bytes = Raw($"{{\"b\":{{\"dtype\":\"BF16\",\"shape\":[{cases.Length}],\"data_offsets\":[0,{data.Length}]}}}}", data);
        var t = SafeTensors.Load(bytes)["b"].ToArray();
        for (int i = 0; i < cases.Length; i++) Assert.Equal(cases[i].value, t[i]);
        Assert.True(float.IsNaN(DTypeConversion.BFloat16ToSingle(0x7FC0)));
    }

    [Fact]
    public void BF16EncodeRoundsToNearestEven()
    {
        Assert.Equal(0x3F80, DTypeConversion.SingleToBFloat16(1f));
        Assert.Equal(0x3F80, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808000)));  // tie -> even (down)
        Assert.Equal(0x3F82, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F818000)));  // tie -> even (up)
        Assert.Equal(0x3F81, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F808001)));  // above tie -> up
        Assert.Equal(0x3F80, DTypeConversion.SingleToBFloat16(BitConverter.UInt32BitsToSingle(0x3F807FFF)));  // below tie -> down
        Assert.Equal(0x7F80, DTypeConversion.SingleToBFloat16(float.MaxValue));  // overflows to +inf like torch
        Assert.True(float.IsNaN(DTypeConversion.BFloat16ToSingle(DTypeConversion.SingleToBFloat16(float.NaN))));
        var t = Tensor.FromValues(1f, 3.14159265f, -0.1f);
        var bytes = SafeTensors.Serialize(new[] { new SafeTensorWriteItem("x", t, SafeTensorDType.BF16) });
        Assert.Equal(new[] { 1f, 3.140625f, -0.10009765625f }, SafeTensors.Load(bytes)["x"].ToArray());
    }

    [Fact]
    public void IntegerAndOtherDTypesDecode()
    {
        var data = new List<byte>();
        var json = new StringBuilder("{");
        long off = 0;
        void Add(string name, string dtype, int count, byte[] raw)
        {
            if (json.Length > 1) json.Append(',');
            json.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{count}],\"data_offsets\":[{off},{off + raw.Length}]}}");
            off += raw.Length;
            data.AddRange(raw);
        }
        var i64 = new byte[24];
        BinaryPrimitives.WriteInt64LittleEndian(i64, -7);
        BinaryPrimitives.WriteInt64LittleEndian(i64.AsSpan(8), 999);
        BinaryPrimitives.WriteInt64LittleEndian(i64.AsSpan(16), 1L << 40);
        Add("i64", "I64", 3, i64);
        var f64 = new byte[8];
        BinaryPrimitives.WriteDoubleLittleEndian(f64, 0.1);
        Add("f64", "F64", 1, f64);
        var i32 = new byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(i32, int.MinValue);
        BinaryPrimitives.WriteInt32LittleEndian(i32.AsSpan(4), 42);
        Add("i32", "I32", 2, i32);
        var i16 = new byte[2];
        BinaryPrimitives.WriteInt16LittleEndian(i16, -300);
        Add("i16", "I16", 1, i16);
        Add("u8", "U8", 3, new byte[] { 0, 128, 255 });
        Add("i8", "I8", 2, new byte[] { 0x80, 0x7F });
        Add("bool", "BOOL", 2, new byte[] { 0, 1 });
        // E4M3: 0x38 = 2^0 * 1.0, 0x7E = 448 (largest), 0x01 = 2^-9; E5M2: 0x3C = 1.0, 0xC0 = -2.
        Add("e4m3", "F8_E4M3", 4, new byte[] { 0x38, 0x7E, 0x01, 0xB8 });
        Add("e5m2", "F8_E5M2", 2, new byte[] { 0x3C, 0xC0 });
        json.Append('}');
        var file = Raw(json.ToString(), data.ToArray());
        var d = SafeTensors.Load(file);
        Assert.Equal(new float[] { -7, 999, 1L << 40 }, d["i64"].ToArray());
        Assert.Equal(0.1f, d["f64"].Item());
        Assert.Equal(new float[] { int.MinValue, 42 }, d["i32"].ToArray());
        Assert.Equal(-300f, d["i16"].Item());
        Assert.Equal(new float[] { 0, 128, 255 }, d["u8"].ToArray());
        Assert.Equal(new float[] { -128, 127 }, d["i8"].ToArray());
        Assert.Equal(new float[] { 0, 1 }, d["bool"].ToArray());
        Assert.Equal(new float[] { 1, 448, 1f / 512, -1 }, d["e4m3"].ToArray());
        Assert.Equal(new float[] { 1, -2 }, d["e5m2"].ToArray());
        var h = SafeTensorsFile.Open(file).Header;
        Assert.Equal(SafeTensorDType.I64, h["i64"].DType);
        Assert.Equal(SafeTensorDType.F8E4M3, h["e4m3"].DType);
    }

    public static IEnumerable<object[]> FixtureFiles() =>
        Directory.GetFiles(Fixtures.Dir, "*.safetensors").Select(p => new object[] { Path.GetFileName(p) }).OrderBy(o => (string)o[0]);

    [Theory]
    [MemberData(nameof(FixtureFiles))]
    public void ReadsEveryFixtureFile(string file)
    {
        var path = Fixtures.PathOf(file);
        var header = SafeTensors.ReadHeader(path);
        var loaded = SafeTensors.Load(path);
        Assert.Equal(header.Tensors.Count, loaded.Count);
        Assert.Equal(header.DataLength, header.Tensors.Sum(t => t.ByteLength));

        // Independent reading of the raw file: JSON entries, and F32 / I64 values straight from the bytes.
        var raw = File.ReadAllBytes(path);
        var (n, doc) = ParseRawHeader(raw);
        int count = 0;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            count++;
            var info = header[p.Name];
            Assert.Equal(p.Value.GetProperty("dtype").GetString(), info.DType.HeaderName());
            Assert.Equal(p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray(), info.Shape);
            var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(offs, new[] { info.DataBegin, info.DataEnd });
            Assert.Equal(info.Shape, loaded[p.Name].Shape.ToArray());
            var values = loaded[p.Name].Span;
            var bytes = raw.AsSpan((int)(8 + n + offs[0]), (int)(offs[1] - offs[0]));
            for (int i = 0; i < values.Length; i++)
            {
                if (info.DType == SafeTensorDType.F32)
                    Assert.Equal(BinaryPrimitives.ReadInt32LittleEndian(bytes[(4 * i)..]), BitConverter.SingleToInt32Bits(values[i]));
                else if (info.DType == SafeTensorDType.I64)
                    Assert.Equal((float)BinaryPrimitives.ReadInt64LittleEndian(bytes[(8 * i)..]), values[i]);
            }
        }
        Assert.Equal(count, header.Tensors.Count);

        // Where a .json describes the file, every tensor it lists is there with that dtype and shape.
        var descPath = Path.ChangeExtension(path, ".json");
        if (!File.Exists(descPath)) return;
        using var desc = JsonDocument.Parse(File.ReadAllBytes(descPath));
        if (!desc.RootElement.TryGetProperty("tensors", out var described) || described.ValueKind != JsonValueKind.Object) return;
        foreach (var p in described.EnumerateObject())
        {
            var info = header[p.Name];
            Assert.Equal(p.Value.GetProperty("dtype").GetString(), info.DType.HeaderName());
            Assert.Equal(p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray(), info.Shape);
        }
    }

    [Fact]
    public void FixtureValuesMatchNumbersQuotedInTheirJson()
    {
        // kdiffusion.json quotes the sigma schedule of each run; schedulers.json gives the class/timestep integers.
        using var desc = JsonDocument.Parse(File.ReadAllBytes(Fixtures.PathOf("kdiffusion.json")));
        var st = SafeTensors.Load(Fixtures.PathOf("kdiffusion.safetensors"));
        int checkedRuns = 0;
        foreach (var run in desc.RootElement.GetProperty("runs").EnumerateObject())
        {
            if (!run.Value.TryGetProperty("sigma_values", out var sv) || !st.ContainsKey(run.Name + ".sigmas")) continue;
            var expect = sv.EnumerateArray().Select(e => (float)e.GetDouble()).ToArray();
            Assert.Equal(expect, st[run.Name + ".sigmas"].ToArray());
            checkedRuns++;
        }
        Assert.True(checkedRuns > 0);
        var cls = SafeTensors.Load(Fixtures.PathOf("unet_tiny_class.safetensors"))["class_labels"].ToArray();
        Assert.All(cls, v => Assert.InRange(v, 0, 9));
    }

    [Fact]
    public void SaveIsAtomicAndLeavesNoTempFiles()
    {
        var path = Path.Combine(_dir, "atomic.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["a"] = Tensor.FromValues(1, 2, 3) });
        var before = File.ReadAllBytes(path);
        // A tensor that fails mid-write (disposed) must leave the old file intact and no temporary behind.
        var bad = Tensor.FromValues(4, 5);
        bad.Dispose();
        var good = Tensor.FromValues(9);
        Assert.ThrowsAny<ObjectDisposedException>(() =>
            SafeTensors.Save(path, new List<KeyValuePair<string, Tensor>> { new("g", good), new("b", bad) }));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "atomic.safetensors" }, Directory.GetFiles(_dir).Select(Path.GetFileName));
        // Overwrite works and replaces content.
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["b"] = Tensor.FromValues(7) });
        Assert.Equal(new[] { "b" }, SafeTensors.Load(path).Keys);
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void SaveRejectsBadArguments()
    {
        var path = Path.Combine(_dir, "bad.safetensors");
        var t = Tensor.FromValues(1);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() =>
            SafeTensors.Save(path, new List<KeyValuePair<string, Tensor>> { new("x", t), new("x", t) })).Message);
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() =>
            SafeTensors.Save(path, new Dictionary<string, Tensor> { ["__metadata__"] = t })).Message);
        Assert.Contains("I64", Assert.Throws<ArgumentException>(() =>
            SafeTensors.Save(path, new Dictionary<string, Tensor> { ["x"] = t }, SafeTensorDType.I64)).Message);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    public static IEnumerable<object[]> BadFiles()
    {
        const string ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var eight = new byte[8];
        object[] Case(string what, byte[] file, string fragment) => new object[] { what, file, fragment };
        yield return Case("empty", Array.Empty<byte>(), "shorter than the 8-byte");
        yield return Case("seven bytes", new byte[7], "shorter than the 8-byte");
        var huge = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        yield return Case("length 2^64-1", huge, "exceeds the 100000000-byte limit");
        var big = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(big, 200_000_000);
        yield return Case("length 200 MB", big, "limit");
        var past = Raw(ok, eight);
        BinaryPrimitives.WriteUInt64LittleEndian(past, 1000);
        yield return Case("length past end", past, "runs past the end");
        yield return Case("length zero", Raw("", eight), "too short");
        yield return Case("not json", Raw("hello world!", eight), "not valid JSON");
        yield return Case("truncated json", Raw("{\"a\":{\"dtype\":", eight), "not valid JSON");
        yield return Case("array root", Raw("[1,2,3]", eight), "must be a JSON object, found Array");
        yield return Case("string root", Raw("\"abc\"", eight), "must be a JSON object");
        yield return Case("invalid utf8", Raw("{\"\u00ff\":1}").Select(b => b == 0xC3 ? (byte)0xFF : b).ToArray(), "");
        yield return Case("entry not object", Raw("{\"a\":5}"), "'a' must be an object");
        yield return Case("missing dtype", Raw("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", eight), "'a' has no 'dtype'");
        yield return Case("missing shape", Raw("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", eight), "'a' has no 'shape'");
        yield return Case("missing offsets", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight), "'a' has no 'data_offsets'");
        yield return Case("unknown dtype", Raw("{\"a\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight), "unknown dtype 'F128'");
        yield return Case("dtype lowercase", Raw("{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight), "unknown dtype 'f32'");
        yield return Case("dtype number", Raw("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", eight), "'dtype' must be a string");
        yield return Case("negative dim", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", eight), "negative (-2)");
        yield return Case("fractional dim", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", eight), "expected a non-negative integer");
        yield return Case("dim beyond int", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296],\"data_offsets\":[0,8]}}", eight), "exceeds 2147483647");
        yield return Case("shape overflow", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483647,2147483647,2147483647],\"data_offsets\":[0,8]}}", eight), "64 bits");
        yield return Case("bytes overflow", Raw("{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483647,2147483647,1],\"data_offsets\":[0,8]}}", eight), "2^63 bytes");
        yield return Case("shape string", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", eight), "'shape' must be an array");
        yield return Case("one offset", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", eight), "must be an array [begin, end]");
        yield return Case("negative offset", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", eight), "not a non-negative integer");
        yield return Case("reversed offsets", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", eight), "end before they begin");
        yield return Case("offsets past data", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", eight), "run past the 8-byte data region");
        yield return Case("huge offsets", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551600,18446744073709551608]}}", eight), "not a non-negative integer");
        yield return Case("size mismatch", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", eight), "needs 12 bytes but data_offsets [0, 8] span 8");
        yield return Case("dtype mismatch", Raw("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight), "needs 16 bytes");
        yield return Case("overlap", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", eight), "overlap");
        yield return Case("same region", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight), "overlap");
        yield return Case("gap", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", eight), "bytes [0, 4) before tensor 'a' belong to no tensor");
        yield return Case("trailing bytes", Raw(ok, new byte[12]), "4 trailing bytes");
        yield return Case("duplicate names", Raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", eight), "'a' appears twice");
        yield return Case("metadata not object", Raw("{\"__metadata__\":[1]}"), "'__metadata__' must be an object");
        yield return Case("metadata value number", Raw("{\"__metadata__\":{\"k\":1}}"), "metadata value for 'k' must be a string, found Number");
        yield return Case("metadata twice", Raw("{\"__metadata__\":{},\"__metadata__\":{}}"), "'__metadata__' twice");
        yield return Case("deep nesting", Raw("{\"a\":" + new string('[', 5000) + new string(']', 5000) + "}"), "not valid JSON");
    }

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void MalformedFilesGiveClearErrorsNamingTheFile(string what, byte[] bytes, string fragment)
    {
        var path = Write("bad-" + what.Replace(' ', '_') + ".safetensors", bytes);
        var ex = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(path));
        Assert.StartsWith(path + ": ", ex.Message);
        Assert.Contains(fragment, ex.Message);
        Assert.Equal(path, ex.Data["path"]);
        var ex2 = Assert.Throws<InvalidDataException>(() => SafeTensors.ReadHeader(path));
        Assert.Equal(ex.Message, ex2.Message);
    }

    [Fact]
    public void ValidEdgeCasesLoad()
    {
        Assert.Empty(SafeTensors.Load(Raw("{}")));
        Assert.Empty(SafeTensors.Load(Raw("{\"__metadata__\":{\"a\":\"b\"}}      ")));
        var d = SafeTensors.Load(Raw("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"extra\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[4,5],\"ignored\":true}}",
            new byte[] { 0, 0, 0x80, 0x3F, 7 }));
        Assert.Equal(new[] { 0, 5 }, d["z"].Shape.ToArray());
        Assert.Equal(0, d["s"].Rank);
        Assert.Equal(1f, d["s"].Item());
        Assert.Equal(7f, d["extra"].Item());
        Assert.Throws<KeyNotFoundException>(() => SafeTensorsFile.Open(Raw("{}")).Read("missing"));
    }

    [Fact]
    public void MissingFileThrowsFileNotFound()
    {
        Assert.Throws<FileNotFoundException>(() => SafeTensors.Load(Path.Combine(_dir, "nope.safetensors")));
    }
}

/// <summary>Our F16/BF16/integer conversions against torch's own (fixtures/dtypes.*, made by tools/make_optim_fixtures.py).</summary>
public class DTypeConversionTests
{
    private static Dictionary<string, Tensor> F => Fixtures.Load("dtypes.safetensors");

    [Fact]
    public void HalfAndBFloat16MatchTorchBitForBit()
    {
        var src = F["f32"].ToArray();
        var header = SafeTensors.ReadHeader(Fixtures.PathOf("dtypes.safetensors"));
        Assert.Equal(SafeTensorDType.F16, header["as_f16"].DType);
        Assert.Equal(SafeTensorDType.BF16, header["as_bf16"].DType);
        // Decoding torch's F16/BF16 bytes gives torch's float32 conversions back.
        Assert.Equal(Bits(F["f16_back"].ToArray()), Bits(F["as_f16"].ToArray()));
        Assert.Equal(Bits(F["bf16_back"].ToArray()), Bits(F["as_bf16"].ToArray()));
        // Encoding the source values ourselves rounds exactly as torch did.
        var bytes = SafeTensors.Serialize(new[]
        {
            new SafeTensorWriteItem("h", F["f32"], SafeTensorDType.F16),
            new SafeTensorWriteItem("b", F["f32"], SafeTensorDType.BF16),
        });
        var ours = SafeTensors.Load(bytes);
        Assert.Equal(Bits(F["f16_back"].ToArray()), Bits(ours["h"].ToArray()));
        Assert.Equal(Bits(F["bf16_back"].ToArray()), Bits(ours["b"].ToArray()));
        Assert.Equal(src.Length, ours["h"].Size);
    }

    [Fact]
    public void IntegersMatchTorchCasts()
    {
        var header = SafeTensors.ReadHeader(Fixtures.PathOf("dtypes.safetensors"));
        Assert.Equal(SafeTensorDType.I64, header["i64"].DType);
        Assert.Equal(SafeTensorDType.I32, header["i32"].DType);
        Assert.Equal(SafeTensorDType.U8, header["u8"].DType);
        Assert.Equal(F["i64_as_f32"].ToArray(), F["i64"].ToArray());
        Assert.All(F["i32"].ToArray(), v => Assert.InRange(v, -(1 << 24), 1 << 24));
        Assert.All(F["u8"].ToArray(), v => Assert.InRange(v, 0, 255));
        Assert.Contains(F["u8"].ToArray(), v => v > 127);   // unsigned bytes above 127 stay positive
    }

    private static int[] Bits(float[] a) => a.Select(x => float.IsNaN(x) ? -1 : BitConverter.SingleToInt32Bits(x)).ToArray();
}
