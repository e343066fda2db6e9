using System.Text.Json;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Diffusion;

/// <summary>Helpers for replaying and comparing the upstream sampler traces.</summary>
internal static class TraceAssert
{
    private static readonly Dictionary<string, JsonDocument> Docs = new();

    public static JsonElement Json(string file)
    {
        lock (Docs)
        {
            if (!Docs.TryGetValue(file, out var d)) Docs[file] = d = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf(file)));
            return d.RootElement;
        }
    }

    /// <summary>Entry <paramref name="i"/> along the leading axis, as a new tensor.</summary>
    public static Tensor Row(Tensor t, int i)
    {
        var dims = t.Shape.ToArray();
        int per = t.Size / dims[0];
        return Tensor.FromSpan(t.Span.Slice(i * per, per), new Shape(dims[1..]));
    }

    /// <summary>max|a - b| / max|b| (absolute when b is all zeros).</summary>
    public static double RelErr(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(b.Length, a.Length);
        double maxDiff = 0, maxB = 0;
        for (int i = 0; i < a.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)a[i] - b[i]));
            if (double.IsNaN(a[i])) maxDiff = double.PositiveInfinity;
            maxB = Math.Max(maxB, Math.Abs((double)b[i]));
        }
        return maxB > 0 ? maxDiff / maxB : maxDiff;
    }

    /// <summary>Asserts max|a - b| &lt;= tol * max|b| and returns the ratio.</summary>
    public static double Close(Tensor a, Tensor b, double tol, string what)
    {
        Assert.True(a.Shape == b.Shape, $"{what}: shape {a.Shape} vs expected {b.Shape}");
        double e = RelErr(a.Span, b.Span);
        Assert.True(e <= tol, $"{what}: max|a-b|/max|b| = {e:E3} > {tol:E1}");
        return e;
    }

    public static double Close(IReadOnlyList<double> a, ReadOnlySpan<float> b, double tol, string what)
    {
        Assert.True(a.Count == b.Length, $"{what}: {a.Count} values vs expected {b.Length}");
        var af = a.Select(x => (float)x).ToArray();
        double e = RelErr(af, b);
        Assert.True(e <= tol, $"{what}: max|a-b|/max|b| = {e:E3} > {tol:E1} ([{string.Join(", ", a)}] vs [{string.Join(", ", b.ToArray())}])");
        return e;
    }
}
