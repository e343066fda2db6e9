
namespace DiffusionSharp.Web;

/// <summary>The page's files, embedded in the assembly and looked up by exact name (a fixed set: no request path reaches the disk).</summary>
public static class StaticAssets
{
    private static readonly Dictionary<string, (byte[] Bytes, string Type)> Files = Load();

    private static Dictionary<string, (byte[], string)> Load()
    {
        var asm = typeof(StaticAssets).Assembly;
        var files = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (var name in asm.GetManifestResourceNames())
        {
            if (!name.StartsWith("wwwroot/", StringComparison.Ordinal)) continue;
            using var s = asm.GetManifestResourceStream(name)!;
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            files[name["wwwroot/".Length..]] = (ms.ToArray(), ContentType(name));
        }
        return files;
    }

    private static string ContentType(string name) => Path.GetExtension(name) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".png" => "image/png",
        _ => "application/octet-stream",
    };

    /// <summary>Names of the embedded files.</summary>
    public static IEnumerable<string> Names => Files.Keys;

    /// <summary>An embedded file by exact name, or null.</summary>
    public static (byte[] Bytes, string Type)? Find(string name) => Files.TryGetValue(name, out var f) ? f : null;
}
