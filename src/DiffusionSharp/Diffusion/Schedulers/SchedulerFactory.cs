namespace DiffusionSharp.Diffusion.Schedulers;

/// <summary>Creates a scheduler from a diffusers <c>scheduler_config.json</c>, choosing the class by <c>_class_name</c>.</summary>
public static class SchedulerFactory
{
    /// <summary>The class names understood by <see cref="FromConfig(string)"/>.</summary>
    public static IReadOnlyList<string> SupportedClassNames { get; } = new[]
    {
        "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    };

    /// <summary>Parses <paramref name="json"/> and builds the scheduler named by its <c>_class_name</c>.</summary>
    public static Scheduler FromConfig(string json) => Create(SchedulerConfig.Parse(json));

    /// <summary>Builds the scheduler named by the config's <c>_class_name</c>.</summary>
    public static Scheduler Create(SchedulerConfig config)
    {
        var name = config.ClassName
            ?? throw new ArgumentException("Scheduler config has no _class_name; call the scheduler class's FromConfig directly.");
        return name switch
        {
            "DDPMScheduler" => new DDPMScheduler(config),
            "DDIMScheduler" => new DDIMScheduler(config),
            "DPMSolverMultistepScheduler" => new DPMSolverMultistepScheduler(config),
            "EulerDiscreteScheduler" => new EulerDiscreteScheduler(config),
            "EulerAncestralDiscreteScheduler" => new EulerAncestralDiscreteScheduler(config),
            "HeunDiscreteScheduler" => new HeunDiscreteScheduler(config),
            _ => throw new NotSupportedException($"Scheduler class '{name}' is not supported; expected one of {string.Join(", ", SupportedClassNames)}."),
        };
    }
}
