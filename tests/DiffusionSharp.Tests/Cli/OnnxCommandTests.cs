using DiffusionSharp.Cli;
using DiffusionSharp.IO;
using Xunit;

namespace DiffusionSharp.Tests.Cli;

/// <summary><c>diffusion export --onnx</c> and <c>diffusion sample --backend onnx</c> on the bundled model.</summary>
[Collection("console")]
public sealed class OnnxCommandTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-onnx-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static int Run(params string[] args) => CommandTests.Run(args);

    [Fact]
    public void ExportedOnnxSamplesTheSameImagesAsOurBackend()
    {
        Directory.CreateDirectory(_root);
        var model = Path.GetDirectoryName(DiffusionSharp.Tests.IO.OnnxExportTests.FindBundledUNet())!;
        var onnx = Path.Combine(_root, "unet.onnx");
        Assert.Equal(0, Run("export", "-m", model, "--onnx", onnx));
        Assert.True(new FileInfo(onnx).Length > 1_000_000);
        string ours = Path.Combine(_root, "ours.png"), viaOrt = Path.Combine(_root, "ort.png");
        string[] common = { "sample", "-m", model, "-n", "4", "--steps", "3", "--seed", "5" };
        Assert.Equal(0, Run(common.Concat(new[] { "-o", ours }).ToArray()));
        Assert.Equal(0, Run(common.Concat(new[] { "-o", viaOrt, "--backend", "onnx", "--onnx", onnx }).ToArray()));
        var a = Png.Read(ours).Data;
        var b = Png.Read(viaOrt).Data;
        Assert.Equal(a.Length, b.Length);
        // 8-bit images of the same floats up to 1e-4 relative: at most one level apart.
        int maxDiff = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(maxDiff <= 1, $"pixels differ by up to {maxDiff} levels");
        Assert.NotEqual(0, Run("sample", "-m", model, "-n", "1", "--backend", "onnx", "--onnx", Path.Combine(_root, "missing.onnx"), "-o", ours));
    }
}
