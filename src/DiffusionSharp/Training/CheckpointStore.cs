namespace DiffusionSharp.Training;

/// <summary>
/// Crash-safe checkpoint folders inside a run folder. The invariant, kept at every instant of a write, is that
/// <c>checkpoint/</c> or <c>checkpoint.old/</c> exists and is complete:
/// <list type="number">
/// <item>a complete but unpromoted <c>checkpoint.tmp/</c> left by an older writer becomes <c>checkpoint/</c> when no other copy exists;</item>
/// <item><c>checkpoint.tmp/</c> is written, its marker file last (written to a side name, then renamed);</item>
/// <item>when <c>checkpoint/</c> exists, <c>checkpoint.old/</c> is discarded and <c>checkpoint/</c> renamed to it;</item>
/// <item><c>checkpoint.tmp/</c> is renamed to <c>checkpoint/</c>;</item>
/// <item><c>checkpoint.old/</c> is discarded.</item>
/// </list>
/// A folder is discarded by renaming it to <c>checkpoint.trash/</c> first (atomic), then deleting that, so no partly
/// deleted folder ever carries a checkpoint name. Renames within one folder are atomic on POSIX and NTFS.
/// </summary>
public static class CheckpointStore
{
    /// <summary>The current checkpoint folder's name.</summary>
    public const string Current = "checkpoint";
    /// <summary>The previous checkpoint, kept while a new one is being promoted.</summary>
    public const string Previous = "checkpoint.old";
    /// <summary>The checkpoint being written.</summary>
    public const string Temporary = "checkpoint.tmp";
    /// <summary>A folder being deleted.</summary>
    public const string Trash = "checkpoint.trash";

    /// <summary>
    /// Called with the name of each step before it runs ("write", "marker", "retire", "promote", "discard", ...);
    /// tests throw from it to simulate a crash at that point. Set per async flow, so a run elsewhere never sees it.
    /// </summary>
    public static Action<string>? CrashPoint { get => CrashPointFlow.Value; set => CrashPointFlow.Value = value; }

    private static readonly AsyncLocal<Action<string>?> CrashPointFlow = new();

    /// <summary>
    /// Writes a checkpoint: <paramref name="writeFiles"/> fills the given folder, then <paramref name="markerName"/> is
    /// written with <paramref name="markerText"/> (its presence marks the checkpoint complete) and the folder is promoted.
    /// </summary>
    public static void Save(string runDir, string markerName, string markerText, Action<string> writeFiles)
    {
        ArgumentNullException.ThrowIfNull(writeFiles);
        string cur = Path.Combine(runDir, Current), old = Path.Combine(runDir, Previous), tmp = Path.Combine(runDir, Temporary);
        Recover(runDir, markerName);
        Hit("clear-tmp");
        Discard(runDir, tmp);
        Hit("create-tmp");
        Directory.CreateDirectory(tmp);
        Hit("write");
        writeFiles(tmp);
        Hit("marker");
        var part = Path.Combine(tmp, markerName + ".part");
        using (var fs = new FileStream(part, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            using (var w = new StreamWriter(fs, leaveOpen: true)) w.Write(markerText);
            fs.Flush(flushToDisk: true);
        }
        Hit("marker-rename");
        File.Move(part, Path.Combine(tmp, markerName));
        if (IsComplete(cur, markerName))
        {
            Hit("discard-old");
            Discard(runDir, old);
            Hit("retire");
            Directory.Move(cur, old);
        }
        else
        {
            Hit("discard-incomplete");
            Discard(runDir, cur);
        }
        Hit("promote");
        Directory.Move(tmp, cur);
        Hit("discard-old-after");
        Discard(runDir, old);
        Hit("done");
    }

    /// <summary>The folder to load: <c>checkpoint/</c>, else <c>checkpoint.old/</c>, else a complete <c>checkpoint.tmp/</c>; null when none is complete.</summary>
    public static string? FindLoadable(string runDir, string markerName)
    {
        foreach (var name in new[] { Current, Previous, Temporary })
        {
            var dir = Path.Combine(runDir, name);
            if (IsComplete(dir, markerName)) return dir;
        }
        return null;
    }

    /// <summary>True when any checkpoint folder (complete or not) exists in <paramref name="runDir"/>.</summary>
    public static bool AnyExists(string runDir) =>
        new[] { Current, Previous, Temporary }.Any(n => Directory.Exists(Path.Combine(runDir, n)));

    /// <summary>Removes every checkpoint folder of <paramref name="runDir"/> (for an explicit overwrite).</summary>
    public static void DeleteAll(string runDir)
    {
        foreach (var n in new[] { Temporary, Previous, Current, Trash }) Discard(runDir, Path.Combine(runDir, n));
    }

    private static bool IsComplete(string dir, string markerName) => File.Exists(Path.Combine(dir, markerName));

    // A complete checkpoint.tmp that is the only copy (left by a writer that renamed checkpoint/ away first) is promoted before anything is deleted.
    private static void Recover(string runDir, string markerName)
    {
        string cur = Path.Combine(runDir, Current), old = Path.Combine(runDir, Previous), tmp = Path.Combine(runDir, Temporary);
        if (IsComplete(cur, markerName) || IsComplete(old, markerName) || !IsComplete(tmp, markerName)) return;
        Hit("recover");
        Discard(runDir, cur);
        Directory.Move(tmp, cur);
    }

    private static void Discard(string runDir, string dir)
    {
        var trash = Path.Combine(runDir, Trash);
        if (Directory.Exists(dir) && dir != trash)
        {
            if (Directory.Exists(trash)) Directory.Delete(trash, recursive: true);
            Hit("trash-rename");
            Directory.Move(dir, trash);
        }
        if (Directory.Exists(trash))
        {
            Hit("trash-delete");
            Directory.Delete(trash, recursive: true);
        }
    }

    private static void Hit(string point) => CrashPoint?.Invoke(point);
}
