using System.CommandLine;
using System.Diagnostics;
using DiffusionSharp.Diffusion;
using DiffusionSharp.IO;
using Spectre.Console;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion sample</c>: generate images with any scheduler or sampler and write a PNG grid.</summary>
public static class SampleCommand
{
    public static Command Create()
    {
        var model = CliOptions.Model("Model folder (pipeline or UNet; default: the bundled Fashion-MNIST model)");
        var output = CliOptions.Output("Grid PNG to write", "samples.png");
        var count = CliOptions.Count("Number of images", 64);
        var steps = CliOptions.Steps("Sampler steps", 20);
        var sampler = CliOptions.Sampler();
        var seed = CliOptions.Seed();
        var cls = CliOptions.Class();
        var guidance = CliOptions.Guidance();
        var batch = CliOptions.Batch("Images per network call", 64);
        var eta = CliOptions.InRange(new Option<double>("--eta") { Description = "DDIM eta (0 = deterministic)", DefaultValueFactory = _ => 0.0 }, 0.0, 10.0);
        var each = new Option<string?>("--each") { Description = "Also write every image as a PNG into this folder" };
        var nrow = CliOptions.InRange(new Option<int>("--nrow") { Description = "Images per grid row", DefaultValueFactory = _ => 8 }, 1, 4096);
        var overwrite = CliOptions.Overwrite("Replace an existing grid and existing images in --each");
        var backend = new Option<string>("--backend") { Description = "Network runtime: ours, or onnx (the U-Net exported to ONNX, run by ONNX Runtime)", DefaultValueFactory = _ => "ours" };
        backend.AcceptOnlyFromAmong("ours", "onnx");
        var onnxFile = new Option<string?>("--onnx") { Description = "With --backend onnx: a .onnx file written by `diffusion export --onnx` (default: export the model in memory)" };
        var cmd = new Command("sample", "Generate images and write them as a PNG grid.")
        {
            model, output, count, steps, sampler, seed, cls, guidance, batch, eta, each, nrow, backend, onnxFile, overwrite,
        };
        cmd.SetAction(p =>
        {
            var sw = Stopwatch.StartNew();
            CheckOutputs(p.GetValue(output)!, p.GetValue(each), p.GetValue(count), p.GetValue(overwrite));
            var dir = ModelLocator.Resolve(p.GetValue(model));
            var pipe = DiffusionPipeline.FromPretrained(dir);
            int? label = ParseClass(p.GetValue(cls), pipe.ClassNames);
            using var ort = p.GetValue(backend) == "onnx" ? OnnxBackend.For(pipe.Unet, p.GetValue(onnxFile), DiffusionSharp.Runtime.Threading.Threads) : null;
            if (ort != null) pipe.NetworkOverride = ort.Forward;
            var req = new SampleRequest
            {
                Count = p.GetValue(count), Steps = p.GetValue(steps), Sampler = pipe.ResolveSampler(p.GetValue(sampler)!), Seed = p.GetValue(seed),
                ClassLabel = label, GuidanceScale = p.GetValue(guidance), BatchSize = p.GetValue(batch), Eta = p.GetValue(eta),
            };
            var comm = DiffusionSharp.Runtime.Mpi.Current;  // under mpirun each rank samples whole batches of the same images
            req = req with { ShardIndex = comm.Rank, ShardCount = comm.Size };
            var (first, mine) = req.ShardRange;
            bool root = comm.Rank == 0;
            int chain = pipe.ChainSteps(req.Sampler, req.Steps);
            if (chain != req.Steps)
                Console.Error.WriteLine($"note: --steps {req.Steps} is more than the model's {chain} training timesteps; {req.Sampler} runs {chain} steps (the k- samplers run any number)");
            double loadSeconds = sw.Elapsed.TotalSeconds;
            Tensors.Tensor? images = null;
            var sampling = Stopwatch.StartNew();
            if (!root) { if (mine > 0) images = pipe.Sample(req); }
            else Cli.Progress.Run($"sampling {req.Count} images ({req.Sampler}, {req.Steps} steps{(comm.Size > 1 ? $", split over {comm.Size} ranks" : "")})", report =>
            {
                images = pipe.Sample(req, (done, total) => report(done, total));
            });
            double sampleSeconds = sampling.Elapsed.TotalSeconds, netSeconds = pipe.NetworkTime.TotalSeconds;
            if (p.GetValue(each) is string eachDir && images != null)
            {
                Directory.CreateDirectory(eachDir);
                for (int i = 0; i < images.Dim(0); i++)
                {
                    using var one = images.Narrow(0, i, 1);
                    OutputGuard.WriteAtomically(Path.Combine(eachDir, EachName(first + i)), f => ImageGrid.Save(f, one, nrow: 1, padding: 0));
                }
            }
            if (comm.Size > 1)
            {
                // rank 0 needs every image for the grid: an all-reduce of a zero-filled buffer in which each rank fills its rows
                int c = pipe.Unet.Config.InChannels, hw = pipe.Unet.Config.SampleSize ?? 32, per = c * hw * hw;
                var all = new float[(long)req.Count * per];
                images?.Span.CopyTo(all.AsSpan(first * per));
                comm.AllReduceSum(all);
                images?.Dispose();
                images = Tensors.Tensor.FromArray(all, req.Count, c, hw, hw);
                if (!root) { images.Dispose(); return 0; }
            }
            if (images == null) return 0;
            var outPath = p.GetValue(output)!;
            OutputGuard.WriteAtomically(outPath, f => ImageGrid.Save(f, images, nrow: p.GetValue(nrow)));
            Console.Error.WriteLine($"wrote {outPath}: {images.Dim(0)} images in {sw.Elapsed.TotalSeconds:F1} s (model load {loadSeconds:F1} s) from {dir}{(ort != null ? " through ONNX Runtime" : "")}");
            Console.Error.WriteLine($"sampling {sampleSeconds:F2} s: network {netSeconds:F2} s in {pipe.NetworkCalls} calls, outside the network {sampleSeconds - netSeconds:F2} s ({100 * (sampleSeconds - netSeconds) / sampleSeconds:F1}%)");
            images.Dispose();
            return 0;
        });
        return cmd;
    }

