using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion bench gemm</c>: our SGEMM against OpenBLAS (through NumPy) in the same run.</summary>
public static class BenchGemm
{
    // Square sizes, then the im2col GEMMs of the ddpm-small U-Net at batch 64 (m = batch * pixels, k = Cin * 9, n = Cout).
    private static readonly (int M, int N, int K, string Label)[] Shapes =
    {
        (256, 256, 256, "square"), (512, 512, 512, "square"), (1024, 1024, 1024, "square"), (2048, 2048, 2048, "square"),
        (65536, 64, 576, "conv 64->64 @32x32"), (16384, 128, 1152, "conv 128->128 @16x16"),
        (4096, 128, 1152, "conv 128->128 @8x8"), (4096, 128, 2304, "conv 256->128 @8x8"),
    };

    // Reads "m n k reps" lines and answers each with the best np.dot time; holds the matrices of the last shape.
    private const string NumpyScript = """
import sys, time, json
import numpy as np
info = {}
try:
    import threadpoolctl
    pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    if pools: info = {"internal_api": pools[0].get("internal_api"), "architecture": pools[0].get("architecture"), "num_threads": pools[0].get("num_threads"), "version": pools[0].get("version")}
except Exception as e:
    info = {"error": str(e)}
try:
    np.dot(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32))
    info["libraries"] = sorted({l.split()[-1] for l in open("/proc/self/maps") if any(s in l.split()[-1] for s in ("blas", "mkl", "blis"))})
except Exception:
    pass
print(json.dumps(info), flush=True)
shape = None
for line in sys.stdin:
    m, n, k, reps = map(int, line.split())
    if shape != (m, n, k):
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=np.float32); b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32); shape = (m, n, k)
        np.dot(a, b, out=c)
    best, best_cpu = 1e30, 1e30
    for _ in range(reps):
        t, u = time.perf_counter(), time.process_time(); np.dot(a, b, out=c)
        best = min(best, time.perf_counter() - t); best_cpu = min(best_cpu, time.process_time() - u)
    print(best, best_cpu, flush=True)
""";

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line" };
        var rounds = CliOptions.InRange(new Option<int>("--rounds") { Description = "Alternating rounds of ours/OpenBLAS per shape (best kept)", DefaultValueFactory = _ => 3 }, 1, 1000);
        var shape = new Option<string[]>("--shape") { Description = "Measure only these shapes, given as MxNxK (repeatable)", AllowMultipleArgumentsPerToken = true };
        var kernel = new Option<string?>("--kernel") { Description = $"Our micro-kernel: avx512, avx2, vector128 or scalar (default: {Gemm.KernelVariable} or the widest this machine runs)" };
        var core = new Option<string>("--openblas-coretype") { Description = "OPENBLAS_CORETYPE for the reference: match (Haswell for our avx2 kernel, SkylakeX for avx512, so both use the same vector width), auto (OpenBLAS chooses) or a core name", DefaultValueFactory = _ => "match" };
        var cmd = new Command("gemm", "SGEMM GFLOP/s on square and U-Net im2col shapes, with OpenBLAS (NumPy) measured in the same run.");
        cmd.Options.Add(json);
        cmd.Options.Add(rounds);
        cmd.Options.Add(shape);
        cmd.Options.Add(kernel);
        cmd.Options.Add(core);
        cmd.SetAction(parse =>
        {
            if (parse.GetValue(kernel) is string k)
            {
                var kind = Gemm.ParseKernel(k, "--kernel");
                if (!Gemm.IsSupported(kind)) { Console.Error.WriteLine($"error: --kernel {k}: not accelerated on this machine (best: {Gemm.Best()})."); return 2; }
                Gemm.Kernel = kind;
            }
            return Run(parse.GetValue(json), Math.Max(1, parse.GetValue(rounds)), parse.GetValue(shape), CoreType(parse.GetValue(core)!));
        });
        return cmd;
    }

    // The OpenBLAS kernel family of the same vector width as ours; null lets OpenBLAS pick for the CPU.
    private static string? CoreType(string option) => option.Trim().ToLowerInvariant() switch
    {
        "auto" or "" => null,
        "match" => Gemm.Kernel switch { GemmKernel.Vector512 => "SkylakeX", GemmKernel.Vector256 => "Haswell", _ => null },
        _ => option.Trim(),
    };

    private static int Run(bool json, int rounds, string[]? only, string? coreType)
    {
        var shapes = Shapes;
        if (only is { Length: > 0 })
        {
            var list = new List<(int, int, int, string)>();
            foreach (var sp in only)
            {
                var d = sp.Split('x');
                if (d.Length != 3 || !int.TryParse(d[0], out int m) || !int.TryParse(d[1], out int n) || !int.TryParse(d[2], out int k) || m < 1 || n < 1 || k < 1)
                {
                    Console.Error.WriteLine($"--shape expects MxNxK with positive sizes, got '{sp}'.");
                    return 2;
                }
                list.Add((m, n, k, m == n && n == k ? "square" : "custom"));
            }
            shapes = list.ToArray();
        }
        int threads = Threading.Threads;
        using var np = NumpyProcess.TryStart(NumpyScript, threads, out string? note, coreType);
        if (note != null) Console.Error.WriteLine(note);
        if (!json)
            Console.WriteLine($"kernel {Gemm.Kernel}, threads {threads}" + (np != null ? $", reference {np.Info}" + (coreType != null ? $" (OPENBLAS_CORETYPE={coreType})" : "") : ", no reference"));
        foreach (var (m, n, k, label) in shapes)
        {
            var a = new float[(long)m * k];
            var b = new float[(long)k * n];
            var c = new float[(long)m * n];
            var g = new Generator(1);
            g.Normal(a); g.Normal(b);
            double flops = Gemm.Flops(m, n, k);
            int reps = Math.Clamp((int)(3e9 / flops), 2, 20);
            // Rounds alternate ours and OpenBLAS so both see the same machine load; best wall and best CPU time are kept.
            double ours = double.MaxValue, oursCpu = double.MaxValue, theirs = double.MaxValue, theirsCpu = double.MaxValue;
            for (int r = 0; r < rounds; r++)
            {
                var t = BenchTiming.MeasureWithCpu(() => Gemm.Sgemm(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n), minReps: reps, minSeconds: 0.2);
                ours = Math.Min(ours, t.Best);
                oursCpu = Math.Min(oursCpu, t.BestCpu);
                if (np?.Time(m, n, k, reps) is (double wall, double cpu))
                {
                    theirs = Math.Min(theirs, wall);
                    theirsCpu = Math.Min(theirsCpu, cpu);
                }
            }
            double gf = flops / ours / 1e9;
            // CPU-time rate: flops per CPU-second times threads, i.e. the wall rate had no other process competed.
            double gfCpu = flops * threads / oursCpu / 1e9;
            double? ogf = theirs < double.MaxValue ? flops / theirs / 1e9 : null;
            double? ogfCpu = theirsCpu < double.MaxValue ? flops * threads / theirsCpu / 1e9 : null;
            if (json)
                Console.WriteLine(BenchTiming.Json(("m", m), ("n", n), ("k", k), ("shape", label), ("gflops", gf), ("openblas_gflops", ogf), ("ratio", ogf is double o ? gf / o : null),
                    ("gflops_cpu", gfCpu), ("openblas_gflops_cpu", ogfCpu), ("ratio_cpu", ogfCpu is double oc ? gfCpu / oc : null),
                    ("threads", threads), ("openblas_threads", np?.Threads), ("kernel", Gemm.Kernel.ToString()), ("openblas_coretype", coreType)));
            else
                Console.WriteLine($"{label,-22} m={m,-6} n={n,-5} k={k,-5} ours {gf,7:F1} GFLOP/s" + (ogf is double o2 ? $"   OpenBLAS {o2,7:F1}   ratio {gf / o2:F2}" : "")
                    + $"   | per CPU-second: ours {gfCpu,7:F1}" + (ogfCpu is double oc2 ? $"   OpenBLAS {oc2,7:F1}   ratio {gfCpu / oc2:F2}" : ""));
        }
        return 0;
    }
}

