using System.Text.Json;

namespace DiffusionSharp.IO;

/// <summary>Reads a JSON file into a typed object, naming the file, line and position of any error.</summary>
internal static class JsonFile
{
    /// <summary>Deserialises <paramref name="path"/>; <paramref name="what"/> names the content in messages ("trainer state").</summary>
    internal static T Read<T>(string path, string what, JsonSerializerOptions? options = null)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), options) ?? throw new InvalidDataException($"{path}: empty {what}.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid {what} (line {e.LineNumber}, position {e.BytePositionInLine}): {e.Message}", e);
        }
    }
}
