using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DiffusionSharp.Web;

/// <summary>
/// <c>diffusion serve</c>: a local web server with a sampling page (predicted x_0 streamed while it forms) and a training
/// page (loss, throughput, ETA and sample grids of runs being trained).
/// </summary>
public sealed class DiffusionServer
{
    private DiffusionServer() { }

    /// <summary>Registers the server's services (catalogs, sampler, queue, results) for <paramref name="options"/>.</summary>
    public static IServiceCollection AddDiffusionServer(IServiceCollection services, ServeOptions options)
    {
        services.AddRouting();
        services.AddSingleton(options);
        services.AddSingleton(new ModelCatalog(options.BundledModel, options.ModelsDirectory));
        services.AddSingleton(new RunCatalog(options.RunsDirectory));
        services.AddSingleton(new SamplingEngine());
        services.AddSingleton(new SampleQueue(options.MaxWaiting));
        services.AddSingleton(new ResultStore(options.KeepJobs));
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.CamelCase);
        return services;
    }

    /// <summary>Maps the pages and the API.</summary>
    public static void MapDiffusionServer(IEndpointRouteBuilder endpoints)
    {
        PageEndpoints.Map(endpoints);
        SampleEndpoints.Map(endpoints);
        TrainingEndpoints.Map(endpoints);
    }

    /// <summary>The request pipeline: security headers, routing, the endpoints of <see cref="MapDiffusionServer"/>.</summary>
    public static void Configure(IApplicationBuilder app)
    {
        UseSecurityHeaders(app);
        app.UseRouting();
        app.UseEndpoints(MapDiffusionServer);
    }

    // Security headers on every response: the page loads only its own files and data: images.
    private static void UseSecurityHeaders(IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        ctx.Response.Headers["X-Content-Type-Options"] = "nosniff";
        ctx.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";
        ctx.Response.Headers["Referrer-Policy"] = "no-referrer";
        await next(ctx);
    });

    /// <summary>Builds the Kestrel application listening on <see cref="ServeOptions.Host"/>:<see cref="ServeOptions.Port"/>.</summary>
    public static WebApplication Create(ServeOptions options)
    {
        if (!IPAddress.TryParse(options.Host, out var address))
            throw new ArgumentException($"--host must be an IP address such as 127.0.0.1 or 0.0.0.0, got '{options.Host}'.");
        if (options.Port is < 0 or > 65535) throw new ArgumentException($"--port must be in 0..65535, got {options.Port}.");
        if (options.ModelsDirectory != null && !Directory.Exists(options.ModelsDirectory))
            throw new DirectoryNotFoundException($"--models folder not found: {options.ModelsDirectory}");
        if (options.RunsDirectory != null && !Directory.Exists(options.RunsDirectory))
            throw new DirectoryNotFoundException($"--runs folder not found: {options.RunsDirectory}");
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = Array.Empty<string>() });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, options.Port));
        AddDiffusionServer(builder.Services, options);
        var app = builder.Build();
        Configure(app);
        return app;
    }

    /// <summary>The address a started application listens on (with the real port when 0 was asked).</summary>
    public static string Url(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        return addresses?.FirstOrDefault()?.Replace("[::]", "localhost", StringComparison.Ordinal) ?? throw new InvalidOperationException("The server is not listening.");
    }
}
