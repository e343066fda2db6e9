using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Primitives;

namespace DiffusionSharp.Web;

/// <summary>
/// The sampling API. <c>GET /api/sample?model=..</c> checks its parameters (400 with a message when one is bad), takes a
/// place in the queue and answers with server-sent events: <c>queued</c> (position), <c>step</c> (the predicted x_0 as a
/// PNG data URL), then <c>done</c> (image links and the CLI command) or <c>error</c>. A client that goes away cancels its job.
/// </summary>
internal static class SampleEndpoints
{
    // event data goes to a script, never into HTML, so base64 '+' and '/' need no escaping
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
    private static readonly string[] Known = ["model", "class", "sampler", "steps", "guidance", "seed", "count"];

    public static void Map(IEndpointRouteBuilder e)
    {
        e.MapGet("/api/models", (ModelCatalog models, SamplingEngine engine, ServeOptions options) => Results.Json(new
        {
            models = models.List().Select(m => Describe(m, engine)).ToList(),
            samplers = SamplingEngine.Samplers.Select(x => new { name = x.Name, description = x.Description }),
            limits = new { maxCount = options.MaxCount, maxSteps = options.MaxSteps },
        }));
        e.MapGet("/api/queue", (SampleQueue q) => Results.Json(new
        {
            running = q.Running, waiting = q.Waiting, completed = q.Completed, cancelled = q.Cancelled, failed = q.Failed,
        }));
        e.MapGet("/api/sample", Sample);
        e.MapGet("/api/jobs/{job}/{file}", (string job, string file, ResultStore store) =>
        {
            if (store.Find(job) is not { } images) return Errors.NotFound($"No job '{job}' (finished jobs are kept for a while only).");
            if (file == "grid.png") return Results.Bytes(images.Grid, "image/png", "samples.png");
            if (file.EndsWith(".png", StringComparison.Ordinal) && file.Length <= 9
                && int.TryParse(file.AsSpan(0, file.Length - 4), NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < images.Images.Count)
                return Results.Bytes(images.Images[i], "image/png", $"{i:D5}.png");
            return Errors.NotFound($"No file '{file}' in job '{job}'; files are grid.png and 0.png..{images.Images.Count - 1}.png.");
        });
    }

    private static object Describe(ModelEntry m, SamplingEngine engine)
    {
        try { return engine.Describe(m); }
        catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException or NotSupportedException or UnauthorizedAccessException or JsonException)
        {
            return new { id = m.Id, label = m.Label, error = ex.Message };
        }
    }

    /// <summary>Checks the query of a sampling request against the listed models and the limits; null and a message when bad.</summary>
    public static (SampleJob? Job, string? Error) Parse(IQueryCollection q, ModelCatalog models, SamplingEngine engine, ServeOptions options)
    {
        foreach (var (key, values) in q)
        {
            if (!Known.Contains(key, StringComparer.Ordinal)) return (null, $"Unknown parameter '{key}'; expected {string.Join(", ", Known)}.");
            if (values.Count > 1) return (null, $"Parameter '{key}' is given {values.Count} times.");
        }
        string? Get(string k) => q.TryGetValue(k, out StringValues v) ? v.ToString() : null;
        var modelId = Get("model") ?? ModelCatalog.BundledId;
        if (models.Find(modelId) is not { } model)
            return (null, $"Unknown model '{modelId}'; GET /api/models lists the models ({string.Join(", ", models.List().Select(m => m.Id))}).");
        ModelDescription desc;
        try { desc = engine.Describe(model); }
        catch (Exception ex) when (ex is IOException or InvalidDataException or ArgumentException or NotSupportedException or UnauthorizedAccessException or JsonException)
        {
            return (null, $"Model '{modelId}' cannot be loaded: {ex.Message}");
        }
        var sampler = Get("sampler") ?? DiffusionSharp.Diffusion.SamplerRegistry.Auto;
        if (!SamplingEngine.SamplerNames.Contains(sampler, StringComparer.Ordinal))
            return (null, $"Unknown sampler '{sampler}'; expected one of {string.Join(", ", SamplingEngine.SamplerNames)}.");
        if (!TryInt(Get("steps") ?? "20", 1, options.MaxSteps, out int steps)) return (null, $"steps must be a whole number in 1..{options.MaxSteps}, got '{Get("steps")}'.");
        if (!TryInt(Get("count") ?? "4", 1, options.MaxCount, out int count)) return (null, $"count must be a whole number in 1..{options.MaxCount}, got '{Get("count")}'.");
        var seedText = Get("seed") ?? "0";
        if (!ulong.TryParse(seedText, NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed))
            return (null, $"seed must be a whole number in 0..{ulong.MaxValue}, got '{seedText}'.");
        var gText = Get("guidance") ?? "1";
        if (!double.TryParse(gText, NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out double guidance)
            || !double.IsFinite(guidance) || guidance < 0 || guidance > 100)
            return (null, $"guidance must be a number in 0..100, got '{gText}'.");
        int? label = null;
        string? className = null;
        var cls = Get("class");
        if (!string.IsNullOrEmpty(cls))
        {
            if (desc.Classes.Count == 0) return (null, $"Model '{modelId}' is not class conditional; leave the class out.");
            int k = IndexOf(desc.Classes, cls);
            if (k < 0 && int.TryParse(cls, NumberStyles.None, CultureInfo.InvariantCulture, out int idx) && idx < desc.Classes.Count) k = idx;
            if (k < 0) return (null, $"Unknown class '{cls}' for model '{modelId}'; classes are {string.Join(", ", desc.Classes)}.");
            label = k;
            className = desc.Classes[k];
        }
        if (guidance != 1.0 && !desc.Guidance) return (null, $"Model '{modelId}' has no null class, so guidance must be 1.");
        return (new SampleJob(model, sampler, steps, count, seed, label, className, guidance), null);
    }

