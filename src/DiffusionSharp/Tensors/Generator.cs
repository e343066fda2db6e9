using System.Runtime.CompilerServices;
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ToUnit(uint x) => (x >> 8) * (1f / 16777216f);  // 24 random bits -> [0, 1)

    /// <summary>
    /// When set, a <see cref="Uniform"/> or <see cref="Normal"/> draw whose length is a multiple of <c>Count</c> is rows <c>First</c> .. <c>First + Count - 1</c>
    /// of the same draw made for <c>Total</c> equal rows (and advances the offset as that draw would): a data-parallel rank
    /// holding part of a batch then sees exactly the values one process holding the whole batch sees.
    /// </summary>
    public (int First, int Count, int Total)? BatchShard { get; set; }

    /// <summary>Fills <paramref name="dest"/> with uniform [0, 1) floats and advances the offset.</summary>
    public void Uniform(Span<float> dest)
    {
        if (BatchShard is { } shard && shard.Count != shard.Total && dest.Length % shard.Count == 0)
        {
            Rows(dest, shard.First, shard.Count, shard.Total, normal: false);
            return;
        }
        ulong baseCounter = Offset;
        int blocks = (dest.Length + 3) / 4;
        Offset += (ulong)blocks;
        unsafe
        {
            fixed (float* p = dest)
            {
                float* ptr = p;
                int n = dest.Length;
                ulong key = Seed;
                Threading.For(blocks, 4096, (s, e) =>
                {
                    for (int b = s; b < e; b++)
                    {
                        Block(key, baseCounter + (ulong)b, out uint r0, out uint r1, out uint r2, out uint r3);
                        int i = b * 4;
                        ptr[i] = ToUnit(r0);
                        if (i + 1 < n) ptr[i + 1] = ToUnit(r1);
                        if (i + 2 < n) ptr[i + 2] = ToUnit(r2);
                        if (i + 3 < n) ptr[i + 3] = ToUnit(r3);
                    }
                });
            }
        }
    }

    // Element g of a draw is lane g % 4 of block offset + g / 4.
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
                Threading.For((int)(b1 - b0), 4096, (s, e) =>
                {
                    float* v = stackalloc float[4];
                    for (long b = b0 + s; b < b0 + e; b++)
                    {
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
    public void Normal(Span<float> dest)
    {
        if (BatchShard is { } shard && shard.Count != shard.Total && dest.Length % shard.Count == 0)
        {
            Rows(dest, shard.First, shard.Count, shard.Total, normal: true);
            return;
        }
        ulong baseCounter = Offset;
        int blocks = (dest.Length + 3) / 4;
        Offset += (ulong)blocks;
        unsafe
        {
            fixed (float* p = dest)
            {
                float* ptr = p;
                int n = dest.Length;
                ulong key = Seed;
                Threading.For(blocks, 2048, (s, e) =>
                {
                    float* v = stackalloc float[4];
                    for (int b = s; b < e; b++)
                    {
                        Block(key, baseCounter + (ulong)b, out uint r0, out uint r1, out uint r2, out uint r3);
                        BoxMuller(r0, r1, r2, r3, v);
                        int i = b * 4;
                        ptr[i] = v[0];
                        if (i + 1 < n) ptr[i + 1] = v[1];
                        if (i + 2 < n) ptr[i + 2] = v[2];
                        if (i + 3 < n) ptr[i + 3] = v[3];
                    }
                });
            }
        }
    }

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
