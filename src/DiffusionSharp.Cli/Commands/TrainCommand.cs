using System.CommandLine;
using DiffusionSharp.Data;
using DiffusionSharp.Training;
using Spectre.Console;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion train</c>: train a U-Net on a data set, with checkpoints, metrics, sample grids and resume.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--output", "-o") { Description = "Run folder (checkpoints, metrics.jsonl, loss.png, samples/, exported model)", Required = true };
        var data = new Option<string>("--data") { Description = "Data set: fashion-mnist, mnist, or a folder (IDX, CIFAR-10 batches, PNG class sub-folders)", DefaultValueFactory = _ => "fashion-mnist" };
        var preset = new Option<string>("--preset") { Description = "U-Net preset (ddpm-small, ddpm-cifar, fmnist-tiny)", DefaultValueFactory = _ => "ddpm-small" };
        var config = new Option<string?>("--config") { Description = "A diffusers UNet2DModel config.json (overrides --preset)" };
        var size = new Option<int?>("--size") { Description = "Resize images to this size (default: the data set's)" };
        var batch = new Option<int>("--batch") { Description = "Batch size", DefaultValueFactory = _ => 64 };
        var steps = new Option<long>("--steps") { Description = "Total optimizer steps", DefaultValueFactory = _ => 10_000 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 2e-4 };
        var warmup = new Option<long>("--warmup") { Description = "Linear warm-up steps", DefaultValueFactory = _ => 500 };
        var ema = new Option<double>("--ema") { Description = "EMA decay (0 disables)", DefaultValueFactory = _ => 0.999 };
        var objective = new Option<string>("--objective") { Description = "simple, hybrid (learned variances) or min-snr", DefaultValueFactory = _ => "simple" };
        var vpred = new Option<bool>("--v-prediction") { Description = "Predict v instead of epsilon" };
        var classCond = new Option<bool>("--class-conditional") { Description = "Condition on labels (with classifier-free dropout)" };
        var classDrop = new Option<double>("--class-dropout") { Description = "Label dropout probability for classifier-free guidance", DefaultValueFactory = _ => 0.1 };
        var flip = new Option<bool>("--flip") { Description = "Random horizontal flips" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of every random stream", DefaultValueFactory = _ => 0UL };
        var ckptEvery = new Option<long>("--checkpoint-every") { Description = "Checkpoint every N steps", DefaultValueFactory = _ => 1000 };
        var sampleEvery = new Option<long>("--sample-every") { Description = "Sample grid every N steps (0: never)", DefaultValueFactory = _ => 0 };
        var logEvery = new Option<long>("--log-every") { Description = "Metrics line every N steps", DefaultValueFactory = _ => 10 };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --output from its checkpoint" };
        var schedule = new Option<string>("--beta-schedule") { Description = "linear or cosine", DefaultValueFactory = _ => "linear" };
        var bucketMb = new Option<double>("--bucket-mb") { Description = "Gradient all-reduce bucket size under mpirun (MB)", DefaultValueFactory = _ => 8 };
        var cmd = new Command("train", "Train a diffusion model.")
        {
            output, data, preset, config, size, batch, steps, lr, warmup, ema, objective, vpred, classCond, classDrop, flip, seed,
            ckptEvery, sampleEvery, logEvery, resume, schedule, bucketMb,
        };
        cmd.SetAction(p =>
        {
            string outDir = p.GetValue(output)!;
            var comm = DiffusionSharp.Runtime.Mpi.Current;
            bool root = comm.Rank == 0;
            var dataset = Datasets.Open(p.GetValue(data)!, new DatasetOptions { Size = p.GetValue(size) });
            Trainer trainer;
            if (p.GetValue(resume))
            {
                trainer = Trainer.Resume(outDir, dataset, p.GetValue(steps), comm);
                if (root) Console.Error.WriteLine($"resuming {outDir} at step {trainer.Step}");
            }
            else
            {
                if (Trainer.HasCheckpoint(outDir))
                    throw new InvalidOperationException($"{outDir} already holds a checkpoint; pass --resume to continue it or choose another --output.");
                var opts = new TrainOptions
                {
                    Preset = p.GetValue(preset)!, ModelConfigPath = p.GetValue(config), Data = p.GetValue(data)!,
                    BatchSize = p.GetValue(batch), Steps = p.GetValue(steps), LearningRate = p.GetValue(lr), WarmupSteps = p.GetValue(warmup),
                    EmaDecay = p.GetValue(ema), Objective = ParseObjective(p.GetValue(objective)!), VPrediction = p.GetValue(vpred),
                    ClassConditional = p.GetValue(classCond), ClassDropout = p.GetValue(classDrop), RandomFlip = p.GetValue(flip),
                    Seed = p.GetValue(seed), CheckpointEvery = p.GetValue(ckptEvery), SampleEvery = p.GetValue(sampleEvery),
                    LogEvery = p.GetValue(logEvery), BetaSchedule = p.GetValue(schedule)!,
                };
                trainer = Trainer.Create(opts, outDir, dataset, comm);
            }
            trainer.GradientBucketBytes = (long)(Math.Max(0.001, p.GetValue(bucketMb)) * (1 << 20));
            if (comm.Size > 1 && root)
                Console.Error.WriteLine($"data parallel over {comm.Size} MPI ranks, {DiffusionSharp.Runtime.Threading.Threads} thread(s) each: global batch {trainer.Options.BatchSize}, " +
                    $"{trainer.Options.BatchSize / comm.Size}{(trainer.Options.BatchSize % comm.Size != 0 ? $"-{trainer.Options.BatchSize / comm.Size + 1}" : "")} images per rank");
            if (root) Console.Error.WriteLine($"model: {trainer.Model.ParameterCount:N0} parameters; data: {dataset.Description} ({dataset.Count} images, {dataset.Channels}x{dataset.Size}x{dataset.Size})");
            using var ctrlC = Cli.Progress.CancelOnCtrlC();
            var runTime = new System.Diagnostics.Stopwatch();
            try
            {
                long total = trainer.Options.Steps, start = trainer.Step;
                runTime.Start();
                if (!root) trainer.Run(ctrlC.Token);  // rank 0 alone reports; its images/s count the global batch
                else Cli.Progress.RunWithStatus("training", (report, status) =>
                {
                    trainer.Run(ctrlC.Token,
                        (r, ips) =>
                        {
                            double eta = ips > 0 ? (total - r.Step) * trainer.Options.BatchSize / ips : 0;
                            status($"step {r.Step}/{total} loss {r.Loss:F4} {ips:F1} img/s ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}");
                            report((int)(r.Step - start), (int)(total - start));
                        },
                        msg => Console.Error.WriteLine(msg));
                });
            }
            catch (TrainingDivergedException e)
            {
                if (root) Console.Error.WriteLine(e.Message);
                return 3;
            }
            if (root && trainer.Reducer is { } red)
                Console.Error.WriteLine($"gradient all-reduce ({red.BucketCount} buckets): {red.CommunicationSeconds:F2} s inside MPI calls on rank 0, " +
                    $"{red.WaitSeconds:F2} s of it waiting after backward ended; {runTime.Elapsed.TotalSeconds:F2} s training in all");
            if (root) Console.Error.WriteLine($"model written to {outDir} (unet/, scheduler/); sample it with: diffusion sample --model {outDir}");
            return 0;
        });
        return cmd;
    }

    /// <summary>Parses the --objective value.</summary>
    public static TrainObjective ParseObjective(string s) => s.ToLowerInvariant() switch
    {
        "simple" or "l_simple" => TrainObjective.Simple,
        "hybrid" or "l_hybrid" => TrainObjective.Hybrid,
        "min-snr" or "minsnr" or "min_snr" => TrainObjective.MinSnr,
        _ => throw new ArgumentException($"Unknown objective '{s}'; expected simple, hybrid or min-snr."),
    };
}
