using System.Globalization;
using System.Text;
using System.Text.Json;
using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Evaluation;

namespace DiffusionSharp.Cli.Commands;

/// <summary>What <c>diffusion eval --sweep</c> varies.</summary>
public enum SweepKind
{
    /// <summary>Sampler steps, for several samplers.</summary>
    Steps,
    /// <summary>The classifier-free guidance scale, for one sampler.</summary>
    Guidance,
}

/// <summary>One point of a sweep: the samples it drew and their scores.</summary>
/// <param name="Sampler">Sampler name.</param>
/// <param name="Steps">Sampler steps asked for.</param>
/// <param name="Guidance">Classifier-free guidance scale.</param>
/// <param name="NetworkCalls">Network evaluations per image (a guided call runs the conditional and null class in one batch).</param>
/// <param name="Fid">Classifier-feature FID against the test split.</param>
/// <param name="Precision">k-NN precision.</param>
/// <param name="Recall">k-NN recall.</param>
/// <param name="Seconds">Wall time of the point (sampling and scoring).</param>
public sealed record SweepRow(string Sampler, int Steps, double Guidance, int NetworkCalls, double Fid, double Precision, double Recall, double Seconds);

/// <summary>The settings of one sweep, parsed and checked from the command line.</summary>
/// <param name="Kind">What varies.</param>
/// <param name="Samplers">Samplers (one for a guidance sweep).</param>
/// <param name="Steps">Step counts (one for a guidance sweep).</param>
/// <param name="Guidance">Guidance scales (one for a steps sweep).</param>
/// <param name="Count">Samples per point.</param>
/// <param name="OutputPrefix">Writes PREFIX.json, PREFIX.csv and PREFIX.png.</param>
public sealed record SweepSettings(SweepKind Kind, string[] Samplers, int[] Steps, double[] Guidance, int Count, string OutputPrefix)
{
    /// <summary>The points in the order they run: every sampler at every step count and guidance scale.</summary>
    public IEnumerable<(string Sampler, int Steps, double Guidance)> Points() =>
        from s in Samplers from n in Steps from g in Guidance select (s, n, g);

    /// <summary>The three output files.</summary>
    public string[] Files => [OutputPrefix + ".json", OutputPrefix + ".csv", OutputPrefix + ".png"];
}

