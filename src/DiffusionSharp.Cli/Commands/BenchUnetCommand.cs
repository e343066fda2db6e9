using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DiffusionSharp.Autograd;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Optim;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;
using Microsoft.ML.OnnxRuntime;

namespace DiffusionSharp.Cli.Commands;

/// <summary>
/// <c>diffusion bench unet</c>: U-Net training (L_simple: forward + MSE + backward + Adam) and inference throughput on a preset,
/// with the PyTorch peer (shared/peer/torch_unet.py, same architecture) and ONNX Runtime (our ONNX export of the same
/// network) measured in the same invocation; eval latency at small batches too.
/// </summary>
public static class BenchUnetCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "ddpm-small or ddpm-cifar", DefaultValueFactory = _ => "ddpm-small" };
        var batch = CliOptions.InRange(new Option<int>("--batch") { Description = "Images per step", DefaultValueFactory = _ => 64 }, 1, 4096);
        var steps = CliOptions.InRange(new Option<int>("--steps") { Description = "Timed steps after one warm-up step", DefaultValueFactory = _ => 5 }, 1, 10_000);
        var json = new Option<bool>("--json") { Description = "Print JSON lines (ours, peer, ratios)" };
        var peer = new Option<string?>("--peer-script") { Description = "Path of torch_unet.py (default: ../shared/peer/torch_unet.py from the repository root)" };
        var noPeer = new Option<bool>("--no-peer") { Description = "Measure only DiffusionSharp (no PyTorch, no ONNX Runtime)" };
        var noOnnx = new Option<bool>("--no-onnx") { Description = "Skip the ONNX Runtime peer" };
        var microBatch = CliOptions.InRange(new Option<int?>("--micro-batch") { Description = "Training images per forward/backward pass, gradients summed over the batch (default: as diffusion train, half the batch and at most 32)" }, 1, 4096);
        var evalBatches = new Option<string>("--eval-batches") { Description = "Extra eval batch sizes for latency, comma-separated (--batch is always measured)", DefaultValueFactory = _ => "1,4" };
        var cmd = new Command("unet", "U-Net train/eval images per second and GFLOP/s on a preset, against the PyTorch peer and ONNX Runtime.");
        foreach (var o in new Option[] { preset, batch, steps, json, peer, noPeer, noOnnx, evalBatches, microBatch }) cmd.Options.Add(o);
        cmd.SetAction(p => Run(p.GetValue(preset)!, p.GetValue(batch), p.GetValue(steps), p.GetValue(json), p.GetValue(peer), p.GetValue(noPeer),
            p.GetValue(noOnnx), p.GetValue(evalBatches)!, p.GetValue(microBatch)));
        return cmd;
    }

    private static int Run(string preset, int batch, int steps, bool json, string? peerScript, bool noPeer, bool noOnnx, string evalBatchList, int? microBatch)
    {
        var batches = new SortedSet<int> { batch };
        foreach (var part in evalBatchList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b) || b < 1 || b > 4096)
            {
                Console.Error.WriteLine($"--eval-batches must be comma-separated batch sizes 1..4096, got '{part}'.");
                return 2;
            }
            batches.Add(b);
        }
        if (!UNet2DModel.PresetNames.Contains(preset))
        {
            Console.Error.WriteLine($"Unknown --preset '{preset}'; expected one of: {string.Join(", ", UNet2DModel.PresetNames)}.");
            return 2;
        }
        if (batch < 1 || steps < 1)
        {
            Console.Error.WriteLine($"--batch and --steps must be at least 1 (got {batch} and {steps}).");
            return 2;
        }
        int threads = Threading.Threads;
        int micro = Math.Min(batch, microBatch ?? DiffusionSharp.Training.TrainOptions.DefaultMicroBatch(batch));
        var (ours, net) = MeasureOurs(preset, batch, steps, micro);
        double peak = BenchPeak.Measure(threads, 0.5).AllThreads;
        double evalGflops = ours.GflopPerImage * batch / ours.EvalS, trainGflops = 3 * ours.GflopPerImage * batch / ours.TrainStepS;
        double evalExec = ours.ExecutedGflopPerImage * batch / ours.EvalS, trainExec = ours.ExecutedTrainGflopPerImage * batch / ours.TrainStepS;
        var oursFields = new (string, object?)[]
        {
            ("impl", "DiffusionSharp"), ("preset", preset), ("threads", threads), ("params", ours.Params),
            ("forward_gflop_per_image", ours.GflopPerImage), ("batch", batch), ("micro_batch", micro), ("train_step_s", ours.TrainStepS),
            ("train_images_per_s", batch / ours.TrainStepS), ("eval_s", ours.EvalS), ("eval_images_per_s", batch / ours.EvalS),
            ("eval_gflop_per_s", evalGflops), ("train_gflop_per_s", trainGflops), ("peak_gflop_per_s", peak),
            ("eval_peak_fraction", evalGflops / peak), ("train_peak_fraction", trainGflops / peak), ("optimizer", "adam"),
            ("peak_rss_mb", double.IsNaN(ours.PeakRssMb) ? null : Math.Round(ours.PeakRssMb, 1)),
            ("conv_algorithm", Convolution.Algorithm.ToString().ToLowerInvariant()),
            ("forward_gflop_per_image_executed", ours.ExecutedGflopPerImage), ("train_gflop_per_image_executed", ours.ExecutedTrainGflopPerImage),
            ("eval_gflop_per_s_executed", evalExec), ("train_gflop_per_s_executed", trainExec),
            ("eval_peak_fraction_executed", evalExec / peak), ("train_peak_fraction_executed", trainExec / peak),
        };
        if (json) Console.WriteLine(BenchTiming.Json(oursFields));
        else
        {
            Console.WriteLine($"DiffusionSharp  preset {preset}, batch {batch}, threads {threads}, {ours.Params:N0} params, {ours.GflopPerImage:F3} forward GFLOP/image");
            Console.WriteLine($"  3x3 convolutions: {Convolution.Algorithm}; executed {ours.ExecutedGflopPerImage:F3} forward GFLOP/image ({ours.ExecutedTrainGflopPerImage:F3} per training image) vs {ours.GflopPerImage:F3} ({3 * ours.GflopPerImage:F3}) counted as direct convolution");
            Console.WriteLine($"  train (fwd + MSE + bwd + Adam, micro-batches of {micro}): {ours.TrainStepS:F3} s/step, {batch / ours.TrainStepS:F2} images/s, ~{trainGflops:F1} GFLOP/s (3x forward, direct count), {100 * trainGflops / peak:F0}% of peak; executed {trainExec:F1} GFLOP/s, {100 * trainExec / peak:F0}%");
            Console.WriteLine($"  eval (forward, no grad):        {ours.EvalS:F3} s/batch, {batch / ours.EvalS:F2} images/s, {evalGflops:F1} GFLOP/s (direct count), {100 * evalGflops / peak:F0}% of peak; executed {evalExec:F1} GFLOP/s, {100 * evalExec / peak:F0}%");
            Console.WriteLine($"  measured peak (bench peak, {threads} threads): {peak:F1} GFLOP/s");
            Console.WriteLine($"  peak resident memory (train then eval): {ours.PeakRssMb:F0} MiB");
        }
        if (noPeer)
        {
            foreach (int b in batches.Where(b => b != batch)) Report(json, EvalAgainstOnnx(net, b, steps, threads, onnx: null));
            return 0;
        }
        CompareWithOnnx(net, batches, steps, threads, json, noOnnx);

        var peer = RunPeer(peerScript, preset, batch, steps, threads, out string? note);
        if (peer == null)
        {
            Console.Error.WriteLine(note);
            if (json) Console.WriteLine(BenchTiming.Json(("impl", "peer"), ("available", false), ("note", note)));
            return 0;
        }
        var p = peer.RootElement;
        if (ReferenceBlasWarning(p) is string blasWarning) Console.Error.WriteLine(blasWarning);
        double pTrain = p.GetProperty("train_images_per_s").GetDouble(), pEval = p.GetProperty("eval_images_per_s").GetDouble();
        long pParams = p.GetProperty("params").GetInt64();
        double pGflop = p.GetProperty("forward_gflop_per_image").GetDouble();
        string pName = p.TryGetProperty("peer", out var pn) ? pn.GetString() ?? "peer" : "peer";
        double trainRatio = batch / ours.TrainStepS / pTrain, evalRatio = batch / ours.EvalS / pEval;
        double pRss = p.TryGetProperty("peak_rss_mb", out var pr) && pr.ValueKind == JsonValueKind.Number ? pr.GetDouble() : double.NaN;
        double rssRatio = ours.PeakRssMb / pRss;
        if (json)
        {
            Console.WriteLine(p.GetRawText());
            Console.WriteLine(BenchTiming.Json(("impl", "ratio"), ("train_images_per_s_ratio", trainRatio), ("eval_images_per_s_ratio", evalRatio),
                ("peak_rss_ratio", double.IsFinite(rssRatio) ? rssRatio : null), ("params_match", pParams == ours.Params),
                ("peer_eval_peak_fraction", pGflop * pEval / peak), ("peer_train_peak_fraction", 3 * pGflop * pTrain / peak)));
        }
        else
        {
            Console.WriteLine($"{pName}  preset {preset}, batch {batch}, threads {p.GetProperty("threads").GetInt32()}, {pParams:N0} params, {pGflop:F3} forward GFLOP/image (torch profiler count)");
            Console.WriteLine($"  train: {p.GetProperty("train_step_s").GetDouble():F3} s/step, {pTrain:F2} images/s");
            Console.WriteLine($"  eval:  {p.GetProperty("eval_s").GetDouble():F3} s/batch, {pEval:F2} images/s");
            Console.WriteLine($"  peer at {100 * pGflop * pEval / peak:F0}% (eval) and {100 * 3 * pGflop * pTrain / peak:F0}% (train) of the measured peak");
            if (!double.IsNaN(pRss)) Console.WriteLine($"  peak resident memory (train then eval): {pRss:F0} MiB");
            if (p.TryGetProperty("peer_blas", out var pb) && pb.GetArrayLength() > 0)
                Console.WriteLine($"  BLAS: {string.Join(", ", pb.EnumerateArray().Select(e => e.GetString()))}");
            Console.WriteLine($"ratio DiffusionSharp / peer: train {trainRatio:F2}x, eval {evalRatio:F2}x" + (double.IsFinite(rssRatio) ? $", peak memory {rssRatio:F2}x" : "") + (pParams == ours.Params ? "" : $" (parameter counts differ: {ours.Params} vs {pParams})"));
        }
        return 0;
    }

    private sealed record Measured(long Params, double GflopPerImage, double TrainStepS, double EvalS, double PeakRssMb,
        double ExecutedGflopPerImage, double ExecutedTrainGflopPerImage);

    // One eval batch size: our latency and, when ONNX Runtime ran, its latency and the largest output difference.
    private sealed record EvalRow(int Batch, int Rounds, double OursS, double? OnnxS, double? MaxAbsDiff, double? MaxAbsOutput);

    private static void Report(bool json, EvalRow r)
    {
        double? ratio = r.OnnxS is double o ? o / r.OursS : null;
        if (json)
            Console.WriteLine(BenchTiming.Json(("impl", "eval"), ("batch", r.Batch), ("rounds", r.Rounds), ("latency_s", r.OursS), ("images_per_s", r.Batch / r.OursS),
                ("onnxruntime_latency_s", r.OnnxS), ("onnxruntime_images_per_s", r.OnnxS is double s ? r.Batch / s : null),
                ("ratio_vs_onnxruntime", ratio), ("max_abs_diff_vs_onnxruntime", r.MaxAbsDiff), ("max_abs_output", r.MaxAbsOutput)));
        else
            Console.WriteLine($"  eval batch {r.Batch,3}: ours {r.OursS * 1e3,8:F1} ms ({r.Batch / r.OursS,7:F2} images/s)"
                + (r.OnnxS is double os ? $"   ONNX Runtime {os * 1e3,8:F1} ms ({r.Batch / os,7:F2} images/s)   ratio {ratio:F2}x   max |ours - ORT| {r.MaxAbsDiff:G3} (max |out| {r.MaxAbsOutput:G3})" : "")
                + $"   [median of {r.Rounds}, interleaved]");
    }

    // ONNX Runtime (Microsoft.ML.OnnxRuntime) on our own export of the same network, every eval batch size.
    private static void CompareWithOnnx(UNet2DModel net, SortedSet<int> batches, int steps, int threads, bool json, bool noOnnx)
    {
        OnnxBackend? onnx = null;
        string? note = null;
        if (!noOnnx)
        {
            try { onnx = OnnxBackend.For(net, null, threads); }
            catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or TypeInitializationException or InvalidOperationException)
            {
                note = $"note: ONNX Runtime could not load the exported model ({e.Message}); only our eval latency is reported.";
            }
        }
        if (note != null)
        {
            Console.Error.WriteLine(note);
            if (json) Console.WriteLine(BenchTiming.Json(("impl", "onnxruntime"), ("available", false), ("note", note)));
        }
        else if (!json && onnx != null) Console.WriteLine($"ONNX Runtime {OrtVersion()} on our ONNX export (opset 17), {threads} intra-op threads; eval latency interleaved with ours:");
        else if (!json) Console.WriteLine("eval latency:");
        using (onnx)
            foreach (int b in batches) Report(json, EvalAgainstOnnx(net, b, steps, threads, onnx));
    }

    private static string OrtVersion() =>
        typeof(InferenceSession).Assembly.GetName().Version?.ToString(3) ?? "?";

    /// <summary>Pause before each timed eval run, longer than ONNX Runtime's worker threads spin after a run (about 30 ms measured).</summary>
    internal const int SettleMs = 60;

    // Median eval latency of ours and ONNX Runtime at batch b, alternating which runs first each round (the machine may be shared).
    private static EvalRow EvalAgainstOnnx(UNet2DModel net, int b, int steps, int threads, OnnxBackend? onnx)
    {
        var cfg = net.Config;
        int size = cfg.SampleSize ?? 32;
        var x = Tensor.Randn(new Generator(5 + (ulong)b), b, cfg.InChannels, size, size);
        var tt = Tensor.Full(new Shape(b), 500f);
        float[] Ours()
        {
            using var scope = TensorScope.Begin();
            using var ng = GradMode.NoGrad();
            return net.Forward(x, tt).ToArray();
        }
        double? diff = null, maxOut = null;
        // the weights stay fixed over the measurement, as over a sampling loop (ONNX Runtime's are constants of its session)
        using var frozen = Convolution.FrozenWeights();
        var ours = Ours();
        if (onnx != null)
        {
            using var o = onnx.Forward(x, tt, null);
            var os = o.Span;
            double d = 0, m = 0;
            for (int i = 0; i < ours.Length; i++) { d = Math.Max(d, Math.Abs(ours[i] - os[i])); m = Math.Max(m, Math.Abs(ours[i])); }
            diff = d; maxOut = m;
        }
        var tOurs = new List<double>();
        var tOnnx = new List<double>();
        var total = Stopwatch.StartNew();
        // At least `steps` rounds; small batches repeat for about 2 s of wall time (at most 64 rounds).
        for (int round = 0; round < 64 && (round < steps || total.Elapsed.TotalSeconds < 2); round++)
        {
            for (int k = 0; k < 2; k++)
            {
                bool oursNow = (round + k) % 2 == 0;
                if (!oursNow && onnx == null) continue;
                // Each runtime is timed on its own: ONNX Runtime's intra-op workers spin on a core for about 30 ms after every
                // run, which a run started at once (ours, at batch 1 and 4) had to share. So: a pause, one untimed run that
                // wakes this runtime's threads and caches, then the timed run, as in a loop of evaluations (sampling).
                Thread.Sleep(SettleMs);
                for (int rep = 0; rep < 2; rep++)
                {
                    var sw = Stopwatch.StartNew();
                    if (oursNow) Ours();
                    else onnx!.Forward(x, tt, null).Dispose();
                    if (rep == 1) (oursNow ? tOurs : tOnnx).Add(sw.Elapsed.TotalSeconds);
                }
            }
        }
        x.Dispose(); tt.Dispose();
        return new EvalRow(b, tOurs.Count, Median(tOurs), onnx != null ? Median(tOnnx) : null, diff, maxOut);
    }

    private static double Median(List<double> v)
    {
        v.Sort();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    private static (Measured, UNet2DModel) MeasureOurs(string preset, int batch, int steps, int micro)
    {
        var cfg = UNet2DModel.PresetConfig(preset);
        var net = new UNet2DModel(cfg, new Generator(0));
        net.SetDropoutGenerator(new Generator(1));
        int size = cfg.SampleSize ?? 32, ch = cfg.InChannels;
        double gflop = net.ForwardFlopsPerImage(size, size) / 1e9;
        var opt = new Adam(net.TrainableParameters().ToList(), lr: 2e-4);
        var g = new Generator(2);
        var x0 = Tensor.Randn(g, batch, ch, size, size);
        // Linear betas 1e-4..0.02 (Ho et al. 2020), abar_t = prod(1 - beta).
        var abar = new double[1000];
        double acc = 1;
        for (int i = 0; i < 1000; i++) { acc *= 1 - (1e-4 + (0.02 - 1e-4) * i / 999.0); abar[i] = acc; }
        int per = ch * size * size;

        void TrainStep()
        {
            using var scope = TensorScope.Begin();  // activations and gradients go back to the pool at the end of the step
            var t = new float[batch];
            var eps = Tensor.Randn(g, batch, ch, size, size);
            var xt = Tensor.Empty(batch, ch, size, size);
            var xs = xt.Span; var es = eps.Span; var x0s = x0.Span;
            for (int b = 0; b < batch; b++)
            {
                int ti = g.NextInt(1000);
                t[b] = ti;
                float a = (float)Math.Sqrt(abar[ti]), s = (float)Math.Sqrt(1 - abar[ti]);
                for (int i = b * per; i < (b + 1) * per; i++) xs[i] = a * x0s[i] + s * es[i];   // Eq. 4 of Ho et al. 2020
            }
            opt.ZeroGrad();
            // As `diffusion train` does: gradients of the batch's mean loss summed over micro-batches (each loss scaled by n / batch).
            for (int m0 = 0; m0 < batch; m0 += micro)
            {
                using var microScope = TensorScope.Begin();
                int n = Math.Min(micro, batch - m0);
                var loss = Tensor.MseLoss(net.Forward(xt.Narrow(0, m0, n), Tensor.FromArray(t.AsSpan(m0, n).ToArray(), n)), eps.Narrow(0, m0, n)) * ((float)n / batch);
                loss.Backward(releaseIntermediates: true);
            }
            opt.Step();
        }

        net.Train();
        TrainStep();
        double exec0 = Convolution.ExecutedFlops, direct0 = Convolution.DirectFlops;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) TrainStep();
        double trainS = sw.Elapsed.TotalSeconds / steps;
        // Training counts 3x the forward (direct convolution); the executed count swaps in what the convolutions really ran.
        double trainExec = 3 * gflop - (Convolution.DirectFlops - direct0 - (Convolution.ExecutedFlops - exec0)) / ((double)batch * steps) / 1e9;

        net.Eval();
        TensorPool.Trim();  // the training step's pooled arrays have the micro-batch's sizes, not the eval batch's
        var tt = Tensor.Full(new Shape(batch), 500f);
        double evalS;
        using (GradMode.NoGrad())
        using (Convolution.FrozenWeights())
        {
            void EvalStep()
            {
                using var scope = TensorScope.Begin();
                net.Forward(x0, tt);
            }
            EvalStep();
            exec0 = Convolution.ExecutedFlops; direct0 = Convolution.DirectFlops;
            sw.Restart();
            for (int i = 0; i < steps; i++) EvalStep();
            evalS = sw.Elapsed.TotalSeconds / steps;
        }
        double evalExec = gflop - (Convolution.DirectFlops - direct0 - (Convolution.ExecutedFlops - exec0)) / ((double)batch * steps) / 1e9;
        return (new Measured(net.ParameterCount, gflop, trainS, evalS, PeakRssMb(), evalExec, trainExec), net);
    }

    // Peak resident set of this process (VmHWM), in MiB; NaN where /proc is unavailable.
    private static double PeakRssMb()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (!line.StartsWith("VmHWM:", StringComparison.Ordinal)) continue;
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) / 1024.0;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return double.NaN;
    }

    // The peer's JSON object with "peak_rss_mb" and "peer_blas" (the BLAS libraries it mapped) appended.
    private static string MergePeakRss(JsonElement peer, double? rssMb, string[] blas)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            foreach (var prop in peer.EnumerateObject()) if (prop.Name != "peak_rss_mb") prop.WriteTo(w);
            if (rssMb is double mb) w.WriteNumber("peak_rss_mb", mb);
            else w.WriteNull("peak_rss_mb");
            w.WriteStartArray("peer_blas");
            foreach (var lib in blas) w.WriteStringValue(lib);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    private static readonly string[] OptimisedBlas = ["openblas", "mkl", "blis", "atlas"];

    /// <summary>A warning when the peer's JSON (its <c>peer_blas</c> list of mapped libraries) shows it ran on the reference
    /// (netlib) BLAS rather than an optimised one; null when it names an optimised BLAS or none.</summary>
    public static string? ReferenceBlasWarning(JsonElement peer)
    {
        if (!peer.TryGetProperty("peer_blas", out var b) || b.ValueKind != JsonValueKind.Array) return null;
        // PyTorch calls libblas.so.3; Debian's reference build of it lives in .../blas/, optimised ones in .../openblas-*/ and
        // the like (an OpenBLAS mapped beside the reference one, for NumPy's LAPACK, does not run PyTorch's products)
        static bool Optimised(string path) => OptimisedBlas.Any(m => path.Contains(m, StringComparison.OrdinalIgnoreCase));
        var libs = b.EnumerateArray().Select(e => e.GetString() ?? "")
            .Where(l => Path.GetFileName(l).StartsWith("libblas.so", StringComparison.Ordinal) && !Optimised(l)).ToList();
        if (libs.Count == 0) return null;
        return $"warning: the PyTorch peer ran its matrix products on the reference BLAS ({string.Join(", ", libs)}), several times slower "
            + "than an optimised one, so the ratios against it flatter DiffusionSharp; apt-get install libopenblas0-openmp for a fair peer.";
    }

    private static string? FindRepoRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "DiffusionSharp.sln")) || Directory.Exists(Path.Combine(d.FullName, ".git")) || File.Exists(Path.Combine(d.FullName, ".git")))
                    return d.FullName;
        }
        return null;
    }

    private static JsonDocument? RunPeer(string? script, string preset, int batch, int steps, int threads, out string? note)
    {
        note = null;
        if (script == null)
        {
            var root = FindRepoRoot();
            script = root == null ? null : Path.GetFullPath(Path.Combine(root, "..", "shared", "peer", "torch_unet.py"));
        }
        if (script == null || !File.Exists(script))
        {
            note = $"note: peer script not found ({script ?? "no repository root found"}); pass --peer-script PATH. Only DiffusionSharp was measured.";
            return null;
        }
        const string python = "/usr/bin/python3";
        if (!File.Exists(python)) { note = "note: /usr/bin/python3 not found; the PyTorch peer was not run."; return null; }
        var args = new[] { script, "--preset", preset, "--batch", batch.ToString(CultureInfo.InvariantCulture),
            "--steps", steps.ToString(CultureInfo.InvariantCulture), "--threads", threads.ToString(CultureInfo.InvariantCulture) };
        // The script runs unchanged under a wrapper that prints its peak resident set afterwards: VmHWM, since Linux carries
        // ru_maxrss across fork and exec, so it would report this (larger) process's peak.
        // It also names the BLAS libraries mapped into the peer: PyTorch's Linear layers and attention products run on the
        // system libblas.so.3, and Debian's default there is the reference BLAS, which makes the peer several times slower.
        const string wrapper = "import json, runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            + "print(json.dumps({'max_rss_kb': next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')), "
            + "'blas': sorted({l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l.split()[-1].rsplit('/', 1)[-1]})}))";
        var psi = new ProcessStartInfo(python, new[] { "-c", wrapper }.Concat(args))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString(CultureInfo.InvariantCulture);
        using var proc = Process.Start(psi)!;
        var errTask = proc.StandardError.ReadToEndAsync();
        string stdout = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        string stderr = errTask.Result;
        if (stderr.Contains("No module named 'torch'", StringComparison.Ordinal))
        {
            note = "note: PyTorch is not installed for /usr/bin/python3 (apt-get install python3-torch); the peer was not run.";
            return null;
        }
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.TrimStart().StartsWith('{')).ToList();
        string? rssLine = lines.Count > 0 && lines[^1].Contains("\"max_rss_kb\"", StringComparison.Ordinal) ? lines[^1] : null;
        if (rssLine != null) lines.RemoveAt(lines.Count - 1);
        var line = lines.LastOrDefault();
        if (proc.ExitCode != 0 || line == null)
        {
            note = $"note: the peer failed (exit {proc.ExitCode}): {stderr.Trim().Split('\n').LastOrDefault()}";
            return null;
        }
        try
        {
            using var peerDoc = JsonDocument.Parse(line);
            double? rssMb = null;
            string[] blas = [];
            if (rssLine != null)
            {
                using var r = JsonDocument.Parse(rssLine);
                rssMb = Math.Round(r.RootElement.GetProperty("max_rss_kb").GetDouble() / 1024.0, 1);
                if (r.RootElement.TryGetProperty("blas", out var b) && b.ValueKind == JsonValueKind.Array)
                    blas = b.EnumerateArray().Select(e => e.GetString() ?? "").ToArray();
            }
            return JsonDocument.Parse(MergePeakRss(peerDoc.RootElement, rssMb, blas));
        }
        catch (JsonException e) { note = $"note: could not parse the peer's output line '{line}': {e.Message}"; return null; }
    }
}
