using System.Text.Json;
using DiffusionSharp.IO;
using Xunit;

namespace DiffusionSharp.Web.Tests;

/// <summary>The command the page shows writes the same images as the page: same seed, same pixels.</summary>
public class CliEquivalenceTests(ApiFixture fx) : IClassFixture<ApiFixture>
{
    [Theory]
    [InlineData("model=tiny-class&class=seven&sampler=k-euler-ancestral&steps=4&count=3&seed=42&guidance=1.5")]
    [InlineData("model=tiny&sampler=ddpm&steps=3&count=2&seed=7")]
    public async Task TheShownCommandReproducesThePagesImages(string query)
    {
        using var r = await fx.Client.GetAsync("/api/sample?" + query, HttpCompletionOption.ResponseHeadersRead);
        var done = (await Sse.ReadAll(await r.Content.ReadAsStreamAsync()))[^1];
        Assert.Equal("done", done.Name);
        var command = done.Data.GetProperty("command").GetString()!;
        var words = command.Split(' ');
        Assert.Equal(new[] { "diffusion", "sample" }, words[..2]);
        var outDir = Path.Combine(fx.Files.Root, "cli-" + Guid.NewGuid().ToString("N"));
        var args = words[1..].Select(w => w switch { "samples/" => Path.Combine(outDir, "each"), "samples.png" => Path.Combine(outDir, "grid.png"), _ => w }).ToArray();
        var err = Console.Error;
        Console.SetError(TextWriter.Null);
        try { Assert.Equal(0, DiffusionSharp.Cli.Program.Main(args)); }
        finally { Console.SetError(err); }
        var urls = done.Data.GetProperty("images").EnumerateArray().Select(u => u.GetString()!).ToList();
        var files = Directory.GetFiles(Path.Combine(outDir, "each"), "*.png").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(urls.Count, files.Count);
        for (int i = 0; i < urls.Count; i++)
            Assert.Equal(Png.Read(files[i]).Data, Png.Decode(await fx.Client.GetByteArrayAsync(urls[i])).Data);
        var grid = Png.Decode(await fx.Client.GetByteArrayAsync(done.Data.GetProperty("grid").GetString()));
        Assert.Equal(Png.Read(Path.Combine(outDir, "grid.png")).Data, grid.Data);
    }
}
