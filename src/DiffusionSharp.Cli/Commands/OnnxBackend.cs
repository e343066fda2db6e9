using DiffusionSharp.IO.Onnx;
using DiffusionSharp.Nn.UNet;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Tensor = DiffusionSharp.Tensors.Tensor;

namespace DiffusionSharp.Cli.Commands;

/// <summary>Runs an exported U-Net (<see cref="UNetOnnxExporter"/>) in ONNX Runtime with the signature of <c>UNet2DModel.Forward</c>.</summary>
public sealed class OnnxBackend : IDisposable
{
    private readonly InferenceSession _session;
    private readonly UNet2DConfig _config;

    /// <summary>Loads <paramref name="onnxModel"/> (the bytes of an exported graph) for the U-Net with <paramref name="config"/>.</summary>
    public OnnxBackend(byte[] onnxModel, UNet2DConfig config, int threads)
    {
        _config = config;
        using var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        _session = new InferenceSession(onnxModel, options);
    }

    /// <summary>The backend for a model: the given .onnx file, or the model exported in memory.</summary>
    public static OnnxBackend For(UNet2DModel unet, string? onnxFile, int threads)
    {
        if (onnxFile != null && !File.Exists(onnxFile)) throw new FileNotFoundException($"ONNX model not found: {onnxFile}", onnxFile);
        return new OnnxBackend(onnxFile != null ? File.ReadAllBytes(onnxFile) : UNetOnnxExporter.ToBytes(unet), unet.Config, threads);
    }

    /// <summary>out_sample for x [N, C, H, W], timesteps [N] and class labels [N] (or null).</summary>
    public Tensor Forward(Tensor x, Tensor timesteps, Tensor? classLabels)
    {
        int n = x.Dim(0);
        var t = timesteps.Size == n ? timesteps.ToArray() : Enumerable.Repeat(timesteps.Span[0], n).ToArray();
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.SampleInput, new DenseTensor<float>(x.ToArray(), x.Shape.ToArray())),
            NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.TimestepInput, new DenseTensor<float>(t, new[] { n })),
        };
        if (UNetOnnxExporter.HasClassInput(_config))
        {
            if (classLabels == null) throw new ArgumentException("This ONNX U-Net is class conditional: class labels must be given.");
            inputs.Add(UNetOnnxExporter.ClassInputType(_config) == OnnxDataType.Int64
                ? NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.ClassLabelsInput,
                    new DenseTensor<long>(classLabels.ToArray().Select(v => (long)v).ToArray(), new[] { n }))
                : NamedOnnxValue.CreateFromTensor(UNetOnnxExporter.ClassLabelsInput, new DenseTensor<float>(classLabels.ToArray(), classLabels.Shape.ToArray())));
        }
        using var results = _session.Run(inputs);
        var o = results.First(r => r.Name == UNetOnnxExporter.Output).AsTensor<float>();
        return Tensor.FromArray(o.ToArray(), o.Dimensions.ToArray());
    }

    /// <summary>Releases the session.</summary>
    public void Dispose() => _session.Dispose();
}
