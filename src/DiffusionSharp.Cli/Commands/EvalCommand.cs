using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Evaluation;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Cli.Commands;

/// <summary>
/// <c>diffusion eval</c>: negative log-likelihood bound in bits/dim over the full chain (Ho et al. 2020, Sec. 4.2; exact or stratified over t), or with
/// <c>--fid</c> the Frechet distance, precision and recall of samples against the test split in a trained classifier's feature space.
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = CliOptions.Model();
        var data = new Option<string>("--data") { Description = "Data set (its test split is used)", DefaultValueFactory = _ => "fashion-mnist" };
        var count = CliOptions.Count("Test images to evaluate for bits/dim (from the start of the test split; 0 = all)", 256, min: 0);
        var timesteps = CliOptions.InRange(new Option<int>("--timesteps") { Description = "Bits/dim: network calls per image for the KL terms: 0 = every t (exact full chain); K > 0 = one t per image in each of K strata (unbiased estimate)", DefaultValueFactory = _ => 0 }, 0, 100_000);
        var batch = CliOptions.Batch("Images per network call", 64);
        var seed = new Option<ulong>("--seed") { Description = "Seed of the q(x_t|x_0) noise, or of the generated samples with --fid", DefaultValueFactory = _ => 0UL };
        var conditional = new Option<bool>("--conditional") { Description = "Condition on the true labels (default: the null class, i.e. p(x))" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var fid = new Option<bool>("--fid") { Description = "Report FID, precision and recall (k-NN, k=3) in the feature space of a classifier made by `diffusion train-classifier` (NOT Inception FID) instead of bits/dim" };
        var classifier = new Option<string?>("--classifier") { Description = "Classifier folder for --fid (default: the bundled models/fashion-mnist-classifier)" };
        var samples = new Option<string>("--samples")
        {
            Description = "With --fid: a folder of PNG images (e.g. from `diffusion sample --each DIR`), a number of images to generate from the model, " +
                          "or train:N / test:N for the first N images of a split of --data (a real-vs-real floor)",
            DefaultValueFactory = _ => "1000",
        };
        var referenceCount = CliOptions.InRange(new Option<int?>("--reference-count") { Description = "With --fid: test images used as the reference (default: the whole test split)" }, 2, DiffusionPipeline.MaxCount);
        var steps = CliOptions.Steps("With --fid and a count: sampler steps", 20);
        var sampler = CliOptions.Sampler("With --fid and a count: sampler");
        var guidance = CliOptions.Guidance("With --fid and a count: classifier-free guidance scale (classes cycle through every label)");
        var k = CliOptions.InRange(new Option<int>("--k") { Description = "With --fid: nearest-neighbour rank of the precision/recall manifolds", DefaultValueFactory = _ => PrecisionRecall.DefaultK }, 1, 1000);
        var sweep = new Option<SweepKind?>("--sweep") { Description = "Steps: FID/precision/recall of --count samples per point for every --sweep-samplers at every --sweep-steps; Guidance: for --sampler at --steps over --sweep-guidance. Writes --output.json, .csv and .png" };
        var sweepSteps = new Option<string>("--sweep-steps") { Description = "With --sweep steps: step counts", DefaultValueFactory = _ => "5,10,20,50,100" };
        var sweepSamplers = new Option<string>("--sweep-samplers") { Description = "With --sweep steps: samplers", DefaultValueFactory = _ => "dpmpp,ddim,euler,heun,ddpm" };
        var sweepGuidance = new Option<string>("--sweep-guidance") { Description = "With --sweep guidance: guidance scales", DefaultValueFactory = _ => "1,1.5,2,3,4,6" };
        // the lists are checked at parse time (a usage error, exit 2) with the parsers the sweep uses
        Checked(sweepSteps, v => EvalSweep.ParseList(v, "--sweep-steps", 1, DiffusionPipeline.MaxSteps));
        Checked(sweepSamplers, v => EvalSweep.ParseSamplers(v, "--sweep-samplers"));
        Checked(sweepGuidance, v => EvalSweep.ParseList(v, "--sweep-guidance", -100.0, 100.0));
        var output = new Option<string?>("--output", "-o") { Description = "With --sweep: path prefix of the table (PREFIX.json, PREFIX.csv) and plot (PREFIX.png)" };
        var overwrite = CliOptions.Overwrite();
        var cmd = new Command("eval",
            "Bits/dim of a model on a test set (full-chain variational bound: prior + every L_t + decoder), or with --fid: FID, precision and recall " +
            "of samples against the test split, in the feature space of a classifier trained by `diffusion train-classifier` on the same data set. " +
            "That FID is NOT Inception FID: compare it only with values from the same classifier.")
        {
            model, data, count, batch, seed, conditional, json, timesteps, fid, classifier, samples, referenceCount, steps, sampler, guidance, k,
            sweep, sweepSteps, sweepSamplers, sweepGuidance, output, overwrite,
        };
        cmd.SetAction(p =>
        {
            if (p.GetValue(sweep) is SweepKind kind)
            {
                string prefix = p.GetValue(output) ?? throw new ArgumentException("--sweep needs --output PREFIX (writes PREFIX.json, PREFIX.csv and PREFIX.png).");
                // samples per point: --count when given, else the number --samples names (as with --fid)
                int n = CliOptions.IsExplicit(p, count) ? p.GetValue(count)
                    : int.TryParse(p.GetValue(samples), NumberStyles.None, CultureInfo.InvariantCulture, out int m) ? m
                    : throw new ArgumentException($"--sweep needs a number of samples per point (--count N), got --samples {p.GetValue(samples)}.");
                if (n < 2) throw new ArgumentException($"--count {n}: FID needs at least 2 samples per point.");
                bool bySteps = kind == SweepKind.Steps;
                var settings = new SweepSettings(kind,
                    bySteps ? EvalSweep.ParseSamplers(p.GetValue(sweepSamplers)!, "--sweep-samplers") : [p.GetValue(sampler)!],
                    bySteps ? EvalSweep.ParseList(p.GetValue(sweepSteps)!, "--sweep-steps", 1, DiffusionPipeline.MaxSteps) : [p.GetValue(steps)],
                    bySteps ? [p.GetValue(guidance)] : EvalSweep.ParseList(p.GetValue(sweepGuidance)!, "--sweep-guidance", -100.0, 100.0), n, prefix);
                return EvalSweep.Run(settings, p.GetValue(model), p.GetValue(data)!, p.GetValue(classifier), p.GetValue(seed), Math.Max(1, p.GetValue(batch)),
                    p.GetValue(k), p.GetValue(json), p.GetValue(overwrite));
            }
            if (p.GetValue(fid))
                return RunFid(new FidArgs(p.GetValue(model), p.GetValue(data)!, p.GetValue(classifier), p.GetValue(samples)!, p.GetValue(referenceCount),
                    p.GetValue(steps), p.GetValue(sampler)!, p.GetValue(guidance), p.GetValue(seed), Math.Max(1, p.GetValue(batch)), p.GetValue(k), p.GetValue(json)));
            return RunBitsPerDim(p.GetValue(model), p.GetValue(data)!, p.GetValue(count), p.GetValue(batch), p.GetValue(seed), p.GetValue(conditional), p.GetValue(json), p.GetValue(timesteps));
        });
        return cmd;
    }

    private static void Checked(Option<string> option, Action<string> parse) => option.Validators.Add(r =>
    {
        try { parse(r.GetValueOrDefault<string>() ?? ""); }
        catch (ArgumentException e) { r.AddError(e.Message); }
    });

    private static int RunBitsPerDim(string? modelDir, string dataName, int count, int batch, ulong seed, bool conditional, bool json, int strata)
    {
        var dir = ModelLocator.Resolve(modelDir);
        var pipe = DiffusionPipeline.FromPretrained(dir);
        int s = pipe.Unet.Config.SampleSize ?? 32;
        var ds = Datasets.Open(dataName, new DatasetOptions { Train = false, Size = s, Channels = pipe.Unet.Config.InChannels });
        int n = count <= 0 ? ds.Count : Math.Min(count, ds.Count), bs = Math.Max(1, batch);
        var diffusion = pipe.CreateGaussianDiffusion(pipe.NoiseOptions.NumTrainTimesteps);
        if (strata < 0 || strata > diffusion.NumTimesteps - 1)
            throw new ArgumentException($"--timesteps must be 0 (full chain) or 1..{diffusion.NumTimesteps - 1}, got {strata}.");
        // Each batch draws from its own counter range (2^32 blocks from start << 32) of the seeded streams, so the ranks of an
        // mpirun job, each taking a contiguous run of whole batches, compute exactly the per-image terms of one process.
        var noiseGen = new Generator(seed);
        var noise = new NoiseSource(noiseGen);
        var tRng = new Generator(seed + 1);
        int callsPerBatch = strata == 0 ? diffusion.NumTimesteps : strata + 1;
        if ((double)callsPerBatch * bs * ds.Channels * s * s / 4 > uint.MaxValue)
            throw new ArgumentException($"--batch {bs}: a batch would draw more than 2^32 noise blocks; use a smaller batch.");
        var comm = DiffusionSharp.Runtime.Mpi.Current;
        int batches = (n + bs - 1) / bs;
        int firstBatch = (int)((long)batches * comm.Rank / comm.Size), endBatch = (int)((long)batches * (comm.Rank + 1) / comm.Size);
        double total = 0, totalSq = 0, prior = 0, decoder = 0;
        int done = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        void Work(Action<int, int> report)
        {
            int calls = 0, totalCalls = (endBatch - firstBatch) * callsPerBatch;
            for (int start = firstBatch * bs; start < Math.Min(n, endBatch * bs); start += bs)
            {
                int b = Math.Min(bs, n - start);
                noiseGen.Offset = (ulong)start << 32;
                tRng.Offset = (ulong)start << 32;
                using var x0 = Tensor.Empty(b, ds.Channels, s, s);
                var labels = new int[b];
                int per = ds.Channels * s * s;
                for (int i = 0; i < b; i++) labels[i] = ds.Load(start + i, x0.Span.Slice(i * per, per));
                int? label = null;
                DenoiserModel net;
                if (pipe.Unet.Config.NumClassEmbeds is int && conditional)
                {
                    var lv = labels.Select(l => (float)l).ToArray();
                    net = (x, t) => pipe.Unet.Forward(x, t, Tensor.FromArray(lv, lv.Length));
                }
                else net = pipe.Denoiser(label);
                DenoiserModel counted = (x, t) => { report(++calls, totalCalls); return net(x, t); };
                var r = strata == 0 ? diffusion.CalcBpdLoop(counted, x0, noise, clipDenoised: true)
                    : diffusion.EstimateBpd(counted, x0, noise, strata, tRng, clipDenoised: true);
                for (int i = 0; i < b; i++)
                {
                    total += r.TotalBpd[i];
                    totalSq += r.TotalBpd[i] * r.TotalBpd[i];
                    prior += r.PriorBpd[i];
                    decoder += r.VbTerms[i, 0];
                }
                done += b;
            }
        }
        if (comm.Rank != 0) Work((_, _) => { });
        else Cli.Progress.Run($"bits/dim on {n} test images{(comm.Size > 1 ? $", split over {comm.Size} ranks" : "")}", Work);
        if (comm.Size > 1)
        {
            var sums = new[] { total, totalSq, prior, decoder, done };
            comm.AllReduceSum(sums);
            (total, totalSq, prior, decoder, done) = (sums[0], sums[1], sums[2], sums[3], (int)sums[4]);
            if (comm.Rank != 0) return 0;
        }
        double mean = total / done, stderr = done > 1 ? Math.Sqrt(Math.Max(0, totalSq / done - mean * mean) / (done - 1)) : double.NaN;
        var result = new
        {
            model = dir, data = dataName, images = done, bits_per_dim = mean, standard_error = double.IsNaN(stderr) ? (double?)null : stderr,
            timesteps = strata == 0 ? "all" : $"{strata} strata + decoder", prior_bpd = prior / done,
            decoder_bpd = decoder / done, conditional, seconds = Math.Round(sw.Elapsed.TotalSeconds, 1),
        };
        if (json) Console.WriteLine(JsonSerializer.Serialize(result));
        else Console.WriteLine($"bits/dim {result.bits_per_dim:F4} +- {stderr:F4} (standard error over images; {result.timesteps} timesteps) on {done} images (prior {result.prior_bpd:F6}, decoder {result.decoder_bpd:F4}; {(result.conditional ? "conditional" : "unconditional")}) in {result.seconds} s");
        return 0;
    }

    /// <summary>
    /// The images <paramref name="request"/> describes; under mpirun the ranks sample whole batches of them and rank 0 gets them
    /// all (the other ranks get null). <paramref name="report"/> receives (network calls done, total) on this rank.
    /// </summary>
    internal static Tensor? Generate(DiffusionPipeline pipe, SampleRequest request, Action<int, int>? report)
    {
        var comm = DiffusionSharp.Runtime.Mpi.Current;
        var req = request with { ShardIndex = comm.Rank, ShardCount = comm.Size };
        var (first, mine) = req.ShardRange;
        Tensor? made = mine > 0 || comm.Size == 1 ? pipe.Sample(req, report == null ? null : (d, t) => report(d, t)) : null;
        if (comm.Size == 1) return made;
        // rank 0 measures all of them: an all-reduce of a zero-filled buffer in which each rank fills its rows
        int c = pipe.Unet.Config.InChannels, s = pipe.Unet.Config.SampleSize ?? 32, per = c * s * s;
        var all = new float[(long)req.Count * per];
        made?.Span.CopyTo(all.AsSpan(first * per));
        made?.Dispose();
        comm.AllReduceSum(all);
        return comm.Rank == 0 ? Tensor.FromArray(all, req.Count, c, s, s) : null;
    }

    /// <summary>FID and precision/recall of <paramref name="images"/> against reference features, in the classifier's feature space.</summary>
    internal static (double Fid, PrecisionRecallResult PrecisionRecall) Score(FeatureClassifier cls, double[] refFeatures, int refCount, Tensor images, int k,
        Action<int, int>? report = null)
    {
        var features = cls.ExtractFeatures(images, progress: report);
        int d = cls.FeatureDim, n = images.Dim(0);
        double fid = FrechetDistance.Compute(FeatureStatistics.FromFeatures(refFeatures, refCount, d), FeatureStatistics.FromFeatures(features, n, d));
        return (fid, PrecisionRecall.Compute(refFeatures, refCount, features, n, d, k));
    }

    private sealed record FidArgs(string? Model, string Data, string? Classifier, string Samples, int? ReferenceCount, int Steps, string Sampler,
        double Guidance, ulong Seed, int Batch, int K, bool Json);

    private static readonly Regex SplitSpec = new(@"^(train|test):(\d+)$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    private static int RunFid(FidArgs a)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var clsDir = ModelLocator.ResolveClassifier(a.Classifier);
        var cls = FeatureClassifier.Load(clsDir);
        int c = cls.Config.InChannels, s = cls.Config.ImageSize;

        // The generated (or given) images, as [N, C, S, S] in [-1, 1].
        Tensor images;
        string source;
        if (Directory.Exists(a.Samples))
        {
            Tensor? loaded = null;
            Cli.Progress.Run($"reading PNGs from {a.Samples}", report => loaded = SampleImages.LoadPngFolder(a.Samples, c, s, progress: report));
            images = loaded!;
            source = $"PNG folder {a.Samples}";
        }
        else if (SplitSpec.Match(a.Samples) is { Success: true } m)
        {
            bool train = m.Groups[1].Value.Equals("train", StringComparison.OrdinalIgnoreCase);
            int n = int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            var split = Datasets.Open(a.Data, new DatasetOptions { Train = train, Size = s, Channels = c });
            if (n < 1 || n > split.Count) throw new ArgumentException($"--samples {a.Samples}: the {(train ? "train" : "test")} split of {a.Data} has {split.Count} images.");
            images = Tensor.Empty(n, c, s, s);
            int per = c * s * s;
            for (int i = 0; i < n; i++) split.Load(i, images.Span.Slice(i * per, per));
            source = $"first {n} images of the {(train ? "train" : "test")} split of {a.Data}";
        }
        else if (int.TryParse(a.Samples, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int toGenerate))
        {
            if (toGenerate < 2) throw new ArgumentException($"--samples {toGenerate}: FID needs at least 2 images.");
            var dir = ModelLocator.Resolve(a.Model);
            var pipe = DiffusionPipeline.FromPretrained(dir);
            cls.EnsureAccepts(pipe.Unet.Config.InChannels, pipe.Unet.Config.SampleSize ?? 32, $"the model {dir}");
            var req = new SampleRequest { Count = toGenerate, Steps = a.Steps, Sampler = pipe.ResolveSampler(a.Sampler), Seed = a.Seed, GuidanceScale = a.Guidance, BatchSize = a.Batch };
            Tensor? made = null;
            var comm = DiffusionSharp.Runtime.Mpi.Current;  // under mpirun the ranks sample whole batches of the same images
            if (comm.Rank != 0) made = Generate(pipe, req, null);
            else Cli.Progress.Run($"sampling {toGenerate} images ({req.Sampler}, {a.Steps} steps{(comm.Size > 1 ? $", split over {comm.Size} ranks" : "")})",
                report => made = Generate(pipe, req, report));
            if (made == null) return 0;
            images = made;
            source = $"{toGenerate} images sampled from {dir} ({req.Sampler}, {a.Steps} steps, guidance {a.Guidance}, seed {a.Seed})";
        }
        else
            throw new ArgumentException($"--samples '{a.Samples}' is not an existing folder of PNG images, a number of images to generate, or train:N / test:N.");

        using (images)
        {
            cls.EnsureAccepts(images.Dim(1), images.Dim(2), source);
            var reference = Datasets.Open(a.Data, new DatasetOptions { Train = false, Size = s, Channels = c });
            int refCount = Math.Min(a.ReferenceCount ?? reference.Count, reference.Count);
            if (refCount < 2) throw new ArgumentException($"--reference-count must leave at least 2 test images, got {refCount}.");
            double[] refFeatures = null!;
            Cli.Progress.Run($"classifier features of {refCount} test images", report => refFeatures = cls.ExtractFeatures(reference, refCount, progress: report));
            int d = cls.FeatureDim, n = images.Dim(0);
            (double fidValue, PrecisionRecallResult pr) = (0, null!);
            Cli.Progress.Run($"features, FID and precision/recall (k={a.K}) of {n} samples", report => (fidValue, pr) = Score(cls, refFeatures, refCount, images, a.K, report));
            var result = new
            {
                fid = fidValue, precision = pr.Precision, recall = pr.Recall, k = a.K, samples = n, samples_source = source,
                reference = $"test split of {a.Data}", reference_images = refCount,
                classifier = clsDir, classifier_dataset = cls.Config.Dataset, classifier_test_accuracy = cls.Config.TestAccuracy, feature_dim = d,
                feature_space = "DiffusionSharp classifier penultimate layer (not Inception-v3)",
                seconds = Math.Round(sw.Elapsed.TotalSeconds, 1),
            };
            if (a.Json) Console.WriteLine(JsonSerializer.Serialize(result));
            else
            {
                string acc = cls.Config.TestAccuracy is double ta ? $"{ta:P2} test accuracy" : "test accuracy not recorded";
                Console.WriteLine($"FID {fidValue:F4}, precision {pr.Precision:F4}, recall {pr.Recall:F4} (k={a.K}) in {result.seconds} s");
                Console.WriteLine($"  samples: {n} ({source}); reference: {refCount} test images of {a.Data}");
                Console.WriteLine($"  features: {d}-d penultimate layer of the classifier {clsDir} ({acc}); not Inception FID");
            }
            return 0;
        }
    }
}
