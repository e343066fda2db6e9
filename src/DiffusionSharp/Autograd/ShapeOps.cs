using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>Sizes (outer, dim, inner) of the row-major layout around <paramref name="axis"/> (already resolved).</summary>
    internal (int Outer, int Len, int Inner) SplitAround(int axis)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < axis; i++) outer *= Shape[i];
        for (int i = axis + 1; i < Rank; i++) inner *= Shape[i];
        return (outer, Shape[axis], inner);
    }

    /// <summary>
    /// The same elements viewed with another shape; shares storage (no copy). One dimension may be -1 and is inferred.
    /// Backward reshapes the gradient back.
    /// </summary>
    public Tensor Reshape(params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var dims = (int[])shape.Clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"Cannot reshape {Shape} to [{string.Join(", ", shape)}]: only one dimension may be -1.");
                infer = i;
            }
            else if (dims[i] < 0) throw new ArgumentException($"Cannot reshape {Shape} to [{string.Join(", ", shape)}]: negative dimension.");
            else known *= dims[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || Size % known != 0)
                throw new ArgumentException($"Cannot reshape {Shape} ({Size} elements) to [{string.Join(", ", shape)}].");
            dims[infer] = (int)(Size / known);
        }
        else if (known != Size)
            throw new ArgumentException($"Cannot reshape {Shape} ({Size} elements) to [{string.Join(", ", shape)}] ({known} elements).");
        StorageRef.AddRef();
        var y = new Tensor(new Shape(dims), StorageRef);
        _ = Storage;  // throws if this tensor was disposed
        var x = this;
        y.Track(g => x.AccumulateGrad(g.Reshape(x.Shape.ToArray()), owned: true), this);
        return y;
    }

    /// <summary>Same as <see cref="Reshape"/>: a storage-sharing view with another shape.</summary>
    public Tensor View(params int[] shape) => Reshape(shape);

    /// <summary>A copy with dimensions reordered: output dimension i is input dimension axes[i].</summary>
    public Tensor Permute(params int[] axes)
    {
        ArgumentNullException.ThrowIfNull(axes);
        if (axes.Length != Rank) throw new ArgumentException($"Permute of shape {Shape} needs {Rank} axes, got [{string.Join(", ", axes)}].");
        var ax = new int[Rank];
        var seen = new bool[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int a = axes[i] < 0 ? axes[i] + Rank : axes[i];
            if (a < 0 || a >= Rank || seen[a]) throw new ArgumentException($"Permute axes [{string.Join(", ", axes)}] are not a permutation of the {Rank} axes of shape {Shape}.");
            seen[a] = true;
            ax[i] = a;
        }
        var outDims = new int[Rank];
        for (int i = 0; i < Rank; i++) outDims[i] = Shape[ax[i]];
        var y = Empty(new Shape(outDims));
        PermuteKernel(Storage, Shape, ax, y.Storage);
        var inv = new int[Rank];
        for (int i = 0; i < Rank; i++) inv[ax[i]] = i;
        var x = this;
        y.Track(g =>
        {
            var gx = Empty(x.Shape);
            PermuteKernel(g.Storage, g.Shape, inv, gx.Storage);
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }

    /// <summary>A copy with axes <paramref name="a"/> and <paramref name="b"/> swapped.</summary>
    public Tensor Transpose(int a, int b)
    {
        int ra = Shape.Axis(a), rb = Shape.Axis(b);
        var ax = new int[Rank];
        for (int i = 0; i < Rank; i++) ax[i] = i;
        (ax[ra], ax[rb]) = (ax[rb], ax[ra]);
        return Permute(ax);
    }

    // dst (contiguous, permuted shape) = src viewed through permuted strides.
    private static void PermuteKernel(float[] src, Shape srcShape, int[] axes, float[] dst)
    {
        int r = srcShape.Rank, n = srcShape.Size;
        if (n == 0) return;
        if (r == 0) { dst[0] = src[0]; return; }
        var st = srcShape.Strides();
        var dims = new int[r];
        var ss = new int[r];
        for (int i = 0; i < r; i++) { dims[i] = srcShape[axes[i]]; ss[i] = st[axes[i]]; }
        // Swapping the last two axes: blocked 2-D transposes keep both sides in cache.
        if (r >= 2 && axes[r - 2] == r - 1 && axes[r - 1] == r - 2 && IsIdentityPrefix(axes, r - 2))
        {
            int rows = dims[r - 1], cols = dims[r - 2], mat = rows * cols, batch = n / mat;
            Threading.For(batch, Math.Max(1, (1 << 14) / Math.Max(1, mat)), (s, e) =>
            {
                for (int bi = s; bi < e; bi++) Transpose2D(src.AsSpan(bi * mat, mat), dst.AsSpan(bi * mat, mat), rows, cols);
            });
            return;
        }
        int inner = dims[r - 1], innerStride = ss[r - 1];
        int outer = n / inner;
        Threading.For(outer, Math.Max(1, (1 << 14) / Math.Max(1, inner)), (s, e) =>
        {
            var idx = new int[r];
            int rem = s;
            for (int d = r - 2; d >= 0; d--) { idx[d] = rem % dims[d]; rem /= dims[d]; }
            for (int k = s; k < e; k++)
            {
                int so = 0;
                for (int d = 0; d < r - 1; d++) so += idx[d] * ss[d];
                var row = dst.AsSpan(k * inner, inner);
                if (innerStride == 1) src.AsSpan(so, inner).CopyTo(row);
                else for (int j = 0; j < inner; j++) row[j] = src[so + j * innerStride];
                for (int d = r - 2; d >= 0; d--) { if (++idx[d] < dims[d]) break; idx[d] = 0; }
            }
        });
    }

    private static bool IsIdentityPrefix(int[] axes, int count)
    {
        for (int i = 0; i < count; i++) if (axes[i] != i) return false;
        return true;
    }

    // dst[c, r] = src[r, c] for a rows x cols source, in 32 x 32 tiles.
    private static void Transpose2D(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        const int T = 32;
        for (int r0 = 0; r0 < rows; r0 += T)
        {
            int r1 = Math.Min(rows, r0 + T);
            for (int c0 = 0; c0 < cols; c0 += T)
            {
                int c1 = Math.Min(cols, c0 + T);
                for (int c = c0; c < c1; c++)
                {
                    var drow = dst.Slice(c * rows, rows);
                    for (int r = r0; r < r1; r++) drow[r] = src[r * cols + c];
                }
            }
        }
    }

    /// <summary>Concatenates tensors along <paramref name="axis"/>; all other dimensions must match.</summary>
    public static Tensor Concat(IReadOnlyList<Tensor> ts, int axis)
    {
        ArgumentNullException.ThrowIfNull(ts);
        if (ts.Count == 0) throw new ArgumentException("Concat needs at least one tensor.");
        var first = ts[0];
        int ax = first.Shape.Axis(axis);
        int total = 0;
        foreach (var t in ts)
        {
            bool ok = t.Rank == first.Rank;
            for (int i = 0; ok && i < first.Rank; i++) ok = i == ax || t.Shape[i] == first.Shape[i];
            if (!ok) throw new ArgumentException($"Concat along axis {axis}: shape {t.Shape} does not match shape {first.Shape} outside that axis.");
            total += t.Shape[ax];
        }
        var dims = first.Shape.ToArray();
        dims[ax] = total;
        var y = Empty(new Shape(dims));
        var (outer, _, inner) = y.SplitAround(ax);
        int yBlock = total * inner;
        int off = 0;
        foreach (var t in ts)
        {
            int block = t.Shape[ax] * inner;
            var src = t.Span;
            var dst = y.Span;
            for (int o = 0; o < outer; o++) src.Slice(o * block, block).CopyTo(dst.Slice(o * yBlock + off, block));
            off += block;
        }
        var inputs = ts.ToArray();
        y.Track(g =>
        {
            int o0 = 0;
            foreach (var t in inputs)
            {
                int block = t.Shape[ax] * inner;
                if (t.RequiresGrad)
                {
                    var gt = Empty(t.Shape);
                    var gs = g.Span;
                    var dst = gt.Span;
                    for (int o = 0; o < outer; o++) gs.Slice(o * yBlock + o0, block).CopyTo(dst.Slice(o * block, block));
                    t.AccumulateGrad(gt, owned: true);
                }
                o0 += block;
            }
        }, inputs);
        return y;
    }

    /// <summary>A copy of elements [start, start + length) along <paramref name="axis"/>.</summary>
    public Tensor Narrow(int axis, int start, int length)
    {
        int ax = Shape.Axis(axis);
        int d = Shape[ax];
        if (start < 0 || length < 0 || start + length > d)
            throw new ArgumentOutOfRangeException(nameof(start), $"Narrow [{start}, {start + length}) is outside axis {axis} of size {d} in shape {Shape}.");
        var dims = Shape.ToArray();
        dims[ax] = length;
        var y = Empty(new Shape(dims));
        var (outer, _, inner) = SplitAround(ax);
        int srcBlock = d * inner, block = length * inner, off = start * inner;
        var s = Span;
        var o = y.Span;
        for (int i = 0; i < outer; i++) s.Slice(i * srcBlock + off, block).CopyTo(o.Slice(i * block, block));
        var x = this;
        y.Track(g =>
        {
            var gx = Zeros(x.Shape);
            var gs = g.Span;
            var gd = gx.Span;
            for (int i = 0; i < outer; i++) gs.Slice(i * block, block).CopyTo(gd.Slice(i * srcBlock + off, block));
            x.AccumulateGrad(gx, owned: true);
        }, this);
        return y;
    }
}
