using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

public class GeneratorTests
{
    // Known-answer vectors of Philox4x32-10 published with Random123 (Salmon et al. 2011, kat_vectors).
    [Theory]
    [InlineData(0u, 0u, 0u, 0u, 0u, 0u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void PhiloxMatchesKnownAnswers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint e0, uint e1, uint e2, uint e3)
    {
        Generator.Block(c0, c1, c2, c3, k0, k1, out uint r0, out uint r1, out uint r2, out uint r3);
        Assert.Equal(new[] { e0, e1, e2, e3 }, new[] { r0, r1, r2, r3 });
    }

    [Theory]
    [InlineData(0UL, 0UL)]
    [InlineData(0x243f6a8885a308d3UL, 123456789UL)]
    [InlineData(7UL, 0x00000001FFFFFFF0UL)]   // the last whole group before the low word wraps
    [InlineData(7UL, 0xFFFFFFFFFFFFFFF0UL)]
    public unsafe void VectorBlocksEqualScalarBlocks(ulong key, ulong counter)
    {
        int saved = Generator.VectorBlocks;
        try
        {
            foreach (int w in new[] { 16, 8 })
            {
                Generator.VectorBlocks = w;
                var r = new uint[64];
                bool ran;
                fixed (uint* pr = r) ran = Generator.VectorBlock(key, counter, pr);
                if (!ran) continue;   // this machine lacks the width
                for (int j = 0; j < w; j++)
                {
                    Generator.Block(key, counter + (ulong)j, out uint r0, out uint r1, out uint r2, out uint r3);
                    Assert.Equal(new[] { r0, r1, r2, r3 }, r.Skip(4 * j).Take(4).ToArray());
                }
                fixed (uint* pr = r) Assert.False(Generator.VectorBlock(key, counter + 0x10UL - 1UL | 0xFFFFFFF8UL, pr));  // would wrap
            }
        }
        finally { Generator.VectorBlocks = saved; }
    }

    [Fact]
    public void UniformDrawsAreTheSameOnEveryVectorWidth()
    {
        int saved = Generator.VectorBlocks;
        try
        {
            float[][]? scalar = null;
            foreach (int w in new[] { 0, 8, 16 })
            {
                Generator.VectorBlocks = w;
                var draws = new List<float[]>();
                foreach (int n in new[] { 1, 5, 63, 64, 65, 257, 40_003 })
                {
                    var a = new float[n];
                    new Generator(11) { Offset = 0xFFFFFFF0UL }.Uniform(a);  // crosses the low counter word's wrap
                    draws.Add(a);
                    // Rows 1..2 of 3 rows of 3n + 1... elements each (shards that start inside a counter block).
                    foreach (int per in new[] { n, 4 * n })
                    {
                        var part = new float[2 * per];
                        new Generator(12) { BatchShard = (1, 2, 3) }.Uniform(part);
                        var whole = new float[3 * per];
                        new Generator(12).Uniform(whole);
                        Assert.Equal(whole.Skip(per).ToArray(), part);
                        draws.Add(part);
                    }
                }
                if (scalar == null) scalar = draws.ToArray();
                else for (int i = 0; i < scalar.Length; i++) Assert.Equal(scalar[i], draws[i]);
            }
        }
        finally { Generator.VectorBlocks = saved; }
    }

    [Fact]
    public void SameSeedGivesSameNumbersForEveryThreadCount()
    {
        int saved = Threading.Threads;
        try
        {
            float[]? first = null;
            foreach (int threads in new[] { 1, 2, 3, 8 })
            {
                Threading.Threads = threads;
                var g = new Generator(42);
                var a = new float[100_003];
                g.Normal(a);
                var u = new float[50_001];
                g.Uniform(u);
                var all = a.Concat(u).ToArray();
                if (first == null) first = all;
                else Assert.Equal(first, all);
            }
        }
        finally
        {
            Threading.Threads = saved;
        }
    }

    [Fact]
    public void OffsetResumesTheStream()
    {
        var g = new Generator(7);
        var a = new float[10]; g.Normal(a);
        ulong offset = g.Offset;
        var b = new float[13]; g.Normal(b);
        var h = new Generator(7) { Offset = offset };
        var c = new float[13]; h.Normal(c);
        Assert.Equal(b, c);
        Assert.Equal(3UL, offset);  // 10 values use ceil(10 / 4) counter blocks
        Assert.NotEqual(a.Take(10), b.Take(10));
    }

    [Fact]
    public void NormalAndUniformHaveTheRightMoments()
    {
        var g = new Generator(3);
        const int n = 400_000;
        var x = new float[n]; g.Normal(x);
        double m = x.Average(v => (double)v), v2 = x.Average(v => (double)v * v) - m * m;
        double m4 = x.Average(v => Math.Pow(v - m, 4));
        Assert.InRange(m, -5 / Math.Sqrt(n), 5 / Math.Sqrt(n));          // 5 standard errors
        Assert.InRange(v2, 1 - 5 * Math.Sqrt(2.0 / n), 1 + 5 * Math.Sqrt(2.0 / n));
        Assert.InRange(m4, 3 - 0.05, 3 + 0.05);                           // Gaussian kurtosis
        var u = new float[n]; g.Uniform(u);
        Assert.All(u, v => Assert.InRange(v, 0f, 0.99999994f));
        Assert.InRange(u.Average(v => (double)v), 0.5 - 5 * Math.Sqrt(1 / 12.0 / n), 0.5 + 5 * Math.Sqrt(1 / 12.0 / n));
        var counts = new int[7];
        for (int i = 0; i < 70_000; i++) counts[g.NextInt(7)]++;
        Assert.All(counts, c => Assert.InRange(c, 10_000 - 5 * 93, 10_000 + 5 * 93));
    }
}
