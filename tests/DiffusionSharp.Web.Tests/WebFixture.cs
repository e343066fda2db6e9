using System.Text.Json;
using DiffusionSharp.IO;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Tensors;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DiffusionSharp.Web.Tests;

/// <summary>
/// A temporary folder with model folders made from the unet_tiny fixtures (diffusers weights) and a training run folder,
/// and the server options that point at them.
/// </summary>
public sealed class WebFixture : IDisposable
{
    public string Root { get; } = Path.Combine(Path.GetTempPath(), "ds-web-" + Guid.NewGuid().ToString("N"));
    public string Models => Path.Combine(Root, "models");
    public string Runs => Path.Combine(Root, "runs");
    public string RunDir => Path.Combine(Runs, "fm-run");

    /// <summary>Class names of the tiny conditional model (label 9 is its null class).</summary>
    public static readonly string[] ClassNames = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"];

    public WebFixture()
    {
        Directory.CreateDirectory(Models);
        MakeModel(Path.Combine(Models, "tiny"), "unet_tiny.json", conditional: false);
        MakeModel(Path.Combine(Models, "tiny-class"), "unet_tiny_class.json", conditional: true);
        Directory.CreateDirectory(Path.Combine(Models, "not-a-model"));
        Directory.CreateDirectory(Path.Combine(Models, "broken", "unet"));
        File.WriteAllText(Path.Combine(Models, "broken", "unet", "config.json"), "{ not json");
        File.WriteAllText(Path.Combine(Root, "secret.txt"), "outside the served folders");
        Directory.CreateDirectory(Path.Combine(RunDir, "samples"));
        Directory.CreateDirectory(Path.Combine(RunDir, "checkpoint"));
        File.WriteAllText(Path.Combine(RunDir, "checkpoint", "trainer_state.json"), """{"Step": 20, "Options": {"Steps": 100, "BatchSize": 8}}""");
        File.WriteAllText(Path.Combine(RunDir, "metrics.jsonl"),
            """{"step":10,"loss":0.5,"lr":0.0001,"grad_norm":1.0,"images_per_s":10.0}""" + "\n" +
            """{"step":20,"loss":0.25,"lr":0.0001,"grad_norm":1.0,"images_per_s":16.0}""" + "\n");
        WriteGrid(Path.Combine(RunDir, "samples", "step_0000010.png"), 0.0f);
        Directory.CreateDirectory(Path.Combine(Runs, "empty-folder"));
    }

    /// <summary>Options with the bundled model, the fixture models and runs.</summary>
    public ServeOptions Options(string? bundled = null) => new()
    {
        BundledModel = bundled, ModelsDirectory = Models, RunsDirectory = Runs, Port = 0, Host = "127.0.0.1",
    };

    /// <summary>A 2x2 grid of 8x8 gray images of one value.</summary>
    public static void WriteGrid(string path, float value)
    {
        using var t = Tensor.Full(new Shape(4, 1, 8, 8), value);
        ImageGrid.Save(path, t, nrow: 2);
    }

    private static string FixturePath(string name) => Path.Combine(AppContext.BaseDirectory, "fixtures", name);

    // A pipeline folder: unet/ (diffusers layout) with the fixture weights, a DDPM scheduler config and, for the
    // class-conditional one, model_info.json naming 9 classes and label 9 as the null class.
    private static void MakeModel(string dir, string configFile, bool conditional)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(FixturePath(configFile)));
        var cfg = UNet2DConfig.Parse(doc.RootElement.GetProperty("full_config").GetRawText(), configFile);
        var model = new UNet2DModel(cfg);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var file in conditional ? new[] { "unet_tiny.safetensors", "unet_tiny_class.safetensors" } : new[] { "unet_tiny.safetensors" })
            foreach (var (k, v) in SafeTensors.Load(FixturePath(file)))
                if (k.StartsWith("model.", StringComparison.Ordinal)) weights[k["model.".Length..]] = v;
        model.LoadStateDict(weights);
        model.SavePretrained(Path.Combine(dir, "unet"));
        Directory.CreateDirectory(Path.Combine(dir, "scheduler"));
        File.WriteAllText(Path.Combine(dir, "scheduler", "scheduler_config.json"),
            """{"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "clip_sample": true}""");
        if (conditional)
            File.WriteAllText(Path.Combine(dir, "model_info.json"), JsonSerializer.Serialize(new { ClassNames, NullClass = 9 }));
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>
/// The server on the in-memory test host of Microsoft.AspNetCore.Mvc.Testing. The server is a library, so the test assembly
/// (which has an entry point and a deps file) stands in as the factory's entry point and the host is built here.
/// </summary>
public sealed class WebFactory : WebApplicationFactory<WebFactory>
{
    private readonly ServeOptions options;

    public WebFactory(ServeOptions options)
    {
        this.options = options;
        // the content root of a library server: the test output folder (the server reads nothing from it)
        Environment.SetEnvironmentVariable("ASPNETCORE_TEST_CONTENTROOT_DIFFUSIONSHARP_WEB_TESTS", AppContext.BaseDirectory);
    }

    protected override IHostBuilder CreateHostBuilder() => Host.CreateDefaultBuilder()
        .ConfigureLogging(l => l.ClearProviders())
        .ConfigureWebHostDefaults(w => w
            .ConfigureServices(s => DiffusionServer.AddDiffusionServer(s, options))
            .Configure(DiffusionServer.Configure));
}

/// <summary>Server-sent events read from a response stream.</summary>
public static class Sse
{
    public sealed record Event(string Name, JsonElement Data);

    /// <summary>Reads events until the stream ends; <paramref name="onEvent"/> returning false stops early.</summary>
    public static async Task<List<Event>> ReadAll(Stream stream, Func<Event, bool>? onEvent = null, CancellationToken cancel = default)
    {
        using var reader = new StreamReader(stream);
        return await ReadAll(reader, onEvent, cancel);
    }

    /// <summary>As above, from a reader that can be read on after an early stop.</summary>
    public static async Task<List<Event>> ReadAll(StreamReader reader, Func<Event, bool>? onEvent = null, CancellationToken cancel = default)
    {
        var events = new List<Event>();
        string name = "message";
        var data = new System.Text.StringBuilder();
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) data.Append(line[6..]);
            else if (line.Length == 0 && data.Length > 0)
            {
                var e = new Event(name, JsonDocument.Parse(data.ToString()).RootElement.Clone());
                events.Add(e);
                name = "message";
                data.Clear();
                if (onEvent != null && !onEvent(e)) break;
            }
        }
        return events;
    }
}
