using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using DiffusionSharp.Data;
using DiffusionSharp.Evaluation;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion train-classifier</c>: trains the small CNN whose features <c>diffusion eval --fid</c> uses.</summary>
public static class TrainClassifierCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "Data set (as for `diffusion train --data`); its train split trains, its test split scores", DefaultValueFactory = _ => "fashion-mnist" };
        var output = new Option<string?>("--output", "-o") { Description = "Classifier folder to write (model.safetensors + config.json)" };
        var outAlias = new Option<string?>("--out") { Description = "Old name of --output", Hidden = true };
        var overwrite = CliOptions.Overwrite("Replace an existing classifier in --output");
        var steps = CliOptions.InRange(new Option<int>("--steps") { Description = "Optimizer steps", DefaultValueFactory = _ => 3000 }, 1, 100_000_000);
        var batch = CliOptions.Batch("Images per batch", 128);
        var lr = CliOptions.InRange(new Option<double>("--lr") { Description = "Peak Adam learning rate (warm-up, then cosine decay)", DefaultValueFactory = _ => 2e-3 }, 1e-12, 10.0);
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the data order", DefaultValueFactory = _ => 0UL };
        var size = CliOptions.InRange(new Option<int?>("--size") { Description = "Image size (default: the data set's; match the diffusion model's sample_size)" }, 1, Nn.UNet.UNet2DConfig.MaxSampleSize);
        var channels = CliOptions.InRange(new Option<int?>("--channels") { Description = "1 (gray) or 3 (RGB) (default: the data set's)" }, 1, 3);
        var widths = new Option<string>("--widths") { Description = "Convolution widths, comma separated", DefaultValueFactory = _ => "32,64,128" };
        var features = CliOptions.InRange(new Option<int>("--features") { Description = "Feature (penultimate layer) width", DefaultValueFactory = _ => 128 }, 1, 8192);
        var flip = new Option<bool>("--flip") { Description = "Random left-right flips" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object" };
        var cmd = new Command("train-classifier",
            "Train a small CNN classifier on a data set; its penultimate-layer features are what `diffusion eval --fid` measures FID, " +
            "precision and recall in. This is NOT Inception-v3: its FID values are only comparable with FIDs from the same classifier.")
        {
            data, output, outAlias, overwrite, steps, batch, lr, seed, size, channels, widths, features, flip, json,
        };
        cmd.SetAction(p =>
        {
            var sw = Stopwatch.StartNew();
            string dataName = p.GetValue(data)!;
            string outDir = p.GetValue(output) ?? p.GetValue(outAlias) ?? throw new ArgumentException("--output/-o is required: the classifier folder to write.");
            if (File.Exists(outDir)) throw new ArgumentException($"--output {outDir} is a file; give a folder.");
            if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() && !p.GetValue(overwrite))
                throw new ArgumentException($"--output {outDir} already exists and is not empty; pass --overwrite to replace the classifier in it.");
            OutputGuard.CheckWritableFolder(Path.GetFullPath(outDir), "--output");
            var opts = new DatasetOptions { Train = true, Size = p.GetValue(size), Channels = p.GetValue(channels) };
            var train = Datasets.Open(dataName, opts);
            var test = Datasets.Open(dataName, opts with { Train = false, Size = train.Size, Channels = train.Channels });
            int numClasses = train.ClassNames.Count > 0 ? train.ClassNames.Count : 0;
            if (numClasses < 2) throw new ArgumentException($"{dataName} has {numClasses} class(es); a classifier needs labels of at least 2 classes.");
            int[] w;
            try { w = p.GetValue(widths)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(); }
            catch (Exception e) when (e is FormatException or OverflowException) { throw new ArgumentException($"--widths must be comma-separated integers, got '{p.GetValue(widths)}'."); }
            if (w.Length == 0 || w.Any(v => v < 1 || v > 4096)) throw new ArgumentException($"--widths needs 1 or more widths in 1..4096, got '{p.GetValue(widths)}'.");
            var cfg = new ClassifierConfig
            {
                ImageSize = train.Size, InChannels = train.Channels, Channels = w, FeatureDim = p.GetValue(features), NumClasses = numClasses,
                ClassNames = train.ClassNames.ToArray(), Dataset = dataName, TrainSteps = p.GetValue(steps), BatchSize = p.GetValue(batch),
            };
            var model = new FeatureClassifier(cfg, new Tensors.Generator(p.GetValue(seed)));
            var to = new ClassifierTrainOptions
            {
                Steps = p.GetValue(steps), BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr), Seed = p.GetValue(seed),
                RandomFlip = p.GetValue(flip), WarmupSteps = Math.Min(100, Math.Max(1, p.GetValue(steps) / 10)),
            };
            Console.Error.WriteLine($"classifier: {model.ParameterCount:N0} parameters; data: {train.Description} ({train.Count} train / {test.Count} test images, {train.Channels}x{train.Size}x{train.Size}, {numClasses} classes)");
            ClassifierStep last = default;
            using (var ctrlC = Cli.Progress.CancelOnCtrlC())
            {
                double avgLoss = double.NaN, avgAcc = double.NaN;
                var tw = Stopwatch.StartNew();
                Cli.Progress.RunWithStatus("training classifier", (report, status) =>
                {
                    last = ClassifierTraining.Train(model, train, to, s =>
                    {
                        // exponential moving averages make the noisy per-batch figures readable
                        avgLoss = double.IsNaN(avgLoss) ? s.Loss : 0.98 * avgLoss + 0.02 * s.Loss;
                        avgAcc = double.IsNaN(avgAcc) ? s.Accuracy : 0.98 * avgAcc + 0.02 * s.Accuracy;
                        double ips = s.Step * to.BatchSize / Math.Max(1e-9, tw.Elapsed.TotalSeconds);
                        status($"step {s.Step}/{to.Steps} loss {avgLoss:F4} batch acc {avgAcc:P1} {ips:F0} img/s");
                        report(s.Step, to.Steps);
                    }, ctrlC.Token);
                });
            }
            double accuracy = 0;
            Cli.Progress.Run($"scoring {test.Count} test images", report => accuracy = ClassifierTraining.Evaluate(model, test, progress: report));
            model.Config = model.Config with { TestAccuracy = Math.Round(accuracy, 6), TestImages = test.Count, TrainSteps = last.Step };
            model.Save(outDir);
            var result = new
            {
                classifier = outDir, data = dataName, steps = last.Step, test_accuracy = accuracy, test_images = test.Count,
                parameters = model.ParameterCount, seconds = Math.Round(sw.Elapsed.TotalSeconds, 1),
            };
            if (p.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(result));
            else Console.WriteLine($"test accuracy {accuracy:P2} on {test.Count} images after {last.Step} steps ({result.seconds} s); classifier written to {outDir}");
            return 0;
        });
        return cmd;
    }
}
