using System.CommandLine;
using DiffusionSharp.Web;
using Microsoft.Extensions.Hosting;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion serve</c>: the sampling and training pages on a local web server.</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var models = new Option<string?>("--models") { Description = "Folder whose sub-folders are model folders to offer (besides the bundled model)" };
        var runs = new Option<string?>("--runs") { Description = "Folder whose sub-folders are training runs to watch (diffusion train -o)" };
        var port = CliOptions.InRange(new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 5000 }, 0, 65_535);
        var host = new Option<string>("--host") { Description = "Address to listen on (0.0.0.0: every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var cmd = new Command("serve", "Web pages for sampling (the image forming step by step) and for watching training runs.")
        {
            models, runs, port, host,
        };
        cmd.SetAction(async (p, cancel) =>
        {
            var options = new ServeOptions
            {
                BundledModel = ModelLocator.FindBundled(), ModelsDirectory = p.GetValue(models), RunsDirectory = p.GetValue(runs),
                Port = p.GetValue(port), Host = p.GetValue(host)!,
            };
            await using var app = DiffusionServer.Create(options);
            await app.StartAsync(cancel);
            Console.WriteLine($"serving on {DiffusionServer.Url(app)} (Ctrl-C stops)");
            // the host's own SIGTERM/SIGINT handling stops it; Ctrl-C through the command line's token does too
            await app.WaitForShutdownAsync(cancel);
            return 0;
        });
        return cmd;
    }
}
