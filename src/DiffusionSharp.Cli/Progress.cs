using Spectre.Console;

namespace DiffusionSharp.Cli;

/// <summary>A Spectre.Console progress bar around long work; plain lines when output is redirected.</summary>
public static class Progress
{
    /// <summary>Runs <paramref name="work"/>, which reports (done, total).</summary>
    public static void Run(string title, Action<Action<int, int>> work)
    {
        if (Console.IsErrorRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            int lastPct = -1;
            work((done, total) =>
            {
                int pct = total > 0 ? (int)(100L * done / total) : 0;
                if (pct / 10 != lastPct / 10) { Console.Error.WriteLine($"{title}: {pct}% ({done}/{total})"); lastPct = pct; }
            });
            return;
        }
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title));
                work((done, total) =>
                {
                    task.MaxValue = Math.Max(total, 1);
                    task.Value = done;
                });
                task.Value = task.MaxValue;
            });
    }

    /// <summary>Runs <paramref name="work"/>, which reports (done, total) and a status line.</summary>
    public static void RunWithStatus(string title, Action<Action<int, int>, Action<string>> work)
    {
        if (Console.IsErrorRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            var last = DateTime.MinValue;
            string line = "";
            work((done, total) => { }, s =>
            {
                line = s;
                if ((DateTime.UtcNow - last).TotalSeconds >= 10) { Console.Error.WriteLine($"{title}: {s}"); last = DateTime.UtcNow; }
            });
            if (line.Length > 0) Console.Error.WriteLine($"{title}: {line}");
            return;
        }
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title));
                work((done, total) => { task.MaxValue = Math.Max(total, 1); task.Value = done; }, s => task.Description = Markup.Escape(s));
            });
    }

    /// <summary>
    /// Turns Ctrl-C into a cancellation of <see cref="CtrlC.Token"/> (so long work can stop cleanly, e.g. after a checkpoint)
    /// until the result is disposed.
    /// </summary>
    public static CtrlC CancelOnCtrlC() => new();

    /// <summary>Ctrl-C as a cancellation token while alive.</summary>
    public sealed class CtrlC : IDisposable
    {
        private readonly CancellationTokenSource _cts = new();
        private readonly ConsoleCancelEventHandler _handler;
        private readonly System.Runtime.InteropServices.PosixSignalRegistration? _sigterm;

        internal CtrlC()
        {
            _handler = (_, e) => { e.Cancel = true; _cts.Cancel(); };
            Console.CancelKeyPress += _handler;
            // SIGTERM (kill, systemd, Docker, cluster schedulers) stops the work the same way instead of killing the process
            try
            {
                _sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c =>
                {
                    c.Cancel = true;
                    _cts.Cancel();
                });
            }
            catch (PlatformNotSupportedException) { _sigterm = null; }
        }

        /// <summary>Cancelled when Ctrl-C is pressed or SIGTERM arrives.</summary>
        public CancellationToken Token => _cts.Token;

        /// <summary>Restores the default Ctrl-C behaviour.</summary>
        public void Dispose()
        {
            Console.CancelKeyPress -= _handler;
            _sigterm?.Dispose();
            _cts.Dispose();
        }
    }
}
