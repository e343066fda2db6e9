using DiffusionSharp.Data;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Training;

/// <summary>The pieces of data parallelism that need no MPI: shard draws, shard loading, the gradient-ready hook.</summary>
public class ShardingTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ShardDrawIsTheSameRowsOfTheWholeBatchDraw(bool normal)
    {
        const int total = 10, per = 7;  // rows that straddle counter blocks (7 is not a multiple of 4)
        var whole = new float[total * per];
        var g = new Generator(11) { Offset = 5 };
        if (normal) g.Normal(whole); else g.Uniform(whole);
        ulong after = g.Offset;
        foreach (var (first, count) in new[] { (0, 3), (3, 4), (7, 3), (9, 1) })
        {
            var part = new float[count * per];
            var s = new Generator(11) { Offset = 5, BatchShard = (first, count, total) };
            if (normal) s.Normal(part); else s.Uniform(part);
            Assert.Equal(whole.AsSpan(first * per, count * per).ToArray(), part);
            Assert.Equal(after, s.Offset);  // every shard leaves the stream where the whole draw does
        }
    }

    private sealed class Ramp : IDataset
    {
        public int Count => 10;
        public int Channels => 1;
        public int Size => 2;
        public IReadOnlyList<string> ClassNames => ["a", "b", "c"];
        public int Load(int index, Span<float> dest)
        {
            for (int i = 0; i < dest.Length; i++) dest[i] = index + 0.1f * i;
            return index % 3;
        }
    }

    [Fact]
    public void ShardOfABatchIsTheSliceOfTheWholeBatch()
    {
        var whole = new DataLoader(new Ramp(), 4, seed: 3, randomFlip: true);
        var shard = new DataLoader(new Ramp(), 4, seed: 3, randomFlip: true);
        for (int step = 0; step < 6; step++)  // crosses epochs (10 items, batches of 4, drop-last)
        {
            using var a = whole.Next();
            using var b = shard.Next(1, 2);
            Assert.Equal(a.Indices.Skip(1).Take(2), b.Indices);
            Assert.Equal(a.Labels.Skip(1).Take(2), b.Labels);
            Assert.Equal(a.Images.ToArray().Skip(4).Take(8), b.Images.ToArray());
            Assert.Equal(whole.State, shard.State);
        }
    }

    [Fact]
    public void GradReadyHookSeesEachParameterOnceWithItsFinalGradient()
    {
        var g = new Generator(1);
        var w1 = Tensor.Randn(g, 3, 3); w1.RequiresGrad = true;
        var w2 = Tensor.Randn(g, 3, 3); w2.RequiresGrad = true;
        var x = Tensor.Randn(g, 3, 3);
        // w1 is used twice (early and late in the graph): its gradient is final only after both uses' backward
        var y = ((x * w1) * w2 + w1 * w1).SumAll();
        var seen = new Dictionary<Tensor, float[]>(ReferenceEqualityComparer.Instance);
        y.Backward(onLeafGradReady: t => { Assert.False(seen.ContainsKey(t)); seen[t] = t.Grad!.ToArray(); });
        Assert.Equal(2, seen.Count);
        Assert.Equal(w1.Grad!.ToArray(), seen[w1]);
        Assert.Equal(w2.Grad!.ToArray(), seen[w2]);
        var xv = x.ToArray(); var a = w1.ToArray(); var b = w2.ToArray(); var ga = w1.Grad!.ToArray();
        for (int i = 0; i < 9; i++) Assert.Equal(xv[i] * b[i] + 2 * a[i], ga[i], 5);  // d/dw1 of x w1 w2 + w1^2
    }

    [Fact]
    public void ReducerOnOneProcessLeavesGradientsAndFillsMissingOnesWithZeros()
    {
        var g = new Generator(2);
        var ps = Enumerable.Range(0, 5).Select(_ => { var t = Tensor.Randn(g, 7); t.RequiresGrad = true; return t; }).ToArray();
        var red = new GradientReducer(SingleProcess.Instance, ps, bucketBytes: 40);  // 10 floats: buckets of one or two tensors
        Assert.True(red.BucketCount >= 3);
        var loss = (ps[0] * ps[1] + ps[3]).SumAll();  // ps[2] and ps[4] get no gradient
        loss.Backward(onLeafGradReady: red.OnGradReady);
        var before = ps.Select(p => p.Grad?.ToArray()).ToArray();
        red.Finish();
        for (int i = 0; i < 5; i++)
            Assert.Equal(before[i] ?? new float[7], ps[i].Grad!.ToArray());
    }
}
