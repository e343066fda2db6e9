namespace DiffusionSharp.Cli;

/// <summary>
/// Checks output paths before any work is done (exists, symbolic link, folder, writable) and writes files through a
/// side name and a rename, so an output is either the old file or the complete new one.
/// </summary>
public static class OutputGuard
{
    /// <summary>
    /// Fails unless <paramref name="path"/> may be written: an existing file needs <paramref name="overwrite"/>, a symbolic
    /// link is never followed, and its folder is created and probed for write access now.
    /// </summary>
    public static void CheckFile(string path, bool overwrite, string option)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ArgumentException($"{option} is empty.");
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full) && !IsLink(full)) throw new ArgumentException($"{option} {path} is a folder; give a file name.");
        if (IsLink(full))
        {
            if (!overwrite) throw new ArgumentException($"{option} {path} is a symbolic link; give another path, or --overwrite to replace the link (not its target).");
        }
        else if (File.Exists(full) && !overwrite) throw new ArgumentException($"{option} {path} already exists; pass --overwrite to replace it.");
        CheckWritableFolder(Path.GetDirectoryName(full)!, option);
    }

    /// <summary>Creates <paramref name="dir"/> when missing and proves a file can be created in it.</summary>
    public static void CheckWritableFolder(string dir, string option)
    {
        if (File.Exists(dir)) throw new ArgumentException($"{option}: {dir} is a file, not a folder.");
        try
        {
            Directory.CreateDirectory(dir);
            var probe = Path.Combine(dir, $".diffusion-write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{option}: cannot write into {dir}: {e.Message}", e);
        }
    }

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> into a side file, then renames it into place (replacing a link, never its target).</summary>
    public static void WriteAtomically(string path, Action<string> write)
    {
        var full = Path.GetFullPath(path);
        var tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            if (File.Exists(tmp) || IsLink(tmp)) File.Delete(tmp);  // a leftover or planted link at the side name is removed, never written through
            write(tmp);
            if (IsLink(full)) File.Delete(full);
            File.Move(tmp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>True when <paramref name="path"/> is a symbolic link (to a file, a folder or nothing).</summary>
    public static bool IsLink(string path) => new FileInfo(path).LinkTarget != null;
}
