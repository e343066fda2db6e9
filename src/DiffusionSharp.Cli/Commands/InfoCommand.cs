using System.CommandLine;
using System.Text.Json;
using DiffusionSharp.IO;
using DiffusionSharp.Nn.UNet;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion info</c>: what a model folder, run folder or safetensors file holds.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "Model folder, run folder or .safetensors file" };
        var all = new Option<bool>("--tensors") { Description = "List every tensor" };
        var cmd = new Command("info", "Describe a checkpoint or model folder.") { path, all };
        cmd.SetAction(p =>
        {
            var target = p.GetValue(path)!;
            bool listAll = p.GetValue(all);
            if (File.Exists(target)) { DescribeSafetensors(target, listAll); return 0; }
            if (!Directory.Exists(target)) throw new FileNotFoundException($"No such file or folder: {target}");
            var clsWeights = Path.Combine(target, Evaluation.FeatureClassifier.WeightsFile);
            if (File.Exists(clsWeights) && !Directory.Exists(Path.Combine(target, "unet")))
            {
                // a classifier folder (diffusion train-classifier): its config.json is not a U-Net's
                var clsPath = Path.Combine(target, Evaluation.FeatureClassifier.ConfigFile);
                // loading checks the config against the weights, so a folder described here is one that eval --fid accepts
                var c = Evaluation.FeatureClassifier.Load(target).Config;
                Console.WriteLine($"feature classifier ({clsPath}): {c.InChannels}x{c.ImageSize}x{c.ImageSize} images, widths [{string.Join(", ", c.Channels)}], " +
                    $"{c.FeatureDim} features, {c.NumClasses} classes; {c.ParameterCount:N0} parameters; data {c.Dataset}, test accuracy {c.TestAccuracy?.ToString("P2") ?? "not recorded"}");
                DescribeSafetensors(clsWeights, listAll);
                return 0;
            }
            if (!File.Exists(Path.Combine(target, "config.json")) && !File.Exists(Path.Combine(target, "unet", "config.json")) &&
                !File.Exists(Path.Combine(target, "checkpoint", "trainer_state.json")))
                throw new InvalidDataException($"{target} is not a model, run or classifier folder: it has no config.json, unet/config.json or checkpoint/trainer_state.json.");
            var unetDir = Directory.Exists(Path.Combine(target, "unet")) ? Path.Combine(target, "unet") : target;
            var cfgPath = Path.Combine(unetDir, "config.json");
            if (File.Exists(cfgPath))
            {
                var cfg = UNet2DConfig.Load(cfgPath);
                Console.WriteLine($"UNet2DModel ({cfgPath})");
                Console.WriteLine($"  sample_size {cfg.SampleSize}, in {cfg.InChannels}, out {cfg.OutChannels}, blocks [{string.Join(", ", cfg.BlockOutChannels)}], layers_per_block {cfg.LayersPerBlock}");
                Console.WriteLine($"  down [{string.Join(", ", cfg.DownBlockTypes)}]");
                Console.WriteLine($"  up   [{string.Join(", ", cfg.UpBlockTypes)}]");
                Console.WriteLine($"  classes {(cfg.NumClassEmbeds?.ToString() ?? "none")}, attention_head_dim {cfg.AttentionHeadDim?.ToString() ?? "none"}, groups {cfg.NormNumGroups}, dropout {cfg.Dropout}");
                var w = Path.Combine(unetDir, "diffusion_pytorch_model.safetensors");
                // the network is built (to count exactly) only when the weights file could hold it, as when loading
                if (File.Exists(w) && cfg.ApproxConvParameters <= 2.0 * SafeTensors.ReadHeader(w).Tensors.Sum(e => e.ElementCount) + 1e6)
                {
                    var model = new UNet2DModel(cfg);
                    Console.WriteLine($"  parameters {model.ParameterCount:N0}; forward {model.ForwardFlopsPerImage(cfg.SampleSize ?? 32, cfg.SampleSize ?? 32) / 1e9:F3} GFLOP per image");
                }
                else Console.WriteLine($"  parameters at least {cfg.ApproxConvParameters:G3} (estimated; {(File.Exists(w) ? "the weights file holds fewer values" : "no weights file")})");
            }
            var weights = Path.Combine(unetDir, "diffusion_pytorch_model.safetensors");
            if (File.Exists(weights)) DescribeSafetensors(weights, listAll);
            var sched = Path.Combine(target, "scheduler", "scheduler_config.json");
            if (File.Exists(sched)) Console.WriteLine($"scheduler ({sched}): {ReadJson(sched, _ => "")}");
            var info = Path.Combine(target, "model_info.json");
            if (File.Exists(info)) Console.WriteLine($"model info: {ReadJson(info, _ => "")}");
            var state = Path.Combine(target, "checkpoint", "trainer_state.json");
            if (File.Exists(state))
                Console.WriteLine("training checkpoint: " + ReadJson(state, r => $"step {r.GetProperty("Step").GetInt64()} of {r.GetProperty("Options").GetProperty("Steps").GetInt64()}"));
            return 0;
        });
        return cmd;
    }

    // A JSON file's text (or what describe makes of it), with any fault reported against the file.
    private static string ReadJson(string path, Func<JsonElement, string> describe)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var text = describe(doc.RootElement);
            return text.Length > 0 ? text : doc.RootElement.ToString();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: {(e is KeyNotFoundException ? "a required key is missing" : e.Message)}", e);
        }
    }

    private static void DescribeSafetensors(string path, bool listAll)
    {
        var header = SafeTensors.ReadHeader(path);
        long elems = 0;
        foreach (var e in header.Tensors) elems += e.ElementCount;
        Console.WriteLine($"{path}: {header.Tensors.Count} tensors, {elems:N0} values, {new FileInfo(path).Length:N0} bytes; dtypes {string.Join(", ", header.Tensors.Select(e => e.DType.HeaderName()).Distinct())}");
        if (listAll)
            foreach (var e in header.Tensors) Console.WriteLine($"  {e.Name}  {e.DType.HeaderName()}  {e.ShapeText}");
    }
}
