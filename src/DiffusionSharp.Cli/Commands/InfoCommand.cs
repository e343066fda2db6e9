using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using DiffusionSharp.IO;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion info PATH</c>: names, dtypes, shapes and metadata of a safetensors checkpoint, read from its header only.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "A .safetensors file, or a model directory holding one" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of a table" };
        var limit = new Option<int>("--limit") { Description = "Tensors listed in the table (0 = all)", DefaultValueFactory = _ => 0 };
        var cmd = new Command("info", "Show the tensors of a safetensors checkpoint without loading its data.");
        cmd.Arguments.Add(path);
        cmd.Options.Add(json);
        cmd.Options.Add(limit);
        cmd.SetAction(parse => Run(parse.GetValue(path)!, parse.GetValue(json), parse.GetValue(limit)));
        return cmd;
    }

    private static int Run(string path, bool json, int limit)
    {
        try
        {
            var file = ResolveFile(path);
            var header = SafeTensors.ReadHeader(file);
            Console.Out.Write(json ? ToJson(header) + "\n" : Describe(header, limit));
            return 0;
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }

    /// <summary>The file itself, or the single (or diffusers-named) .safetensors file of a directory.</summary>
    public static string ResolveFile(string path)
    {
        if (File.Exists(path)) return path;
        if (!Directory.Exists(path)) throw new FileNotFoundException($"No such file or directory: {path}", path);
        var preferred = Path.Combine(path, "diffusion_pytorch_model.safetensors");
        if (File.Exists(preferred)) return preferred;
        var files = Directory.GetFiles(path, "*.safetensors");
        if (files.Length == 1) return files[0];
        throw new FileNotFoundException(files.Length == 0
            ? $"{path} holds no .safetensors file."
            : $"{path} holds {files.Length} .safetensors files; name one: {string.Join(", ", files.Select(Path.GetFileName))}.");
    }

    /// <summary>A human-readable summary: totals per dtype, metadata, then one line per tensor (up to <paramref name="limit"/>; 0 = all).</summary>
    public static string Describe(SafeTensorsHeader header, int limit = 0)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        long elements = header.Tensors.Sum(t => t.ElementCount);
        sb.Append(ci, $"{header.Source}\n");
        sb.Append(ci, $"  {header.Tensors.Count} tensors, {elements:N0} elements, header {header.HeaderLength:N0} bytes, data {header.DataLength:N0} bytes\n");
        foreach (var g in header.Tensors.GroupBy(t => t.DType).OrderBy(g => g.Key))
            sb.Append(ci, $"  {g.Key.HeaderName(),-8} {g.Count(),6} tensors {g.Sum(t => t.ElementCount),16:N0} elements\n");
        foreach (var kv in header.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            sb.Append(ci, $"  metadata {kv.Key} = {kv.Value}\n");
        var list = header.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        int shown = limit > 0 ? Math.Min(limit, list.Count) : list.Count;
        int width = list.Take(shown).Select(t => t.Name.Length).DefaultIfEmpty(4).Max();
        foreach (var t in list.Take(shown))
            sb.Append(ci, $"  {t.Name.PadRight(width)}  {t.DType.HeaderName(),-7} {t.ShapeText}\n");
        if (shown < list.Count) sb.Append(ci, $"  ... {list.Count - shown} more (use --limit 0 to list all)\n");
        return sb.ToString();
    }

    /// <summary>The header as JSON: file, totals, metadata and every tensor's dtype, shape and offsets.</summary>
    public static string ToJson(SafeTensorsHeader header)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("file", header.Source);
            w.WriteNumber("tensors", header.Tensors.Count);
            w.WriteNumber("elements", header.Tensors.Sum(t => t.ElementCount));
            w.WriteNumber("header_bytes", header.HeaderLength);
            w.WriteNumber("data_bytes", header.DataLength);
            w.WriteStartObject("metadata");
            foreach (var kv in header.Metadata) w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            w.WriteStartObject("entries");
            foreach (var t in header.Tensors)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.HeaderName());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(t.DataBegin);
                w.WriteNumberValue(t.DataEnd);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
