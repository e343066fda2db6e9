using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors.Kernels;

/// <summary>
/// Winograd F(m x m, 3x3) convolution for 3x3 stride-1 layers (Lavin and Gray 2016), m = 2 or 4: each (m+2)^2 input tile d
/// and 3x3 filter g give the m x m output Y = A^T [(G g G^T) . (B^T d B)] A, so the channel sums become (m+2)^2 GEMMs with
/// 2.25x (m = 2) or 4x (m = 4) fewer multiply-adds than im2col. Data are staged channel-last so every transform runs on
/// 8-channel vectors. The channel sums are blocked (<see cref="SumBlock"/>): with F(2x2) this keeps the float32 error at or
/// below direct convolution's, while F(4x4)'s larger transform coefficients amplify it several times.
/// </summary>
internal static unsafe class Winograd
{
    private const int Lanes = 8;

    /// <summary>Whether the F(2x2) transforms and the F(4x4) input and gradient transforms use 512-bit vectors where the CPU has them (16 channels per vector); the
    /// results are the same bit for bit, since each lane runs the same operations. Settable so tests cover both widths.</summary>
    internal static bool Wide = V512.Accelerated;

    /// <summary>Channel (or tile) sums run in blocks of this many terms, each summed in registers and then added to the total.</summary>
    internal const int SumBlock = 16;

    /// <summary>Smallest input and output channel count for which the transforms pay off.</summary>
    internal const int MinChannels = 16;

    /// <summary>Default tiles per work chunk (tests pass smaller ones to exercise chunk boundaries).</summary>
    internal const int DefaultChunkTiles = 96;

    /// <summary>True when this kernel can compute <paramref name="s"/> (3x3, stride 1, padding at most 2, 256-bit vectors).</summary>
    internal static bool Supports(in ConvShape s) =>
        Vector256.IsHardwareAccelerated && s.Kh == 3 && s.Kw == 3 && s.Stride == 1 && s.Pad <= 2 && s.Ho >= 1 && s.Wo >= 1;

    /// <summary>True when <see cref="Convolution"/> should route <paramref name="s"/> here.</summary>
    internal static bool Applies(in ConvShape s) => Supports(s) && s.Cin >= MinChannels && s.Cout >= MinChannels;

    private static int RoundUp(int v, int m) => (v + m - 1) / m * m;

    // Tile grid of one image: th x tw tiles of m x m outputs, each read from an (m+2) x (m+2) window.
    private readonly record struct Grid(int Th, int Tw, int M)
    {
        public int PerImage => Th * Tw;
        public int A => M + 2;
        public int Xi => (M + 2) * (M + 2);
    }

    private static Grid GridOf(in ConvShape s, int m) => new((s.Ho + m - 1) / m, (s.Wo + m - 1) / m, m);

    private static void CheckTile(int m)
    {
        if (m != 2 && m != 4) throw new ArgumentOutOfRangeException(nameof(m), $"Winograd output tile must be 2 or 4, got {m}.");
    }

    /// <summary>Multiply-adds times two that the (m+2)^2 GEMMs of one Winograd pass of <paramref name="s"/> execute.</summary>
    internal static double GemmFlops(in ConvShape s, int m)
    {
        var g = GridOf(s, m);
        return 2.0 * g.Xi * s.N * g.PerImage * s.Cin * s.Cout;
    }

    /// <summary>Bytes of transformed input and product tiles one F(2x2) chunk may hold (they stay in a core's L2 between the transforms and the GEMMs).</summary>
    internal const int ChunkBytes = 512 * 1024;

    // Most tiles per chunk whose (m+2)^2 input and product planes fit ChunkBytes (F(2x2) only; F(4x4) keeps DefaultChunkTiles).
    private static int FootprintTiles(Grid g, int cinP, int coutP) =>
        g.M != 2 ? DefaultChunkTiles : Math.Clamp(ChunkBytes / (g.Xi * (cinP + coutP) * sizeof(float)), 12, DefaultChunkTiles);

    // Tiles per chunk: a multiple of the GEMM row tile, at most chunkTiles, and as many chunks as a multiple of the thread
    // count so that every thread gets the same share (3 chunks on 2 threads would take as long as 4).
    internal static int ChunkSize(int total, int chunkTiles)
    {
        int tc = Math.Max(6, chunkTiles / 6 * 6), threads = Threading.Threads;
        int chunks = RoundUp((total + tc - 1) / tc, threads);
        return Math.Max(6, Math.Min(tc, RoundUp((total + chunks - 1) / chunks, 6)));
    }

    /// <summary>y = conv(x, w) + bias for a 3x3 stride-1 layer (<see cref="Supports"/> must hold) with output tiles m x m.</summary>
    /// <remarks>With <paramref name="reuseFilters"/> the transformed filters are kept for later calls with the same filters (inference).</remarks>
    internal static void Forward(ConvShape s, int m, float* x, float* w, float* bias, float* y, int chunkTiles = DefaultChunkTiles, bool reuseFilters = false) =>
        Convolve(s, m, x, w, s.Cout, s.Cin, flip: false, bias, y, chunkTiles, reuseFilters);

    /// <summary>gx = conv^T(gy, w) for a 3x3 stride-1 layer: a Winograd convolution of gy with the flipped, transposed filters.</summary>
    internal static void BackwardData(ConvShape s, int m, float* w, float* gy, float* gx, int chunkTiles = DefaultChunkTiles) =>
        Convolve(new ConvShape(s.N, s.Cout, s.Ho, s.Wo, s.Cin, 3, 3, 1, 2 - s.Pad), m, gy, w, s.Cout, s.Cin, flip: true, null, gx, chunkTiles, reuse: false);

    /// <summary>
    /// gx and gw (either may be null) of a 3x3 stride-1 layer: as <see cref="BackwardData"/> and <see cref="BackwardWeight"/>,
    /// with padding 1 staging gy once for both (the weight gradient reads its tiles from the data gradient's padded copy).
    /// </summary>
    internal static void Backward(ConvShape s, int m, float* x, float* w, float* gy, float* gx, float* gw, int chunkTiles = DefaultChunkTiles)
    {
        if (gx == null || gw == null || s.Pad != 1)
        {
            if (gx != null) BackwardData(s, m, w, gy, gx, chunkTiles);
            if (gw != null) BackwardWeight(s, m, x, gy, gw, chunkTiles);
            return;
        }
        CheckTile(m);
        var t = new ConvShape(s.N, s.Cout, s.Ho, s.Wo, s.Cin, 3, 3, 1, 2 - s.Pad);
        var grid = GridOf(t, m);
        int coutP = RoundUp(s.Cout, Lanes);
        var gyp = TensorPool.Rent(PaddedInputLength(t, grid, coutP), clear: false);
        try
        {
            fixed (float* pg = gyp)
            {
                StageInput(t, grid, gy, coutP, pg);
                Convolve(t, m, gy, w, s.Cout, s.Cin, flip: true, null, gx, chunkTiles, reuse: false, staged: pg);
                BackwardWeight(s, m, x, gy, gw, chunkTiles, gyPadded: pg);
            }
        }
        finally { TensorPool.Return(gyp); }
    }

