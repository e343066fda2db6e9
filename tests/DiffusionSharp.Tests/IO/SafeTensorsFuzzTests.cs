using System.Text;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.IO;

/// <summary>Corrupted and random inputs must give a valid load or an InvalidDataException: never another exception, a hang, or a huge allocation.</summary>
public sealed class SafeTensorsFuzzTests
{
    private static byte[] SmallFile()
    {
        var g = new Generator(3);
        return SafeTensors.Serialize(new List<SafeTensorWriteItem>
        {
            new("w", Tensor.Randn(g, 3, 4)),
            new("b", Tensor.Randn(g, 4), SafeTensorDType.F16),
            new("s", Tensor.Scalar(2f), SafeTensorDType.BF16),
        }, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Outcome of one load: whether it succeeded; throws if anything but InvalidDataException escaped or memory use was absurd.</summary>
    private static bool TryLoad(byte[] bytes, string what)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        bool ok;
        try
        {
            var d = SafeTensors.Load(bytes, what);
            foreach (var t in d.Values) t.Dispose();
            ok = true;
        }
        catch (InvalidDataException e)
        {
            Assert.StartsWith(what + ": ", e.Message);
            ok = false;
        }
        catch (Exception e)
        {
            throw new Xunit.Sdk.XunitException($"{what}: expected InvalidDataException or success, got {e.GetType().Name}: {e.Message}");
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 4_000_000 + 64L * bytes.Length, $"{what}: allocated {allocated} bytes for a {bytes.Length}-byte input.");
        return ok;
    }

    private static void WithTimeout(int seconds, Action body)
    {
        var task = Task.Factory.StartNew(body, TaskCreationOptions.LongRunning);
        Assert.True(task.Wait(TimeSpan.FromSeconds(seconds)), $"fuzz loop did not finish within {seconds} s (hang?)");
        task.GetAwaiter().GetResult();
    }

    [Fact]
    public void EveryTruncationFailsCleanly()
    {
        var file = SmallFile();
        Assert.True(TryLoad(file, "full"));
        WithTimeout(20, () =>
        {
            for (int len = 0; len < file.Length; len++)
                Assert.False(TryLoad(file.AsSpan(0, len).ToArray(), $"truncated-{len}"), $"truncation to {len} bytes loaded");
        });
    }

    [Fact]
    public void EveryTruncationOnDiskNamesTheFile()
    {
        var file = SmallFile();
        var dir = Path.Combine(Path.GetTempPath(), "ds-fuzz-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            WithTimeout(20, () =>
            {
                for (int len = 0; len < file.Length; len += 3)
                {
                    var p = Path.Combine(dir, $"t{len}.safetensors");
                    File.WriteAllBytes(p, file.AsSpan(0, len).ToArray());
                    var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(p));
                    Assert.StartsWith(p + ": ", e.Message);
                    File.Delete(p);
                }
            });
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void EveryFlippedHeaderByteLoadsOrFailsCleanly()
    {
        var file = SmallFile();
        long headerEnd = 8 + SafeTensorsFile.Open(file).Header.HeaderLength;
        byte[] masks = { 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF };
        int loaded = 0, failed = 0;
        WithTimeout(30, () =>
        {
            for (int pos = 0; pos < headerEnd; pos++)
                foreach (var m in masks)
                {
                    var copy = (byte[])file.Clone();
                    copy[pos] ^= m;
                    if (TryLoad(copy, $"flip-{pos}-{m:X2}")) loaded++; else failed++;
                }
        });
        Assert.True(failed > 0);
        Assert.True(loaded > 0);  // e.g. flips inside names or metadata text keep a valid file
    }

    [Fact]
    public void RandomHeadersLoadOrFailCleanly()
    {
        Assert.True(TryLoad(SmallFile(), "warm-up"));
        var rng = new Random(1234);
        int loaded = 0, failed = 0;
        WithTimeout(30, () =>
        {
            for (int i = 0; i < 600; i++)
            {
                var bytes = RandomFile(rng, out bool shouldLoad);
                bool ok = TryLoad(bytes, $"random-{i}");
                if (shouldLoad) Assert.True(ok, $"random-{i} was built valid but failed: {Encoding.UTF8.GetString(bytes, 8, Math.Min(200, bytes.Length - 8))}");
                if (ok) loaded++; else failed++;
            }
        });
        Assert.True(loaded > 50, $"only {loaded} random files loaded");
        Assert.True(failed > 50, $"only {failed} random files failed");
    }

    private static readonly string[] DTypes = { "F32", "F16", "BF16", "I64", "I32", "U8", "F64", "BOOL", "F8_E4M3", "f32", "Q4", "" };

    /// <summary>A random safetensors image: a well-formed one, or one with a random defect; <paramref name="valid"/> says which.</summary>
    private static byte[] RandomFile(Random rng, out bool valid)
    {
        int kind = rng.Next(10);
        if (kind == 0)
        {
            // Random bytes after a plausible length prefix.
            valid = false;
            var junk = new byte[rng.Next(0, 200)];
            rng.NextBytes(junk);
            if (junk.Length >= 8) BitConverter.TryWriteBytes(junk, (ulong)rng.Next(0, junk.Length));
            return junk;
        }
        int n = rng.Next(0, 5);
        var sb = new StringBuilder("{");
        var data = new List<byte>();
        long off = 0;
        valid = true;
        if (rng.Next(3) == 0) sb.Append("\"__metadata__\":{\"k\":\"v\"},");
        for (int i = 0; i < n; i++)
        {
            string dtype = kind < 6 ? DTypes[rng.Next(8)] : DTypes[rng.Next(DTypes.Length)];
            if (!SafeTensorDTypes.TryParse(dtype, out var dt)) valid = false;
            int es = valid || SafeTensorDTypes.TryParse(dtype, out dt) ? dt.SizeOf() : 4;
            int rank = rng.Next(0, 4);
            var shape = new long[rank];
            long count = 1;
            for (int r = 0; r < rank; r++) { shape[r] = rng.Next(0, 5); count *= shape[r]; }
            long begin = off, end = off + count * es;
            if (kind >= 6)
            {
                switch (rng.Next(8))
                {
                    case 0: shape = shape.Length > 0 ? shape.Select(d => -d - 1).ToArray() : new long[] { -1 }; valid = false; break;
                    case 1: end += rng.Next(1, 9); valid = false; break;
                    case 2: begin += rng.Next(1, 9); valid = false; break;
                    case 3: shape = new long[] { long.MaxValue / 2, 3 }; valid = false; break;
                    case 4: end = long.MaxValue; valid = false; break;
                    case 5: begin = end + 1; valid = false; break;
                }
            }
            string shapeText = "[" + string.Join(",", shape) + "]";
            string name = rng.Next(6) == 0 && i > 0 ? "t0" : $"t{i}";
            if (name == "t0" && i > 0) valid = false;
            string entry = rng.Next(12) switch
            {
                0 when kind >= 6 => $"{{\"shape\":{shapeText},\"data_offsets\":[{begin},{end}]}}",
                1 when kind >= 6 => $"{{\"dtype\":\"{dtype}\",\"data_offsets\":[{begin},{end}]}}",
                2 when kind >= 6 => $"{{\"dtype\":\"{dtype}\",\"shape\":{shapeText}}}",
                3 when kind >= 6 => $"[{begin},{end}]",
                _ => $"{{\"dtype\":\"{dtype}\",\"shape\":{shapeText},\"data_offsets\":[{begin},{end}]}}",
            };
            if (kind >= 6 && !(entry.StartsWith("{\"dtype\"") && entry.Contains("shape") && entry.Contains("data_offsets"))) valid = false;
            if (i > 0) sb.Append(',');
            sb.Append('"').Append(name).Append("\":").Append(entry);
            long bytes = count * es;
            var chunk = new byte[bytes];
            rng.NextBytes(chunk);
            data.AddRange(chunk);
            off += bytes;
        }
        if (sb[^1] == ',') sb.Length--;
        sb.Append('}');
        if (kind >= 8) { sb.Length -= rng.Next(1, Math.Min(4, sb.Length)); valid = false; }
        if (kind == 9 && rng.Next(2) == 0) { data.Add(0); valid = false; }
        var file = SafeTensorsTests.Raw(sb.ToString() + new string(' ', rng.Next(0, 8)), data.ToArray());
        return file;
    }
}
