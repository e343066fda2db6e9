using System.CommandLine;
using DiffusionSharp.IO;
using DiffusionSharp.IO.Onnx;
using DiffusionSharp.Nn.UNet;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion export</c>: copy a model folder (pipeline or bare UNet) to a new folder, optionally with F16 weights, and/or write the U-Net as ONNX.</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model or run folder to export", Required = true };
        var output = new Option<string?>("--output", "-o") { Description = "Folder to write (unet/, scheduler/, model_info.json)" };
        var half = new Option<bool>("--half") { Description = "Store weights as F16 (half the size)" };
        var onnx = new Option<string?>("--onnx") { Description = $"Also (or only) write the U-Net as an ONNX graph to this file (opset {UNetOnnxExporter.Opset}, dynamic batch)" };
        var overwrite = CliOptions.Overwrite("Replace an existing --output folder (its old files are removed) or --onnx file");
        var cmd = new Command("export", "Write a model folder in diffusers layout (optionally F16) and/or the U-Net as ONNX.") { model, output, half, onnx, overwrite };
        cmd.SetAction(p =>
        {
            string src = p.GetValue(model)!;
            string? dst = p.GetValue(output), onnxPath = p.GetValue(onnx);
            if (dst == null && onnxPath == null) throw new ArgumentException("export needs --output DIR, --onnx FILE, or both.");
            bool replace = p.GetValue(overwrite);
            if (!Directory.Exists(src)) throw new DirectoryNotFoundException($"--model folder not found: {src}");
            if (dst != null)
            {
                string s = Path.TrimEndingDirectorySeparator(Path.GetFullPath(src)), d = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dst));
                if (s == d || s.StartsWith(d + Path.DirectorySeparatorChar, StringComparison.Ordinal) || d.StartsWith(s + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                    throw new ArgumentException($"--output {dst} and --model {src} overlap; export into a separate folder.");
                if (File.Exists(d)) throw new ArgumentException($"--output {dst} is a file; give a folder.");
                if (OutputGuard.IsLink(d)) throw new ArgumentException($"--output {dst} is a symbolic link; give the real folder.");
                if (Directory.Exists(d) && Directory.EnumerateFileSystemEntries(d).Any() && !replace)
                    throw new ArgumentException($"--output {dst} already exists and is not empty; pass --overwrite to replace it.");
                OutputGuard.CheckWritableFolder(Path.GetDirectoryName(d)!, "--output");
            }
            if (onnxPath != null) OutputGuard.CheckFile(onnxPath, replace, "--onnx");
            string unetSrc = Directory.Exists(Path.Combine(src, "unet")) ? Path.Combine(src, "unet") : src;
            var unet = UNet2DModel.FromPretrained(unetSrc);
            if (onnxPath != null)
            {
                UNetOnnxExporter.Export(unet, onnxPath);
                Console.Error.WriteLine($"wrote {onnxPath} ({new FileInfo(onnxPath).Length:N0} bytes, opset {UNetOnnxExporter.Opset}; inputs " +
                    $"{UNetOnnxExporter.SampleInput}, {UNetOnnxExporter.TimestepInput}{(UNetOnnxExporter.HasClassInput(unet.Config) ? ", " + UNetOnnxExporter.ClassLabelsInput : "")}; output {UNetOnnxExporter.Output})");
            }
            if (dst == null) return 0;
            // written into a side folder and swapped in, so no stale file of an earlier export survives and a failure leaves the old folder
            string final = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dst)), stage = final + $".export-{Environment.ProcessId}.tmp";
            if (Directory.Exists(stage)) Directory.Delete(stage, recursive: true);
            var unetDst = Path.Combine(stage, "unet");
            Directory.CreateDirectory(unetDst);
            File.WriteAllText(Path.Combine(unetDst, "config.json"), unet.Config.ToJson() + "\n");
            SafeTensors.Save(Path.Combine(unetDst, "diffusion_pytorch_model.safetensors"), unet.StateDict(),
                p.GetValue(half) ? SafeTensorDType.F16 : SafeTensorDType.F32, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var rel in new[] { Path.Combine("scheduler", "scheduler_config.json"), "model_info.json" })
            {
                var from = Path.Combine(src, rel);
                if (!File.Exists(from)) continue;
                var to = Path.Combine(stage, rel);
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(from, to, overwrite: true);
            }
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(stage, final);
            Console.Error.WriteLine($"wrote {dst} ({unet.ParameterCount:N0} parameters, {(p.GetValue(half) ? "F16" : "F32")})");
            return 0;
        });
        return cmd;
    }
}
