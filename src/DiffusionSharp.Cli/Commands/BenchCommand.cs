using System.CommandLine;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion bench ...</c>: performance measurements (kernels, U-Net) with JSON output.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Measure kernel and model performance.");
        bench.Subcommands.Add(BenchGemm.Create());
        bench.Subcommands.Add(BenchPeak.Create());
        bench.Subcommands.Add(BenchConv.Create());
        bench.Subcommands.Add(BenchUnetCommand.Create());
        bench.Subcommands.Add(BenchAllReduce.Create());
        return bench;
    }
}
