using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace DiffusionSharp.Web;

/// <summary>One point of a run's loss curve.</summary>
public readonly record struct LossPoint(long Step, double Loss);

/// <summary>What the training page shows of one run.</summary>
/// <param name="Id">Run id (its folder name).</param>
/// <param name="Step">Last logged step.</param>
/// <param name="TotalSteps">Steps the run is set to reach, when known.</param>
/// <param name="Loss">Last logged loss.</param>
/// <param name="ImagesPerSecond">Last logged throughput.</param>
/// <param name="EtaSeconds">Time left at that throughput, when the total is known.</param>
/// <param name="LatestSample">File name of the newest sample grid, or null.</param>
/// <param name="Updated">When metrics or samples last changed.</param>
public sealed record RunSummary(string Id, long Step, long? TotalSteps, double? Loss, double? ImagesPerSecond, double? EtaSeconds,
    string? LatestSample, DateTimeOffset? Updated);

/// <summary>
/// The training runs under <c>--runs</c>: each sub-folder holding <c>metrics.jsonl</c>, <c>samples/</c> or a checkpoint.
/// <c>metrics.jsonl</c> is read incrementally (only complete lines: <c>diffusion train</c> may be writing the last one).
/// Runs and sample files are found by exact name in a directory listing; no request text is joined into a path.
/// </summary>
public sealed class RunCatalog(string? runsDirectory)
{
    /// <summary>Most loss points sent for one run (longer curves are thinned evenly, the last point kept).</summary>
    public const int MaxPoints = 1000;

    private sealed class MetricsState
    {
        public long Offset;
        public DateTime Written;
        public readonly List<LossPoint> Points = new();
        public double? ImagesPerSecond;
        public long? TotalSteps;
        public int? BatchSize;
    }

    private readonly ConcurrentDictionary<string, MetricsState> _metrics = new(StringComparer.Ordinal);

