namespace DiffusionSharp.Cli.Commands;

/// <summary>Finds the bundled model folder (models/fashion-mnist) from the working directory or the install location.</summary>
public static class ModelLocator
{
    /// <summary>Relative path of the bundled model inside the repository.</summary>
    public const string BundledRelative = "models/fashion-mnist";

    /// <summary>The bundled model folder, or null when none is found.</summary>
    public static string? FindBundled() => FindAbove(BundledRelative, c => Directory.Exists(Path.Combine(c, "unet")));

    // The first folder <relative> that passes <isWanted>, searched upwards from the working directory, then the install location.
    private static string? FindAbove(string relative, Func<string, bool> isWanted)
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, relative);
                if (isWanted(candidate)) return candidate;
            }
        }
        return null;
    }

    /// <summary>Relative path of the bundled feature classifier (made by <c>diffusion train-classifier</c>).</summary>
    public const string BundledClassifierRelative = "models/fashion-mnist-classifier";

    /// <summary>The classifier folder to use: the given one, else the bundled one, else a clear error.</summary>
    public static string ResolveClassifier(string? given)
    {
        if (given != null)
        {
            if (!Directory.Exists(given)) throw new DirectoryNotFoundException($"Classifier folder not found: {given}");
            return given;
        }
        return FindAbove(BundledClassifierRelative, c => File.Exists(Path.Combine(c, "config.json"))) ?? throw new DirectoryNotFoundException(
            $"No --classifier given and the bundled classifier ({BundledClassifierRelative}) was not found above {Directory.GetCurrentDirectory()}; " +
            "make one with `diffusion train-classifier --data fashion-mnist -o DIR`.");
    }

    /// <summary>The model folder to use: the given one, else the bundled one, else a clear error.</summary>
    public static string Resolve(string? given)
    {
        if (given != null)
        {
            if (!Directory.Exists(given)) throw new DirectoryNotFoundException($"Model folder not found: {given}");
            return given;
        }
        return FindBundled() ?? throw new DirectoryNotFoundException(
            $"No --model given and the bundled model ({BundledRelative}) was not found above {Directory.GetCurrentDirectory()}.");
    }
}
