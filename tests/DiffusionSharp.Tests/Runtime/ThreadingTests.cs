using DiffusionSharp.Runtime;
using Xunit;

namespace DiffusionSharp.Tests.Runtime;

/// <summary>Threading.For: every index runs exactly once in the documented chunks, on the kernel pool or the .NET fallback.</summary>
public class ThreadingTests
{
    private static void WithThreads(int threads, Action body)
    {
        int saved = Threading.Threads;
        Threading.Threads = threads;
        try { body(); }
        finally { Threading.Threads = saved; }
    }

    // The chunks For promises: k <= count / grain contiguous ranges [count c / k, count (c + 1) / k) (k = min(threads, count / grain);
    // other tests change the process-wide thread count concurrently, so k is read off the ranges).
    private static List<(int, int)> Expected(int count, int grain, int k)
    {
        Assert.InRange(k, 1, Math.Max(1, count / Math.Max(1, grain)));
        return Enumerable.Range(0, k).Select(c => ((int)((long)count * c / k), (int)((long)count * (c + 1) / k))).ToList();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(8)]
    public void EveryIndexRunsOnceInTheDocumentedChunks(int threads)
    {
        WithThreads(threads, () =>
        {
            foreach (var (count, grain) in new[] { (1, 1), (7, 1), (1000, 3), (5, 8), (97, 10) })
                for (int round = 0; round < 200; round++)
                {
                    var hits = new int[count];
                    var ranges = new System.Collections.Concurrent.ConcurrentBag<(int, int)>();
                    Threading.For(count, grain, (s, e) =>
                    {
                        ranges.Add((s, e));
                        for (int i = s; i < e; i++) Interlocked.Increment(ref hits[i]);
                    });
                    Assert.All(hits, h => Assert.Equal(1, h));
                    Assert.Equal(Expected(count, grain, ranges.Count), ranges.OrderBy(r => r.Item1).ToList());
                }
        });
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void ForDynamicRunsEveryIndexOnceInPiecesOfAtMostTheGivenSize(int threads)
    {
        WithThreads(threads, () =>
        {
            foreach (var (count, piece) in new[] { (1, 1), (7, 1), (1000, 3), (5, 8), (97, 10), (3, int.MaxValue) })
                for (int round = 0; round < 100; round++)
                {
                    var hits = new int[count];
                    var ranges = new System.Collections.Concurrent.ConcurrentBag<(int, int)>();
                    Threading.ForDynamic(count, piece, (s, e) =>
                    {
                        ranges.Add((s, e));
                        for (int i = s; i < e; i++) Interlocked.Increment(ref hits[i]);
                    });
                    Assert.All(hits, h => Assert.Equal(1, h));
                    // one thread (this test's, or another test's concurrent setting) runs the whole range inline
                    int pieces = (int)(((long)count + piece - 1) / piece);
                    if (ranges.Count == 1) Assert.Equal((0, count), ranges.Single());
                    else
                    {
                        Assert.Equal(pieces, ranges.Count);
                        Assert.All(ranges, r => Assert.InRange(r.Item2 - r.Item1, 1, Math.Min(count, piece)));
                    }
                }
        });
    }

    [Fact]
    public void AnExceptionInAChunkReachesTheCaller()
    {
        WithThreads(2, () =>
        {
            for (int round = 0; round < 50; round++)
            {
                int bad = round % 2 == 0 ? 0 : 99;
                var e = Assert.Throws<AggregateException>(() => Threading.For(100, 1, (s, e) =>
                {
                    if (bad >= s && bad < e) throw new InvalidOperationException("chunk failed");
                }));
                Assert.IsType<InvalidOperationException>(e.InnerException);
                // the pool is usable afterwards
                int sum = 0;
                Threading.For(10, 1, (s, e) => Interlocked.Add(ref sum, e - s));
                Assert.Equal(10, sum);
            }
        });
    }

    [Fact]
    public void NestedAndConcurrentForksCompleteEveryIndex()
    {
        WithThreads(2, () =>
        {
            var hits = new int[4 * 64 * 50];
            Parallel.For(0, 4, caller =>
            {
                for (int round = 0; round < 50; round++)
                    Threading.For(8, 1, (s, e) =>
                    {
                        for (int i = s; i < e; i++)
                            Threading.For(8, 1, (s2, e2) =>
                            {
                                for (int j = s2; j < e2; j++) Interlocked.Increment(ref hits[(caller * 50 + round) * 64 + i * 8 + j]);
                            });
                    });
            });
            Assert.All(hits, h => Assert.Equal(1, h));
        });
    }
}
