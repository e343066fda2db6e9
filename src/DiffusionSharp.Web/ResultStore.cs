using System.Collections.Concurrent;

namespace DiffusionSharp.Web;

/// <summary>Finished jobs' images, kept in memory under random ids for download; the oldest are dropped past a count.</summary>
public sealed class ResultStore(int keep)
{
    private readonly ConcurrentDictionary<string, SampleImages> _jobs = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _order = new();

    /// <summary>Stores the images and returns their new id.</summary>
    public string Add(SampleImages images)
    {
        var id = Guid.NewGuid().ToString("N");
        _jobs[id] = images;
        _order.Enqueue(id);
        while (_order.Count > keep && _order.TryDequeue(out var old)) _jobs.TryRemove(old, out _);
        return id;
    }

    /// <summary>The images of a job still kept, or null.</summary>
    public SampleImages? Find(string id) => _jobs.TryGetValue(id, out var r) ? r : null;
}
