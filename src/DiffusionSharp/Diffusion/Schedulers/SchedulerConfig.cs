using System.Globalization;
using System.Text;
using System.Text.Json;

namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>
/// Read-only view of a diffusers <c>scheduler_config.json</c>. Unknown keys (such as <c>_class_name</c> or
/// <c>_diffusers_version</c>) are kept but ignored by the schedulers; missing keys take diffusers' defaults.
/// Non-finite numbers may be written as bare <c>-Infinity</c>/<c>Infinity</c>/<c>NaN</c> (Python's json) or as strings.
/// </summary>
public sealed class SchedulerConfig
{
    private readonly Dictionary<string, JsonElement> _values;

    private SchedulerConfig(Dictionary<string, JsonElement> values) { _values = values; }

    /// <summary>An empty config: every setting at its default.</summary>
    public static SchedulerConfig Empty { get; } = new(new Dictionary<string, JsonElement>(StringComparer.Ordinal));

    /// <summary>Parses a JSON object.</summary>
    public static SchedulerConfig Parse(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        using var doc = JsonDocument.Parse(QuoteNonFiniteLiterals(json));
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new FormatException($"Expected a scheduler config JSON object, found {doc.RootElement.ValueKind}.");
        var d = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var p in doc.RootElement.EnumerateObject()) d[p.Name] = p.Value.Clone();
        return new SchedulerConfig(d);
    }

    /// <summary>The keys present.</summary>
    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>Whether <paramref name="key"/> is present (even when null).</summary>
    public bool Contains(string key) => _values.ContainsKey(key);

    /// <summary>The <c>_class_name</c> entry, or null.</summary>
    public string? ClassName => GetNullableString("_class_name");

    /// <summary>A number (or a string such as "-Infinity"); <paramref name="defaultValue"/> when missing or null.</summary>
    public double GetDouble(string key, double defaultValue) => GetNullableDouble(key) ?? defaultValue;

    /// <summary>A number, or null when missing or null.</summary>
    public double? GetNullableDouble(string key)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
        if (v.ValueKind == JsonValueKind.String
            && double.TryParse(v.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d)) return d;
        throw Bad(key, "a number", v);
    }

    /// <summary>An integer; <paramref name="defaultValue"/> when missing or null.</summary>
    public int GetInt(string key, int defaultValue)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return defaultValue;
        if (v.ValueKind == JsonValueKind.Number)
        {
            if (v.TryGetInt32(out int i)) return i;
            double d = v.GetDouble();
            if (d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
        }
        throw Bad(key, "an integer", v);
    }

    /// <summary>A boolean; <paramref name="defaultValue"/> when missing or null.</summary>
    public bool GetBool(string key, bool defaultValue)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return defaultValue;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Bad(key, "true or false", v),
        };
    }

    /// <summary>A string; <paramref name="defaultValue"/> when missing or null.</summary>
    public string GetString(string key, string defaultValue) => GetNullableString(key) ?? defaultValue;

    /// <summary>A string, or null when missing or null.</summary>
    public string? GetNullableString(string key)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        throw Bad(key, "a string", v);
    }

    /// <summary>An array of numbers, or null when missing or null.</summary>
    public double[]? GetDoubleArray(string key)
    {
        if (!_values.TryGetValue(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array) throw Bad(key, "an array of numbers", v);
        var r = new double[v.GetArrayLength()];
        int i = 0;
        foreach (var e in v.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number) throw Bad(key, "an array of numbers", v);
            r[i++] = e.GetDouble();
        }
        return r;
    }

    private static FormatException Bad(string key, string expected, JsonElement found)
    {
        string text = found.GetRawText();
        if (text.Length > 60) text = text[..60] + "...";
        return new FormatException($"Scheduler config key '{key}': expected {expected}, found {found.ValueKind} {text}.");
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
