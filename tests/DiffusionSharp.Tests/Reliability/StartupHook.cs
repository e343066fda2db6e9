// The runtime looks the hook up by this exact name, outside any namespace.
/// <summary>
/// Loaded into a measured child process through DOTNET_STARTUP_HOOKS: at exit it writes the process's VmHWM (KiB) to the
/// file named by <see cref="PeakFileVariable"/>.
/// </summary>
public static class StartupHook
{
    /// <summary>The environment variable naming the file to write.</summary>
    public const string PeakFileVariable = "DIFFUSIONSHARP_TEST_PEAK_FILE";

    /// <summary>Called by the runtime before Main.</summary>
    public static void Initialize()
    {
        if (Environment.GetEnvironmentVariable(PeakFileVariable) is not string file) return;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            File.WriteAllText(file, line["VmHWM:".Length..].Trim().Split(' ')[0]);
        };
    }
}
