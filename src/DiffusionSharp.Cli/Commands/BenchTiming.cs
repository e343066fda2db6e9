using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace DiffusionSharp.Cli.Commands;

/// <summary>Shared timing and JSON helpers for the bench subcommands.</summary>
internal static partial class BenchTiming
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec { public long Sec; public long Nsec; }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out Timespec ts);

    private static bool _noClock = !OperatingSystem.IsLinux();

    /// <summary>CPU seconds used by this process (all threads); on a shared machine this excludes time spent preempted.</summary>
    public static double ProcessCpuSeconds()
    {
        if (!_noClock)
        {
            try
            {
                const int ClockProcessCpuTimeId = 2;
                if (ClockGetTime(ClockProcessCpuTimeId, out var ts) == 0) return ts.Sec + ts.Nsec * 1e-9;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
            _noClock = true;
        }
        using var p = Process.GetCurrentProcess();
        return p.TotalProcessorTime.TotalSeconds;
    }

    /// <summary>Like <see cref="Measure"/> but also returns the best process CPU seconds of one repetition.</summary>
    public static (double Best, double Median, double BestCpu) MeasureWithCpu(Action body, int minReps = 3, double minSeconds = 0.3, int maxReps = 50)
    {
        body();
        var times = new List<double>();
        double bestCpu = double.MaxValue;
        var total = Stopwatch.StartNew();
        while (times.Count < minReps || (total.Elapsed.TotalSeconds < minSeconds && times.Count < maxReps))
        {
            double c0 = ProcessCpuSeconds();
            long t0 = Stopwatch.GetTimestamp();
            body();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            bestCpu = Math.Min(bestCpu, ProcessCpuSeconds() - c0);
        }
        times.Sort();
        return (times[0], times[times.Count / 2], bestCpu);
    }

    /// <summary>Runs <paramref name="body"/> once to warm up, then at least <paramref name="minReps"/> times and for at least <paramref name="minSeconds"/>; returns (best, median) seconds.</summary>
    public static (double Best, double Median) Measure(Action body, int minReps = 3, double minSeconds = 0.3, int maxReps = 50)
    {
        body();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (times.Count < minReps || (total.Elapsed.TotalSeconds < minSeconds && times.Count < maxReps))
        {
            long t0 = Stopwatch.GetTimestamp();
            body();
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        times.Sort();
        return (times[0], times[times.Count / 2]);
    }

    /// <summary>A flat JSON object from name/value pairs (numbers, strings, booleans, null).</summary>
    public static string Json(params (string Key, object? Value)[] fields)
    {
        var sb = new StringBuilder("{");
        for (int i = 0; i < fields.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append('"').Append(fields[i].Key).Append("\": ");
            sb.Append(fields[i].Value switch
            {
                null => "null",
                bool b => b ? "true" : "false",
                double d => double.IsFinite(d) ? Math.Round(d, 3).ToString(CultureInfo.InvariantCulture) : "null",
                float f => double.IsFinite(f) ? Math.Round((double)f, 3).ToString(CultureInfo.InvariantCulture) : "null",
                int n => n.ToString(CultureInfo.InvariantCulture),
                long n => n.ToString(CultureInfo.InvariantCulture),
                string s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"",
                var o => "\"" + o + "\"",
            });
        }
        return sb.Append('}').ToString();
    }
}