    // One Winograd convolution of x (layout t) with the [wOut, wIn, 3, 3] filters w, flipped and transposed when flip; x already
    // staged (StageInput) when `staged` is given.
    private static void Convolve(ConvShape t, int m, float* x, float* w, int wOut, int wIn, bool flip, float* bias, float* y, int chunkTiles, bool reuse,
        float* staged = null)
    {
        CheckTile(m);
        int cinP = RoundUp(t.Cin, Lanes), coutP = RoundUp(t.Cout, Lanes);
        var grid = GridOf(t, m);
        var kind = Gemm.KernelFor(t.Cout);
        int panel = Gemm.PackedLength(kind, t.Cin, t.Cout);
        // 16 spare floats: the micro-kernels load the packed panels from 64-byte aligned addresses
        var cached = reuse && !flip ? CachedFilters(w, wOut, wIn, m, kind, grid.Xi * panel + 16) : null;
        var packed = cached ?? TensorPool.Rent(grid.Xi * panel + 16, clear: false);
        var bp = new float[coutP];
        if (bias != null) new ReadOnlySpan<float>(bias, t.Cout).CopyTo(bp);
        try
        {
            fixed (float* pk0 = packed, pbp = bp)
            {
                float* pk = Aligned(pk0);
                if (cached == null) PackedFilters(w, wOut, wIn, flip, m, t.Cin, t.Cout, kind, pk);
                // without a staged copy each chunk stages the rows its tiles read (see Run)
                Run(t, grid, staged, staged == null ? x : null, cinP, pk, panel, kind, pbp, y, coutP, chunkTiles);
            }
        }
        finally
        {
            if (cached == null) TensorPool.Return(packed);
        }
    }

    // The (m+2)^2 transformed filter matrices u[xi] [cin x cout], each packed once into the GEMM's column panels.
    private static void PackedFilters(float* w, int wOut, int wIn, bool flip, int m, int cin, int cout, GemmKernel kind, float* packed)
    {
        int xi = (m + 2) * (m + 2), panel = Gemm.PackedLength(kind, cin, cout), step = PlaneStride(cin * cout);
        var u = TensorPool.Rent(xi * step, clear: false);
        try
        {
            fixed (float* pu = u)
            {
                TransformWeights(w, wOut, wIn, flip, m, pu, step);
                nint au = (nint)pu, ap = (nint)packed;
                Threading.For(xi, 2, (k0, k1) =>
                {
                    for (int k = k0; k < k1; k++)
                        Gemm.PackPanels(kind, (float*)au + (nint)k * step, cout, cin, cout, (float*)ap + (nint)k * panel);
                });
            }
        }
        finally { TensorPool.Return(u); }
    }

    // Packed transformed filters of inference passes, reused while a layer's filters are unchanged (sampling runs the same
    // weights through every step). Each use compares the filters element by element with the copy they were transformed
    // from (the cost of one copy, a fraction of the transform), so in-place changes (a loaded checkpoint, swapped-in EMA
    // weights) are seen; inside a frozen-weights scope (Convolution.FrozenWeights) only the first use in the scope compares.
    private sealed class FilterEntry(float[] raw, float[] packed)
    {
        public readonly float[] Raw = raw, Packed = packed;
        // the frozen-weights scope in which these filters were last found unchanged (0: none)
        public long Verified;
    }

    private static long s_frozenScopes;
    [ThreadStatic] private static long t_frozenScope;

    /// <summary>Opens a frozen-weights scope on this thread (nested scopes join the outermost); see <see cref="Convolution.FrozenWeights"/>.</summary>
    internal static IDisposable FreezeFilters() => new FrozenScope();

    private sealed class FrozenScope : IDisposable
    {
        private readonly long _previous;
        private bool _done;

        public FrozenScope()
        {
            _previous = t_frozenScope;
            if (_previous == 0) t_frozenScope = Interlocked.Increment(ref s_frozenScopes);
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            t_frozenScope = _previous;
        }
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(nint, int, int, int, GemmKernel), FilterEntry> s_filters = new();
    private static long s_filterFloats;

    /// <summary>Most floats the transformed-filter cache holds (raw copies included) before it starts over.</summary>
    internal const long MaxCachedFilterFloats = 48L << 20;

    // Packed u for the [cout, cin, 3, 3] filters at w (forward orientation), from the cache when they are unchanged.
    private static float[] CachedFilters(float* w, int cout, int cin, int m, GemmKernel kind, int length)
    {
        var key = ((nint)w, cout, cin, m, kind);
        var raw = new ReadOnlySpan<float>(w, cout * cin * 9);
        long scope = t_frozenScope;
        if (s_filters.TryGetValue(key, out var hit) && ((scope != 0 && Volatile.Read(ref hit.Verified) == scope) || Unchanged(w, hit.Raw)))
        {
            if (scope != 0) Volatile.Write(ref hit.Verified, scope);
            return hit.Packed;
        }
        var packed = GC.AllocateUninitializedArray<float>(length, pinned: true);
        fixed (float* pk = packed) PackedFilters(w, cout, cin, false, m, cin, cout, kind, Aligned(pk));
        var entry = new FilterEntry(raw.ToArray(), packed) { Verified = scope };
        long size = entry.Raw.Length + (long)packed.Length;
        // a replaced entry frees its own floats; counted before the bound check so a clear does not subtract them again
        long replaced = hit == null ? 0 : hit.Raw.Length + (long)hit.Packed.Length;
        if (Interlocked.Add(ref s_filterFloats, size - replaced) > MaxCachedFilterFloats)
        {
            s_filters.Clear();
            Interlocked.Exchange(ref s_filterFloats, size);
        }
        s_filters[key] = entry;
        return packed;
    }

    // raw equals w[0, raw.Length), compared in parallel (a bandwidth-bound pass that batch-1 inference makes for every layer).
    private static bool Unchanged(float* w, float[] raw)
    {
        int mismatches = 0;
        nint pw = (nint)w;
        Threading.For(raw.Length, 32 * 1024, (i0, i1) =>
        {
            if (!new ReadOnlySpan<float>((float*)pw + i0, i1 - i0).SequenceEqual(raw.AsSpan(i0, i1 - i0))) Interlocked.Increment(ref mismatches);
        });
        return mismatches == 0;
    }

    private static float* Aligned(float* p) => (float*)(((nint)p + 63) & ~(nint)63);

    // Distance between the (m+2)^2 planes of a transformed-filter buffer: one cache line more than a plane, so that the 36 stores
    // of one filter vector do not all map to one cache set (planes of 64x64 or 128x128 filters are multiples of 16 KiB apart).
    private static int PlaneStride(int size) => size + 16;

    private static int PaddedInputLength(in ConvShape s, Grid g, int cinP) => s.N * (g.Th * g.M + 2) * (g.Tw * g.M + 2) * cinP;

