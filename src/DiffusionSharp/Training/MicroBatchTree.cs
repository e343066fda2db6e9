using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Training;

/// <summary>
/// A node of the fixed binary tree over the <see cref="Leaves"/> micro-batches of a global batch: node (d, i) covers
/// micro-batches [Base + floor(Leaves i / 2^d), Base + floor(Leaves (i + 1) / 2^d)); its children are (d + 1, 2i) and
/// (d + 1, 2i + 1). Rank r of 2^L ranks holds node (L, r), so its part of the sum is a subtree of the one-process sum.
/// </summary>
internal readonly record struct TreeNode(int Leaves, int Base, int Depth, long Index)
{
    public int Lo => Base + (int)((long)Leaves * Index >> Depth);
    public int Hi => Base + (int)((long)Leaves * (Index + 1) >> Depth);
    public int Count => Hi - Lo;
    public TreeNode Left => this with { Depth = Depth + 1, Index = 2 * Index };
    public TreeNode Right => this with { Depth = Depth + 1, Index = 2 * Index + 1 };
}

/// <summary>
/// Adds the gradients of a tree node's micro-batches in the tree's order, so the float32 result depends on the global
/// batch and the micro-batch size only, not on how the batch is split over ranks or threads. The last micro-batch's
/// gradients are combined with the finished left subtrees parameter by parameter as backward makes them final, so a
/// data-parallel all-reduce can still start while backward runs.
/// </summary>
internal sealed class MicroBatchTree
{
    private readonly Tensor[] _params;
    private readonly Dictionary<Tensor, int> _index = new(ReferenceEqualityComparer.Instance);
    private readonly int[] _offset;
    private readonly int _total;
    private readonly Stack<float[]> _free = new();
    private readonly List<float[]> _spine = new();
    private readonly bool[] _combined;

    public MicroBatchTree(Tensor[] parameters)
    {
        _params = parameters;
        _offset = new int[parameters.Length];
        _combined = new bool[parameters.Length];
        long total = 0;
        for (int i = 0; i < parameters.Length; i++)
        {
            _index[parameters[i]] = i;
            _offset[i] = (int)total;
            total += parameters[i].Size;
        }
        _total = checked((int)total);
    }

    /// <summary>
    /// Leaves in every parameter's <see cref="Tensor.Grad"/> the sum over <paramref name="root"/>'s micro-batches of their
    /// gradients (zeros where the loss reached no parameter). <paramref name="runLeaf"/>(m, hook) runs forward and backward
    /// of micro-batch m, calling hook when a parameter's gradient is final; <paramref name="onFinal"/> sees each parameter
    /// once its node sum is complete, during the last micro-batch's backward.
    /// </summary>
    public void Run(TreeNode root, Action<int, Action<Tensor>?> runLeaf, Action<Tensor>? onFinal)
    {
        if (root.Count < 1) throw new ArgumentException("A tree node without micro-batches has no gradient.", nameof(root));
        _spine.Clear();
        Array.Clear(_combined);
        var node = root;
        while (node.Count > 1)
        {
            var (l, r) = (node.Left, node.Right);
            if (r.Count == 0) { node = l; continue; }
            if (l.Count == 0) { node = r; continue; }
            _spine.Add(Full(l, runLeaf));  // (left) + (right): the right subtree is finished below, on the way to the last micro-batch
            node = r;
        }
        runLeaf(node.Lo, p =>
        {
            if (Combine(p)) onFinal?.Invoke(p);
        });
        foreach (var p in _params) Combine(p);
        foreach (var b in _spine) _free.Push(b);
        _spine.Clear();
    }

    // p's gradient := spine[0] + (spine[1] + (... + (spine[k-1] + p's gradient))), once.
    private bool Combine(Tensor p)
    {
        if (!_index.TryGetValue(p, out int i) || _combined[i]) return false;
        _combined[i] = true;
        p.Grad ??= TensorScope.OwnLike(Tensor.Zeros(p.Shape), p);
        var g = p.Grad.Span;
        for (int s = _spine.Count - 1; s >= 0; s--) TensorPrimitives.Add(_spine[s].AsSpan(_offset[i], g.Length), g, g);
        return true;
    }

    // The node's gradient sum in a flat buffer: one micro-batch at a leaf, else left + right.
    private float[] Full(TreeNode node, Action<int, Action<Tensor>?> runLeaf)
    {
        if (node.Count == 1)
        {
            runLeaf(node.Lo, null);
            var buf = _free.Count > 0 ? _free.Pop() : GC.AllocateUninitializedArray<float>(_total);
            for (int i = 0; i < _params.Length; i++)
            {
                var dst = buf.AsSpan(_offset[i], _params[i].Size);
                if (_params[i].Grad is Tensor g) g.Span.CopyTo(dst);
                else dst.Clear();
                _params[i].ZeroGrad();
            }
            return buf;
        }
        var (l, r) = (node.Left, node.Right);
        if (r.Count == 0) return Full(l, runLeaf);
        if (l.Count == 0) return Full(r, runLeaf);
        var a = Full(l, runLeaf);
        var b = Full(r, runLeaf);
        TensorPrimitives.Add(a, b, a);
        _free.Push(b);
        return a;
    }
}
