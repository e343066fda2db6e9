namespace DiffusionSharp.Tensors;

/// <summary>
/// Owns every tensor created on the current thread while it is the innermost scope, and disposes them when it ends, so
/// graph intermediates (activations, saved buffers, gradients) return their storage to <see cref="TensorPool"/> at once
/// instead of waiting for the garbage collector: <c>using var scope = TensorScope.Begin(); ...; return scope.Keep(result);</c>.
/// Leaf gradients, optimizer moments and EMA weights take the ownership of the tensor they belong to, so a scoped training
/// step keeps them. Scopes nest and must end innermost first, on the thread that began them.
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? t_current;

    private readonly TensorScope? _parent;
    private readonly int _threadId;
    private List<Tensor> _owned = new();
    private bool _ended;

    private TensorScope(TensorScope? parent)
    {
        _parent = parent;
        _threadId = Environment.CurrentManagedThreadId;
    }

    /// <summary>Starts a scope that owns the tensors created on this thread until it is disposed.</summary>
    public static TensorScope Begin()
    {
        var s = new TensorScope(t_current);
        t_current = s;
        return s;
    }

    /// <summary>
    /// Starts a region in which new tensors belong to no scope (for state that must outlive the enclosing scopes);
    /// disposing the result restores the previous scope.
    /// </summary>
    public static IDisposable Suspend() => new Suspension(t_current);

    /// <summary>The innermost active scope of this thread, or null.</summary>
    public static TensorScope? Current => t_current;

    /// <summary>Number of live tensors this scope will dispose when it ends.</summary>
    public int OwnedCount
    {
        get
        {
            int n = 0;
            foreach (var t in _owned) if (ReferenceEquals(t.Owner, this) && !t.IsDisposed) n++;
            return n;
        }
    }

    /// <summary>Whether <paramref name="tensor"/> is owned by this scope (and would be disposed when it ends).</summary>
    public bool Owns(Tensor tensor) => ReferenceEquals(tensor.Owner, this);

    /// <summary>
    /// Moves <paramref name="tensor"/> out of this scope into the enclosing one (or to no scope at all), so it survives this
    /// scope's end; a tensor this scope does not own is left as it is. Returns the tensor.
    /// </summary>
    public Tensor Keep(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!ReferenceEquals(tensor.Owner, this)) return tensor;
        if (_parent != null) _parent.Add(tensor);
        else tensor.Owner = null;
        return tensor;
    }

    /// <summary>Takes <paramref name="tensor"/> out of whatever scope owns it; it then lives until disposed explicitly or collected.</summary>
    public static Tensor Persist(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        tensor.Owner = null;
        return tensor;
    }

    /// <summary>Gives <paramref name="tensor"/> the owner of <paramref name="like"/> (state belonging to a parameter lives as long as it).</summary>
    internal static Tensor OwnLike(Tensor tensor, Tensor like)
    {
        var owner = like.Owner;
        if (ReferenceEquals(tensor.Owner, owner)) return tensor;
        if (owner == null || owner._ended) tensor.Owner = null;
        else owner.Add(tensor);
        return tensor;
    }

    internal static void OnCreated(Tensor tensor) => t_current?.Add(tensor);

    private void Add(Tensor tensor)
    {
        tensor.Owner = this;
        _owned.Add(tensor);
    }

    /// <summary>Disposes every tensor still owned by this scope and makes the enclosing scope current again.</summary>
    public void Dispose()
    {
        if (_ended) return;
        if (Environment.CurrentManagedThreadId != _threadId)
            throw new InvalidOperationException("A TensorScope must end on the thread that began it.");
        if (!ReferenceEquals(t_current, this))
            throw new InvalidOperationException("TensorScopes must end innermost first; an inner scope (or suspension) is still active.");
        _ended = true;
        t_current = _parent;
        var owned = _owned;
        _owned = new List<Tensor>();
        foreach (var t in owned)
        {
            if (!ReferenceEquals(t.Owner, this)) continue;  // kept, moved or persisted since
            t.Owner = null;
            t.Dispose();
        }
    }

    private sealed class Suspension : IDisposable
    {
        private readonly TensorScope? _saved;
        private bool _done;

        public Suspension(TensorScope? saved)
        {
            _saved = saved;
            t_current = null;
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            t_current = _saved;
        }
    }
}