    // u[xi][ci][co] = (G g G^T)[xi] of filter w[co][ci] (flip: of the 180-degree-rotated w[ci][co] for the data gradient),
    // 8 filters per vector. u[.][r][c] is written row by row, so stores stay contiguous: (r, c) = (ci, co), or (co, ci) flipped;
    // the (m+2)^2 planes start planeStride floats apart.
    private static void TransformWeights(float* w, int cout, int cin, bool flip, int m, float* u, int planeStride)
    {
        int rows = flip ? cout : cin, cols = flip ? cin : cout, a = m + 2;
        nint pw = (nint)w, pu = (nint)u, step = planeStride;
        // Distance between the 9 taps of filters c and c + 1 along a row of u.
        nint fs = flip ? 9 : (nint)cin * 9;
        Threading.For(rows, 8, (r0, r1) =>
        {
            var g = stackalloc Vector256<float>[9];
            var t = stackalloc Vector256<float>[18];
            var row = stackalloc Vector256<float>[6];
            float* lane = stackalloc float[Lanes];
            for (int r = r0; r < r1; r++)
            {
                float* row0 = flip ? (float*)pw + (nint)r * cin * 9 : (float*)pw + (nint)r * 9;
                float* o = (float*)pu + (nint)r * cols;
                for (int c = 0; c < cols; c += Lanes)
                {
                    int n = Math.Min(Lanes, cols - c);
                    float* f = row0 + c * fs;
                    if (n == Lanes)
                    {
                        // Taps 0-7 of the 8 filters are the rows of an 8x8 block: one transpose gives a vector per tap; tap 8 is gathered.
                        var v0 = Vector256.Load(f); var v1 = Vector256.Load(f + fs); var v2 = Vector256.Load(f + 2 * fs); var v3 = Vector256.Load(f + 3 * fs);
                        var v4 = Vector256.Load(f + 4 * fs); var v5 = Vector256.Load(f + 5 * fs); var v6 = Vector256.Load(f + 6 * fs); var v7 = Vector256.Load(f + 7 * fs);
                        Transpose.Block8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
                        var v8 = Vector256.Create(f[8], f[fs + 8], f[2 * fs + 8], f[3 * fs + 8], f[4 * fs + 8], f[5 * fs + 8], f[6 * fs + 8], f[7 * fs + 8]);
                        // g[i] holds tap i, or tap 8 - i for the 180-degree rotation
                        if (flip) { g[0] = v8; g[1] = v7; g[2] = v6; g[3] = v5; g[4] = v4; g[5] = v3; g[6] = v2; g[7] = v1; g[8] = v0; }
                        else { g[0] = v0; g[1] = v1; g[2] = v2; g[3] = v3; g[4] = v4; g[5] = v5; g[6] = v6; g[7] = v7; g[8] = v8; }
                    }
                    else
                        for (int i = 0; i < 9; i++)
                        {
                            int k = flip ? 8 - i : i;
                            for (int l = 0; l < Lanes; l++) lane[l] = l < n ? f[l * fs + k] : 0f;
                            g[i] = Vector256.Load(lane);
                        }
                    // t = G g (a x 3), then each row of U = t G^T.
                    for (int j = 0; j < 3; j++) FilterColumn(m, g[j], g[3 + j], g[6 + j], t + j, 3);
                    for (int i = 0; i < a; i++)
                    {
                        FilterColumn(m, t[i * 3], t[i * 3 + 1], t[i * 3 + 2], row, 1);
                        for (int k = 0; k < a; k++)
                        {
                            float* d = o + c + (i * a + k) * step;
                            if (n == Lanes) row[k].Store(d);
                            else { row[k].Store(lane); for (int l = 0; l < n; l++) d[l] = lane[l]; }
                        }
                    }
                }
            }
        });
    }

    // G [g0 g1 g2]^T written with stride `ld`: F(2,3) G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] (exact halves: only the
    // sums round), or F(4,3)'s G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FilterColumn(int m, Vector256<float> g0, Vector256<float> g1, Vector256<float> g2, Vector256<float>* t, int ld)
    {
        if (m == 2)
        {
            var half = Vector256.Create(0.5f);
            t[0] = g0;
            t[ld] = (g0 + g1 + g2) * half;
            t[2 * ld] = (g0 - g1 + g2) * half;
            t[3 * ld] = g2;
            return;
        }
        var sixth = Vector256.Create(1f / 6);
        var e = Vector256.FusedMultiplyAdd(g0, Vector256.Create(1f / 24), g2 * sixth);
        var o = g1 * Vector256.Create(1f / 12);
        t[0] = g0 * Vector256.Create(0.25f);
        t[ld] = -(g0 + g1 + g2) * sixth;
        t[2 * ld] = -(g0 - g1 + g2) * sixth;
        t[3 * ld] = e + o;
        t[4 * ld] = e - o;
        t[5 * ld] = g2;
    }

    // xp[n][th*m+2][tw*m+2][cinP]: the zero-padded image, channel-last, covering every tile's (m+2) x (m+2) window.
    private static void StageInput(in ConvShape s, Grid grid, float* x, int cinP, float* xp) =>
        Stage(x, s.N, s.Cin, s.H, s.W, s.Pad, grid.Th * grid.M + 2, grid.Tw * grid.M + 2, cinP, xp);

    // dst[n][hp][wp][cP] = src[n][c][h - pad][w - pad], zero outside the image and in channels >= C.
    private static void Stage(float* src, int N, int C, int H, int W, int pad, int hp, int wp, int cP, float* dst)
    {
        nint ps = (nint)src, pd = (nint)dst;
        Threading.ForDynamic(N * hp, 8, (r0, r1) => StageRows((float*)ps, C, H, W, pad, hp, wp, cP, r0, r1, (float*)pd + (nint)r0 * wp * cP));
    }

    // Rows [r0, r1) of Stage's output (row r: image r / hp, padded row r % hp), row r0 written at dst.
    private static void StageRows(float* src, int C, int H, int W, int pad, int hp, int wp, int cP, int r0, int r1, float* dst)
    {
        int wHi = Math.Min(wp, pad + W), len = wHi - pad;
        for (int r = r0; r < r1; r++)
        {
            int h = r % hp - pad;
            float* d = dst + (nint)(r - r0) * wp * cP;
            if ((uint)h >= (uint)H) { new Span<float>(d, wp * cP).Clear(); continue; }
            new Span<float>(d, pad * cP).Clear();
            if (wHi < wp) new Span<float>(d + (nint)wHi * cP, (wp - wHi) * cP).Clear();
            if (cP > C)
                for (int j = 0; j < len; j++) new Span<float>(d + (nint)(pad + j) * cP + C, cP - C).Clear();
        }
        // Planes of 4 KiB or more: 8 channels at a time down the rows, so each plane is read as one stream (row by row across
        // every channel the reads jump a plane apart and defeat the prefetcher: 1.5-2x slower at 32x32, 128-192 channels);
        // smaller planes go row by row, which keeps the band's writes together.
        int c = 0;
        if (H * W >= 1024)
            for (; c + 8 <= C; c += 8)
                for (int r = r0; r < r1; r++)
                {
                    float* sr = SourceRow(src, C, H, W, pad, hp, r);
                    if (sr != null) Transpose.Rows8(sr + (nint)c * H * W, H * W, len, dst + (nint)(r - r0) * wp * cP + (nint)pad * cP + c, cP);
                }
        for (int r = r0; r < r1; r++)
        {
            float* sr = SourceRow(src, C, H, W, pad, hp, r);
            if (sr == null) continue;
            float* body = dst + (nint)(r - r0) * wp * cP + (nint)pad * cP;
            int cr = c;
            for (; cr + 8 <= C; cr += 8) Transpose.Rows8(sr + (nint)cr * H * W, H * W, len, body + cr, cP);
            for (; cr < C; cr++)
            {
                float* sc = sr + (nint)cr * H * W;
                for (int j = 0; j < len; j++) body[(nint)j * cP + cr] = sc[j];
            }
        }
    }

