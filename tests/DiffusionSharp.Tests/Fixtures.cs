using DiffusionSharp.IO;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Tests;

/// <summary>Access to the reference tensors under tests/fixtures (copied from upstream-generated files).</summary>
public static class Fixtures
{
    /// <summary>Directory holding the fixture files next to the test assembly.</summary>
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures");

    /// <summary>Full path of a fixture file.</summary>
    public static string PathOf(string name) => Path.Combine(Dir, name);

    private static readonly Dictionary<string, Dictionary<string, Tensor>> Cache = new();

    /// <summary>All tensors of a fixture safetensors file (cached; treat as read-only).</summary>
    public static Dictionary<string, Tensor> Load(string file)
    {
        lock (Cache)
        {
            if (!Cache.TryGetValue(file, out var d)) Cache[file] = d = SafeTensors.Load(PathOf(file));
            return d;
        }
    }
}
