using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors.Kernels;

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
        int n = srcShape.Size;
        if (n == 0) return;
        var (dimsIn, perm) = CoalescePermutation(srcShape.Dims, axes);
        int r = perm.Length;
        if (r <= 1) { src.AsSpan(0, n).CopyTo(dst); return; }
        var st = new Shape(dimsIn).Strides();
        var dims = new int[r];
        var ss = new int[r];
        for (int i = 0; i < r; i++) { dims[i] = dimsIn[perm[i]]; ss[i] = st[perm[i]]; }
        // A batched 2-D transpose (e.g. NCHW to NHWC, or swapping the last two axes): blocked tiles keep both sides in cache.
        if (perm[r - 2] == r - 1 && perm[r - 1] == r - 2 && IsIdentityPrefix(perm, r - 2))
        {
            int rows = dims[r - 1], cols = dims[r - 2], mat = rows * cols, batch = n / mat;
            if (batch == 1 && mat >= 2 * Kernels.ParallelMap.Grain)
            {
                // One big matrix: split its source rows over threads in tile-aligned bands.
                int bands = (rows + 31) / 32;
                Threading.For(bands, 1, (s, e) => Transpose2D(src, 0, dst, 0, rows, cols, s * 32, Math.Min(rows, e * 32)));
                return;
            }
            Threading.For(batch, Math.Max(1, Kernels.ParallelMap.Grain / Math.Max(1, mat)), (s, e) =>
            {
                for (int bi = s; bi < e; bi++) Transpose2D(src, bi * mat, dst, bi * mat, rows, cols, 0, rows);
            });
            return;
        }
        int inner = dims[r - 1], innerStride = ss[r - 1];
        int outer = n / inner;
        Threading.For(outer, Math.Max(1, Kernels.ParallelMap.Grain / Math.Max(1, inner)), (s, e) =>
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

    /// <summary>
    /// Simplifies a permutation: drops size-1 axes and merges input axes that stay adjacent and in order in the output.
    /// Returns the merged input dims and the permutation over them.
    /// </summary>
    internal static (int[] Dims, int[] Perm) CoalescePermutation(ReadOnlySpan<int> dims, int[] axes)
    {
        var keep = new List<int>();
        foreach (var a in axes) if (dims[a] != 1) keep.Add(a);
        // Runs of consecutive input axes in output order.
        var runs = new List<(int First, int Size)>();
        for (int i = 0; i < keep.Count; i++)
        {
            if (runs.Count > 0 && NextKept(dims, keep[i - 1]) == keep[i]) runs[^1] = (runs[^1].First, runs[^1].Size * dims[keep[i]]);
            else runs.Add((keep[i], dims[keep[i]]));
        }
        // New input axes are the runs ordered by their first input axis.
        var order = Enumerable.Range(0, runs.Count).OrderBy(i => runs[i].First).ToArray();
        var newDims = new int[runs.Count];
        var rank = new int[runs.Count];
        for (int j = 0; j < order.Length; j++) { newDims[j] = runs[order[j]].Size; rank[order[j]] = j; }
        return (newDims, rank);
    }

    // The next input axis after a whose size is not 1 (size-1 axes are skipped when merging).
    private static int NextKept(ReadOnlySpan<int> dims, int a)
    {
        int b = a + 1;
        while (b < dims.Length && dims[b] == 1) b++;
        return b;
    }

    private static bool IsIdentityPrefix(int[] axes, int count)
    {
        for (int i = 0; i < count; i++) if (axes[i] != i) return false;
        return true;
    }

    // dst[c, r] = src[r, c] for source rows [r0, r1) of a rows x cols matrix, in 32 x 32 tiles of 8 x 8 AVX blocks.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Transpose2D(float[] src, int srcOff, float[] dst, int dstOff, int rows, int cols, int r0, int r1)
    {
        const int T = 32;
        ref float ps = ref src[srcOff];
        ref float pd = ref dst[dstOff];
        bool avx = System.Runtime.Intrinsics.X86.Avx.IsSupported;
        for (int rb = r0; rb < r1; rb += T)
        {
            int re = Math.Min(r1, rb + T);
            for (int cb = 0; cb < cols; cb += T)
            {
                int ce = Math.Min(cols, cb + T);
                int rFull = avx ? rb + (re - rb) / 8 * 8 : rb, cFull = avx ? cb + (ce - cb) / 8 * 8 : cb;
                for (int r = rb; r < rFull; r += 8)
                    for (int c = cb; c < cFull; c += 8)
                        Transpose8x8(ref System.Runtime.CompilerServices.Unsafe.Add(ref ps, r * cols + c), cols,
                            ref System.Runtime.CompilerServices.Unsafe.Add(ref pd, c * rows + r), rows);
                // Edges (and everything without AVX): scalar.
                for (int c = cb; c < ce; c++)
                {
                    ref float drow = ref System.Runtime.CompilerServices.Unsafe.Add(ref pd, c * rows);
                    int rs = c < cFull ? rFull : rb;
                    for (int r = rs; r < re; r++)
                        System.Runtime.CompilerServices.Unsafe.Add(ref drow, r) = System.Runtime.CompilerServices.Unsafe.Add(ref ps, r * cols + c);
                }
            }
        }
    }

    // Transposes one 8 x 8 block: eight row loads, unpack / shuffle / 128-bit lane permutes, eight column stores.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(ref float s, int ls, ref float d, int ld)
    {
        var r0 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s);
        var r1 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)ls);
        var r2 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)(2 * ls));
        var r3 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)(3 * ls));
        var r4 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)(4 * ls));
        var r5 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)(5 * ls));
        var r6 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)(6 * ls));
        var r7 = System.Runtime.Intrinsics.Vector256.LoadUnsafe(ref s, (nuint)(7 * ls));
        var t0 = System.Runtime.Intrinsics.X86.Avx.UnpackLow(r0, r1);
        var t1 = System.Runtime.Intrinsics.X86.Avx.UnpackHigh(r0, r1);
        var t2 = System.Runtime.Intrinsics.X86.Avx.UnpackLow(r2, r3);
        var t3 = System.Runtime.Intrinsics.X86.Avx.UnpackHigh(r2, r3);
        var t4 = System.Runtime.Intrinsics.X86.Avx.UnpackLow(r4, r5);
        var t5 = System.Runtime.Intrinsics.X86.Avx.UnpackHigh(r4, r5);
        var t6 = System.Runtime.Intrinsics.X86.Avx.UnpackLow(r6, r7);
        var t7 = System.Runtime.Intrinsics.X86.Avx.UnpackHigh(r6, r7);
        var u0 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t0, t2, 0x44);
        var u1 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t0, t2, 0xEE);
        var u2 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t1, t3, 0x44);
        var u3 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t1, t3, 0xEE);
        var u4 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t4, t6, 0x44);
        var u5 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t4, t6, 0xEE);
        var u6 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t5, t7, 0x44);
        var u7 = System.Runtime.Intrinsics.X86.Avx.Shuffle(t5, t7, 0xEE);
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u0, u4, 0x20).StoreUnsafe(ref d);
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u1, u5, 0x20).StoreUnsafe(ref d, (nuint)ld);
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u2, u6, 0x20).StoreUnsafe(ref d, (nuint)(2 * ld));
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u3, u7, 0x20).StoreUnsafe(ref d, (nuint)(3 * ld));
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u0, u4, 0x31).StoreUnsafe(ref d, (nuint)(4 * ld));
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u1, u5, 0x31).StoreUnsafe(ref d, (nuint)(5 * ld));
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u2, u6, 0x31).StoreUnsafe(ref d, (nuint)(6 * ld));
        System.Runtime.Intrinsics.X86.Avx.Permute2x128(u3, u7, 0x31).StoreUnsafe(ref d, (nuint)(7 * ld));
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
        // split over the outer index (a batch's images) when the copy is large enough to pay for a fork
        var sources = ts.Select(t => t.Storage).ToArray();
        var blocks = ts.Select(t => t.Shape[ax] * inner).ToArray();
        var yd = y.Storage;
        void CopyOuter(int o0, int o1)
        {
            for (int i = 0, off = 0; i < sources.Length; off += blocks[i], i++)
                for (int o = o0; o < o1; o++) sources[i].AsSpan(o * blocks[i], blocks[i]).CopyTo(yd.AsSpan(o * yBlock + off, blocks[i]));
        }
        if (outer < 2 || y.Size < 2 * ParallelMap.Grain) CopyOuter(0, outer);
        else Threading.For(outer, Math.Max(1, ParallelMap.Grain / yBlock), CopyOuter);
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