    // Row r's source: row h - pad of image r / hp at channel 0, or null in the padding.
    private static float* SourceRow(float* src, int C, int H, int W, int pad, int hp, int r)
    {
        int h = r % hp - pad;
        return (uint)h >= (uint)H ? null : src + ((nint)(r / hp) * C * H + h) * W;
    }

    /// <summary>
    /// gw = dL/dw of a 3x3 stride-1 layer (overwritten): with V = B^T d B and Z = A dY A^T per tile, dL/dU = sum over tiles of
    /// Z . V ((m+2)^2 GEMMs over the tiles) and gw = G^T (dL/dU) G.
    /// </summary>
    /// <remarks>With <paramref name="gyPadded"/> gy is read from that copy staged for the data gradient (padding 1, rows and
    /// columns of (m tiles + 2)) instead of being staged again.</remarks>
    internal static void BackwardWeight(ConvShape s, int m, float* x, float* gy, float* gw, int chunkTiles = DefaultChunkTiles, float* gyPadded = null)
    {
        CheckTile(m);
        int cinP = RoundUp(s.Cin, Lanes), coutP = RoundUp(s.Cout, Lanes), cin = s.Cin, cout = s.Cout;
        var grid = GridOf(s, m);
        // tiles summed in a fixed number of partials of fixed chunks (not per thread), so gw's float32 rounding does not depend on the thread count
        int xi = grid.Xi, total = s.N * grid.PerImage, duStep = PlaneStride(cin * cout);
        // a chunk's transformed input and product tiles stay in L2 between the transforms and the GEMMs (at least 12 tiles per chunk)
        int fit = Math.Min(chunkTiles, Math.Max(12, ChunkBytes / (xi * (cinP + coutP) * sizeof(float))));
        int tc = Math.Max(6, Math.Min(Math.Max(6, fit / 6 * 6), RoundUp((total + Convolution.WeightPartials - 1) / Convolution.WeightPartials, 6)));
        int chunks = (total + tc - 1) / tc, groups = Math.Min(chunks, Convolution.WeightPartials);
        var xp = TensorPool.Rent(PaddedInputLength(s, grid, cinP), clear: false);
        var gyp = gyPadded != null ? null : TensorPool.Rent(s.N * grid.PerImage * m * m * coutP, clear: false);
        // gy's staged rows and columns, and the offset of its first value in each (1 in the data gradient's padded copy)
        int hq = grid.Th * m, wq = grid.Tw * m, off = 0;
        if (gyPadded != null) { hq += 2; wq += 2; off = 1; }
        var partials = new float[groups][];
        try
        {
            fixed (float* pxp = xp, pgyp0 = gyp)
            {
                float* pgyp = gyPadded != null ? gyPadded : pgyp0;
                StageInput(s, grid, x, cinP, pxp);
                if (gyPadded == null) Stage(gy, s.N, cout, s.Ho, s.Wo, 0, hq, wq, coutP, pgyp);
                nint ax = (nint)pxp, ag = (nint)pgyp;
                var sc = s;
                var kind = Gemm.KernelFor(cout);
                Threading.For(groups, 1, (g0, g1) =>
                {
                    var v = TensorPool.Rent(xi * tc * cinP, clear: false);
                    var z = TensorPool.Rent(xi * tc * coutP, clear: false);
                    var zp = TensorPool.Rent(Gemm.PackedLength(kind, tc, cout) + 16, clear: false);
                    try
                    {
                        for (int grp = g0; grp < g1; grp++)
                        {
                            int c0 = (int)((long)chunks * grp / groups), c1 = (int)((long)chunks * (grp + 1) / groups);
                            var du = TensorPool.Rent(xi * duStep, clear: false);
                            partials[grp] = du;
                            fixed (float* pv = v, pz = z, pdu = du, pzp0 = zp)
                            {
                                float* pzp = Aligned(pzp0);
                                for (int c = c0; c < c1; c++)
                                {
                                    int t0 = c * tc, count = Math.Min(tc, total - t0);
                                    InputTransform(grid, (float*)ax, cinP, t0, count, tc, pv);
                                    GradTransform(grid, (float*)ag, coutP, hq, wq, off, t0, count, tc, pz);
                                    // dU[k] (+)= V[k]^T Z[k]: V read in place as the transposed A, Z packed once for all its 16-term blocks
                                    for (int k = 0; k < xi; k++)
                                    {
                                        Gemm.PackPanels(kind, pz + (nint)k * tc * coutP, coutP, count, cout, pzp);
                                        Gemm.BlockedPacked(kind, cin, cout, count, SumBlock, pv + (nint)k * tc * cinP, cinP, pzp, c != c0,
                                            pdu + (nint)k * duStep, cout, transA: true);
                                    }
                                }
                            }
                        }
                    }
                    finally { TensorPool.Return(v); TensorPool.Return(z); TensorPool.Return(zp); }
                });
            }
            // partials added in group order for every element, the elements split over the threads
            Threading.For(xi * duStep, 1 << 14, (e0, e1) =>
            {
                var sum = partials[0].AsSpan(e0, e1 - e0);
                for (int i = 1; i < partials.Length; i++) Elementwise.AddInPlace(sum, partials[i].AsSpan(e0, e1 - e0));
            });
            fixed (float* pdu = partials[0]) FilterGradient(pdu, cout, cin, m, gw, Wide ? 8 : 4, duStep);
        }
        finally
        {
            TensorPool.Return(xp);
            if (gyp != null) TensorPool.Return(gyp);
            foreach (var p in partials) if (p != null) TensorPool.Return(p);
        }
    }

