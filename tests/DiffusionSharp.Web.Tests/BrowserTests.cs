using DiffusionSharp.Cli.Commands;
using Microsoft.Playwright;
using Xunit;

namespace DiffusionSharp.Web.Tests;

/// <summary>A fact that needs Debian's chromium; skipped, with the reason, where it is not installed.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string Chromium = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(Chromium)) Skip = $"Debian's chromium is not installed ({Chromium}); `apt-get install chromium` (.ci/run does) to run the browser test.";
    }
}

/// <summary>The pages in a real headless Chromium driven by Playwright, used from the keyboard as a person would.</summary>
public class BrowserTests
{
    private static readonly string[] Args =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
    ];

    private static async Task<(IPlaywright, IBrowserContext, DirectoryInfo)> Launch()
    {
        var playwright = await Playwright.CreateAsync();
        var profile = Directory.CreateTempSubdirectory("ds-chromium-");
        var context = await playwright.Chromium.LaunchPersistentContextAsync(profile.FullName, new BrowserTypeLaunchPersistentContextOptions
        {
            ExecutablePath = ChromiumFactAttribute.Chromium, Headless = true, Args = Args,
            ViewportSize = new ViewportSize { Width = 1200, Height = 900 }, Timeout = 60_000,
        });
        return (playwright, context, profile);
    }

    // Screenshots go to DIFFUSIONSHARP_SCREENSHOTS when set (that is how docs/ gets them), else to a temporary folder.
    private static string ScreenshotPath(string name)
    {
        var dir = Environment.GetEnvironmentVariable("DIFFUSIONSHARP_SCREENSHOTS") ?? Path.Combine(Path.GetTempPath(), "ds-web-shots");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    [ChromiumFact]
    public async Task GeneratesFourImagesWithFiveStepsFromTheKeyboardAndShowsThem()
    {
        var bundled = ModelLocator.FindBundled();
        await using var server = await LiveServer.Start(bundled);
        var (playwright, context, profile) = await Launch();
        try
        {
            var page = context.Pages.Count > 0 ? context.Pages[0] : await context.NewPageAsync();
            var consoleErrors = new List<string>();
            page.Console += (_, m) => { if (m.Type == "error") consoleErrors.Add(m.Text + " at " + m.Location); };
            await page.GotoAsync(server.BaseAddress.ToString());
            await Assertions.Expect(page.Locator("#model option")).Not.ToHaveCountAsync(0);
            await page.SelectOptionAsync("#model", bundled != null ? "bundled" : "tiny-class");
            await Assertions.Expect(page.Locator("#class option").Nth(1)).ToBeAttachedAsync();

            // sliders by keyboard: Home, then arrow keys
            async Task Slide(string id, int rights)
            {
                await page.FocusAsync("#" + id);
                await page.Keyboard.PressAsync("Home");
                for (int i = 0; i < rights; i++) await page.Keyboard.PressAsync("ArrowRight");
            }
            await Slide("steps", 4);
            await Slide("count", 3);
            await Slide("guidance", 4);
            await Assertions.Expect(page.Locator("#steps-out")).ToHaveTextAsync("5");
            await Assertions.Expect(page.Locator("#count-out")).ToHaveTextAsync("4");
            await Assertions.Expect(page.Locator("#guidance-out")).ToHaveTextAsync("2");
            await page.FocusAsync("#seed");
            await page.Keyboard.PressAsync("Control+A");
            await page.Keyboard.TypeAsync("3");

            // Tab from the seed field reaches Random, then Generate; Enter presses it
            await page.Keyboard.PressAsync("Tab");
            await page.Keyboard.PressAsync("Tab");
            Assert.Equal("generate", await page.EvaluateAsync<string>("document.activeElement.id"));
            await page.Keyboard.PressAsync("Enter");

            var images = page.Locator("#gallery img");
            await Assertions.Expect(images).ToHaveCountAsync(4, new() { Timeout = 60_000 });
            await page.WaitForFunctionAsync("Array.from(document.querySelectorAll('#gallery img')).every(i => i.complete && i.naturalWidth > 0)");
            var sizes = await page.EvaluateAsync<int[]>("Array.from(document.querySelectorAll('#gallery img')).map(i => i.naturalWidth)");
            Assert.All(sizes, w => Assert.Equal(bundled != null ? 28 : 16, w));
            await Assertions.Expect(page.Locator("#preview")).ToBeVisibleAsync();
            Assert.StartsWith("data:image/png;base64,", await page.GetAttributeAsync("#preview", "src"));
            await Assertions.Expect(page.Locator("#status")).ToHaveTextAsync("Done: 4 images.");
            await Assertions.Expect(page.Locator("#command")).ToContainTextAsync("--steps 5 --count 4 --seed 3");
            await Assertions.Expect(page.Locator("#gallery a")).ToHaveCountAsync(4);
            Assert.EndsWith(".png", await page.Locator("#gallery a").First.GetAttributeAsync("href"));
            Assert.Empty(consoleErrors);
            var shot = await page.ScreenshotAsync(new PageScreenshotOptions { Path = ScreenshotPath("web-sample.png"), FullPage = true });
            Assert.True(shot.Length > 10_000, $"screenshot has only {shot.Length} bytes");

            await page.GotoAsync(new Uri(server.BaseAddress, "training").ToString());
            await Assertions.Expect(page.Locator(".run h2")).ToContainTextAsync(["fm-run"]);
            await Assertions.Expect(page.Locator(".run").First.Locator("dd").First).ToHaveTextAsync("20 / 100");
            await Assertions.Expect(page.Locator(".run img")).ToHaveCountAsync(1);
            Assert.Empty(consoleErrors);
        }
        finally
        {
            await context.CloseAsync();
            playwright.Dispose();
            try { profile.Delete(recursive: true); }
            catch (IOException) { }
        }
    }
}
