using System.Net;
using System.Text.Json;
using DiffusionSharp.Cli.Commands;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Web.Tests;

public sealed class ApiFixture : IDisposable
{
    public WebFixture Files { get; } = new();
    public WebFactory Factory { get; }
    public HttpClient Client { get; }

    public ApiFixture()
    {
        Factory = new WebFactory(Files.Options(ModelLocator.FindBundled()));
        Client = Factory.CreateClient();
    }

    public void Dispose()
    {
        Client.Dispose();
        Factory.Dispose();
        Files.Dispose();
    }
}

/// <summary>Every endpoint on the in-memory test host: pages, models, sampling (events, images, errors), runs, traversal attempts.</summary>
public class ApiTests(ApiFixture fx) : IClassFixture<ApiFixture>
{
    private readonly HttpClient _client = fx.Client;

    private async Task<JsonElement> GetJson(string url, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var r = await _client.GetAsync(url);
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == expected, $"{url}: {(int)r.StatusCode} {body}");
        Assert.StartsWith("application/json", r.Content.Headers.ContentType?.ToString());
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    private async Task<List<Sse.Event>> Sample(string query)
    {
        using var r = await _client.GetAsync("/api/sample?" + query, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        return await Sse.ReadAll(await r.Content.ReadAsStreamAsync());
    }

    private static Image DecodeDataUrl(string url)
    {
        Assert.StartsWith("data:image/png;base64,", url);
        return Png.Decode(Convert.FromBase64String(url["data:image/png;base64,".Length..]));
    }

    [Theory]
    [InlineData("/", "text/html", "<form id=\"form\"")]
    [InlineData("/training", "text/html", "Training runs")]
    [InlineData("/static/sample.js", "text/javascript", "/api/sample")]
    [InlineData("/static/training.js", "text/javascript", "/api/runs")]
    [InlineData("/static/app.css", "text/css", ".gallery")]
    [InlineData("/static/icon.svg", "image/svg+xml", "<svg")]
    [InlineData("/favicon.ico", "image/svg+xml", "<svg")]
    public async Task PagesAndTheirFilesAreServed(string url, string type, string contains)
    {
        using var r = await _client.GetAsync(url);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(type, r.Content.Headers.ContentType?.MediaType);
        Assert.Contains(contains, await r.Content.ReadAsStringAsync());
        Assert.Equal("nosniff", r.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.Contains("default-src 'self'", r.Headers.GetValues("Content-Security-Policy").Single());
    }

    [Fact]
    public async Task EveryControlOfThePagesHasALabel()
    {
        var html = await _client.GetStringAsync("/");
        var ids = System.Text.RegularExpressions.Regex.Matches(html, "<(?:select|input)[^>]*\\bid=\"([^\"]+)\"").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(new[] { "model", "class", "sampler", "steps", "guidance", "count", "seed" }, ids);
        foreach (var id in ids) Assert.Contains($"<label for=\"{id}\"", html);
        Assert.Contains("<button id=\"generate\" type=\"submit\">Generate</button>", html);
        Assert.Contains("role=\"status\"", html);
    }

    [Theory]
    [InlineData("/static/..%2fDiffusionSharp.Web.csproj")]
    [InlineData("/static/%2e%2e%2fSampleEndpoints.cs")]
    [InlineData("/static/%252e%252e%252fapp.css")]
    [InlineData("/static/..%5capp.css")]
    [InlineData("/static/%2Fetc%2Fpasswd")]
    [InlineData("/static/missing.js")]
    [InlineData("/static/other.html")]
    [InlineData("/../secret.txt")]
    [InlineData("/%2e%2e/secret.txt")]
    public async Task StaticFilesOutsideTheEmbeddedSetAreNotFound(string url)
    {
        using var r = await _client.GetAsync(url);
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        Assert.DoesNotContain("outside the served folders", await r.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ModelsListsTheBundledModelAndEachModelFolderWithItsClasses()
    {
        var j = await GetJson("/api/models");
        var models = j.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("id").GetString()!);
        Assert.Equal(ModelLocator.FindBundled() != null
            ? new[] { "bundled", "broken", "tiny", "tiny-class" }
            : new[] { "broken", "tiny", "tiny-class" }, models.Keys.ToArray());
        Assert.True(models["broken"].TryGetProperty("error", out var err) && err.GetString()!.Length > 0);
        var cls = models["tiny-class"];
        Assert.Equal(WebFixture.ClassNames, cls.GetProperty("classes").EnumerateArray().Select(c => c.GetString()).ToArray());
        Assert.True(cls.GetProperty("guidance").GetBoolean());
        Assert.Equal(16, cls.GetProperty("size").GetInt32());
        Assert.Equal(0, models["tiny"].GetProperty("classes").GetArrayLength());
        Assert.False(models["tiny"].GetProperty("guidance").GetBoolean());
        Assert.Equal(DiffusionSharp.Diffusion.SamplerRegistry.Choices, j.GetProperty("samplers").EnumerateArray().Select(s => s.GetProperty("name").GetString()!).ToArray());
        Assert.Equal(SamplingEngine.MaxSteps, j.GetProperty("limits").GetProperty("maxSteps").GetInt32());
        Assert.Equal(SamplingEngine.MaxCount, j.GetProperty("limits").GetProperty("maxCount").GetInt32());
    }

    [Theory]
    [InlineData("model=..%2Fmodels%2Ftiny", "Unknown model")]
    [InlineData("model=../models/tiny", "Unknown model")]
    [InlineData("model=%2e%2e%2ftiny", "Unknown model")]
    [InlineData("model=%252e%252e%252ftiny", "Unknown model")]
    [InlineData("model=tiny%2F..%2Ftiny", "Unknown model")]
    [InlineData("model=%2Fetc", "Unknown model")]
    [InlineData("model=%2Ftmp", "Unknown model")]
    [InlineData("model=not-a-model", "Unknown model")]
    [InlineData("model=tiny%00", "Unknown model")]
    [InlineData("model=TINY", "Unknown model")]
    [InlineData("model=broken", "cannot be loaded")]
    [InlineData("model=tiny&sampler=magic", "Unknown sampler")]
    [InlineData("model=tiny&steps=0", "steps must be")]
    [InlineData("model=tiny&steps=100001", "steps must be")]
    [InlineData("model=tiny&steps=2000000000", "steps must be")]
    [InlineData("model=tiny&steps=abc", "steps must be")]
    [InlineData("model=tiny&steps=-5", "steps must be")]
    [InlineData("model=tiny&count=0", "count must be")]
    [InlineData("model=tiny&count=1000001", "count must be")]
    [InlineData("model=tiny&count=1e3", "count must be")]
    [InlineData("model=tiny&seed=-1", "seed must be")]
    [InlineData("model=tiny&seed=18446744073709551616", "seed must be")]
    [InlineData("model=tiny-class&guidance=NaN", "guidance must be")]
    [InlineData("model=tiny-class&guidance=Infinity", "guidance must be")]
    [InlineData("model=tiny-class&guidance=101", "guidance must be")]
    [InlineData("model=tiny&guidance=2", "no null class")]
    [InlineData("model=tiny&class=zero", "not class conditional")]
    [InlineData("model=tiny-class&class=nine", "Unknown class")]
    [InlineData("model=tiny-class&class=9", "Unknown class")]
    [InlineData("model=tiny-class&class=..%2F..%2Fsecret.txt", "Unknown class")]
    [InlineData("model=tiny&steps=3&steps=4", "given 2 times")]
    [InlineData("model=tiny&path=%2Fetc%2Fpasswd", "Unknown parameter 'path'")]
    public async Task BadSampleParametersAreA400WithAMessage(string query, string message)
    {
        var j = await GetJson("/api/sample?" + query, HttpStatusCode.BadRequest);
        Assert.Contains(message, j.GetProperty("error").GetString());
    }

    [Fact]
    public async Task SampleStreamsEveryStepsPredictionThenImagesCommandAndDownloads()
    {
        var events = await Sample("model=tiny-class&class=three&sampler=ddim&steps=5&count=3&seed=11&guidance=2");
        Assert.Equal("started", events[0].Name);
        var steps = events.Where(e => e.Name == "step").ToList();
        Assert.Equal(Enumerable.Range(1, 5), steps.Select(s => s.Data.GetProperty("done").GetInt32()));
        Assert.All(steps, s => Assert.Equal(5, s.Data.GetProperty("total").GetInt32()));
        var preview = DecodeDataUrl(steps[^1].Data.GetProperty("image").GetString()!);
        Assert.Equal((2 * 18 + 2, 2 * 18 + 2, 3), (preview.Width, preview.Height, preview.Channels));  // 3 images, 2 per row, 16 px + padding 2
        var done = events[^1];
        Assert.Equal("done", done.Name);
        Assert.Equal("diffusion sample --model " + Path.Combine(fx.Files.Models, "tiny-class") +
                     " --sampler ddim --steps 5 --count 3 --seed 11 --class three --guidance 2 --each samples/ -o samples.png",
            done.Data.GetProperty("command").GetString());
        var urls = done.Data.GetProperty("images").EnumerateArray().Select(u => u.GetString()!).ToList();
        Assert.Equal(3, urls.Count);
        var pixels = new List<byte[]>();
        foreach (var url in urls)
        {
            using var r = await _client.GetAsync(url);
            Assert.Equal("image/png", r.Content.Headers.ContentType?.MediaType);
            var img = Png.Decode(await r.Content.ReadAsByteArrayAsync());
            Assert.Equal((16, 16, 3), (img.Width, img.Height, img.Channels));
            pixels.Add(img.Data);
        }
        Assert.NotEqual(pixels[0], pixels[1]);  // different noise per image
        var grid = Png.Decode(await _client.GetByteArrayAsync(done.Data.GetProperty("grid").GetString()));
        Assert.Equal((3 * 18 + 2, 18 + 2), (grid.Width, grid.Height));
        // DDIM's last step lands on its x_0 prediction (alpha_prev = 1): the last preview is the final images
        var last = DecodeDataUrl(steps[^1].Data.GetProperty("image").GetString()!);
        for (int y = 0; y < 16; y++)
            Assert.Equal(pixels[0].AsSpan(y * 16 * 3, 16 * 3).ToArray(), last.Data.AsSpan(((2 + y) * last.Width + 2) * 3, 16 * 3).ToArray());
    }

    [Fact]
    public async Task KSamplersStreamTheirDenoisedEstimate()
    {
        var events = await Sample("model=tiny&sampler=k-heun&steps=3&count=1&seed=2");
        // Heun: two evaluations per step except the last, each with its own x_0 estimate
        Assert.Equal(5, events.Count(e => e.Name == "step"));
        Assert.Equal("done", events[^1].Name);
    }

    [Theory]
    [InlineData("0123456789abcdef0123456789abcdef/0.png")]
    [InlineData("..%2f..%2fsecret.txt/0.png")]
    [InlineData("%2e%2e/grid.png")]
    public async Task UnknownJobsAreNotFound(string path)
    {
        using var r = await _client.GetAsync("/api/jobs/" + path);
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
    }

    [Fact]
    public async Task JobFilesAreOnlyItsImagesAndGrid()
    {
        var done = (await Sample("model=tiny&steps=1&count=2&seed=1"))[^1];
        var first = done.Data.GetProperty("images")[0].GetString()!;
        var job = first.Split('/')[3];
        foreach (var bad in new[] { "2.png", "-1.png", "00000000001.png", "..%2f0.png", "%2e%2e%2fgrid.png", "0.txt", "grid.PNG" })
        {
            using var r = await _client.GetAsync($"/api/jobs/{job}/{bad}");
            Assert.True(r.StatusCode == HttpStatusCode.NotFound, $"{bad}: {(int)r.StatusCode}");
        }
        using var ok = await _client.GetAsync($"/api/jobs/{job}/1.png");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task QueueReportsCounts()
    {
        var before = await GetJson("/api/queue");
        await Sample("model=tiny&steps=1&count=1");
        var after = await GetJson("/api/queue");
        Assert.Equal(before.GetProperty("completed").GetInt64() + 1, after.GetProperty("completed").GetInt64());
        Assert.False(after.GetProperty("running").GetBoolean());
        Assert.Equal(0, after.GetProperty("waiting").GetInt32());
    }

    [Fact]
    public async Task RunsListTheRunFoldersWithStepLossThroughputAndEta()
    {
        var j = await GetJson("/api/runs");
        var runs = j.GetProperty("runs").EnumerateArray().ToList();
        Assert.DoesNotContain(runs, r => r.GetProperty("id").GetString() == "empty-folder");
        var run = runs.Single(r => r.GetProperty("id").GetString() == "fm-run");
        Assert.Equal(20, run.GetProperty("step").GetInt64());
        Assert.Equal(100, run.GetProperty("totalSteps").GetInt64());
        Assert.Equal(0.25, run.GetProperty("loss").GetDouble());
        Assert.Equal(16.0, run.GetProperty("imagesPerSecond").GetDouble());
        Assert.Equal((100 - 20) * 8 / 16.0, run.GetProperty("etaSeconds").GetDouble(), 9);  // steps left x batch / images per second
        Assert.Equal("step_0000010.png", run.GetProperty("latestSample").GetString());
    }

    [Theory]
    [InlineData("/api/runs/..")]
    [InlineData("/api/runs/%2e%2e")]
    [InlineData("/api/runs/..%2fruns%2ffm-run")]
    [InlineData("/api/runs/%252e%252e")]
    [InlineData("/api/runs/%2Ftmp")]
    [InlineData("/api/runs/empty-folder")]
    [InlineData("/api/runs/fm-run/samples/..%2fmetrics.jsonl")]
    [InlineData("/api/runs/fm-run/samples/%2e%2e%2fmetrics.jsonl")]
    [InlineData("/api/runs/fm-run/samples/%252e%252e%252fmetrics.jsonl")]
    [InlineData("/api/runs/fm-run/samples/..%2f..%2f..%2fsecret.txt")]
    [InlineData("/api/runs/fm-run/samples/%2Fetc%2Fpasswd")]
    [InlineData("/api/runs/fm-run/samples/step_0000099.png")]
    public async Task RunPathsOutsideTheListingAreNotFound(string url)
    {
        using var r = await _client.GetAsync(url);
        Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        var body = await r.Content.ReadAsStringAsync();
        Assert.DoesNotContain("outside the served folders", body);
        Assert.DoesNotContain("\"step\":10", body);
    }

    [Fact]
    public async Task RunDetailFollowsTheFilesAsTrainingWritesThem()
    {
        var runDir = Path.Combine(fx.Files.Runs, "live-run");
        Directory.CreateDirectory(Path.Combine(runDir, "samples"));
        File.Copy(Path.Combine(fx.Files.RunDir, "metrics.jsonl"), Path.Combine(runDir, "metrics.jsonl"));
        File.Copy(Path.Combine(fx.Files.RunDir, "samples", "step_0000010.png"), Path.Combine(runDir, "samples", "step_0000010.png"));
        var d = await GetJson("/api/runs/live-run");
        Assert.Equal(new[] { 10.0, 20.0 }, d.GetProperty("points").EnumerateArray().Select(p => p[0].GetDouble()).ToArray());
        Assert.False(d.GetProperty("run").TryGetProperty("totalSteps", out var t) && t.ValueKind != JsonValueKind.Null);  // no checkpoint yet
        var png = await _client.GetByteArrayAsync("/api/runs/live-run/samples/step_0000010.png");
        Assert.Equal(Png.Read(Path.Combine(runDir, "samples", "step_0000010.png")).Data, Png.Decode(png).Data);

        // a line being written is not read until its newline arrives
        File.AppendAllText(Path.Combine(runDir, "metrics.jsonl"), """{"step":30,"loss":0.125,"images_per_s":20.0,"total_steps":200,"batch_size":4}""");
        d = await GetJson("/api/runs/live-run");
        Assert.Equal(20, d.GetProperty("run").GetProperty("step").GetInt64());
        File.AppendAllText(Path.Combine(runDir, "metrics.jsonl"), "\n");
        WebFixture.WriteGrid(Path.Combine(runDir, "samples", "step_0000030.png"), 0.5f);
        d = await GetJson("/api/runs/live-run");
        var run = d.GetProperty("run");
        Assert.Equal(30, run.GetProperty("step").GetInt64());
        Assert.Equal(0.125, run.GetProperty("loss").GetDouble());
        Assert.Equal(200, run.GetProperty("totalSteps").GetInt64());
        Assert.Equal((200 - 30) * 4 / 20.0, run.GetProperty("etaSeconds").GetDouble(), 9);
        Assert.Equal("step_0000030.png", run.GetProperty("latestSample").GetString());
        Assert.Equal(new[] { "step_0000010.png", "step_0000030.png" }, d.GetProperty("samples").EnumerateArray().Select(s => s.GetString()).ToArray());
    }

    [Fact]
    public async Task TrainingPageFollowsARealTrainingRunWhileItWrites()
    {
        var cfg = Path.Combine(fx.Files.Root, "train-config.json");
        File.WriteAllText(cfg, """
        {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "norm_num_groups": 4}
        """);
        var pixels = new byte[8 * 64];
        new Random(5).NextBytes(pixels);
        var data = new InMemoryImageDataset(pixels, new int[8], 1, 8, new[] { "all" }, "test");
        var trainer = Trainer.Create(new TrainOptions
        {
            ModelConfigPath = cfg, BatchSize = 4, Steps = 6, LogEvery = 2, SampleEvery = 3, CheckpointEvery = 0, EmaDecay = 0,
        }, Path.Combine(fx.Files.Runs, "trained"), data);
        JsonElement? during = null;
        await Task.Run(() => trainer.Run(CancellationToken.None, (r, _) =>
        {
            if (r.Step == 5) during = GetJson("/api/runs/trained").GetAwaiter().GetResult();
        }));
        var mid = during!.Value.GetProperty("run");
        Assert.Equal(4, mid.GetProperty("step").GetInt64());
        Assert.Equal(6, mid.GetProperty("totalSteps").GetInt64());
        Assert.True(mid.GetProperty("etaSeconds").GetDouble() > 0);
        Assert.Equal("step_0000003.png", mid.GetProperty("latestSample").GetString());
        var end = await GetJson("/api/runs/trained");
        Assert.Equal(new[] { 2.0, 4.0, 6.0 }, end.GetProperty("points").EnumerateArray().Select(p => p[0].GetDouble()).ToArray());
        Assert.Equal(0.0, end.GetProperty("run").GetProperty("etaSeconds").GetDouble());
        Assert.Equal("step_0000006.png", end.GetProperty("run").GetProperty("latestSample").GetString());
        var grid = Png.Decode(await _client.GetByteArrayAsync("/api/runs/trained/samples/step_0000006.png"));
        Assert.Equal(Png.Read(Path.Combine(fx.Files.Runs, "trained", "samples", "step_0000006.png")).Data, grid.Data);
    }
}