    // gw[co][ci] = G^T du[.][ci][co] G ((m+2)^2 -> 3x3), in double, over runs of output channels that are contiguous in du
    // (8 per 512-bit vector, 4 per 256-bit, scalar for the rest). Every lane runs FilterRowT's operations, so the width does not
    // change the bits.
    /// <summary>The filter gradient with runs of <paramref name="lanes"/> output channels per vector (8, 4 or 1; tests force each);
    /// du's planes are <paramref name="planeStride"/> floats apart (0: cin * cout).</summary>
    internal static void FilterGradient(float* du, int cout, int cin, int m, float* gw, int lanes, int planeStride = 0)
    {
        nint step = planeStride > 0 ? planeStride : (nint)cin * cout;
        nint pdu = (nint)du, pgw = (nint)gw;
        Threading.For(cin, Math.Max(1, 4096 / Math.Max(1, cout)), (c0, c1) =>
        {
            for (int ci = c0; ci < c1; ci++)
            {
                int co = 0;
                if (lanes >= 8 && Vector512.IsHardwareAccelerated)
                    for (; co + 8 <= cout; co += 8) FilterGradientRun<D512>((float*)pdu, cout, step, cin, m, ci, co, (float*)pgw);
                if (lanes >= 4)
                    for (; co + 4 <= cout; co += 4) FilterGradientRun<D256>((float*)pdu, cout, step, cin, m, ci, co, (float*)pgw);
                for (; co < cout; co++) FilterGradientRun<D1>((float*)pdu, cout, step, cin, m, ci, co, (float*)pgw);
            }
        });
    }

    // T.Count filters (co .. co + Count - 1, input channel ci): t = du G (a x 3) row by row, then gw = G^T t column by column.
    [MethodImpl(MethodImplOptions.AggressiveInlining), SkipLocalsInit]   // every element of its stack scratch is written before it is read
    private static void FilterGradientRun<T>(float* du, int cout, nint step, int cin, int m, int ci, int co, float* gw) where T : unmanaged, IVecD<T>
    {
        int a = m + 2;
        T* t = stackalloc T[18];
        T* ur = stackalloc T[6];
        T* o = stackalloc T[3];
        float* u = du + (nint)ci * cout + co;
        for (int r = 0; r < a; r++)
        {
            for (int k = 0; k < a; k++) ur[k] = T.Load(u + (r * a + k) * step);
            FilterRowT(m, ur, t + r * 3, 1);
        }
        float* g = gw + ((nint)co * cin + ci) * 9;
        nint fs = (nint)cin * 9;
        for (int j = 0; j < 3; j++)
        {
            for (int r = 0; r < a; r++) ur[r] = t[r * 3 + j];
            FilterRowT(m, ur, o, 1);
            o[0].Store(g + j, fs); o[1].Store(g + 3 + j, fs); o[2].Store(g + 6 + j, fs);
        }
    }

    // G^T u for u of length m+2, written with stride `st`, lane by lane in double.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FilterRowT<T>(int m, T* u, T* o, int st) where T : unmanaged, IVecD<T>
    {
        if (m == 2)
        {
            o[0] = u[0] + (u[1] + u[2]) * T.Broadcast(0.5);
            o[st] = (u[1] - u[2]) * T.Broadcast(0.5);
            o[2 * st] = (u[1] + u[2]) * T.Broadcast(0.5) + u[3];
            return;
        }
        const double Sixth = 1.0 / 6, Twelfth = 1.0 / 12, TwentyFourth = 1.0 / 24;   // multiplications: divisions would dominate
        o[0] = u[0] * T.Broadcast(0.25) - (u[1] + u[2]) * T.Broadcast(Sixth) + (u[3] + u[4]) * T.Broadcast(TwentyFourth);
        o[st] = (u[2] - u[1]) * T.Broadcast(Sixth) + (u[3] - u[4]) * T.Broadcast(Twelfth);
        o[2 * st] = (u[3] + u[4] - u[1] - u[2]) * T.Broadcast(Sixth) + u[5];
    }

    // z[xi][t][c] = (A dY A^T)[xi] for the m x m output-gradient tiles [t0, t0+count) staged channel-last in gyp ([n][hq][wq],
    // the first value `off` rows and columns in).
    private static void GradTransform(Grid grid, float* gyp, int coutP, int hq, int wq, int off, int t0, int count, int tc, float* z)
    {
        int per = grid.PerImage, m = grid.M;
        nint plane = (nint)tc * coutP, row = (nint)wq * coutP;
        var q = stackalloc Vector256<float>[8];
        var r6 = stackalloc Vector256<float>[4];
        for (int t = 0; t < count; t++)
        {
            int gt = t0 + t, n = gt / per, ty = gt % per / grid.Tw, tx = gt % per % grid.Tw;
            float* src = gyp + (((nint)n * hq + ty * m + off) * wq + tx * m + off) * coutP;
            float* dst = z + (nint)t * coutP;
            if (m == 4)
            {
                int c4 = 0;
                if (Wide) for (; c4 + 16 <= coutP; c4 += 16) GradTile4<V512>(src + c4, coutP, row, dst + c4, plane);
                for (; c4 < coutP; c4 += Lanes) GradTile4<V256>(src + c4, coutP, row, dst + c4, plane);
                continue;
            }
            for (int c = 0; c < coutP; c += Lanes)
            {
                // q[k][j] = (A dY)[k][j] over the 2 columns j, then rows: (A dY A^T)[k][.].
                for (int j = 0; j < 2; j++)
                {
                    float* p = src + (nint)j * coutP + c;
                    GradRow2(Vector256.Load(p), Vector256.Load(p + row), q + j, 2);
                }
                for (int k = 0; k < 4; k++)
                {
                    GradRow2(q[k * 2], q[k * 2 + 1], r6, 1);
                    float* o = dst + c + (nint)k * 4 * plane;
                    r6[0].Store(o); r6[1].Store(o + plane); r6[2].Store(o + 2 * plane); r6[3].Store(o + 3 * plane);
                }
            }
        }
    }

    // One 4x4 output-gradient tile of one channel vector: Z = A dY A^T, columns first (q[k][j] = (A dY)[k][j]), then rows; the 36
    // results go to planes o, o + plane, ... Every lane runs the same operations, so 8- and 16-channel vectors give the same bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining), SkipLocalsInit]   // every element of its stack scratch is written before it is read
    private static void GradTile4<T>(float* src, nint cs, nint row, float* dst, nint plane) where T : unmanaged, IVec<T>
    {
        var q = stackalloc T[24];
        var r6 = stackalloc T[6];
        for (int j = 0; j < 4; j++)
        {
            float* p = src + j * cs;
            GradRow(T.Load(p), T.Load(p + row), T.Load(p + 2 * row), T.Load(p + 3 * row), q + j, 4);
        }
        for (int k = 0; k < 6; k++)
        {
            var r = q + k * 4;
            GradRow(r[0], r[1], r[2], r[3], r6, 1);
            float* o = dst + (nint)k * 6 * plane;
            r6[0].Store(o); r6[1].Store(o + plane); r6[2].Store(o + 2 * plane);
            r6[3].Store(o + 3 * plane); r6[4].Store(o + 4 * plane); r6[5].Store(o + 5 * plane);
        }
    }

    // A y for y of length 2 (transpose of the F(2,3) output transform A^T = [1 1 1 0; 0 1 -1 -1]), written with stride `st`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GradRow2(Vector256<float> y0, Vector256<float> y1, Vector256<float>* o, int st)
    {
        o[0] = y0;
        o[st] = y0 + y1;
        o[2 * st] = y0 - y1;
        o[3 * st] = -y1;
    }

