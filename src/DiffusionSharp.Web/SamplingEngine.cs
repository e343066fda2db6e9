using System.Collections.Concurrent;
using System.IO.Compression;
using DiffusionSharp.Diffusion;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Web;

/// <summary>What a client may choose for one model.</summary>
/// <param name="Id">Model id.</param>
/// <param name="Label">Display name.</param>
/// <param name="Classes">Class names in label order (empty for an unconditional model).</param>
/// <param name="Guidance">True when the model has a null class, so classifier-free guidance applies.</param>
/// <param name="Size">Image side in pixels.</param>
/// <param name="Channels">Image channels.</param>
/// <param name="TrainSteps">The model's training timesteps: discrete-time samplers run at most this many steps.</param>
public sealed record ModelDescription(string Id, string Label, IReadOnlyList<string> Classes, bool Guidance, int Size, int Channels, int TrainSteps);

/// <summary>A checked sampling request.</summary>
public sealed record SampleJob(ModelEntry Model, string Sampler, int Steps, int Count, ulong Seed, int? ClassLabel, string? ClassName, double Guidance);

/// <summary>Finished images as PNG files: one per image (as <c>sample --each</c> writes them) and the grid (as <c>sample -o</c>).</summary>
public sealed record SampleImages(IReadOnlyList<byte[]> Images, byte[] Grid);

/// <summary>
/// The web server's only door into the diffusion library: loads model folders, describes them, and samples with the same
/// request the <c>diffusion sample</c> command builds, so a seed gives the same images on the page and on the command line.
/// </summary>
public sealed class SamplingEngine
{
    /// <summary>Most images per request: the limit <c>diffusion sample</c> enforces.</summary>
    public const int MaxCount = DiffusionPipeline.MaxCount;
    /// <summary>Most sampler steps per request: the limit <c>diffusion sample</c> enforces.</summary>
    public const int MaxSteps = DiffusionPipeline.MaxSteps;
    /// <summary>Images per network call: the CLI's default <c>--batch</c>, which decides how seeds map to images.</summary>
    public const int CliBatch = 64;
    /// <summary>The CLI's default <c>-o</c> grid width.</summary>
    public const int CliGridRow = 8;

    private readonly ConcurrentDictionary<string, Lazy<DiffusionPipeline>> _pipelines = new(StringComparer.Ordinal);

    /// <summary>Sampler names the pipeline accepts.</summary>
    public static IReadOnlyList<string> SamplerNames => SamplerRegistry.Choices;

    /// <summary>Each sampler's name and one-line description, in the order the CLI's help lists them (auto first).</summary>
    public static IReadOnlyList<(string Name, string Description)> Samplers =>
        [(SamplerRegistry.Auto, SamplerRegistry.AutoDescription), .. SamplerRegistry.All.Select(s => (s.Name, s.Description))];

    private DiffusionPipeline Load(ModelEntry model)
    {
        var lazy = _pipelines.GetOrAdd(model.Directory, dir => new Lazy<DiffusionPipeline>(() => DiffusionPipeline.FromPretrained(dir)));
        try { return lazy.Value; }
        catch
        {
            _pipelines.TryRemove(model.Directory, out _);  // a folder fixed on disk loads on the next request
            throw;
        }
    }

    /// <summary>Loads (once) and describes a model.</summary>
    public ModelDescription Describe(ModelEntry model)
    {
        var pipe = Load(model);
        var cfg = pipe.Unet.Config;
        int classes = cfg.NumClassEmbeds is int k ? pipe.NullClass ?? k : 0;
        var names = Enumerable.Range(0, classes)
            .Select(i => i < pipe.ClassNames.Count && pipe.ClassNames[i].Length > 0 ? pipe.ClassNames[i] : i.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .ToArray();
        int trainSteps = pipe.NoiseOptions.NumTrainTimesteps;
        return new ModelDescription(model.Id, model.Label, names, pipe.NullClass != null, cfg.SampleSize ?? 32, cfg.InChannels, trainSteps);
    }

    /// <summary>
    /// Samples <paramref name="job"/>. <paramref name="onStep"/> gets (network evaluations done, total, PNG grid of the
    /// predicted x_0) after each step; cancellation is checked at every network evaluation.
    /// </summary>
    public SampleImages Run(SampleJob job, Action<int, int, byte[]> onStep, CancellationToken cancel)
    {
        var pipe = Load(job.Model);
        var request = new SampleRequest
        {
            Count = job.Count, Steps = job.Steps, Sampler = job.Sampler, Seed = job.Seed, ClassLabel = job.ClassLabel,
            GuidanceScale = job.Guidance, BatchSize = CliBatch,
        };
        int done = 0, total = 0;
        using var images = pipe.Sample(request,
            (d, t) => { cancel.ThrowIfCancellationRequested(); done = d; total = t; },
            x0 =>
            {
                cancel.ThrowIfCancellationRequested();
                int n = x0.Dim(0), cols = (int)Math.Ceiling(Math.Sqrt(n));
                onStep(done, total, PngEncoder.Encode(ImageGrid.Make(x0, nrow: cols), level: CompressionLevel.Fastest));
            });
        var files = new byte[images.Dim(0)][];
        for (int i = 0; i < files.Length; i++)
        {
            using var one = images.Narrow(0, i, 1);
            files[i] = PngEncoder.Encode(ImageGrid.Make(one, nrow: 1, padding: 0));
        }
        return new SampleImages(files, PngEncoder.Encode(ImageGrid.Make(images, nrow: CliGridRow)));
    }

    /// <summary>The <c>diffusion sample</c> command line that writes the same images (grid and one PNG per image).</summary>
    public static string CliCommand(SampleJob job)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var parts = new List<string> { "diffusion", "sample" };
        if (job.Model.CliPath != null) { parts.Add("--model"); parts.Add(ShellQuote(job.Model.CliPath)); }
        parts.AddRange(["--sampler", job.Sampler, "--steps", job.Steps.ToString(inv), "--count", job.Count.ToString(inv), "--seed", job.Seed.ToString(inv)]);
        if (job.ClassLabel is int label)
        {
            parts.Add("--class");
            // the name when the CLI reads it back as that name, else the index
            bool nameWorks = job.ClassName != null && !int.TryParse(job.ClassName, out _) && job.ClassName.Length > 0;
            parts.Add(nameWorks ? ShellQuote(job.ClassName!) : label.ToString(inv));
        }
        if (job.Guidance != 1.0) { parts.Add("--guidance"); parts.Add(job.Guidance.ToString("R", inv)); }
        parts.AddRange(["--each", "samples/", "-o", "samples.png"]);
        return string.Join(' ', parts);
    }

    /// <summary>Quotes a word for a POSIX shell when it holds anything but safe characters.</summary>
    public static string ShellQuote(string s) =>
        s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/' or ':' or '+' or '=' or ',')
            ? s
            : "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
