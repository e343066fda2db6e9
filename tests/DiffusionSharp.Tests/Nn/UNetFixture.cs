using System.Text.Json;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Tests.Nn;

/// <summary>Builds the unet_tiny fixture models from their upstream configs and weights.</summary>
internal static class UNetFixture
{
    public static UNet2DConfig ConfigOf(string jsonFile)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf(jsonFile)));
        return UNet2DConfig.Parse(doc.RootElement.GetProperty("full_config").GetRawText(), jsonFile);
    }

    /// <summary>Weights under "model.*" with the prefix stripped, from one or more files (later files override).</summary>
    public static Dictionary<string, Tensor> Weights(params string[] files)
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var f in files)
            foreach (var (k, v) in Fixtures.Load(f))
                if (k.StartsWith("model.", StringComparison.Ordinal)) d[k["model.".Length..]] = v;
        return d;
    }

    /// <summary>Max |a-b| / max |b| style check per tensor; returns the relative error.</summary>
    public static double MaxRelToMax(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double maxDiff = 0, maxB = 0;
        for (int i = 0; i < b.Length; i++) { maxDiff = Math.Max(maxDiff, Math.Abs((double)a[i] - b[i])); maxB = Math.Max(maxB, Math.Abs(b[i])); }
        return maxB == 0 ? maxDiff : maxDiff / maxB;
    }

    public static double MaxAbs(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double m = 0;
        for (int i = 0; i < b.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }
}