    // A y for y of length 4 (transpose of the output transform), written with stride `st`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GradRow<T>(T y0, T y1, T y2, T y3, T* o, int st) where T : unmanaged, IVec<T>
    {
        var p = y0 + y2; var q = y1 + y3;
        var p2 = T.FusedMultiplyAdd(y2, T.Broadcast(4f), y0);
        var q2 = T.FusedMultiplyAdd(y3, T.Broadcast(8f), y1 * T.Broadcast(2f));
        o[0] = y0;
        o[st] = p + q;
        o[2 * st] = p - q;
        o[3 * st] = p2 + q2;
        o[4 * st] = p2 - q2;
        o[5 * st] = y3;
    }

    // Every tile chunk: input transform, (m+2)^2 GEMMs against the packed u, output transform into y (NCHW) with bias. The
    // input is xp, staged whole (StageInput), or, when xp is null, the NCHW x, of which each chunk stages the rows its tiles
    // read into a buffer that stays in cache (the whole staged copy would go out to memory and back at large batches).
    private static void Run(ConvShape s, Grid grid, float* xp, float* x, int cinP, float* packed, int panel, GemmKernel kind, float* bias, float* y, int coutP, int chunkTiles)
    {
        int xi = grid.Xi, total = s.N * grid.PerImage, tc = ChunkSize(total, Math.Min(chunkTiles, FootprintTiles(grid, cinP, coutP)));
        int chunks = (total + tc - 1) / tc;
        int m = grid.M, per = grid.PerImage, hp = grid.Th * m + 2, wp = grid.Tw * m + 2;
        // padded rows [first, end) that chunk c's tiles read, counted over the batch (row n hp + h)
        int BandFirst(int c) { int gt = c * tc; return gt / per * hp + gt % per / grid.Tw * m; }
        int BandEnd(int c) { int gt = Math.Min(total, (c + 1) * tc) - 1; return gt / per * hp + gt % per / grid.Tw * m + m + 2; }
        int bandRows = 0;
        if (xp == null)
            for (int c = 0; c < chunks; c++) bandRows = Math.Max(bandRows, BandEnd(c) - BandFirst(c));
        nint pxp = (nint)xp, px = (nint)x, pu = (nint)packed, pb = (nint)bias, py = (nint)y;
        // chunks claimed one at a time: a thread slowed by other work on the machine takes fewer
        Threading.ForDynamic(chunks, 1, (c0, c1) =>
        {
            var v = TensorPool.Rent(xi * tc * cinP, clear: false);
            var mm = TensorPool.Rent(xi * tc * coutP, clear: false);
            var band = pxp == 0 ? TensorPool.Rent(bandRows * wp * cinP, clear: false) : null;
            try
            {
                fixed (float* pv = v, pm = mm, pband = band)
                {
                    for (int c = c0; c < c1; c++)
                    {
                        int t0 = c * tc, count = Math.Min(tc, total - t0);
                        float* src = (float*)pxp;
                        if (pxp == 0)
                        {
                            int r0 = BandFirst(c);
                            StageRows((float*)px, s.Cin, s.H, s.W, s.Pad, hp, wp, cinP, r0, BandEnd(c), pband);
                            src = pband - (nint)r0 * wp * cinP;   // where row 0 of a whole staged copy would be
                        }
                        InputTransform(grid, src, cinP, t0, count, tc, pv);
                        for (int k = 0; k < xi; k++)
                            Gemm.BlockedPacked(kind, count, s.Cout, s.Cin, SumBlock, pv + (nint)k * tc * cinP, cinP,
                                (float*)pu + (nint)k * panel, false, pm + (nint)k * tc * coutP, coutP);
                        if (grid.M == 2) OutputTransform2(s, grid, pm, coutP, t0, count, tc, (float*)pb, (float*)py);
                        else OutputTransform(s, grid, pm, coutP, t0, count, tc, (float*)pb, (float*)py);
                    }
                }
            }
            finally
            {
                TensorPool.Return(v); TensorPool.Return(mm);
                if (band != null) TensorPool.Return(band);
            }
        });
    }

    // v[xi][t][c] = (B^T d B)[xi] for the (m+2) x (m+2) window d of tiles [t0, t0+count) over 8-channel vectors.
    private static void InputTransform(Grid grid, float* xp, int cinP, int t0, int count, int tc, float* v)
    {
        int m = grid.M, a = grid.A, hp = grid.Th * m + 2, wp = grid.Tw * m + 2, per = grid.PerImage;
        nint plane = (nint)tc * cinP, row = (nint)wp * cinP;
        for (int t = 0; t < count; t++)
        {
            int gt = t0 + t, n = gt / per, ty = gt % per / grid.Tw, tx = gt % per % grid.Tw;
            float* src = xp + (((nint)n * hp + ty * m) * wp + tx * m) * cinP;
            float* dst = v + (nint)t * cinP;
            if (m == 2)
            {
                int c2 = 0;
                if (Wide) for (; c2 + 16 <= cinP; c2 += 16) InputTile2<V512>(src + c2, cinP, row, dst + c2, plane);
                for (; c2 < cinP; c2 += Lanes) InputTile2<V256>(src + c2, cinP, row, dst + c2, plane);
                continue;
            }
            int c = 0;
            if (Wide) for (; c + 16 <= cinP; c += 16) InputTile4<V512>(src + c, cinP, row, dst + c, plane);
            for (; c < cinP; c += Lanes) InputTile4<V256>(src + c, cinP, row, dst + c, plane);
        }
    }

    // One 6x6 window of one channel vector: V = B^T d B, columns first (d[r][j] <- (B^T d)[r][j]), then rows; the 36 results go
    // to planes o, o + plane, ... Every lane runs the same operations, so 8- and 16-channel vectors give the same bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining), SkipLocalsInit]   // every element of its stack scratch is written before it is read
    private static void InputTile4<T>(float* src, nint cs, nint row, float* dst, nint plane) where T : unmanaged, IVec<T>
    {
        var d = stackalloc T[36];
        for (int j = 0; j < 6; j++)
        {
            float* p = src + j * cs;
            InRow(T.Load(p), T.Load(p + row), T.Load(p + 2 * row), T.Load(p + 3 * row), T.Load(p + 4 * row), T.Load(p + 5 * row), d + j, 6);
        }
        for (int r = 0; r < 6; r++)
        {
            var q = d + r * 6;
            InRow(q[0], q[1], q[2], q[3], q[4], q[5], q, 1);
            float* o = dst + (nint)r * 6 * plane;
            q[0].Store(o); q[1].Store(o + plane); q[2].Store(o + 2 * plane);
            q[3].Store(o + 3 * plane); q[4].Store(o + 4 * plane); q[5].Store(o + 5 * plane);
        }
    }

