using DiffusionSharp.Tensors;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    private bool _requiresGrad;

    /// <summary>Parents in the autograd graph (null for leaves).</summary>
    internal Tensor[]? Parents;

    /// <summary>Receives d(loss)/d(this) and accumulates into the parents' grads.</summary>
    internal Action<Tensor>? BackwardFn;

    /// <summary>Whether gradients flow to this tensor. Settable on leaves only.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (BackwardFn != null && !value) throw new InvalidOperationException($"Cannot clear RequiresGrad on non-leaf tensor {Shape}; use Detach().");
            _requiresGrad = value;
        }
    }

    /// <summary>Accumulated gradient after <see cref="Backward"/> (same shape as this tensor).</summary>
    public Tensor? Grad { get; set; }

    /// <summary>True for tensors not produced by a recorded operation.</summary>
    public bool IsLeaf => BackwardFn == null;

    /// <summary>
    /// Records <paramref name="backward"/> for this freshly computed output if grad mode is on and any input needs a gradient.
    /// Returns whether it was recorded, so ops can skip saving tensors for backward otherwise.
    /// </summary>
    internal bool Track(Action<Tensor> backward, params Tensor[] inputs)
    {
        if (!Autograd.GradMode.Enabled) return false;
        bool any = false;
        foreach (var t in inputs) any |= t._requiresGrad;
        if (!any) return false;
        _requiresGrad = true;
        Parents = inputs;
        BackwardFn = backward;
        return true;
    }

    /// <summary>
    /// Adds <paramref name="g"/> to this tensor's gradient, asserting its shape.
    /// <paramref name="owned"/> means g is a fresh tensor that may be kept rather than copied.
    /// </summary>
    internal void AccumulateGrad(Tensor g, bool owned)
    {
        if (!_requiresGrad) { if (owned) g.Dispose(); return; }
        if (g.Shape != Shape)
            throw new InvalidOperationException($"Gradient of shape {g.Shape} does not match tensor of shape {Shape}{(Name != null ? $" '{Name}'" : "")}.");
        if (Grad == null)
        {
            // A leaf's gradient lives as long as the leaf, not as long as the scope that ran backward.
            Grad = TensorScope.OwnLike(owned ? g : g.Clone(), this);
            return;
        }
        DiffusionSharp.Tensors.Kernels.Elementwise.AddInPlace(Grad.Span, g.Span);
        if (owned) g.Dispose();
    }

    /// <summary>
    /// Back-propagates from this tensor. A one-element tensor is seeded with 1; otherwise pass <paramref name="gradient"/>.
    /// Leaf gradients accumulate; the graph is released afterwards. With <paramref name="releaseIntermediates"/> each
    /// intermediate tensor's storage returns to the pool as soon as its backward has run (reading it afterwards throws),
    /// so memory falls during the backward pass instead of peaking at its end. <paramref name="onLeafGradReady"/> is called
    /// for each leaf that requires grad as soon as its gradient is final (every consumer's backward has run), e.g. to
    /// start reducing it while the rest of the backward pass still runs.
    /// </summary>
    public void Backward(Tensor? gradient = null, bool releaseIntermediates = false, Action<Tensor>? onLeafGradReady = null)
    {
        if (!_requiresGrad) throw new InvalidOperationException($"Backward() on tensor {Shape} that does not require grad.");
        if (gradient == null)
        {
            if (Size != 1) throw new InvalidOperationException($"Backward() without a gradient needs a one-element tensor, got {Shape}.");
            gradient = Full(Shape, 1f);
        }
        else
        {
            gradient.ExpectShape(Shape, "gradient");
            gradient = gradient.Clone();
        }

        var order = TopologicalOrder(this);
        if (IsLeaf) { AccumulateGrad(gradient, owned: true); onLeafGradReady?.Invoke(this); return; }
        Grad = gradient;
        using (Autograd.GradMode.NoGrad())
        {
            for (int i = order.Count - 1; i >= 0; i--)
            {
                var node = order[i];
                var fn = node.BackwardFn;
                if (fn == null)
                {
                    // reverse topological order: a leaf comes after every node that consumed it
                    if (onLeafGradReady != null && node._requiresGrad) onLeafGradReady(node);
                    continue;
                }
                var g = node.Grad;
                node.Grad = null;  // non-leaf grads are not retained
                node.BackwardFn = null;
                node.Parents = null;
                if (g != null)
                {
                    fn(g);
                    g.Dispose();
                }
                if (releaseIntermediates && !ReferenceEquals(node, this)) node.ReleaseData();  // every consumer's backward has run
            }
        }
    }

    private static List<Tensor> TopologicalOrder(Tensor root)
    {
        var order = new List<Tensor>();
        var visited = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor node, bool expanded)>();
        stack.Push((root, false));
        while (stack.Count > 0)
        {
            var (node, expanded) = stack.Pop();
            if (expanded) { order.Add(node); continue; }
            if (!visited.Add(node)) continue;
            stack.Push((node, true));
            if (node.Parents != null)
                foreach (var p in node.Parents)
                    if (p._requiresGrad && !visited.Contains(p)) stack.Push((p, false));
        }
        return order;
    }

    /// <summary>Clears the gradient.</summary>
    public void ZeroGrad()
    {
        Grad?.Dispose();
        Grad = null;
    }
}
