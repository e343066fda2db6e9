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
                var model = new UNet2DModel(cfg);
                Console.WriteLine($"  parameters {model.ParameterCount:N0}; forward {model.ForwardFlopsPerImage(cfg.SampleSize ?? 32, cfg.SampleSize ?? 32) / 1e9:F3} GFLOP per image");
            }
            var weights = Path.Combine(unetDir, "diffusion_pytorch_model.safetensors");
            if (File.Exists(weights)) DescribeSafetensors(weights, listAll);
            var sched = Path.Combine(target, "scheduler", "scheduler_config.json");
            if (File.Exists(sched)) Console.WriteLine($"scheduler ({sched}): {JsonDocument.Parse(File.ReadAllText(sched)).RootElement}");
            var info = Path.Combine(target, "model_info.json");
            if (File.Exists(info)) Console.WriteLine($"model info: {JsonDocument.Parse(File.ReadAllText(info)).RootElement}");
            var state = Path.Combine(target, "checkpoint", "trainer_state.json");
            if (File.Exists(state))
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(state));
                Console.WriteLine($"training checkpoint: step {doc.RootElement.GetProperty("Step").GetInt64()} of {doc.RootElement.GetProperty("Options").GetProperty("Steps").GetInt64()}");
            }
            return 0;
        });
        return cmd;
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
