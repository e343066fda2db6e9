using System.Diagnostics;
using System.Xml.Linq;
using Xunit;

namespace DiffusionSharp.Tests.Cli;

/// <summary>
/// The <c>diffusion</c> dotnet tool outside the repository: pack it, install it into a temporary tool path from a
/// local-only package source, and sample from the bundled model in an empty directory.
/// </summary>
public sealed class ToolPackageTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-tool-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "DiffusionSharp.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("DiffusionSharp.sln not found above " + AppContext.BaseDirectory);
    }

    // Every child process gets its own NuGet packages folder, so a freshly packed 0.9.0 is never shadowed by a cached one.
    private (int Code, string Output) Exec(string file, string args, string workDir, int timeoutSeconds = 300)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            WorkingDirectory = workDir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["NUGET_PACKAGES"] = Path.Combine(_root, "packages");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000)) { p.Kill(entireProcessTree: true); return (-1, $"{file} {args}: timed out"); }
        return (p.ExitCode, $"{file} {args}\n{stdout.Result}\n{stderr.Result}");
    }

    [Fact]
    public void PackedToolInstallsAndSamplesFromAnEmptyDirectory()
    {
        var repo = RepoRoot();
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        // The configuration these tests were built with (bin/<Configuration>/net10.0): pack reuses that build.
        string config = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
        var version = XDocument.Load(Path.Combine(repo, "Directory.Build.props")).Descendants("Version").Single().Value;
        string feed = Path.Combine(_root, "feed"), tools = Path.Combine(_root, "tools"), empty = Path.Combine(_root, "empty");
        Directory.CreateDirectory(empty);

        var (code, log) = Exec(dotnet, $"pack \"{Path.Combine(repo, "src", "DiffusionSharp.Cli")}\" -c {config} --no-build -o \"{feed}\"", repo);
        Assert.True(code == 0, log);
        var nupkg = Path.Combine(feed, $"DiffusionSharp.Tool.{version}.nupkg");
        Assert.True(File.Exists(nupkg), $"{nupkg} missing; feed has {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
        using (var zip = System.IO.Compression.ZipFile.OpenRead(nupkg))
        {
            var names = zip.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Contains("README.md", names);
            Assert.Contains(names, n => n.EndsWith("models/fashion-mnist/unet/diffusion_pytorch_model.safetensors", StringComparison.Ordinal));
            Assert.Contains(names, n => n.EndsWith("models/fashion-mnist-classifier/model.safetensors", StringComparison.Ordinal));
            var nuspec = new StreamReader(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open()).ReadToEnd();
            Assert.Contains("<license type=\"expression\">", nuspec);
            Assert.Contains("<readme>README.md</readme>", nuspec);
            Assert.DoesNotContain("Package Description", nuspec);
        }

        // Only the local feed: the install must not depend on what a public source serves.
        var nugetConfig = Path.Combine(_root, "nuget.config");
        File.WriteAllText(nugetConfig, $"<configuration><packageSources><clear /><add key=\"local\" value=\"{feed}\" /></packageSources></configuration>");
        (code, log) = Exec(dotnet, $"tool install DiffusionSharp.Tool --version {version} --tool-path \"{tools}\" --configfile \"{nugetConfig}\"", empty);
        Assert.True(code == 0, log);

        string exe = Path.Combine(tools, OperatingSystem.IsWindows() ? "diffusion.exe" : "diffusion");
        (code, log) = Exec(exe, "--version", empty);
        Assert.True(code == 0, log);
        Assert.Contains(version, log);
        (code, log) = Exec(exe, "sample -n 2 --steps 2 --threads 1 -o grid.png", empty);
        Assert.True(code == 0, log);
        var png = File.ReadAllBytes(Path.Combine(empty, "grid.png"));
        Assert.Equal(new byte[] { 137, 80, 78, 71 }, png[..4]);
        Assert.Contains("models", log);  // the model it used: the copy inside the tool package
        Assert.Contains(tools, log);
    }

    [Fact]
    public void LibraryPackageRunsTheSamplingExampleInAUsersProject()
    {
        var repo = RepoRoot();
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
        string config = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
        var version = XDocument.Load(Path.Combine(repo, "Directory.Build.props")).Descendants("Version").Single().Value;
        string feed = Path.Combine(_root, "feed"), app = Path.Combine(_root, "app");
        var (code, log) = Exec(dotnet, $"pack \"{Path.Combine(repo, "src", "DiffusionSharp")}\" -c {config} --no-build -o \"{feed}\"", repo);
        Assert.True(code == 0, log);
        Assert.True(File.Exists(Path.Combine(feed, $"DiffusionSharp.{version}.nupkg")), log);

        // A user's project outside the repository: the example's source, the package from the local feed.
        Directory.CreateDirectory(app);
        File.Copy(Path.Combine(repo, "examples", "SampleModel", "Program.cs"), Path.Combine(app, "Program.cs"));
        File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework><ImplicitUsings>enable</ImplicitUsings><Nullable>enable</Nullable></PropertyGroup>
              <ItemGroup><PackageReference Include="DiffusionSharp" Version="{version}" /></ItemGroup>
            </Project>
            """);
        // Sources: the fresh package, and the machine's package cache for its dependencies (no network needed).
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np ? np
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        File.WriteAllText(Path.Combine(app, "nuget.config"),
            $"<configuration><packageSources><clear /><add key=\"local\" value=\"{feed}\" /><add key=\"cache\" value=\"{cache}\" /></packageSources></configuration>");
        (code, log) = Exec(dotnet, $"run -c Release -- \"{Path.Combine(repo, "models", "fashion-mnist")}\" grid.png", app, 600);
        Assert.True(code == 0, log);
        Assert.Contains("wrote grid.png: 16 images of 28x28", log);
        Assert.True(File.Exists(Path.Combine(app, "grid.png")));
    }
}
