using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using DiffusionSharp.Runtime;

namespace DiffusionSharp.Tensors;

/// <summary>
/// Counter-based random generator (Philox 4x32-10, Salmon et al. 2011): element i of a draw depends only on
/// (seed, offset + i/4), so results are identical for every thread count and every run.
/// </summary>
public sealed class Generator
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The seed.</summary>
    public ulong Seed { get; }

    /// <summary>Counter blocks consumed so far; saving and restoring it resumes the stream exactly.</summary>
    public ulong Offset { get; set; }

    /// <summary>Creates a generator with the given seed at offset 0.</summary>
    public Generator(ulong seed) { Seed = seed; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Block(ulong key, ulong counter, out uint r0, out uint r1, out uint r2, out uint r3) =>
        Block((uint)counter, (uint)(counter >> 32), 0, 0, (uint)key, (uint)(key >> 32), out r0, out r1, out r2, out r3);

    /// <summary>One Philox4x32-10 block: 128-bit counter (c0..c3) and 64-bit key (k0, k1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, out uint r0, out uint r1, out uint r2, out uint r3)
    {
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n1 = (uint)p1;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            uint n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0; k1 += W1;
        }
        r0 = c0; r1 = c1; r2 = c2; r3 = c3;
    }

    /// <summary>Blocks per vector call (16 with AVX-512, 8 with AVX2, 0 for scalar only); tests lower it to cover every path.</summary>
    internal static int VectorBlocks = Avx512F.IsSupported ? 16 : Avx2.IsSupported ? 8 : 0;

    /// <summary>
    /// <see cref="VectorBlocks"/> consecutive blocks from <paramref name="counter"/> at once, r[4j + k] = word k of block j (as the
    /// scalar blocks give it); false where the vector path is off or the low counter word would wrap inside the group.
    /// </summary>
    internal static unsafe bool VectorBlock(ulong key, ulong counter, uint* r)
    {
        int w = VectorBlocks;
        if (w == 0 || (uint)counter > uint.MaxValue - (uint)w) return false;
        if (w == 16 && Avx512F.IsSupported) { Blocks<Words512>(key, counter, r); return true; }
        if (w == 8 && Avx2.IsSupported) { Blocks<Words256>(key, counter, r); return true; }
        return false;
    }

    // The ten rounds of Block, one block per lane (counter + lane in word 0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Blocks<T>(ulong key, ulong counter, uint* r) where T : struct, IWords<T>
    {
        uint k0 = (uint)key, k1 = (uint)(key >> 32);
        T c0 = T.Counters((uint)counter), c1 = T.Broadcast((uint)(counter >> 32)), c2 = T.Broadcast(0), c3 = c2;
        T m0 = T.Broadcast(M0), m1 = T.Broadcast(M1);
        for (int round = 0; round < 10; round++)
        {
            T.MulHiLo(c0, m0, out var h0, out var l0);
            T.MulHiLo(c2, m1, out var h1, out var l1);
            c0 = h1 ^ c1 ^ T.Broadcast(k0);
            c1 = l1;
            c2 = h0 ^ c3 ^ T.Broadcast(k1);
            c3 = l0;
            k0 += W0; k1 += W1;
        }
        T.StoreBlocks(c0, c1, c2, c3, r);
    }

    /// <summary>A vector of 32-bit counter words, one Philox block per lane, so that one round loop serves each width.</summary>
    private unsafe interface IWords<T> where T : struct, IWords<T>
    {
        static abstract T Counters(uint first);
        static abstract T Broadcast(uint v);
        static abstract T operator ^(T a, T b);
        /// <summary>The 32x32 -> 64-bit product of every lane with m, split in high and low words.</summary>
        static abstract void MulHiLo(T x, T m, out T hi, out T lo);
        /// <summary>Word k of lane j to r[4j + k].</summary>
        static abstract void StoreBlocks(T w0, T w1, T w2, T w3, uint* r);
    }

    private readonly unsafe struct Words512(Vector512<uint> v) : IWords<Words512>
    {
        private readonly Vector512<uint> _v = v;
        public static Words512 Counters(uint first) => new(Vector512.Create(first) + Vector512<uint>.Indices);
        public static Words512 Broadcast(uint v) => new(Vector512.Create(v));
        public static Words512 operator ^(Words512 a, Words512 b) => new(a._v ^ b._v);

        // Even lanes by one vpmuludq, odd lanes by another on the words shifted down.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void MulHiLo(Words512 x, Words512 m, out Words512 hi, out Words512 lo)
        {
            var even = Avx512F.Multiply(x._v, m._v);
            var odd = Avx512F.Multiply((x._v.AsUInt64() >> 32).AsUInt32(), m._v);
            var low = Vector512.Create(0xFFFFFFFFUL);
            lo = new(((even & low) | (odd << 32)).AsUInt32());
            hi = new(((even >> 32) | (odd & ~low)).AsUInt32());
        }

        // A 4x4 transpose within each 128-bit lane leaves block 4L + m in lane L of the m-th result.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void StoreBlocks(Words512 w0, Words512 w1, Words512 w2, Words512 w3, uint* r)
        {
            var a = Avx512F.UnpackLow(w0._v, w1._v).AsUInt64();
            var b = Avx512F.UnpackHigh(w0._v, w1._v).AsUInt64();
            var c = Avx512F.UnpackLow(w2._v, w3._v).AsUInt64();
            var d = Avx512F.UnpackHigh(w2._v, w3._v).AsUInt64();
            ReadOnlySpan<Vector512<uint>> t = [Avx512F.UnpackLow(a, c).AsUInt32(), Avx512F.UnpackHigh(a, c).AsUInt32(),
                Avx512F.UnpackLow(b, d).AsUInt32(), Avx512F.UnpackHigh(b, d).AsUInt32()];
            for (int m = 0; m < 4; m++)
            {
                t[m].GetLower().GetLower().Store(r + 4 * m);
                t[m].GetLower().GetUpper().Store(r + 4 * (4 + m));
                t[m].GetUpper().GetLower().Store(r + 4 * (8 + m));
                t[m].GetUpper().GetUpper().Store(r + 4 * (12 + m));
            }
        }
    }

    private readonly unsafe struct Words256(Vector256<uint> v) : IWords<Words256>
    {
        private readonly Vector256<uint> _v = v;
        public static Words256 Counters(uint first) => new(Vector256.Create(first) + Vector256<uint>.Indices);
        public static Words256 Broadcast(uint v) => new(Vector256.Create(v));
        public static Words256 operator ^(Words256 a, Words256 b) => new(a._v ^ b._v);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void MulHiLo(Words256 x, Words256 m, out Words256 hi, out Words256 lo)
        {
            var even = Avx2.Multiply(x._v, m._v);
            var odd = Avx2.Multiply((x._v.AsUInt64() >> 32).AsUInt32(), m._v);
            var low = Vector256.Create(0xFFFFFFFFUL);
            lo = new(((even & low) | (odd << 32)).AsUInt32());
            hi = new(((even >> 32) | (odd & ~low)).AsUInt32());
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void StoreBlocks(Words256 w0, Words256 w1, Words256 w2, Words256 w3, uint* r)
        {
            var a = Avx2.UnpackLow(w0._v, w1._v).AsUInt64();
            var b = Avx2.UnpackHigh(w0._v, w1._v).AsUInt64();
            var c = Avx2.UnpackLow(w2._v, w3._v).AsUInt64();
            var d = Avx2.UnpackHigh(w2._v, w3._v).AsUInt64();
            ReadOnlySpan<Vector256<uint>> t = [Avx2.UnpackLow(a, c).AsUInt32(), Avx2.UnpackHigh(a, c).AsUInt32(),
                Avx2.UnpackLow(b, d).AsUInt32(), Avx2.UnpackHigh(b, d).AsUInt32()];
            for (int m = 0; m < 4; m++)
            {
                t[m].GetLower().Store(r + 4 * m);
                t[m].GetUpper().Store(r + 4 * (4 + m));
            }
        }
    }

    // Uniform floats of 4 * count words: the 24 high bits of each, scaled to [0, 1), as ToUnit does.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ToUnit(uint* r, float* dst, int count)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 8; i += 8)
                (Vector256.ConvertToSingle((Vector256.Load(r + i) >> 8).AsInt32()) * (1f / 16777216f)).Store(dst + i);
        for (; i < count; i++) dst[i] = ToUnit(r[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ToUnit(uint x) => (x >> 8) * (1f / 16777216f);  // 24 random bits -> [0, 1)

    /// <summary>
    /// When set, a <see cref="Uniform"/> or <see cref="Normal"/> draw whose length is a multiple of <c>Count</c> is rows <c>First</c> .. <c>First + Count - 1</c>
    /// of the same draw made for <c>Total</c> equal rows (and advances the offset as that draw would): a data-parallel rank
    /// holding part of a batch then sees exactly the values one process holding the whole batch sees.
    /// </summary>
    public (int First, int Count, int Total)? BatchShard { get; set; }

    /// <summary>Fills <paramref name="dest"/> with uniform [0, 1) floats and advances the offset.</summary>
    public void Uniform(Span<float> dest) => Draw(dest, normal: false);

    // The whole draw, or this generator's rows of it under a batch shard.
    private void Draw(Span<float> dest, bool normal)
    {
        if (BatchShard is { } shard && shard.Count != shard.Total && dest.Length % shard.Count == 0)
            Rows(dest, shard.First, shard.Count, shard.Total, normal);
        else
            Rows(dest, 0, 1, 1, normal);
    }

    // Rows first .. first + count - 1 of a draw of `total` equal rows (0, 1, 1: the whole draw); element g of the draw is
    // lane g % 4 of block offset + g / 4.
    private void Rows(Span<float> dest, int first, int count, int total, bool normal)
    {
        long per = dest.Length / count, start = first * per;
        ulong baseCounter = Offset;
        Offset += (ulong)((total * per + 3) / 4);
        unsafe
        {
            fixed (float* p = dest)
            {
                float* ptr = p;
                long n = dest.Length;
                ulong key = Seed;
                long b0 = start / 4, b1 = (start + n + 3) / 4;
                Threading.For((int)(b1 - b0), normal ? 2048 : 4096, (s, e) =>
                {
                    float* v = stackalloc float[4];
                    uint* words = stackalloc uint[64];
                    long b = b0 + s;
                    int w = VectorBlocks;
                    for (; b < b0 + e; b++)
                    {
                        // A whole vector group inside the rows at once (uniform draws), else one block.
                        if (!normal && w > 0 && b * 4 >= start && b + w <= b0 + e && (b + w) * 4 - start <= n && VectorBlock(key, baseCounter + (ulong)b, words))
                        {
                            ToUnit(words, ptr + (b * 4 - start), 4 * w);
                            b += w - 1;
                            continue;
                        }
                        Block(key, baseCounter + (ulong)b, out uint r0, out uint r1, out uint r2, out uint r3);
                        long j0 = b * 4 - start;
                        // A block wholly inside the rows is written straight; only the first and last may be cut.
                        float* to = j0 >= 0 && j0 + 4 <= n ? ptr + j0 : v;
                        if (normal) BoxMuller(r0, r1, r2, r3, to);
                        else { to[0] = ToUnit(r0); to[1] = ToUnit(r1); to[2] = ToUnit(r2); to[3] = ToUnit(r3); }
                        if (to == v)
                            for (int lane = 0; lane < 4; lane++)
                            {
                                long j = j0 + lane;
                                if (j >= 0 && j < n) ptr[j] = v[lane];
                            }
                    }
                });
            }
        }
    }

    /// <summary>Fills <paramref name="dest"/> with standard-normal floats (Box-Muller in double) and advances the offset.</summary>
    public void Normal(Span<float> dest) => Draw(dest, normal: true);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void BoxMuller(uint r0, uint r1, uint r2, uint r3, float* v)
    {
        // (0, 1] for the log, [0, 1) for the angle
        double u0 = ((r0 >> 8) + 1.0) / 16777216.0, v0 = (r1 >> 8) / 16777216.0;
        double u1 = ((r2 >> 8) + 1.0) / 16777216.0, v1 = (r3 >> 8) / 16777216.0;
        double m0 = Math.Sqrt(-2.0 * Math.Log(u0)), m1 = Math.Sqrt(-2.0 * Math.Log(u1));
        v[0] = (float)(m0 * Math.Cos(2 * Math.PI * v0));
        v[1] = (float)(m0 * Math.Sin(2 * Math.PI * v0));
        v[2] = (float)(m1 * Math.Cos(2 * Math.PI * v1));
        v[3] = (float)(m1 * Math.Sin(2 * Math.PI * v1));
    }

    /// <summary>A uniform integer in [0, <paramref name="maxExclusive"/>).</summary>
    public int NextInt(int maxExclusive)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxExclusive);
        Block(Seed, Offset++, out uint r0, out uint r1, out _, out _);
        ulong x = ((ulong)r1 << 32) | r0;
        return (int)(x % (ulong)maxExclusive);
    }

    /// <summary>A uniform double in [0, 1).</summary>
    public double NextDouble()
    {
        Block(Seed, Offset++, out uint r0, out uint r1, out _, out _);
        ulong x = (((ulong)r1 << 32) | r0) >> 11;
        return x * (1.0 / (1UL << 53));
    }
}
