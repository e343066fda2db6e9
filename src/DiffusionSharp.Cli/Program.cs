using System.CommandLine;
using DiffusionSharp.Cli.Commands;

namespace DiffusionSharp.Cli;

/// <summary>Entry point of the <c>diffusion</c> command.</summary>
public static class Program
{
    /// <summary>Global option: kernel threads (also env DIFFUSIONSHARP_THREADS).</summary>
    public static readonly Option<int?> ThreadsOption = new("--threads") { Description = "Kernel threads (default: DIFFUSIONSHARP_THREADS or all cores)", Recursive = true };

    /// <summary>Global option: 3x3 convolution algorithm (also env DIFFUSIONSHARP_CONV).</summary>
    public static readonly Option<string?> ConvOption = new("--conv") { Description = "3x3 convolutions: winograd2 (default, PyTorch-level float32 error), winograd4 (faster, less accurate) or direct (default: DIFFUSIONSHARP_CONV or winograd2)", Recursive = true };

    /// <summary>The command tree: every command, sub-command and option of <c>diffusion</c>.</summary>
    public static RootCommand CreateRootCommand()
    {
        if (Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") != null) NoTerminalSetUp();
        var root = new RootCommand("DiffusionSharp: train, sample and evaluate diffusion models in .NET.");
        root.Options.Add(ThreadsOption);
        root.Options.Add(ConvOption);
        root.Subcommands.Add(SampleCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EditCommands.Img2Img());
        root.Subcommands.Add(EditCommands.Inpaint());
        root.Subcommands.Add(EditCommands.Interpolate());
        root.Subcommands.Add(EditCommands.DenoiseSteps());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(TrainClassifierCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        return root;
    }

    public static int Main(string[] args)
    {
        var parse = CreateRootCommand().Parse(args);
        if (parse.Errors.Count > 0)
        {
            // a usage error: one line naming the option, exit code 2, before any file is read
            Console.Error.WriteLine($"error: {OneLine(parse.Errors[0].Message)} (see --help)");
            return 2;
        }
        var threads = parse.GetValue(ThreadsOption);
        if (threads is int t)
        {
            if (t < 1) { Console.Error.WriteLine($"error: --threads must be at least 1, got {t}."); return 2; }
            DiffusionSharp.Runtime.Threading.Threads = t;
        }
        if (DiffusionSharp.Runtime.Mpi.LaunchedByMpirun) return RunUnderMpi(parse, threads == null);
        try
        {
            if (parse.GetValue(ConvOption) is string conv)
                DiffusionSharp.Tensors.Kernels.Convolution.Algorithm = DiffusionSharp.Tensors.Kernels.Convolution.ParseAlgorithm(conv, "--conv");
            else _ = DiffusionSharp.Tensors.Kernels.Convolution.Algorithm;   // a bad DIFFUSIONSHARP_CONV fails here, named
            _ = DiffusionSharp.Tensors.Kernels.Gemm.Kernel;   // and a bad or unsupported DIFFUSIONSHARP_GEMM
        }
        catch (Exception e) when (e is ArgumentException or PlatformNotSupportedException) { Console.Error.WriteLine($"error: {e.Message}"); return 2; }
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException
                                      or NotSupportedException or UnauthorizedAccessException or FormatException)
        {
            Console.Error.WriteLine($"error: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("DIFFUSIONSHARP_TRACE") != "1")
        {
            // anything else is a defect, but the user still gets one line; DIFFUSIONSHARP_TRACE=1 shows the stack trace
            Console.Error.WriteLine($"error: internal error ({e.GetType().Name}): {OneLine(e.Message)} (set DIFFUSIONSHARP_TRACE=1 for the stack trace)");
            return 1;
        }
    }

    // Under mpirun a rank's stdout is Open MPI's pseudo-terminal relay, not the user's terminal: .NET's console would write
    // the terminal's keypad set-up from terminfo (ESC[?1h ESC=) into it on first use; as a dumb terminal it writes nothing.
    private static void NoTerminalSetUp() => Environment.SetEnvironmentVariable("TERM", "dumb");

    // Messages of nested causes can span lines; the user gets exactly one.
    private static string OneLine(string message) => string.Join(' ', message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));

    // One rank of an MPI job: any error on any rank ends every rank at once (MPI_Abort) with a message naming the rank,
    // so no rank waits forever in a collective for a peer that is gone.
    private static int RunUnderMpi(ParseResult parse, bool defaultThreads)
    {
        DiffusionSharp.Runtime.Mpi mpi;
        try { mpi = DiffusionSharp.Runtime.Mpi.Initialize(); }
        catch (InvalidOperationException e) { Console.Error.WriteLine($"error: {e.Message}"); return 1; }
        if (defaultThreads && Environment.GetEnvironmentVariable("DIFFUSIONSHARP_THREADS") == null &&
            int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_LOCAL_SIZE"), out int local) && local > 1)
            DiffusionSharp.Runtime.Threading.Threads = Math.Max(1, Environment.ProcessorCount / local);  // share the node's cores
        AppDomain.CurrentDomain.UnhandledException += (_, e) =>
        {
            Console.Error.WriteLine($"rank {mpi.Rank} of {mpi.Size}: unhandled error, aborting the job: {e.ExceptionObject}");
            Console.Error.Flush();
            mpi.Abort(1);
        };
        int rc;
        try
        {
            rc = parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            bool known = e is IOException or InvalidDataException or ArgumentException or InvalidOperationException
                or NotSupportedException or UnauthorizedAccessException or FormatException;
            Console.Error.WriteLine($"rank {mpi.Rank} of {mpi.Size}: error, aborting the job: {(known ? OneLine(e.Message) : e.ToString())}");
            Console.Error.Flush();
            mpi.Abort(1);
            return 1;
        }
        mpi.Shutdown();
        return rc;
    }
}
