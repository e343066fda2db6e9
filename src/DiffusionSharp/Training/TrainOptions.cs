using System.Text.Json.Serialization;

namespace DiffusionSharp.Training;

/// <summary>What the network is trained to predict and how the loss is weighted.</summary>
public enum TrainObjective
{
    /// <summary>L_simple on epsilon (Ho et al. 2020, Eq. 14).</summary>
    Simple,
    /// <summary>L_simple + lambda L_vlb with learned-range variances (Nichol and Dhariwal 2021, Sec. 3.1).</summary>
    Hybrid,
    /// <summary>L_simple weighted by min(SNR, gamma) (Hang et al. 2023).</summary>
    MinSnr,
    /// <summary>EDM preconditioning, log-normal sigmas and lambda(sigma) weighting (Karras et al. 2022, Table 1).</summary>
    Edm,
}

/// <summary>The learning rate after the warm-up.</summary>
public enum LrSchedule
{
    /// <summary>Stays at the peak.</summary>
    Constant,
    /// <summary>Half-cosine to 0 at the last step.</summary>
    Cosine,
}

/// <summary>Settings of a training run; stored in every checkpoint so a resumed run continues with the same ones.</summary>
public sealed record TrainOptions
{
    /// <summary>U-Net preset name, used when <see cref="ModelConfigPath"/> is null.</summary>
    public string Preset { get; init; } = "ddpm-small";
    /// <summary>A diffusers UNet2DModel config.json to build the model from.</summary>
    public string? ModelConfigPath { get; init; }
    /// <summary>
    /// A diffusers UNet2DModel folder (config.json + diffusion_pytorch_model.safetensors), or a model or run folder holding one
    /// in unet/, whose weights start the run (fine-tuning); its architecture replaces <see cref="Preset"/> and
    /// <see cref="ModelConfigPath"/>. A resumed run continues from its checkpoint instead.
    /// </summary>
    public string? InitFrom { get; init; }
    /// <summary>Data set name or folder (see Datasets.Open).</summary>
    public string Data { get; init; } = "fashion-mnist";
    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>
    /// Images per gradient micro-batch: the step's gradient is the sum of the micro-batches' gradients in a fixed tree, so
    /// it does not depend on how the batch is split over ranks or threads.
    /// </summary>
    public int MicroBatch { get; init; } = DefaultMicroBatch(64);

    /// <summary>
    /// Half the batch, at most 32 images: smaller micro-batches cost throughput (8 images ran 10-30% slower than 32 on a
    /// 2-core machine at batch 64), and two micro-batches still let two ranks split every batch.
    /// </summary>
    public static int DefaultMicroBatch(int batchSize) => Math.Clamp(batchSize / 2, 1, 32);
    /// <summary>Optimizer steps to run in total.</summary>
    public long Steps { get; init; } = 10_000;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 2e-4;
    /// <summary>Linear warm-up steps.</summary>
    public long WarmupSteps { get; init; } = 500;
    /// <summary>Maximum EMA decay (0 disables EMA).</summary>
    public double EmaDecay { get; init; } = 0.999;
    /// <summary>When set, the EMA follows the power-function profile of this relative standard deviation (Karras et al. 2024) instead of <see cref="EmaDecay"/>.</summary>
    public double? EmaStd { get; init; }
    /// <summary>Global gradient-norm clip (0 disables).</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Loss.</summary>
    [JsonConverter(typeof(JsonStringEnumConverter))]
    public TrainObjective Objective { get; init; } = TrainObjective.Simple;
    /// <summary>Gamma of min-SNR weighting.</summary>
    public double MinSnrGamma { get; init; } = 5.0;
    /// <summary>Mean of ln sigma in EDM training.</summary>
    public double EdmPMean { get; init; } = -1.2;
    /// <summary>Standard deviation of ln sigma in EDM training.</summary>
    public double EdmPStd { get; init; } = 1.2;
    /// <summary>sigma_data of EDM preconditioning (0.5 for images in [-1, 1]).</summary>
    public double EdmSigmaData { get; init; } = 0.5;
    /// <summary>Learning rate after the warm-up.</summary>
    [JsonConverter(typeof(JsonStringEnumConverter))]
    public LrSchedule LrSchedule { get; init; } = LrSchedule.Constant;
    /// <summary>Resnet dropout replacing the model config's (null keeps the config's).</summary>
    public double? Dropout { get; init; }
    /// <summary>Predict v instead of epsilon (Salimans and Ho 2022).</summary>
    public bool VPrediction { get; init; }
    /// <summary>Train a class-conditional model.</summary>
    public bool ClassConditional { get; init; }
    /// <summary>Probability of replacing the label by the null class (classifier-free guidance, Ho and Salimans 2022).</summary>
    public double ClassDropout { get; init; } = 0.1;
    /// <summary>Random horizontal flips.</summary>
    public bool RandomFlip { get; init; }
    /// <summary>Seed of every random stream of the run.</summary>
    public ulong Seed { get; init; }
    /// <summary>Noise-schedule name for training and the exported scheduler (linear or cosine).</summary>
    public string BetaSchedule { get; init; } = "linear";
    /// <summary>Diffusion steps T.</summary>
    public int NumTrainTimesteps { get; init; } = 1000;
    /// <summary>Explicit betas for t = 0..T-1, replacing <see cref="BetaSchedule"/> (diffusers' trained_betas).</summary>
    public double[]? TrainedBetas { get; init; }

    /// <summary>The noise process these options train: the one the exported scheduler config describes.</summary>
    public DiffusionSharp.Diffusion.Schedules.NoiseScheduleOptions NoiseSchedule() => TrainedBetas != null
        ? new() { NumTrainTimesteps = NumTrainTimesteps, TrainedBetas = TrainedBetas }
        : DiffusionSharp.Diffusion.Schedules.NoiseScheduleOptions.ForTraining(BetaSchedule, NumTrainTimesteps);
    /// <summary>Write a checkpoint every N steps (0: only at the end and on interrupt).</summary>
    public long CheckpointEvery { get; init; } = 1000;
    /// <summary>Write a sample grid every N steps (0: never).</summary>
    public long SampleEvery { get; init; }
    /// <summary>Append a metrics line every N steps.</summary>
    public long LogEvery { get; init; } = 10;
}
