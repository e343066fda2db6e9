namespace DiffusionSharp.Web;

/// <summary>A model the server can sample: an id that clients send, and the folder it stands for (never sent by a client).</summary>
/// <param name="Id">The name clients use.</param>
/// <param name="Label">What the page shows.</param>
/// <param name="Directory">The model folder on disk.</param>
/// <param name="CliPath">The <c>--model</c> value that reproduces a sample on the command line (null: the bundled default).</param>
public sealed record ModelEntry(string Id, string Label, string Directory, string? CliPath);

/// <summary>
/// The models the server offers: the bundled one and every model folder directly under <c>--models</c>. Requests name a
/// model by id; the id is looked up in this listing, so no text from a request is ever joined into a path.
/// </summary>
public sealed class ModelCatalog(string? bundled, string? modelsDirectory)
{
    /// <summary>Id of the bundled model.</summary>
    public const string BundledId = "bundled";

    /// <summary>The models, read from disk on every call so that new folders appear without a restart.</summary>
    public IReadOnlyList<ModelEntry> List()
    {
        var list = new List<ModelEntry>();
        if (bundled != null && IsModelFolder(bundled))
            list.Add(new ModelEntry(BundledId, $"{Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(bundled)))} (bundled)", Path.GetFullPath(bundled), null));
        if (modelsDirectory != null && System.IO.Directory.Exists(modelsDirectory))
        {
            foreach (var dir in new DirectoryInfo(modelsDirectory).EnumerateDirectories().OrderBy(d => d.Name, StringComparer.Ordinal))
            {
                if (!IsModelFolder(dir.FullName) || list.Any(e => e.Id == dir.Name)) continue;
                list.Add(new ModelEntry(dir.Name, dir.Name, dir.FullName, Path.Combine(modelsDirectory, dir.Name)));
            }
        }
        return list;
    }

    /// <summary>The listed model with this exact id, or null.</summary>
    public ModelEntry? Find(string? id) => id == null ? null : List().FirstOrDefault(e => string.Equals(e.Id, id, StringComparison.Ordinal));

    // A pipeline folder (unet/config.json) or a bare UNet folder (config.json beside the weights).
    private static bool IsModelFolder(string dir) =>
        File.Exists(Path.Combine(dir, "unet", "config.json")) || File.Exists(Path.Combine(dir, "config.json")) && File.Exists(Path.Combine(dir, "diffusion_pytorch_model.safetensors"));
}
