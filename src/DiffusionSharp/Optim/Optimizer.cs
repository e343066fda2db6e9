using DiffusionSharp.Tensors;

namespace DiffusionSharp.Optim;

/// <summary>
/// Base of the optimizers: holds leaf parameters (RequiresGrad), reads their <see cref="Tensor.Grad"/>,
/// and updates <see cref="Tensor.Span"/> in place without recording a graph.
/// </summary>
public abstract class Optimizer
{
    /// <summary>The parameters being optimised, in a fixed order (state is keyed by index).</summary>
    public IReadOnlyList<Tensor> Parameters { get; }

    /// <summary>Learning rate used by the next <see cref="Step"/>; set it each step for a schedule.</summary>
    public double LearningRate { get; set; }

    /// <summary>Checks the parameters and takes a copy of the list.</summary>
    protected Optimizer(IReadOnlyList<Tensor> parameters, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i] ?? throw new ArgumentException($"Parameter {i} is null.", nameof(parameters));
            if (!p.IsLeaf) throw new ArgumentException($"Parameter {i} {p.Shape} is not a leaf tensor; optimise leaves only.", nameof(parameters));
            if (!seen.Add(p)) throw new ArgumentException($"Parameter {i} {p.Shape} appears more than once.", nameof(parameters));
        }
        if (!(learningRate >= 0)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "Learning rate must be >= 0.");
        Parameters = parameters.ToArray();
        LearningRate = learningRate;
    }

    /// <summary>Applies one update to every parameter that has a gradient.</summary>
    public abstract void Step();

    /// <summary>Clears every parameter's gradient (sets it to null, like PyTorch's set_to_none).</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters) p.ZeroGrad();
    }

    /// <summary>The optimizer state as named tensors (copies), for checkpoints.</summary>
    public abstract Dictionary<string, Tensor> StateDict(string prefix = "");

    /// <summary>Restores state written by <see cref="StateDict"/>; throws <see cref="InvalidDataException"/> on missing or mis-shaped entries.</summary>
    public abstract void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, string prefix = "");

    /// <summary>Name of a parameter in messages: its Name if set, else its index.</summary>
    protected string Describe(int i) => Parameters[i].Name is { } n ? $"parameter {i} '{n}' {Parameters[i].Shape}" : $"parameter {i} {Parameters[i].Shape}";
}
