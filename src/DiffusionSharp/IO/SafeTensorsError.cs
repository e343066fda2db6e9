namespace DiffusionSharp.IO;

/// <summary>Builds the exceptions for malformed safetensors input (InvalidDataException is sealed, so no subclass).</summary>
internal static class SafeTensorsError
{
    /// <summary>An <see cref="InvalidDataException"/> with message "source: problem"; the source is also kept in Data["path"].</summary>
    public static InvalidDataException Create(string source, string problem, Exception? inner = null)
    {
        var e = new InvalidDataException($"{source}: {problem}", inner);
        e.Data["path"] = source;
        return e;
    }
}
