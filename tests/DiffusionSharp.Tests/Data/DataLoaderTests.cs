using DiffusionSharp.Data;
using Xunit;

namespace DiffusionSharp.Tests.Data;

public class DataLoaderTests
{
    // 23 distinct 2-channel 4x4 images: pixel value encodes (item, channel, y, x); label = item % 5.
    private static InMemoryImageDataset Items(int n = 23)
    {
        int c = 2, s = 4;
        var px = new byte[n * c * s * s];
        for (int i = 0; i < px.Length; i++) px[i] = (byte)((i * 31 + i / 32) % 256);
        return new InMemoryImageDataset(px, Enumerable.Range(0, n).Select(i => i % 5).ToArray(), c, s);
    }

    private static List<(float[] Images, int[] Labels, int[] Indices)> Take(DataLoader dl, int batches)
    {
        var r = new List<(float[], int[], int[])>();
        for (int k = 0; k < batches; k++)
        {
            using var b = dl.Next();
            r.Add((b.Images.ToArray(), b.Labels, b.Indices));
        }
        return r;
    }

    private static void AssertSame(List<(float[] Images, int[] Labels, int[] Indices)> a, List<(float[] Images, int[] Labels, int[] Indices)> b)
    {
        Assert.Equal(a.Count, b.Count);
        for (int k = 0; k < a.Count; k++)
        {
            Assert.Equal(a[k].Indices, b[k].Indices);
            Assert.Equal(a[k].Labels, b[k].Labels);
            Assert.Equal(a[k].Images, b[k].Images);
        }
    }

    [Fact]
    public void SameSeedGivesSameBatchesAndEachEpochIsAPermutation()
    {
        var ds = Items();
        var a = Take(new DataLoader(ds, 5, seed: 42, randomFlip: true), 12);
        var b = Take(new DataLoader(ds, 5, seed: 42, randomFlip: true), 12);
        AssertSame(a, b);
        var c = Take(new DataLoader(ds, 5, seed: 43, randomFlip: true), 12);
        Assert.NotEqual(a[0].Indices, c[0].Indices);
        // 23 items, batch 5, drop-last: 4 batches per epoch, 20 distinct items each epoch, new order each epoch
        for (int e = 0; e < 3; e++)
        {
            var seen = a.Skip(4 * e).Take(4).SelectMany(x => x.Indices).ToList();
            Assert.Equal(20, seen.Distinct().Count());
        }
        Assert.NotEqual(a[0].Indices, a[4].Indices);
    }

    [Fact]
    public void BatchesHoldDatasetImagesFlippedOrNot()
    {
        var ds = Items();
        var dl = new DataLoader(ds, 8, seed: 7, randomFlip: true);
        int flipped = 0, plain = 0;
        for (int k = 0; k < 6; k++)
        {
            using var b = dl.Next();
            Assert.Equal(new[] { 8, 2, 4, 4 }, b.Images.Shape.ToArray());
            var imgs = b.Images.Span;
            for (int j = 0; j < 8; j++)
            {
                var (orig, label) = ((IDataset)ds).Get(b.Indices[j]);
                Assert.Equal(label, b.Labels[j]);
                var got = imgs.Slice(j * 32, 32).ToArray();
                var o = orig.ToArray();
                var mirrored = new float[32];
                for (int row = 0; row < 8; row++)
                    for (int x = 0; x < 4; x++) mirrored[row * 4 + x] = o[row * 4 + 3 - x];
                if (got.SequenceEqual(o)) plain++;
                else { Assert.Equal(mirrored, got); flipped++; }
            }
        }
        Assert.InRange(flipped, 10, 38);
        Assert.InRange(plain, 10, 38);
        Assert.All(Take(new DataLoader(ds, 8, seed: 7, shuffle: false), 1)[0].Indices.Select((v, i) => v == i), Assert.True);
    }

    [Theory]
    [InlineData(0)]   // before anything
    [InlineData(2)]   // mid-epoch
    [InlineData(4)]   // exactly at an epoch boundary
    [InlineData(7)]   // inside the second epoch
    public void ResumeFromStateReplaysTheSameBatches(int before)
    {
        var ds = Items();
        var a = new DataLoader(ds, 5, seed: 99, randomFlip: true);
        Take(a, before);
        var json = a.State.ToJson();
        var rest = Take(a, 9);
        var b = new DataLoader(ds, 5, seed: 99, randomFlip: true);
        b.Restore(DataLoaderState.FromJson(json));
        Assert.Equal(a.State with { Epoch = 0, Index = 0, EpochStartOffset = 0, GeneratorOffset = 0 },
                     b.State with { Epoch = 0, Index = 0, EpochStartOffset = 0, GeneratorOffset = 0 });
        AssertSame(rest, Take(b, 9));
        Assert.Equal(a.State, b.State);
    }

    [Fact]
    public void PartialLastBatchAndStateMismatch()
    {
        var ds = Items(7);
        var dl = new DataLoader(ds, 3, seed: 1, dropLast: false);
        Assert.Equal(new[] { 3, 3, 1, 3 }, Enumerable.Range(0, 4).Select(_ => { using var b = dl.Next(); return b.Labels.Length; }).ToArray());
        Assert.Equal(1, dl.Epoch);
        var other = new DataLoader(ds, 3, seed: 2, dropLast: false);
        Assert.Contains("does not match", Assert.Throws<ArgumentException>(() => other.Restore(dl.State)).Message);
        Assert.Contains("fewer than one batch", Assert.Throws<ArgumentException>(() => new DataLoader(ds, 8, seed: 1)).Message);
    }
}