/// <summary><c>diffusion eval --sweep steps|guidance</c>: FID, precision and recall of generated samples over a grid of sampler settings.</summary>
public static class EvalSweep
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Parses a comma-separated list of numbers for <paramref name="option"/>, each in [min, max].</summary>
    public static T[] ParseList<T>(string text, string option, T min, T max) where T : System.Numerics.INumber<T>
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0 || parts.Length > 100) throw new ArgumentException($"{option} '{text}': expected 1 to 100 comma-separated values.");
        return parts.Select(p => T.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max ? v
            : throw new ArgumentException($"{option}: '{p}' is not a number in [{min}, {max}].")).Distinct().ToArray();
    }

    /// <summary>Parses a comma-separated list of sampler names.</summary>
    public static string[] ParseSamplers(string text, string option)
    {
        var names = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct().ToArray();
        if (names.Length == 0) throw new ArgumentException($"{option}: expected comma-separated sampler names.");
        foreach (var n in names)
            if (!SamplerRegistry.Choices.Contains(n)) throw new ArgumentException($"{option}: unknown sampler '{n}'; expected some of {string.Join(", ", SamplerRegistry.Choices)}.");
        return names;
    }

    /// <summary>Samples and scores every point, writes the table (JSON, CSV) and the plot (PNG), and prints the table.</summary>
    public static int Run(SweepSettings sweep, string? modelDir, string data, string? classifier, ulong seed, int batch, int k, bool json, bool overwrite)
    {
        foreach (var f in sweep.Files) OutputGuard.CheckFile(f, overwrite, "--output");
        var dir = ModelLocator.Resolve(modelDir);
        var pipe = DiffusionPipeline.FromPretrained(dir);
        // "auto" becomes this model's sampler once, so the points, the table and the plot all name what ran
        sweep = sweep with { Samplers = sweep.Samplers.Select(pipe.ResolveSampler).Distinct().ToArray() };
        var clsDir = ModelLocator.ResolveClassifier(classifier);
        var cls = FeatureClassifier.Load(clsDir);
        int c = cls.Config.InChannels, s = cls.Config.ImageSize;
        cls.EnsureAccepts(pipe.Unet.Config.InChannels, pipe.Unet.Config.SampleSize ?? 32, $"the model {dir}");
        var comm = DiffusionSharp.Runtime.Mpi.Current;
        var reference = Datasets.Open(data, new DatasetOptions { Train = false, Size = s, Channels = c });
        int refCount = reference.Count;
        if (refCount < 2) throw new ArgumentException($"--data {data}: its test split has {refCount} images; FID needs at least 2.");
        double[] refFeatures = comm.Rank == 0 ? cls.ExtractFeatures(reference, refCount) : [];

        var points = sweep.Points().ToArray();
        // progress in units of network calls times images, so long points weigh more
        var weights = points.Select(p => (double)SamplerRegistry.Get(p.Sampler).ModelCalls(pipe.ChainSteps(p.Sampler, p.Steps)) * (p.Guidance != 1 ? 2 : 1)).ToArray();
        double totalWeight = weights.Sum(), doneWeight = 0;
        var rows = new List<SweepRow>();
        void Work(Action<int, int> report, Action<string> status)
        {
            for (int i = 0; i < points.Length; i++)
            {
                var (sampler, steps, guidance) = points[i];
                var sw = System.Diagnostics.Stopwatch.StartNew();
                var req = new SampleRequest { Count = sweep.Count, Steps = steps, Sampler = sampler, Seed = seed, GuidanceScale = guidance, BatchSize = batch };
                double w = weights[i];
                using var images = EvalCommand.Generate(pipe, req, (d, t) => report((int)(10_000 * (doneWeight + w * d / Math.Max(t, 1)) / totalWeight), 10_000));
                doneWeight += w;
                if (images == null) continue;  // another rank: rank 0 scores and writes
                var (fid, pr) = EvalCommand.Score(cls, refFeatures, refCount, images, k);
                var info = SamplerRegistry.Get(sampler);
                rows.Add(new SweepRow(sampler, steps, guidance, info.ModelCalls(pipe.ChainSteps(sampler, steps)), fid, pr.Precision, pr.Recall, Math.Round(sw.Elapsed.TotalSeconds, 1)));
                status($"{i + 1}/{points.Length}: {sampler}, {steps} steps, guidance {guidance}: FID {fid:F3}, precision {pr.Precision:F3}, recall {pr.Recall:F3}");
            }
        }
        if (comm.Rank != 0) { Work((_, _) => { }, _ => { }); return 0; }
        Progress.RunWithStatus($"{sweep.Kind.ToString().ToLowerInvariant()} sweep: {points.Length} points of {sweep.Count} samples", Work);

        var table = new
        {
            sweep = sweep.Kind.ToString().ToLowerInvariant(), model = dir, samples_per_point = sweep.Count, seed, k, reference = $"test split of {data}",
            reference_images = refCount, classifier = clsDir, feature_space = "DiffusionSharp classifier penultimate layer (not Inception-v3)",
            rows = rows.Select(r => new { sampler = r.Sampler, steps = r.Steps, guidance = r.Guidance, network_calls = r.NetworkCalls, fid = r.Fid, precision = r.Precision, recall = r.Recall, seconds = r.Seconds }),
        };
        string tableJson = JsonSerializer.Serialize(table, Indented);
        OutputGuard.WriteAtomically(sweep.Files[0], tmp => File.WriteAllText(tmp, tableJson + "\n"));
        var csv = new StringBuilder("sampler,steps,guidance,network_calls,fid,precision,recall,seconds\n");
        foreach (var r in rows)
            csv.Append(CultureInfo.InvariantCulture, $"{r.Sampler},{r.Steps},{r.Guidance},{r.NetworkCalls},{r.Fid:R},{r.Precision:R},{r.Recall:R},{r.Seconds}\n");
        OutputGuard.WriteAtomically(sweep.Files[1], tmp => File.WriteAllText(tmp, csv.ToString()));
        OutputGuard.WriteAtomically(sweep.Files[2], tmp => Plot(sweep, rows, tmp));
        if (json) Console.WriteLine(tableJson);
        else
        {
            Console.WriteLine($"{"sampler",-18} {"steps",6} {"guidance",8} {"calls",6} {"FID",9} {"precision",9} {"recall",7}");
            foreach (var r in rows) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{r.Sampler,-18} {r.Steps,6} {r.Guidance,8} {r.NetworkCalls,6} {r.Fid,9:F3} {r.Precision,9:F3} {r.Recall,7:F3}"));
            Console.WriteLine($"classifier-feature FID (not Inception) of {sweep.Count} samples per point against {refCount} test images; wrote {string.Join(", ", sweep.Files)}");
        }
        return 0;
    }

    /// <summary>FID against steps (log x, one line per sampler), or FID, precision and recall against the guidance scale.</summary>
    public static void Plot(SweepSettings sweep, IReadOnlyList<SweepRow> rows, string path)
    {
        var plt = new ScottPlot.Plot();
        if (sweep.Kind == SweepKind.Steps)
        {
            foreach (var g in rows.GroupBy(r => r.Sampler))
            {
                var line = plt.Add.Scatter(g.Select(r => Math.Log10(r.Steps)).ToArray(), g.Select(r => r.Fid).ToArray());
                line.LegendText = g.Key;
            }
            var ticks = new ScottPlot.TickGenerators.NumericManual();
            foreach (var n in sweep.Steps.Order()) ticks.AddMajor(Math.Log10(n), n.ToString(CultureInfo.InvariantCulture));
            plt.Axes.Bottom.TickGenerator = ticks;
            plt.Axes.Bottom.Label.Text = "sampler steps (log scale)";
            plt.Axes.Left.Label.Text = "FID (classifier features)";
            plt.Title($"FID vs steps, {sweep.Count} samples, guidance {sweep.Guidance[0].ToString(CultureInfo.InvariantCulture)}");
        }
        else
        {
            var xs = rows.Select(r => r.Guidance).ToArray();
            var fid = plt.Add.Scatter(xs, rows.Select(r => r.Fid).ToArray());
            fid.LegendText = "FID (left axis)";
            foreach (var (name, values) in new[] { ("precision", rows.Select(r => r.Precision)), ("recall", rows.Select(r => r.Recall)) })
            {
                var line = plt.Add.Scatter(xs, values.ToArray());
                line.LegendText = name + " (right axis)";
                line.Axes.YAxis = plt.Axes.Right;
            }
            plt.Axes.Bottom.Label.Text = "classifier-free guidance scale";
            plt.Axes.Left.Label.Text = "FID (classifier features)";
            plt.Axes.Right.Label.Text = "precision / recall";
            plt.Title($"{sweep.Samplers[0]}, {sweep.Steps[0]} steps, {sweep.Count} samples");
        }
        plt.ShowLegend(ScottPlot.Alignment.UpperRight);
        plt.SavePng(path, 800, 500);
    }
}
