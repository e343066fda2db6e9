using System.CommandLine;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using DiffusionSharp.Training;
using Spectre.Console;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion train</c>: train a U-Net on a data set, with checkpoints, metrics, sample grids and resume.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var output = CliOptions.RequiredOutput("Run folder (checkpoints, metrics.jsonl, loss.png, samples/, exported model)");
        var data = new Option<string>("--data") { Description = "Data set: fashion-mnist, mnist, or a folder (IDX, CIFAR-10 batches, PNG class sub-folders)", DefaultValueFactory = _ => "fashion-mnist" };
        var preset = CliOptions.OneOf(new Option<string>("--preset") { Description = $"U-Net preset ({string.Join(", ", Nn.UNet.UNet2DModel.PresetNames)})", DefaultValueFactory = _ => "ddpm-small" },
            Nn.UNet.UNet2DModel.PresetNames.ToArray());
        var config = new Option<string?>("--config") { Description = "A diffusers UNet2DModel config.json (overrides --preset; stored in the checkpoint)" };
        var init = new Option<string?>("--init") { Description = "Start from the weights of a trained model (fine-tuning): a diffusers UNet folder, or a model or run folder with one in unet/; its config.json is the architecture (instead of --preset or --config)" };
        var size = CliOptions.InRange(new Option<int?>("--resolution", "--size") { Description = "Resize images to this square size (default: the data set's)" }, 1, Nn.UNet.UNet2DConfig.MaxSampleSize);
        var batch = CliOptions.Batch("Batch size", 64);
        var micro = CliOptions.InRange(new Option<int?>("--micro-batch") { Description = "Images per gradient micro-batch: gradients are summed per micro-batch in a fixed order, so the result does not depend on threads or MPI ranks (default: half the batch, at most 32)" }, 1, 65_536);
        var steps = CliOptions.InRange(new Option<long?>("--steps") { Description = $"Total optimizer steps (default {DefaultSteps}; with --resume: the run's stored total)" }, 1L, MaxSteps);
        var lr = CliOptions.InRange(new Option<double>("--lr") { Description = "Peak learning rate", DefaultValueFactory = _ => 2e-4 }, 1e-12, 10.0);
        var warmup = CliOptions.InRange(new Option<long>("--warmup") { Description = "Linear warm-up steps", DefaultValueFactory = _ => 500 }, 0L, MaxSteps);
        var ema = CliOptions.InRange(new Option<double>("--ema") { Description = "EMA decay (0 disables)", DefaultValueFactory = _ => 0.999 }, 0.0, 0.999999);
        var objective = CliOptions.OneOf(new Option<string>("--objective") { Description = "simple, hybrid (learned variances), min-snr or edm (Karras et al. 2022 preconditioning)", DefaultValueFactory = _ => "simple" },
            "simple", "l_simple", "hybrid", "l_hybrid", "min-snr", "minsnr", "min_snr", "edm");
        var snrGamma = CliOptions.InRange(new Option<double>("--snr-gamma") { Description = "gamma of --objective min-snr", DefaultValueFactory = _ => 5.0 }, 1e-6, 1e6);
        var pMean = CliOptions.InRange(new Option<double>("--p-mean") { Description = "Mean of ln sigma for --objective edm", DefaultValueFactory = _ => -1.2 }, -20.0, 20.0);
        var pStd = CliOptions.InRange(new Option<double>("--p-std") { Description = "Standard deviation of ln sigma for --objective edm", DefaultValueFactory = _ => 1.2 }, 0.0, 20.0);
        var sigmaData = CliOptions.InRange(new Option<double>("--sigma-data") { Description = "sigma_data of --objective edm (0.5 for data in [-1, 1])", DefaultValueFactory = _ => 0.5 }, 1e-6, 1e6);
        var dropout = CliOptions.InRange(new Option<double?>("--dropout") { Description = "Resnet dropout probability (default: the model config's)" }, 0.0, 0.99);
        var emaProfile = CliOptions.OneOf(new Option<string>("--ema-profile") { Description = "exponential (--ema decay with warm-up) or power (EDM2 power function, --ema-std)", DefaultValueFactory = _ => "exponential" }, "exponential", "power");
        var emaStd = CliOptions.InRange(new Option<double>("--ema-std") { Description = "Relative standard deviation sigma_rel of --ema-profile power", DefaultValueFactory = _ => 0.05 }, 0.001, 0.28);
        var lrSchedule = new Option<LrSchedule>("--lr-schedule") { Description = "Learning rate after the warm-up: Constant or Cosine (to 0 at --steps)", DefaultValueFactory = _ => LrSchedule.Constant };
        var resize = new Option<ResizeFilter>("--resize") { Description = "Image-folder resampling: Area or Bicubic", DefaultValueFactory = _ => ResizeFilter.Area };
        var crop = CliOptions.OneOf(new Option<string>("--crop") { Description = "Image-folder fit: center, random (one seeded crop per image) or stretch", DefaultValueFactory = _ => "center" },
            "center", "random", "stretch");
        var alpha = new Option<AlphaMode>("--alpha") { Description = "Image-folder alpha: Drop, White or Black (composite over)", DefaultValueFactory = _ => AlphaMode.Drop };
        var vpred = new Option<bool>("--v-prediction") { Description = "Predict v instead of epsilon" };
        var classCond = new Option<bool>("--class-conditional") { Description = "Condition on labels (with classifier-free dropout)" };
        var classDrop = CliOptions.InRange(new Option<double>("--class-dropout") { Description = "Label dropout probability for classifier-free guidance", DefaultValueFactory = _ => 0.1 }, 0.0, 1.0);
        var flip = new Option<bool>("--flip") { Description = "Random horizontal flips (for data without a left-right orientation: warns when a class faces one way)" };
        var seed = CliOptions.Seed("Seed of every random stream");
        var ckptEvery = CliOptions.InRange(new Option<long>("--checkpoint-every") { Description = "Checkpoint every N steps (0: only at the end and on interrupt)", DefaultValueFactory = _ => 1000 }, 0L, MaxSteps);
        var sampleEvery = CliOptions.InRange(new Option<long>("--sample-every") { Description = "Sample grid every N steps (0: never)", DefaultValueFactory = _ => 0 }, 0L, MaxSteps);
        var logEvery = CliOptions.InRange(new Option<long>("--log-every") { Description = "Metrics line every N steps (0: never)", DefaultValueFactory = _ => 10 }, 0L, MaxSteps);
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --output from its checkpoint (its stored settings are kept)" };
        var overwrite = CliOptions.Overwrite("Start a new run in --output even if it holds an earlier run (its checkpoints and metrics are deleted)");
        var schedule = CliOptions.OneOf(new Option<string>("--beta-schedule") { Description = "linear or cosine", DefaultValueFactory = _ => "linear" }, "linear", "cosine");
        var bucketMb = CliOptions.InRange(new Option<double>("--bucket-mb") { Description = "Gradient all-reduce bucket size under mpirun (MB)", DefaultValueFactory = _ => 8 }, 0.001, 4096.0);
        var cmd = new Command("train", "Train a diffusion model.")
        {
            output, data, preset, config, init, size, batch, micro, steps, lr, warmup, ema, objective, snrGamma, pMean, pStd, sigmaData, dropout, lrSchedule, emaProfile, emaStd, vpred, classCond, classDrop, flip, seed,
            ckptEvery, sampleEvery, logEvery, resume, overwrite, schedule, bucketMb, resize, crop, alpha,
        };
        cmd.SetAction(p =>
        {
            string outDir = p.GetValue(output)!;
            var comm = DiffusionSharp.Runtime.Mpi.Current;
            bool root = comm.Rank == 0;
            if (p.GetValue(resume) && p.GetValue(overwrite)) throw new ArgumentException("--resume and --overwrite contradict each other; give one.");
            if (File.Exists(outDir)) throw new ArgumentException($"--output {outDir} is a file; give a run folder.");
            if (p.GetValue(resume))
            {
                if (!Trainer.HasCheckpoint(outDir)) throw new FileNotFoundException($"No checkpoint to resume in {outDir} (expected {Path.Combine(outDir, Trainer.CheckpointDir, Trainer.StateFile)}).");
            }
            else if (Trainer.HasPreviousRun(outDir) && !p.GetValue(overwrite))
                throw new InvalidOperationException($"{outDir} holds an earlier run (checkpoint or metrics.jsonl); pass --resume to continue it, --overwrite to replace it, or choose another --output.");
            Cli.OutputGuard.CheckWritableFolder(outDir, "--output");
            var dataset = Datasets.Open(p.GetValue(data)!, new DatasetOptions
            {
                Size = p.GetValue(size), Filter = p.GetValue(resize), Alpha = p.GetValue(alpha),
                Fit = p.GetValue(crop) switch { "random" => FitMode.RandomCrop, "stretch" => FitMode.Stretch, _ => FitMode.CenterCrop },
            });
            Trainer trainer;
            if (p.GetValue(resume))
            {
                trainer = Trainer.Resume(outDir, dataset, p.GetValue(steps), comm);
                if (root) Console.Error.WriteLine($"resuming {outDir} at step {trainer.Step} of {trainer.Options.Steps}" +
                    (trainer.StoredOptions is { } so && so.Steps != trainer.Options.Steps ? $" (--steps changes the run's total from {so.Steps})" : ""));
                if (root) ReportIgnored(p, trainer.Options, new Option[] { preset, config, init, batch, micro, lr, warmup, ema, objective, snrGamma, pMean, pStd, sigmaData, dropout, lrSchedule, emaProfile, emaStd, vpred, classCond, classDrop, flip, seed, ckptEvery, sampleEvery, logEvery, schedule });
                if (root && trainer.Step >= trainer.Options.Steps)
                    Console.Error.WriteLine($"the run already has its {trainer.Options.Steps} steps; pass a larger --steps to train on");
            }
            else
            {
                if (p.GetValue(init) != null && (CliOptions.IsExplicit(p, config) || CliOptions.IsExplicit(p, preset)))
                    throw new ArgumentException("--init takes the architecture from the model's config.json; drop --config and --preset.");
                if (p.GetValue(overwrite) && root) Trainer.DeletePreviousRun(outDir);
                var opts = new TrainOptions
                {
                    Preset = p.GetValue(preset)!, ModelConfigPath = p.GetValue(config) is string c ? Path.GetFullPath(c) : null,
                    InitFrom = p.GetValue(init) is string i ? Path.GetFullPath(i) : null, Data = p.GetValue(data)!,
                    BatchSize = p.GetValue(batch), MicroBatch = p.GetValue(micro) ?? TrainOptions.DefaultMicroBatch(p.GetValue(batch)), Steps = p.GetValue(steps) ?? DefaultSteps, LearningRate = p.GetValue(lr), WarmupSteps = p.GetValue(warmup),
                    EmaDecay = p.GetValue(ema), Objective = ParseObjective(p.GetValue(objective)!), VPrediction = p.GetValue(vpred),
                    ClassConditional = p.GetValue(classCond), ClassDropout = p.GetValue(classDrop), RandomFlip = p.GetValue(flip),
                    Seed = p.GetValue(seed), CheckpointEvery = p.GetValue(ckptEvery), SampleEvery = p.GetValue(sampleEvery),
                    LogEvery = p.GetValue(logEvery), BetaSchedule = p.GetValue(schedule)!,
                    MinSnrGamma = p.GetValue(snrGamma), EdmPMean = p.GetValue(pMean), EdmPStd = p.GetValue(pStd), EdmSigmaData = p.GetValue(sigmaData),
                    Dropout = p.GetValue(dropout), LrSchedule = p.GetValue(lrSchedule),
                    EmaStd = p.GetValue(emaProfile) == "power" ? p.GetValue(emaStd) : null,
                };
                trainer = Trainer.Create(opts, outDir, dataset, comm);
            }
            trainer.GradientBucketBytes = (long)(Math.Max(0.001, p.GetValue(bucketMb)) * (1 << 20));
            if (comm.Size > 1 && root)
                Console.Error.WriteLine($"data parallel over {comm.Size} MPI ranks, {DiffusionSharp.Runtime.Threading.Threads} thread(s) each: global batch {trainer.Options.BatchSize}, " +
                    $"{trainer.ShardImages} images on rank 0 (micro-batches of {Math.Min(trainer.Options.MicroBatch, trainer.Options.BatchSize)} split over the ranks)");
            if (root) Console.Error.WriteLine($"model: {trainer.Model.ParameterCount:N0} parameters; data: {dataset.Description} ({dataset.Count} images, {dataset.Channels}x{dataset.Size}x{dataset.Size})");
            if (root && trainer.Options.RandomFlip && trainer.Step == 0)
                foreach (var o in DiffusionSharp.Data.Orientation.Measure(dataset).Where(o => o.FacesOneWay))
                    Console.Error.WriteLine($"warning: --flip mirrors images of '{o.Name}', which face one way in this data ({o.NearerMean * 100:F1}% of {o.Images} " +
                        "images are nearer the class's mean image than its mirror); the model will learn to draw mirrored ones the data never has. Drop --flip for such data.");
            using var ctrlC = Cli.Progress.CancelOnCtrlC();  // Ctrl-C and SIGTERM both end in a checkpoint
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

    /// <summary>Total steps of a new run when --steps is not given.</summary>
    public const long DefaultSteps = 10_000;

    /// <summary>Largest accepted --steps (and step intervals).</summary>
    public const long MaxSteps = 1_000_000_000;

    // At resume the stored settings are the truth: say which explicit options were not applied.
    private static void ReportIgnored(ParseResult p, TrainOptions stored, Option[] options)
    {
        var given = options.Where(o => CliOptions.IsExplicit(p, o)).Select(o => o.Name).ToList();
        if (given.Count > 0)
            Console.Error.WriteLine($"note: {string.Join(", ", given)} ignored: a resumed run keeps its stored settings (only --steps changes the total; stored: batch {stored.BatchSize}, lr {stored.LearningRate}, seed {stored.Seed})");
    }

    /// <summary>Parses the --objective value.</summary>
    public static TrainObjective ParseObjective(string s) => s.ToLowerInvariant() switch
    {
        "simple" or "l_simple" => TrainObjective.Simple,
        "hybrid" or "l_hybrid" => TrainObjective.Hybrid,
        "min-snr" or "minsnr" or "min_snr" => TrainObjective.MinSnr,
        "edm" => TrainObjective.Edm,
        _ => throw new ArgumentException($"Unknown objective '{s}'; expected simple, hybrid, min-snr or edm."),
    };
}
