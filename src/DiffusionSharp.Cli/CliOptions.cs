using System.CommandLine;
using System.CommandLine.Parsing;
using System.Numerics;
using DiffusionSharp.Diffusion;

namespace DiffusionSharp.Cli;

/// <summary>
/// The options several commands share, declared once, each with its range checked at parse time so a bad value is a
/// usage error (exit code 2) naming the option before any file is read.
/// </summary>
public static class CliOptions
{
    /// <summary>--model/-m: a model folder (default: the bundled one).</summary>
    public static Option<string?> Model(string description = "Model folder (default: the bundled Fashion-MNIST model)") =>
        new("--model", "-m") { Description = description };

    /// <summary>--output/-o with a default file name.</summary>
    public static Option<string> Output(string description, string defaultValue) =>
        new("--output", "-o") { Description = description, DefaultValueFactory = _ => defaultValue };

    /// <summary>--output/-o that must be given.</summary>
    public static Option<string> RequiredOutput(string description) =>
        new("--output", "-o") { Description = description, Required = true };

    /// <summary>--overwrite: allow replacing existing outputs.</summary>
    public static Option<bool> Overwrite(string description = "Replace existing output files") =>
        new("--overwrite") { Description = description };

    /// <summary>--count/-n: number of images.</summary>
    public static Option<int> Count(string description, int defaultValue, int min = 1) =>
        InRange(new Option<int>("--count", "-n") { Description = description, DefaultValueFactory = _ => defaultValue }, min, DiffusionPipeline.MaxCount);

    /// <summary>--steps: sampler or respaced diffusion steps.</summary>
    public static Option<int> Steps(string description, int defaultValue, int max = DiffusionPipeline.MaxSteps) =>
        InRange(new Option<int>("--steps") { Description = description, DefaultValueFactory = _ => defaultValue }, 1, max);

    /// <summary>--batch: images per network call or per optimizer step.</summary>
    public static Option<int> Batch(string description, int defaultValue) =>
        InRange(new Option<int>("--batch") { Description = description, DefaultValueFactory = _ => defaultValue }, 1, 65_536);

    /// <summary>--seed.</summary>
    public static Option<ulong> Seed(string description = "Random seed") =>
        new("--seed") { Description = description, DefaultValueFactory = _ => 0UL };

    /// <summary>--class: index or name.</summary>
    public static Option<string?> Class() => new("--class") { Description = "Class index or name (class-conditional models)" };

    /// <summary>--guidance: classifier-free guidance scale.</summary>
    public static Option<double> Guidance(string description = "Classifier-free guidance scale") =>
        InRange(new Option<double>("--guidance") { Description = description, DefaultValueFactory = _ => 1.0 }, -100.0, 100.0);

    /// <summary>--sampler: one of <see cref="DiffusionPipeline.SamplerNames"/>, checked at parse time; auto (the default) is the model's own.</summary>
    public static Option<string> Sampler(string description = "Sampler") =>
        OneOf(new Option<string>("--sampler")
            {
                Description = $"{description}: {string.Join(", ", DiffusionPipeline.SamplerNames)} ({SamplerRegistry.Auto}: {SamplerRegistry.AutoDescription})",
                DefaultValueFactory = _ => SamplerRegistry.Auto,
            },
            DiffusionPipeline.SamplerNames.ToArray());

    /// <summary>Adds a parse-time check that the value lies in [<paramref name="min"/>, <paramref name="max"/>] (and is finite).</summary>
    public static Option<T> InRange<T>(Option<T> option, T min, T max) where T : INumber<T>
    {
        option.Validators.Add(r =>
        {
            if (r.Implicit || !TryValue(r, out T v)) return;
            if (T.IsNaN(v) || !T.IsFinite(v) || v < min || v > max) r.AddError($"{option.Name} must be in {min}..{max}, got {v}.");
        });
        return option;
    }

    /// <summary>Adds a parse-time check for an optional number.</summary>
    public static Option<T?> InRange<T>(Option<T?> option, T min, T max) where T : struct, INumber<T>
    {
        option.Validators.Add(r =>
        {
            if (r.Implicit || !TryValue(r, out T? nv) || nv is not T v) return;
            if (T.IsNaN(v) || !T.IsFinite(v) || v < min || v > max) r.AddError($"{option.Name} must be in {min}..{max}, got {v}.");
        });
        return option;
    }

    // A value that does not even parse is already reported by the parser: the range check stays silent then.
    private static bool TryValue<T>(OptionResult r, out T value)
    {
        try { value = r.GetValueOrDefault<T>()!; return true; }
        catch (InvalidOperationException) { value = default!; return false; }
    }

    /// <summary>Restricts a string option to <paramref name="values"/> (case-insensitive), checked at parse time.</summary>
    public static Option<string> OneOf(Option<string> option, params string[] values)
    {
        option.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string>();
            if (v == null || !values.Contains(v, StringComparer.OrdinalIgnoreCase))
                r.AddError($"{option.Name} must be one of {string.Join(", ", values)}, got '{v}'.");
        });
        return option;
    }

    /// <summary>True when the user gave <paramref name="option"/> on the command line (not its default).</summary>
    public static bool IsExplicit(ParseResult parse, Option option) => parse.GetResult(option) is OptionResult { Implicit: false };
}
