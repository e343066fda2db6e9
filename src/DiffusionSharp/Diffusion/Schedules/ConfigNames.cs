using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace DiffusionSharp.Diffusion.Schedules;

/// <summary>The diffusers spelling of config enums: the member name in snake_case, or its <see cref="JsonStringEnumMemberNameAttribute"/>.</summary>
public static class ConfigNames
{
    /// <summary>Reads every config enum by its diffusers name.</summary>
    public static JsonConverter Converter { get; } = new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower);

    /// <summary>The config name of <paramref name="value"/> (e.g. "squaredcos_cap_v2").</summary>
    public static string Name<T>(T value) where T : struct, Enum => Name(typeof(T).GetField(value.ToString(), BindingFlags.Public | BindingFlags.Static)!);

    private static string Name(FieldInfo field) =>
        field.GetCustomAttribute<JsonStringEnumMemberNameAttribute>()?.Name ?? JsonNamingPolicy.SnakeCaseLower.ConvertName(field.Name);

    /// <summary>Every config name of <typeparamref name="T"/>, in declaration order.</summary>
    public static IReadOnlyList<string> Names<T>() where T : struct, Enum => Enum.GetValues<T>().Select(Name).ToArray();

    /// <summary>Every config name of an enum type, for messages.</summary>
    public static IReadOnlyList<string> Names(Type enumType) =>
        enumType.GetFields(BindingFlags.Public | BindingFlags.Static).Select(Name).ToArray();

    /// <summary>The value whose config name is <paramref name="name"/>; NotSupportedException naming <paramref name="key"/> otherwise.</summary>
    public static T Parse<T>(string name, string key) where T : struct, Enum
    {
        foreach (var v in Enum.GetValues<T>())
            if (Name(v) == name) return v;
        throw new NotSupportedException($"{key} '{name}' is not supported; expected one of {string.Join(", ", Names<T>())}.");
    }
}