    private static string EachName(int index) => $"{index:D5}.png";

    // Every output is checked before the model is loaded: existing files need --overwrite, links are not followed, folders must be writable.
    private static void CheckOutputs(string grid, string? eachDir, int count, bool overwrite)
    {
        OutputGuard.CheckFile(grid, overwrite, "--output");
        if (eachDir == null) return;
        if (OutputGuard.IsLink(eachDir) && !overwrite) throw new ArgumentException($"--each {eachDir} is a symbolic link; give the real folder.");
        OutputGuard.CheckWritableFolder(Path.GetFullPath(eachDir), "--each");
        var gridFull = Path.GetFullPath(grid);
        for (int i = 0; i < count; i++)
        {
            var f = Path.GetFullPath(Path.Combine(eachDir, EachName(i)));
            if (f == gridFull) throw new ArgumentException($"--output {grid} is also the name of image {i} in --each {eachDir}; choose another name.");
            if (!overwrite && (File.Exists(f) || OutputGuard.IsLink(f)))
                throw new ArgumentException($"--each {eachDir} already holds {EachName(i)}; pass --overwrite to replace its images, or choose an empty folder.");
        }
    }

    /// <summary>Parses a class given as an index or a (case-insensitive) name.</summary>
    public static int? ParseClass(string? value, IReadOnlyList<string> names)
    {
        if (value == null) return null;
        if (int.TryParse(value, out int i)) return i;
        for (int k = 0; k < names.Count; k++)
            if (string.Equals(names[k], value, StringComparison.OrdinalIgnoreCase)) return k;
        throw new ArgumentException($"Unknown class '{value}'; classes are: {string.Join(", ", names.Select((n, k) => $"{k}={n}"))}.");
    }
}