    /// <summary>Run folders, sorted by name.</summary>
    public IReadOnlyList<DirectoryInfo> List()
    {
        if (runsDirectory == null || !Directory.Exists(runsDirectory)) return Array.Empty<DirectoryInfo>();
        return new DirectoryInfo(runsDirectory).EnumerateDirectories()
            .Where(d => File.Exists(Path.Combine(d.FullName, "metrics.jsonl")) || Directory.Exists(Path.Combine(d.FullName, "samples"))
                        || Directory.Exists(Path.Combine(d.FullName, "checkpoint")))
            .OrderBy(d => d.Name, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The listed run with this exact id, or null.</summary>
    public DirectoryInfo? Find(string? id) => id == null ? null : List().FirstOrDefault(d => string.Equals(d.Name, id, StringComparison.Ordinal));

    /// <summary>Sample grid file names of a run (<c>samples/*.png</c>), oldest first.</summary>
    public static IReadOnlyList<string> Samples(DirectoryInfo run)
    {
        var dir = new DirectoryInfo(Path.Combine(run.FullName, "samples"));
        if (!dir.Exists) return Array.Empty<string>();
        return dir.EnumerateFiles("*.png").Select(f => f.Name).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>A sample grid of a run by exact file name from <see cref="Samples"/>, or null.</summary>
    public static FileInfo? FindSample(DirectoryInfo run, string? name)
    {
        if (name == null || !Samples(run).Contains(name, StringComparer.Ordinal)) return null;
        return new DirectoryInfo(Path.Combine(run.FullName, "samples")).EnumerateFiles("*.png").First(f => f.Name == name);
    }

    /// <summary>The run's current numbers and loss curve.</summary>
    public (RunSummary Summary, IReadOnlyList<LossPoint> Points, IReadOnlyList<string> Samples) Read(DirectoryInfo run)
    {
        var m = ReadMetrics(run);
        var samples = Samples(run);
        List<LossPoint> points;
        double? ips;
        long? total;
        int? batch;
        DateTime? written;
        lock (m)
        {
            points = Thin(m.Points);
            ips = m.ImagesPerSecond;
            total = m.TotalSteps;
            batch = m.BatchSize;
            written = m.Offset > 0 ? m.Written : null;
        }
        if (total == null || batch == null) (total, batch) = StateTotals(run, total, batch);
        long step = points.Count > 0 ? points[^1].Step : 0;
        double? eta = total is long t && batch is int b && ips is double r && r > 0 ? Math.Max(0, t - step) * b / r : null;
        DateTime? sampleTime = samples.Count > 0 ? File.GetLastWriteTimeUtc(Path.Combine(run.FullName, "samples", samples[^1])) : null;
        var updated = new[] { written, sampleTime }.Where(d => d != null).Select(d => (DateTimeOffset?)new DateTimeOffset(d!.Value, TimeSpan.Zero)).Max();
        var summary = new RunSummary(run.Name, step, total, points.Count > 0 ? points[^1].Loss : null, ips, eta,
            samples.Count > 0 ? samples[^1] : null, updated);
        return (summary, points, samples);
    }

    private MetricsState ReadMetrics(DirectoryInfo run)
    {
        var path = Path.Combine(run.FullName, "metrics.jsonl");
        var m = _metrics.GetOrAdd(path, _ => new MetricsState());
        lock (m)
        {
            var info = new FileInfo(path);
            if (!info.Exists) return m;
            if (info.Length < m.Offset)  // rewritten (a resumed run drops lines past its checkpoint): start over
            {
                m.Offset = 0;
                m.Points.Clear();
            }
            if (info.Length == m.Offset) return m;
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            fs.Seek(m.Offset, SeekOrigin.Begin);
            var bytes = new byte[Math.Min(info.Length - m.Offset, 64L << 20)];
            int read = fs.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
            int end = Array.LastIndexOf(bytes, (byte)'\n', read - 1);
            if (end < 0) return m;  // no complete line yet
            foreach (var line in Encoding.UTF8.GetString(bytes, 0, end).Split('\n'))
                Parse(line, m);
            m.Offset += end + 1;
            m.Written = info.LastWriteTimeUtc;
            return m;
        }
    }

    private static void Parse(string line, MetricsState m)
    {
        if (string.IsNullOrWhiteSpace(line)) return;
        try
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            if (r.ValueKind != JsonValueKind.Object) return;
            if (!r.TryGetProperty("step", out var s) || !s.TryGetInt64(out long step)) return;
            if (!r.TryGetProperty("loss", out var l) || l.ValueKind != JsonValueKind.Number) return;
            m.Points.Add(new LossPoint(step, l.GetDouble()));
            if (r.TryGetProperty("images_per_s", out var ips) && ips.ValueKind == JsonValueKind.Number) m.ImagesPerSecond = ips.GetDouble();
            if (r.TryGetProperty("total_steps", out var t) && t.TryGetInt64(out long total)) m.TotalSteps = total;
            if (r.TryGetProperty("batch_size", out var b) && b.TryGetInt32(out int batch)) m.BatchSize = batch;
        }
        catch (JsonException)
        {
            // a damaged line is skipped: the page shows what can be read
        }
    }

    // Total steps and batch size from the checkpoint's trainer_state.json (runs whose metrics lines do not carry them).
    private static (long?, int?) StateTotals(DirectoryInfo run, long? total, int? batch)
    {
        var path = Path.Combine(run.FullName, "checkpoint", "trainer_state.json");
        try
        {
            if (!File.Exists(path)) return (total, batch);
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.TryGetProperty("Options", out var o) && o.ValueKind == JsonValueKind.Object)
            {
                if (total == null && o.TryGetProperty("Steps", out var s) && s.TryGetInt64(out long st)) total = st;
                if (batch == null && o.TryGetProperty("BatchSize", out var b) && b.TryGetInt32(out int bs)) batch = bs;
            }
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            // a checkpoint being swapped in: the totals come on the next poll
        }
        return (total, batch);
    }

    private static List<LossPoint> Thin(List<LossPoint> points)
    {
        if (points.Count <= MaxPoints) return points.ToList();
        var thin = new List<LossPoint>(MaxPoints);
        double stride = (points.Count - 1) / (double)(MaxPoints - 1);
        for (int i = 0; i < MaxPoints; i++) thin.Add(points[(int)Math.Round(i * stride)]);
        return thin;
    }
}
