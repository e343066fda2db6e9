using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace DiffusionSharp.Web;

/// <summary>The two pages and their script and style files.</summary>
internal static class PageEndpoints
{
    public static void Map(IEndpointRouteBuilder e)
    {
        e.MapGet("/", () => Asset("index.html"));
        e.MapGet("/training", () => Asset("training.html"));
        e.MapGet("/static/{name}", (string name) => Asset(name));
        e.MapGet("/favicon.ico", () => Results.Redirect("/static/icon.svg"));
    }

    private static IResult Asset(string name) =>
        name.EndsWith(".html", StringComparison.Ordinal) && !name.Equals("index.html", StringComparison.Ordinal) && !name.Equals("training.html", StringComparison.Ordinal)
            ? Results.NotFound()
            : StaticAssets.Find(name) is { } f
                ? Results.Bytes(f.Bytes, f.Type)
                : Errors.NotFound($"No file '{name}'.");
}

/// <summary>JSON error answers: <c>{"error": message}</c>.</summary>
internal static class Errors
{
    public static IResult BadRequest(string message) => Results.Json(new { error = message }, statusCode: StatusCodes.Status400BadRequest);
    public static IResult NotFound(string message) => Results.Json(new { error = message }, statusCode: StatusCodes.Status404NotFound);
}
