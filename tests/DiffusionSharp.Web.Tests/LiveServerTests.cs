using System.Diagnostics;
using System.Net;
using System.Text.Json;
using DiffusionSharp.IO;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace DiffusionSharp.Web.Tests;

/// <summary>A live server on Kestrel; every request goes to 127.0.0.1 only.</summary>
public sealed class LiveServer : IAsyncDisposable
{
    public WebFixture Files { get; }
    public WebApplication App { get; }
    public Uri BaseAddress { get; }

    private LiveServer(WebFixture files, WebApplication app, Uri baseAddress)
    {
        Files = files;
        App = app;
        BaseAddress = baseAddress;
    }

    public static async Task<LiveServer> Start(string? bundled = null)
    {
        var files = new WebFixture();
        var app = DiffusionServer.Create(files.Options(bundled) with { Port = 0, Host = "127.0.0.1" });
        await app.StartAsync();
        var url = new Uri(DiffusionServer.Url(app));
        Assert.True(IPAddress.IsLoopback(IPAddress.Parse(url.Host)), $"server must listen on loopback, got {url}");
        return new LiveServer(files, app, url);
    }

    public HttpClient Client() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(120) };

    public async ValueTask DisposeAsync()
    {
        await App.StopAsync();
        await App.DisposeAsync();
        Files.Dispose();
    }
}

public class LiveServerTests
{
    private static async Task<JsonElement> Queue(HttpClient c) => JsonDocument.Parse(await c.GetStringAsync("/api/queue")).RootElement.Clone();