    // One 4x4 window of one channel vector: V = B^T d B, columns first (as InRow2 over the columns, then over the rows), the
    // 16 values held in registers; the 16 results go to planes o, o + plane, ... (F(2,3) B^T as in InRow2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InputTile2<T>(float* p, nint cs, nint row, float* o, nint plane) where T : struct, IVec<T>
    {
        Column2<T>(p, row, out var a0, out var b0, out var c0, out var d0);
        Column2<T>(p + cs, row, out var a1, out var b1, out var c1, out var d1);
        Column2<T>(p + 2 * cs, row, out var a2, out var b2, out var c2, out var d2);
        Column2<T>(p + 3 * cs, row, out var a3, out var b3, out var c3, out var d3);
        (a0 - a2).Store(o); (a1 + a2).Store(o + plane); (a2 - a1).Store(o + 2 * plane); (a1 - a3).Store(o + 3 * plane);
        o += 4 * plane;
        (b0 - b2).Store(o); (b1 + b2).Store(o + plane); (b2 - b1).Store(o + 2 * plane); (b1 - b3).Store(o + 3 * plane);
        o += 4 * plane;
        (c0 - c2).Store(o); (c1 + c2).Store(o + plane); (c2 - c1).Store(o + 2 * plane); (c1 - c3).Store(o + 3 * plane);
        o += 4 * plane;
        (d0 - d2).Store(o); (d1 + d2).Store(o + plane); (d2 - d1).Store(o + 2 * plane); (d1 - d3).Store(o + 3 * plane);
    }

    // B^T applied down one column of a 4x4 window (rows `row` apart).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Column2<T>(float* p, nint row, out T r0, out T r1, out T r2, out T r3) where T : struct, IVec<T>
    {
        var x0 = T.Load(p); var x1 = T.Load(p + row); var x2 = T.Load(p + 2 * row); var x3 = T.Load(p + 3 * row);
        r0 = x0 - x2; r1 = x1 + x2; r2 = x2 - x1; r3 = x1 - x3;
    }

    // B^T x for x of length 4 (F(2,3): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]), written with stride `st`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InRow2(Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> x3, Vector256<float>* o, int st)
    {
        o[0] = x0 - x2;
        o[st] = x1 + x2;
        o[2 * st] = x2 - x1;
        o[3 * st] = x1 - x3;
    }

    // B^T x for x of length 6 (Lavin and Gray's F(4,3) input transform), written with stride `st`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InRow<T>(T x0, T x1, T x2, T x3, T x4, T x5, T* o, int st) where T : unmanaged, IVec<T>
    {
        var four = T.Broadcast(4f); var five = T.Broadcast(5f); var two = T.Broadcast(2f);
        var a = x4 - x2 * four;           // x4 - 4 x2
        var b = x3 - x1 * four;           // x3 - 4 x1
        var c = x4 - x2;
        var e = (x3 - x1) * two;
        o[0] = T.FusedMultiplyAdd(x0, four, x4 - x2 * five);
        o[st] = a + b;
        o[2 * st] = a - b;
        o[3 * st] = c + e;
        o[4 * st] = c - e;
        o[5 * st] = T.FusedMultiplyAdd(x1, four, x5 - x3 * five);
    }

    // y tiles = A^T m A (+ bias), clipped to the output and scattered back to NCHW.
    private static void OutputTransform(in ConvShape s, Grid grid, float* m, int coutP, int t0, int count, int tc, float* bias, float* y)
    {
        int per = grid.PerImage, Ho = s.Ho, Wo = s.Wo, P = Ho * Wo, Cout = s.Cout;
        nint plane = (nint)tc * coutP;
        var q = stackalloc Vector256<float>[24];
        float* tile = stackalloc float[16 * Lanes + 8];
        tile = (float*)(((nint)tile + 31) & ~(nint)31);
        for (int t = 0; t < count; t++)
        {
            int gt = t0 + t, n = gt / per, ty = gt % per / grid.Tw, tx = gt % per % grid.Tw;
            int oh0 = ty * 4, ow0 = tx * 4, rows = Math.Min(4, Ho - oh0), cols = Math.Min(4, Wo - ow0);
            float* src = m + (nint)t * coutP;
            float* yn = y + (nint)n * Cout * P + (nint)oh0 * Wo + ow0;
            for (int c = 0; c < coutP; c += Lanes)
            {
                // Columns: q[i][j] = (A^T m)[i][j] for i < 4.
                for (int j = 0; j < 6; j++)
                {
                    float* p = src + c + (nint)j * plane;
                    OutRow(Vector256.Load(p), Vector256.Load(p + 6 * plane), Vector256.Load(p + 12 * plane), Vector256.Load(p + 18 * plane),
                        Vector256.Load(p + 24 * plane), Vector256.Load(p + 30 * plane), q + j, 6);
                }
                var bv = Vector256.Load(bias + c);
                for (int i = 0; i < 4; i++)
                {
                    var r = q + i * 6;
                    OutRow(r[0], r[1], r[2], r[3], r[4], r[5], r, 1);
                    for (int j = 0; j < 4; j++) (r[j] + bv).Store(tile + (i * 4 + j) * Lanes);
                }
                int lanes = Math.Min(Lanes, Cout - c);
                if (lanes == Lanes && rows == 4 && cols == 4)
                {
                    // Full tile: two 8x8 transposes turn pixel-major vectors into 8 channels x (two rows of 4) each.
                    for (int half = 0; half < 2; half++)
                    {
                        Vector256<float>* pv = (Vector256<float>*)(tile + half * 8 * Lanes);
                        var v0 = pv[0]; var v1 = pv[1]; var v2 = pv[2]; var v3 = pv[3];
                        var v4 = pv[4]; var v5 = pv[5]; var v6 = pv[6]; var v7 = pv[7];
                        Transpose.Block8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
                        float* yr = yn + (nint)c * P + half * 2 * Wo;
                        StoreRows(v0, yr, Wo); StoreRows(v1, yr + P, Wo); StoreRows(v2, yr + 2 * P, Wo); StoreRows(v3, yr + 3 * P, Wo);
                        StoreRows(v4, yr + 4 * P, Wo); StoreRows(v5, yr + 5 * P, Wo); StoreRows(v6, yr + 6 * P, Wo); StoreRows(v7, yr + 7 * P, Wo);
                    }
                    continue;
                }
                for (int l = 0; l < lanes; l++)
                {
                    float* yc = yn + (nint)(c + l) * P;
                    for (int i = 0; i < rows; i++)
                        for (int j = 0; j < cols; j++) yc[i * Wo + j] = tile[(i * 4 + j) * Lanes + l];
                }
            }
        }
    }

    /// <summary>Most tiles of one tile row whose F(2x2) outputs are staged together before they are copied to NCHW rows.</summary>
    internal const int OutputRun = 64;

