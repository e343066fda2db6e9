using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace DiffusionSharp.Web;

/// <summary>The training page's API: runs, their loss curves and sample grids.</summary>
internal static class TrainingEndpoints
{
    public static void Map(IEndpointRouteBuilder e)
    {
        e.MapGet("/api/runs", (RunCatalog runs) => Results.Json(new { runs = runs.List().Select(r => runs.Read(r).Summary).ToList() }));
        e.MapGet("/api/runs/{id}", (string id, RunCatalog runs) =>
        {
            if (runs.Find(id) is not { } run) return Errors.NotFound($"No run '{id}'; GET /api/runs lists them.");
            var (summary, points, samples) = runs.Read(run);
            return Results.Json(new { run = summary, points = points.Select(p => new[] { p.Step, p.Loss }), samples });
        });
        e.MapGet("/api/runs/{id}/samples/{name}", (string id, string name, RunCatalog runs) =>
        {
            if (runs.Find(id) is not { } run) return Errors.NotFound($"No run '{id}'; GET /api/runs lists them.");
            if (RunCatalog.FindSample(run, name) is not { } file) return Errors.NotFound($"No sample grid '{name}' in run '{id}'.");
            return Results.File(file.FullName, "image/png");
        });
    }
}
