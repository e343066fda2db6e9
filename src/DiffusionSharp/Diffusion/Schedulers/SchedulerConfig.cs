using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using DiffusionSharp.Diffusion.Schedules;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// A diffusers <c>scheduler_config.json</c>, parsed once into the typed options of a scheduler with <see cref="Bind{T}"/>.
/// Missing or null keys take the options' defaults. Non-finite numbers may be written as bare
/// <c>-Infinity</c>/<c>Infinity</c>/<c>NaN</c> (Python's json) or as strings. Errors name <see cref="Source"/> and the key.
/// </summary>
public sealed class SchedulerConfig
{
    private static readonly JsonSerializerOptions BindOptions = new()
    {
        NumberHandling = JsonNumberHandling.AllowReadingFromString | JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { ConfigNames.Converter },
    };

    private readonly Dictionary<string, JsonElement> _values;

    private SchedulerConfig(Dictionary<string, JsonElement> values, string source) { _values = values; Source = source; }

    /// <summary>An empty config: every setting at its default.</summary>
    public static SchedulerConfig Empty { get; } = new(new Dictionary<string, JsonElement>(StringComparer.Ordinal), "scheduler config");

    /// <summary>Where the config came from (a file path, or "scheduler config").</summary>
    public string Source { get; }

    /// <summary>Parses a JSON object; <paramref name="source"/> names it in error messages.</summary>
    public static SchedulerConfig Parse(string json, string source = "scheduler config")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(QuoteNonFiniteLiterals(json)); }
        catch (JsonException e)
        {
            throw new FormatException($"{source}: not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}).", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new FormatException($"{source}: expected a scheduler config JSON object, found {doc.RootElement.ValueKind}.");
            var d = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject()) d[p.Name] = p.Value.Clone();
            return new SchedulerConfig(d, source);
        }
    }

    /// <summary>Reads and parses <paramref name="path"/>.</summary>
    public static SchedulerConfig Load(string path) => Parse(File.ReadAllText(path), path);

    /// <summary>The keys present.</summary>
    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>Whether <paramref name="key"/> is present (even when null).</summary>
    public bool Contains(string key) => _values.ContainsKey(key);

    /// <summary>The <c>_class_name</c> entry, or null.</summary>
    public string? ClassName => !_values.TryGetValue("_class_name", out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw new FormatException($"{Source}: key '_class_name': expected a string, found {Describe(v)}.");

    /// <summary>
    /// The typed options of one scheduler: null keys are dropped, wrong types give a FormatException and unsupported
    /// names a NotSupportedException naming the key, and the values are validated.
    /// </summary>
    public T Bind<T>() where T : NoiseScheduleOptions, new()
    {
        var obj = new JsonObject();
        foreach (var (k, v) in _values)
            if (v.ValueKind != JsonValueKind.Null) obj[k] = JsonNode.Parse(v.GetRawText());
        T options;
        try { options = obj.Deserialize<T>(BindOptions) ?? new T(); }
        catch (JsonException e) { throw Explain(e, typeof(T)); }
        options.Validate(Source);
        return options;
    }

    /// <summary>This config with <paramref name="key"/> set to the JSON value <paramref name="jsonValue"/>.</summary>
    public SchedulerConfig With(string key, string jsonValue)
    {
        var d = new Dictionary<string, JsonElement>(_values, StringComparer.Ordinal);
        using var doc = JsonDocument.Parse(jsonValue);
        d[key] = doc.RootElement.Clone();
        return new SchedulerConfig(d, Source);
    }

    private Exception Explain(JsonException e, Type options)
    {
        string key = (e.Path ?? "$").TrimStart('$', '.');
        int bracket = key.IndexOf('[');
        if (bracket >= 0) key = key[..bracket];
        var prop = options.GetProperties().FirstOrDefault(p => p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name == key);
        string found = _values.TryGetValue(key, out var v) ? Describe(v) : "?";
        var type = prop == null ? null : Nullable.GetUnderlyingType(prop.PropertyType) ?? prop.PropertyType;
        if (type is { IsEnum: true } && v.ValueKind == JsonValueKind.String)
            return new NotSupportedException($"{Source}: {key} '{v.GetString()}' is not supported; expected one of {string.Join(", ", ConfigNames.Names(type))}.", e);
        string expected = type == typeof(double) ? "a number" : type == typeof(int) ? "an integer" : type == typeof(bool) ? "true or false"
            : type == typeof(double[]) ? "an array of numbers" : type is { IsEnum: true } ? "one of " + string.Join(", ", ConfigNames.Names(type)) : "a string";
        return new FormatException($"{Source}: key '{key}': expected {expected}, found {found}.", e);
    }

    private static string Describe(JsonElement found)
    {
        string text = found.GetRawText();
        return $"{found.ValueKind} {(text.Length > 60 ? text[..60] + "..." : text)}";
    }

    /// <summary>Wraps bare NaN / Infinity / -Infinity tokens (outside strings) in quotes so the text is strict JSON.</summary>
    private static string QuoteNonFiniteLiterals(string json)
    {
        if (json.IndexOf("Infinity", StringComparison.Ordinal) < 0 && json.IndexOf("NaN", StringComparison.Ordinal) < 0) return json;
        var sb = new StringBuilder(json.Length + 16);
        bool inString = false;
        for (int i = 0; i < json.Length; i++)
        {
            char c = json[i];
            if (inString)
            {
                sb.Append(c);
                if (c == '\\' && i + 1 < json.Length) sb.Append(json[++i]);
                else if (c == '"') inString = false;
                continue;
            }
            if (c == '"') { inString = true; sb.Append(c); continue; }
            string? token = null;
            foreach (var t in new[] { "-Infinity", "Infinity", "NaN" })
                if (string.CompareOrdinal(json, i, t, 0, t.Length) == 0) { token = t; break; }
            if (token != null) { sb.Append('"').Append(token).Append('"'); i += token.Length - 1; }
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