    // F(2,3) output: y tiles = A^T m A (+ bias) with A^T = [1 1 1 0; 0 1 -1 -1], clipped to the output and written to NCHW.
    // Each run of tiles along a tile row is staged as [channel][2 rows][2 run] and then copied out row by row: scattering 2x2
    // pieces straight into the channel planes (4 KiB apart at 32x32) missed L1 on nearly every store.
    private static void OutputTransform2(in ConvShape s, Grid grid, float* m, int coutP, int t0, int count, int tc, float* bias, float* y)
    {
        int per = grid.PerImage, Ho = s.Ho, Wo = s.Wo, P = Ho * Wo, Cout = s.Cout;
        nint plane = (nint)tc * coutP;
        float* tile = stackalloc float[4 * Lanes + 8];
        tile = (float*)(((nint)tile + 31) & ~(nint)31);
        float* stage = stackalloc float[16 * 2 * 2 * OutputRun];
        for (int t = 0; t < count;)
        {
            int gt = t0 + t, n = gt / per, ty = gt % per / grid.Tw, tx = gt % per % grid.Tw;
            int run = Math.Min(OutputRun, Math.Min(count - t, grid.Tw - tx));
            int sw = 2 * run, oh0 = ty * 2, ow0 = tx * 2, rows = Math.Min(2, Ho - oh0), cols = Math.Min(sw, Wo - ow0);
            float* src = m + (nint)t * coutP;
            float* yn = y + (nint)n * Cout * P + (nint)oh0 * Wo + ow0;
            int c = 0;
            if (Wide)
                for (; c + 16 <= coutP; c += 16)
                {
                    for (int i = 0; i < run; i++)
                    {
                        OutputTile2(src + (nint)i * coutP + c, plane, V512.Load(bias + c), out var w0, out var w1, out var w2, out var w3);
                        Scatter2(w0.V.GetLower(), w1.V.GetLower(), w2.V.GetLower(), w3.V.GetLower(), Lanes, 2, 2, stage + 2 * i, 2 * sw, sw, tile);
                        Scatter2(w0.V.GetUpper(), w1.V.GetUpper(), w2.V.GetUpper(), w3.V.GetUpper(), Lanes, 2, 2, stage + 8 * 2 * sw + 2 * i, 2 * sw, sw, tile);
                    }
                    CopyRows(stage, Math.Min(16, Cout - c), rows, cols, sw, yn + (nint)c * P, P, Wo);
                }
            for (; c < coutP; c += Lanes)
            {
                for (int i = 0; i < run; i++)
                {
                    OutputTile2(src + (nint)i * coutP + c, plane, V256.Load(bias + c), out var v0, out var v1, out var v2, out var v3);
                    Scatter2(v0.V, v1.V, v2.V, v3.V, Lanes, 2, 2, stage + 2 * i, 2 * sw, sw, tile);
                }
                CopyRows(stage, Math.Min(Lanes, Cout - c), rows, cols, sw, yn + (nint)c * P, P, Wo);
            }
            t += run;
        }
    }

    // Staged rows [channel][row][sw] to NCHW: `cols` outputs of each of `rows` rows for `lanes` channels (none when lanes <= 0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRows(float* stage, int lanes, int rows, int cols, int sw, float* y, int P, int Wo)
    {
        for (int l = 0; l < lanes; l++)
            for (int r = 0; r < rows; r++)
                new ReadOnlySpan<float>(stage + (l * 2 + r) * sw, cols).CopyTo(new Span<float>(y + (nint)l * P + (nint)r * Wo, cols));
    }

    // (y00, y01, y10, y11) = A^T M A + bias of one tile's channel vector, M's 16 entries `plane` apart (columns first: q = A^T M).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutputTile2<T>(float* p, nint plane, T bias, out T v0, out T v1, out T v2, out T v3) where T : struct, IVec<T>
    {
        OutColumn2<T>(p, plane, out var q0, out var q4);
        OutColumn2<T>(p + plane, plane, out var q1, out var q5);
        OutColumn2<T>(p + 2 * plane, plane, out var q2, out var q6);
        OutColumn2<T>(p + 3 * plane, plane, out var q3, out var q7);
        v0 = q0 + q1 + q2 + bias; v1 = q1 - q2 - q3 + bias;
        v2 = q4 + q5 + q6 + bias; v3 = q5 - q6 - q7 + bias;
    }

    // A^T down column j of M: rows 0..3 of the column are 4 planes apart.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutColumn2<T>(float* p, nint plane, out T top, out T bottom) where T : struct, IVec<T>
    {
        var x0 = T.Load(p); var x1 = T.Load(p + 4 * plane); var x2 = T.Load(p + 8 * plane); var x3 = T.Load(p + 12 * plane);
        top = x0 + x1 + x2;
        bottom = x1 - x2 - x3;
    }

    // Writes the 2x2 outputs of 8 channels (at most `lanes` of them, clipped to rows x cols) from pixel-major vectors to NCHW at y.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scatter2(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, int lanes, int rows, int cols,
        float* y, int P, int Wo, float* tile)
    {
        if (lanes >= Lanes && rows == 2 && cols == 2)
        {
            // One 8x8 transpose (four rows used) gives each channel its (y00 y01 y10 y11) in the low half.
            var z = Vector256<float>.Zero;
            Vector256<float> v4 = z, v5 = z, v6 = z, v7 = z;
            Transpose.Block8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
            Store2x2(v0, y, Wo); Store2x2(v1, y + P, Wo); Store2x2(v2, y + 2 * P, Wo); Store2x2(v3, y + 3 * P, Wo);
            Store2x2(v4, y + 4 * P, Wo); Store2x2(v5, y + 5 * P, Wo); Store2x2(v6, y + 6 * P, Wo); Store2x2(v7, y + 7 * P, Wo);
            return;
        }
        v0.Store(tile); v1.Store(tile + Lanes); v2.Store(tile + 2 * Lanes); v3.Store(tile + 3 * Lanes);
        for (int l = 0; l < Math.Min(lanes, Lanes); l++)
        {
            float* yc = y + (nint)l * P;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) yc[i * Wo + j] = tile[(i * 2 + j) * Lanes + l];
        }
    }

    // (y00 y01 y10 y11) from the low half of v: two outputs at y, two one image row below.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store2x2(Vector256<float> v, float* y, int wo)
    {
        var lo = v.GetLower().AsUInt64();
        Unsafe.WriteUnaligned(y, lo.GetElement(0));
        Unsafe.WriteUnaligned(y + wo, lo.GetElement(1));
    }

    // Two output rows of 4: the low half at y, the high half one image row below.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRows(Vector256<float> v, float* y, int wo)
    {
        v.GetLower().Store(y);
        v.GetUpper().Store(y + wo);
    }

    // A^T x for x of length 6 (F(4,3) output transform), written with stride `st`.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutRow(Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> x3,
        Vector256<float> x4, Vector256<float> x5, Vector256<float>* o, int st)
    {
        var a = x1 + x2; var b = x1 - x2; var c = x3 + x4; var e = x3 - x4;
        var two = Vector256.Create(2f); var four = Vector256.Create(4f); var eight = Vector256.Create(8f);
        o[0] = x0 + a + c;
        o[st] = Vector256.FusedMultiplyAdd(e, two, b);
        o[2 * st] = Vector256.FusedMultiplyAdd(c, four, a);
        o[3 * st] = Vector256.FusedMultiplyAdd(e, eight, b) + x5;
    }
}
