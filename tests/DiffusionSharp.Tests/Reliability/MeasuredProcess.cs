using System.Diagnostics;

namespace DiffusionSharp.Tests.Reliability;

/// <summary>
/// Runs the <c>diffusion</c> CLI as a child process and reports its peak resident memory, VmHWM of
/// <c>/proc/self/status</c> read by a startup hook as the process exits. (wait4's ru_maxrss cannot be used: the kernel
/// seeds it with the parent's resident size at exec, and the test host is large.) Linux only.
/// </summary>
internal static class MeasuredProcess
{
    /// <summary>Exit code, standard error, peak resident memory in bytes (-1 when the process did not report it), wall seconds.</summary>
    public sealed record Result(int ExitCode, string Stderr, long PeakRssBytes, double Seconds);

    /// <summary>True where the measurement works (Linux, /proc).</summary>
    public static bool Supported => OperatingSystem.IsLinux() && File.Exists("/proc/self/status");

    /// <summary>The CLI built beside the tests.</summary>
    public static string CliDll => Path.Combine(AppContext.BaseDirectory, "diffusion.dll");

    /// <summary>Runs <c>dotnet diffusion.dll args</c>; stdout is discarded, stderr captured; killed after <paramref name="timeout"/>.</summary>
    public static Result RunCli(IReadOnlyList<string> args, TimeSpan timeout)
    {
        var peakFile = Path.Combine(Path.GetTempPath(), $"diffusion-peak-{Environment.ProcessId}-{Guid.NewGuid():N}");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_STARTUP_HOOKS"] = typeof(StartupHook).Assembly.Location;
        psi.Environment[StartupHook.PeakFileVariable] = peakFile;
        var sw = Stopwatch.StartNew();
        using var proc = Process.Start(psi)!;
        var stderr = proc.StandardError.ReadToEndAsync();
        var stdout = proc.StandardOutput.ReadToEndAsync();  // drained so the child never blocks on a full pipe
        bool killed = !proc.WaitForExit(timeout);
        if (killed) proc.Kill(entireProcessTree: true);
        proc.WaitForExit();
        string err = stderr.Result + (killed ? $"\n(killed after {timeout.TotalSeconds} s)" : "");
        _ = stdout.Result;
        long peak = -1;
        if (File.Exists(peakFile))
        {
            peak = long.Parse(File.ReadAllText(peakFile), System.Globalization.CultureInfo.InvariantCulture) * 1024;
            File.Delete(peakFile);
        }
        return new Result(proc.ExitCode, err, peak, sw.Elapsed.TotalSeconds);
    }
}
