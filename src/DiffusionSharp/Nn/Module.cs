using DiffusionSharp.Tensors;

namespace DiffusionSharp.Nn;

/// <summary>
/// Base class of neural-network layers. Parameters and submodules are registered explicitly (no reflection);
/// state-dict names are the dotted registration path, e.g. <c>down_blocks.1.attentions.0.to_q.weight</c>.
/// </summary>
public abstract class Module
{
    private readonly List<KeyValuePair<string, Tensor>> _parameters = new();
    private readonly List<KeyValuePair<string, Module>> _modules = new();

    /// <summary>True in training mode (dropout active), false after <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Registers a parameter under <paramref name="name"/>; it requires grad unless <paramref name="trainable"/> is false.</summary>
    protected Tensor RegisterParameter(string name, Tensor tensor, bool trainable = true)
    {
        CheckName(name);
        tensor.RequiresGrad = trainable;
        tensor.Name = name;
        _parameters.Add(new(name, tensor));
        return tensor;
    }

    /// <summary>Registers a child module under <paramref name="name"/> (its names get the prefix <c>name.</c>).</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        ArgumentNullException.ThrowIfNull(module);
        CheckName(name);
        module.Training = Training;
        _modules.Add(new(name, module));
        return module;
    }

    private void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.'))
            throw new ArgumentException($"Invalid parameter/module name '{name}': must be non-empty and contain no '.'.");
        foreach (var p in _parameters) if (p.Key == name) throw new ArgumentException($"Name '{name}' is already registered as a parameter in {GetType().Name}.");
        foreach (var m in _modules) if (m.Key == name) throw new ArgumentException($"Name '{name}' is already registered as a module in {GetType().Name}.");
    }

    /// <summary>Direct children in registration order.</summary>
    public IEnumerable<KeyValuePair<string, Module>> NamedChildren() => _modules;

    /// <summary>This module and all descendants, depth first, with dotted names ("" for this module).</summary>
    public IEnumerable<KeyValuePair<string, Module>> NamedModules(string prefix = "")
    {
        yield return new(prefix, this);
        foreach (var (name, m) in _modules)
            foreach (var sub in m.NamedModules(prefix.Length == 0 ? name : prefix + "." + name))
                yield return sub;
    }

    /// <summary>Every parameter (own first, then children in registration order) with its full dotted name.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> NamedParameters(string prefix = "")
    {
        foreach (var (name, t) in _parameters)
            yield return new(prefix.Length == 0 ? name : prefix + "." + name, t);
        foreach (var (name, m) in _modules)
            foreach (var p in m.NamedParameters(prefix.Length == 0 ? name : prefix + "." + name))
                yield return p;
    }

    /// <summary>Every parameter tensor (trainable or not), in state-dict order.</summary>
    public IEnumerable<Tensor> Parameters() => NamedParameters().Select(p => p.Value);

    /// <summary>The parameters that receive gradients (what an optimizer should update).</summary>
    public IEnumerable<Tensor> TrainableParameters() => Parameters().Where(p => p.RequiresGrad);

    /// <summary>Total number of parameter elements (PyTorch's <c>sum(p.numel())</c>).</summary>
    public long ParameterCount => Parameters().Sum(p => (long)p.Size);

    /// <summary>Name to tensor, in registration order. The tensors are the live parameters (not copies).</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, t) in NamedParameters()) d[name] = t;
        return d;
    }

    /// <summary>
    /// Copies values from <paramref name="state"/> into the parameters. With <paramref name="strict"/>, missing and unexpected
    /// keys are errors; shape mismatches are always errors. All problems are reported together.
    /// </summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(state);
        var own = StateDict();
        var missing = own.Keys.Where(k => !state.ContainsKey(k)).ToList();
        var unexpected = state.Keys.Where(k => !own.ContainsKey(k)).ToList();
        var mismatched = new List<string>();
        foreach (var (name, t) in own)
            if (state.TryGetValue(name, out var src) && src.Shape != t.Shape)
                mismatched.Add($"'{name}': checkpoint has shape {src.Shape}, model expects {t.Shape}");
        var errors = new List<string>();
        if (mismatched.Count > 0) errors.Add($"{mismatched.Count} shape mismatch(es): " + string.Join("; ", mismatched));
        if (strict && missing.Count > 0) errors.Add($"{missing.Count} missing key(s): " + Abbrev(missing));
        if (strict && unexpected.Count > 0) errors.Add($"{unexpected.Count} unexpected key(s): " + Abbrev(unexpected));
        if (errors.Count > 0)
            throw new InvalidDataException($"Error loading state dict into {GetType().Name}: " + string.Join(". ", errors) + ".");
        foreach (var (name, t) in own)
            if (state.TryGetValue(name, out var src)) src.Span.CopyTo(t.Span);
    }

    private static string Abbrev(List<string> names, int max = 20) =>
        string.Join(", ", names.Take(max).Select(n => $"'{n}'")) + (names.Count > max ? $", ... ({names.Count - max} more)" : "");

    /// <summary>Sets training mode on this module and every descendant.</summary>
    public Module Train(bool mode = true)
    {
        foreach (var (_, m) in NamedModules()) m.Training = mode;
        return this;
    }

    /// <summary>Evaluation mode (dropout off) on this module and every descendant.</summary>
    public Module Eval() => Train(false);

    /// <summary>Clears the gradient of every parameter.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.ZeroGrad();
    }
}

/// <summary>An indexed list of modules, named <c>0</c>, <c>1</c>, ... like PyTorch's <c>nn.ModuleList</c>.</summary>
public sealed class ModuleList<T> : Module where T : Module
{
    private readonly List<T> _items = new();

    /// <summary>Appends <paramref name="module"/> under the next index.</summary>
    public T Add(T module)
    {
        RegisterModule(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
        _items.Add(module);
        return module;
    }

    /// <summary>Number of modules.</summary>
    public int Count => _items.Count;

    /// <summary>The module at <paramref name="index"/>.</summary>
    public T this[int index] => _items[index];

    /// <summary>The modules in order.</summary>
    public IReadOnlyList<T> Items => _items;
}