    [Fact]
    public async Task TwentyConcurrentClientsAllGetTheirImagesOneJobAtATime()
    {
        await using var server = await LiveServer.Start();
        const int clients = 20;
        var sw = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, clients).Select(async i =>
        {
            using var c = server.Client();
            using var r = await c.GetAsync($"/api/sample?model=tiny&sampler=ddim&steps=3&count=1&seed={i}", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var events = await Sse.ReadAll(await r.Content.ReadAsStreamAsync());
            var done = events[^1];
            Assert.True(done.Name == "done", $"client {i} ended with {done.Name}: {done.Data}");
            var png = await c.GetByteArrayAsync(done.Data.GetProperty("images")[0].GetString());
            return (Seed: i, Pixels: Png.Decode(png).Data, Positions: events.Where(e => e.Name == "queued").Select(e => e.Data.GetProperty("position").GetInt32()).ToList());
        }).ToList();
        var results = await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(90));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(90));
        // every job ran: 20 distinct results, each client got its own seed's image
        Assert.Equal(clients, results.Select(r => Convert.ToBase64String(r.Pixels)).Distinct().Count());
        // they queued: someone waited, positions only moved forward and never exceeded the number of other clients
        Assert.Contains(results, r => r.Positions.Count > 0);
        Assert.All(results, r =>
        {
            Assert.All(r.Positions, p => Assert.InRange(p, 1, clients - 1));
            Assert.Equal(r.Positions.OrderByDescending(p => p), r.Positions);
        });
        using var client = server.Client();
        var q = await Queue(client);
        Assert.Equal(clients, q.GetProperty("completed").GetInt64());
        Assert.Equal(0, q.GetProperty("cancelled").GetInt64());
        Assert.Equal(0, q.GetProperty("failed").GetInt64());
        Assert.False(q.GetProperty("running").GetBoolean());
        Assert.Equal(0, q.GetProperty("waiting").GetInt32());
    }

    [Fact]
    public async Task AClientThatGoesAwayCancelsItsJobAndFreesTheSampler()
    {
        await using var server = await LiveServer.Start();
        using var c = server.Client();
        using (var cts = new CancellationTokenSource())
        {
            // a long job: 1000 DDPM steps; leave after the first streamed step
            var r = await c.GetAsync("/api/sample?model=tiny&sampler=ddpm&steps=1000&count=4", HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var first = await Sse.ReadAll(await r.Content.ReadAsStreamAsync(cts.Token), e => e.Name != "step", cts.Token);
            Assert.Equal("step", first[^1].Name);
            Assert.True(first[^1].Data.GetProperty("done").GetInt32() < 1000);
            cts.Cancel();
            r.Dispose();
        }
        var deadline = Stopwatch.StartNew();
        JsonElement q;
        do
        {
            await Task.Delay(50);
            q = await Queue(c);
        }
        while ((q.GetProperty("cancelled").GetInt64() == 0 || q.GetProperty("running").GetBoolean()) && deadline.Elapsed < TimeSpan.FromSeconds(20));
        Assert.Equal(1, q.GetProperty("cancelled").GetInt64());
        Assert.Equal(0, q.GetProperty("completed").GetInt64());
        Assert.False(q.GetProperty("running").GetBoolean());
        // the sampler is free: the next job runs at once, without waiting
        using var next = await c.GetAsync("/api/sample?model=tiny&steps=2&count=1", HttpCompletionOption.ResponseHeadersRead);
        var events = await Sse.ReadAll(await next.Content.ReadAsStreamAsync());
        Assert.DoesNotContain(events, e => e.Name == "queued");
        Assert.Equal("done", events[^1].Name);
    }

    [Fact]
    public async Task AWaitingClientThatGoesAwayLeavesTheQueue()
    {
        await using var server = await LiveServer.Start();
        using var c = server.Client();
        using var longJob = await c.GetAsync("/api/sample?model=tiny&sampler=ddpm&steps=300&count=2", HttpCompletionOption.ResponseHeadersRead);
        using var longStream = new StreamReader(await longJob.Content.ReadAsStreamAsync());
        await Sse.ReadAll(longStream, e => e.Name != "step");  // running now
        using (var cts = new CancellationTokenSource())
        {
            var waiting = await c.GetAsync("/api/sample?model=tiny&steps=2&count=1", HttpCompletionOption.ResponseHeadersRead, cts.Token);
            var queued = await Sse.ReadAll(await waiting.Content.ReadAsStreamAsync(cts.Token), e => e.Name != "queued", cts.Token);
            Assert.Equal(1, queued[^1].Data.GetProperty("position").GetInt32());
            Assert.Equal(1, (await Queue(c)).GetProperty("waiting").GetInt32());
            cts.Cancel();
            waiting.Dispose();
        }
        var deadline = Stopwatch.StartNew();
        while ((await Queue(c)).GetProperty("waiting").GetInt32() != 0 && deadline.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50);
        var q = await Queue(c);
        Assert.Equal(0, q.GetProperty("waiting").GetInt32());
        Assert.True(q.GetProperty("running").GetBoolean());  // the running job went on
        Assert.Equal(1, q.GetProperty("cancelled").GetInt64());
        Assert.Equal(0, q.GetProperty("failed").GetInt64());  // a client that left is a cancellation, never a failure
    }

    [Fact]
    public async Task ByDefaultTheServerListensOnLoopbackOnly()
    {
        await using var app = DiffusionServer.Create(new ServeOptions { Port = 0 });
        await app.StartAsync();
        var url = new Uri(DiffusionServer.Url(app));
        Assert.Equal("127.0.0.1", url.Host);
        await app.StopAsync();
    }

    [Theory]
    [InlineData("--host", "not-an-address", "--host must be an IP address")]
    [InlineData("--port", "70000", "--port must be in 0..65535")]
    [InlineData("--models", "/nonexistent/models", "--models folder not found")]
    [InlineData("--runs", "/nonexistent/runs", "--runs folder not found")]
    public void ServeRejectsBadOptionsWithAMessage(string option, string value, string message)
    {
        var ex = Assert.ThrowsAny<Exception>(() => DiffusionServer.Create(new ServeOptions
        {
            Port = option == "--port" ? int.Parse(value, System.Globalization.CultureInfo.InvariantCulture) : 0,
            Host = option == "--host" ? value : "127.0.0.1",
            ModelsDirectory = option == "--models" ? value : null,
            RunsDirectory = option == "--runs" ? value : null,
        }));
        Assert.Contains(message, ex.Message);
    }

    [Fact]
    public async Task ASamplingErrorEndsTheStreamWithItsMessageAndTheQueueGoesOn()
    {
        await using var server = await LiveServer.Start();
        // a model whose output overflows (NaN weights are refused at load): sampling stops at the first non-finite step and names it
        var model = DiffusionSharp.Nn.UNet.UNet2DModel.FromPretrained(Path.Combine(server.Files.Models, "tiny", "unet"));
        model.StateDict()["conv_out.weight"].Span.Fill(float.MaxValue);
        model.SavePretrained(Path.Combine(server.Files.Models, "nan-model", "unet"));
        using var c = server.Client();
        using (var r = await c.GetAsync("/api/sample?model=nan-model&steps=3&count=1", HttpCompletionOption.ResponseHeadersRead))
        {
            var events = await Sse.ReadAll(await r.Content.ReadAsStreamAsync());
            Assert.Equal("error", events[^1].Name);
            Assert.Contains("Sampling produced", events[^1].Data.GetProperty("message").GetString());
        }
        var q = await Queue(c);
        Assert.Equal(1, q.GetProperty("failed").GetInt64());
        Assert.False(q.GetProperty("running").GetBoolean());
        using var next = await c.GetAsync("/api/sample?model=tiny&steps=1&count=1", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("done", (await Sse.ReadAll(await next.Content.ReadAsStreamAsync()))[^1].Name);
    }
}
