namespace DiffusionSharp.Web;

/// <summary>Settings of <c>diffusion serve</c>, parsed once at the command line.</summary>
public sealed record ServeOptions
{
    /// <summary>The bundled model folder (listed as <see cref="ModelCatalog.BundledId"/>), or null when none is installed.</summary>
    public string? BundledModel { get; init; }
    /// <summary>Folder whose sub-folders are model folders (<c>--models</c>), or null.</summary>
    public string? ModelsDirectory { get; init; }
    /// <summary>Folder whose sub-folders are training run folders (<c>--runs</c>), or null.</summary>
    public string? RunsDirectory { get; init; }
    /// <summary>TCP port (0: any free port).</summary>
    public int Port { get; init; } = 5000;
    /// <summary>Address to listen on: 127.0.0.1 unless <c>--host</c> says otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>Most images one request may ask for (the CLI's limit).</summary>
    public int MaxCount { get; init; } = SamplingEngine.MaxCount;
    /// <summary>Most sampler steps one request may ask for (the CLI's limit).</summary>
    public int MaxSteps { get; init; } = SamplingEngine.MaxSteps;
    /// <summary>Most requests waiting for the sampler at once; more are refused with 503.</summary>
    public int MaxWaiting { get; init; } = 64;
    /// <summary>Finished jobs whose images stay downloadable (oldest dropped first).</summary>
    public int KeepJobs { get; init; } = 32;
}