    private static int IndexOf(IReadOnlyList<string> names, string name)
    {
        for (int i = 0; i < names.Count; i++)
            if (string.Equals(names[i], name, StringComparison.OrdinalIgnoreCase)) return i;
        return -1;
    }

    private static bool TryInt(string s, int min, int max, out int value) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= min && value <= max;

    private static async Task Sample(HttpContext ctx, ModelCatalog models, SamplingEngine engine, ServeOptions options, SampleQueue queue, ResultStore store)
    {
        var (job, error) = Parse(ctx.Request.Query, models, engine, options);
        if (job == null)
        {
            await Errors.BadRequest(error!).ExecuteAsync(ctx);
            return;
        }
        using var ticket = queue.TryEnter();
        if (ticket == null)
        {
            await Results.Json(new { error = $"{options.MaxWaiting} jobs are already waiting; try again later." }, statusCode: StatusCodes.Status503ServiceUnavailable).ExecuteAsync(ctx);
            return;
        }
        var cancel = ctx.RequestAborted;
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        Task<SampleImages>? work = null;
        try
        {
            while (!ticket.TurnTask.IsCompleted)
            {
                var changed = ticket.ChangedTask;
                await Send(ctx, "queued", new { position = ticket.Position }, cancel);
                await Task.WhenAny(ticket.TurnTask, changed, Task.Delay(TimeSpan.FromSeconds(15), cancel));
                cancel.ThrowIfCancellationRequested();
            }
            await Send(ctx, "started", new { steps = job.Steps, count = job.Count }, cancel);
            var previews = Channel.CreateUnbounded<(int Done, int Total, byte[] Png)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
            work = Task.Factory.StartNew(() =>
            {
                try { return engine.Run(job, (d, t, png) => previews.Writer.TryWrite((d, t, png)), cancel); }
                finally { previews.Writer.TryComplete(); }
            }, cancel, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            await foreach (var p in previews.Reader.ReadAllAsync(cancel))
                await Send(ctx, "step", new { done = p.Done, total = p.Total, image = "data:image/png;base64," + Convert.ToBase64String(p.Png) }, cancel);
            var images = await work;
            var id = store.Add(images);
            await Send(ctx, "done", new
            {
                job = id,
                images = Enumerable.Range(0, images.Images.Count).Select(i => $"/api/jobs/{id}/{i}.png").ToList(),
                grid = $"/api/jobs/{id}/grid.png",
                command = SamplingEngine.CliCommand(job),
            }, cancel);
            queue.Record(JobOutcome.Completed);
        }
        // The client went away: the request's token fires, or a write to the closed connection fails first (Kestrel's
        // ConnectionAbortedException is an OperationCanceledException raised before RequestAborted is set).
        catch (Exception ex) when (ex is OperationCanceledException || cancel.IsCancellationRequested)
        {
            queue.Record(JobOutcome.Cancelled);
        }
        catch (Exception ex)
        {
            queue.Record(JobOutcome.Failed);
            if (!cancel.IsCancellationRequested)
                await Send(ctx, "error", new { message = ex.Message }, CancellationToken.None);
        }
        finally
        {
            // the sampler is free only when the job's thread has stopped
            if (work != null) await work.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private static async Task Send(HttpContext ctx, string name, object data, CancellationToken cancel)
    {
        await ctx.Response.WriteAsync($"event: {name}\ndata: {JsonSerializer.Serialize(data, Json)}\n\n", cancel);
        await ctx.Response.Body.FlushAsync(cancel);
    }
}
