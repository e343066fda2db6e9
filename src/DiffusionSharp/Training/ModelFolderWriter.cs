namespace DiffusionSharp.Training;

/// <summary>
/// Replaces the files of a model folder (the exported model inside a run folder) without ever leaving one half-written:
/// the whole new set is written into a staging folder first, then each file whose bytes changed is renamed over the old
/// one, the weights last. A crash before that last rename leaves the previous model (config and weights) loadable; after
/// it, the new one. Files of the folder that the new set does not name are left alone (checkpoints, metrics, samples).
/// </summary>
public static class ModelFolderWriter
{
    /// <summary>The staging folder's name inside the target folder.</summary>
    public const string Staging = ".export.tmp";

    /// <summary>The file renamed last: once it is in place, the new export is the one that loads.</summary>
    public static readonly string CommitFile = Path.Combine("unet", "diffusion_pytorch_model.safetensors");

    /// <summary>
    /// Writes the folder's files through <paramref name="fill"/> (called with the staging folder) and moves them into
    /// <paramref name="directory"/>. Crash points (<see cref="CheckpointStore.CrashPoint"/>): "export-stage",
    /// "export-rename" before each rename, "export-clean".
    /// </summary>
    public static void Write(string directory, Action<string> fill)
    {
        ArgumentNullException.ThrowIfNull(fill);
        var stage = Path.Combine(directory, Staging);
        if (Directory.Exists(stage)) Directory.Delete(stage, recursive: true);
        Hit("export-stage");
        Directory.CreateDirectory(stage);
        fill(stage);
        var files = Directory.GetFiles(stage, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(stage, f))
            .OrderBy(f => f == CommitFile ? 1 : 0).ThenBy(f => f, StringComparer.Ordinal).ToArray();
        foreach (var rel in files)
        {
            string from = Path.Combine(stage, rel), to = Path.Combine(directory, rel);
            if (File.Exists(to) && SameBytes(from, to)) continue;  // unchanged (config, scheduler): nothing to replace
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            Hit("export-rename");
            File.Move(from, to, overwrite: true);
        }
        Hit("export-clean");
        Directory.Delete(stage, recursive: true);
    }

    private static bool SameBytes(string a, string b)
    {
        var fa = new FileInfo(a);
        var fb = new FileInfo(b);
        if (fa.Length != fb.Length) return false;
        if (fa.Length > 1 << 26) return false;  // large weights are simply replaced
        return File.ReadAllBytes(a).AsSpan().SequenceEqual(File.ReadAllBytes(b));
    }

    private static void Hit(string point) => CheckpointStore.CrashPoint?.Invoke(point);
}