/// <summary>A /usr/bin/python3 child running a NumPy timing loop over stdin/stdout.</summary>
internal sealed class NumpyProcess : IDisposable
{
    private readonly Process _p;
    public string Info { get; }
    public int? Threads { get; }

    private NumpyProcess(Process p, string info, int? threads) { _p = p; Info = info; Threads = threads; }

    // Debian's OpenBLAS builds: NumPy links libblas.so.3, which the alternatives system may point at the reference BLAS.
    private static readonly string[] OpenBlasDirs = { "/usr/lib/x86_64-linux-gnu/openblas-pthread", "/usr/lib/aarch64-linux-gnu/openblas-pthread" };

    public static NumpyProcess? TryStart(string script, int threads, out string? note, string? coreType = null)
    {
        note = null;
        const string python = "/usr/bin/python3";
        if (!File.Exists(python)) { note = "note: /usr/bin/python3 not found; OpenBLAS comparison skipped (apt-get install python3-numpy)."; return null; }
        var psi = new ProcessStartInfo(python, new[] { "-c", script })
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // OPENBLAS_CORETYPE pins the kernel family (Haswell: AVX2, SkylakeX: AVX-512); unset, OpenBLAS picks for the CPU.
        if (coreType != null) psi.Environment["OPENBLAS_CORETYPE"] = coreType;
        else psi.Environment.Remove("OPENBLAS_CORETYPE");
        psi.Environment.Remove("OPENBLAS_L2_SIZE");
        if (OpenBlasDirs.FirstOrDefault(d => File.Exists(Path.Combine(d, "libblas.so.3"))) is string dir)
            psi.Environment["LD_LIBRARY_PATH"] = dir + (psi.Environment.TryGetValue("LD_LIBRARY_PATH", out var old) && !string.IsNullOrEmpty(old) ? ":" + old : "");
        string t = threads.ToString(CultureInfo.InvariantCulture);
        psi.Environment["OPENBLAS_NUM_THREADS"] = t;
        psi.Environment["OMP_NUM_THREADS"] = t;
        Process p;
        try { p = Process.Start(psi)!; }
        catch (Exception e) { note = $"note: could not start {python} ({e.Message}); OpenBLAS comparison skipped."; return null; }
        string? first = p.StandardOutput.ReadLine();
        if (first == null)
        {
            string err = p.StandardError.ReadToEnd();
            p.Dispose();
            note = "note: NumPy is not available (" + err.Trim().Split('\n').LastOrDefault() + "); OpenBLAS comparison skipped (apt-get install python3-numpy).";
            return null;
        }
        int? nt = null;
        string info = first;
        try
        {
            using var doc = JsonDocument.Parse(first);
            if (doc.RootElement.TryGetProperty("num_threads", out var v) && v.ValueKind == JsonValueKind.Number) nt = v.GetInt32();
            // the libraries NumPy mapped tell OpenBLAS from the reference BLAS (Debian's default, tens of times slower) without threadpoolctl
            var libs = doc.RootElement.TryGetProperty("libraries", out var l) && l.ValueKind == JsonValueKind.Array
                ? l.EnumerateArray().Select(e => e.GetString() ?? "").ToList() : new List<string>();
            if (doc.RootElement.TryGetProperty("internal_api", out var api) && api.GetString() != "openblas")
                note = $"note: NumPy's BLAS is {api.GetString()}, not OpenBLAS ({first}); apt-get install libopenblas0-pthread.";
            else if (!doc.RootElement.TryGetProperty("internal_api", out _))
                note = libs.FirstOrDefault(x => x.Contains("openblas", StringComparison.OrdinalIgnoreCase)) is string openblas
                    ? $"note: NumPy uses {openblas}; install python3-threadpoolctl to report its version and threads."
                    : $"warning: NumPy's BLAS is not OpenBLAS ({(libs.Count > 0 ? string.Join(", ", libs) : first)}), so the reference column is not OpenBLAS; apt-get install libopenblas0-pthread python3-threadpoolctl.";
        }
        catch (JsonException) { }
        return new NumpyProcess(p, info, nt);
    }

    /// <summary>Best wall and best process-CPU seconds of <paramref name="reps"/> np.dot calls of an m x k by k x n product.</summary>
    public (double Wall, double Cpu)? Time(int m, int n, int k, int reps)
    {
        _p.StandardInput.WriteLine($"{m} {n} {k} {reps}");
        _p.StandardInput.Flush();
        var parts = _p.StandardOutput.ReadLine()?.Split(' ');
        if (parts is { Length: 2 } && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double w)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double c)) return (w, c);
        return null;
    }

    public void Dispose()
    {
        try { _p.StandardInput.Close(); if (!_p.WaitForExit(5000)) _p.Kill(); } catch (InvalidOperationException) { }
        _p.Dispose();
    }
}
