// Train a small U-Net on a folder of your own images (PNG, JPEG, WebP, ...; one sub-folder per class),
// then sample from it. dotnet run -c Release --project examples/TrainOnImages -- my-images/ run/
using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.IO;
using DiffusionSharp.Training;

string imageDir = args.Length > 0 ? args[0] : "my-images";
string runDir = args.Length > 1 ? args[1] : "run";
long steps = args.Length > 2 ? long.Parse(args[2]) : 2000;

// Every image: EXIF orientation applied, alpha composited on white, shorter side to 32 px, centre crop.
var data = Datasets.Open(imageDir, new DatasetOptions
{
    Size = 32, Fit = FitMode.CenterCrop, Filter = ResizeFilter.Area, Alpha = AlphaMode.White,
});
Console.WriteLine($"{data.Count} images, {data.Channels} channels, classes: {string.Join(", ", data.ClassNames)}");

// A small U-Net in diffusers config format (any UNet2DModel config.json works).
var config = Path.Combine(Path.GetTempPath(), "unet-small.json");
File.WriteAllText(config, $$"""
    {"sample_size": 32, "in_channels": {{data.Channels}}, "out_channels": {{data.Channels}},
     "block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 16, "attention_head_dim": 32,
     "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
     "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]}
    """);

var options = new TrainOptions
{
    ModelConfigPath = config, BatchSize = Math.Min(16, data.Count), Steps = steps, LearningRate = 2e-4, WarmupSteps = Math.Min(100, steps / 2),
    ClassConditional = data.ClassNames.Count > 1, RandomFlip = true, CheckpointEvery = 500, LogEvery = 50,
};
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };   // Ctrl-C: checkpoint and stop
var trainer = Trainer.Create(options, runDir, data);
trainer.Run(cancel.Token, (step, _) => { if (step.Step % 50 == 0) Console.WriteLine($"step {step.Step}: loss {step.Loss:F4}"); });

// The run folder is a model folder: sample from it.
var pipe = DiffusionPipeline.FromPretrained(runDir);
using var images = pipe.Sample(new SampleRequest { Count = 16, Steps = 20, ClassLabel = options.ClassConditional ? 0 : null });
ImageGrid.Save(Path.Combine(runDir, "samples.png"), images, nrow: 4);
Console.WriteLine($"wrote {Path.Combine(runDir, "samples.png")}");
