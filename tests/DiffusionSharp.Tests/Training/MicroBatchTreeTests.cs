using DiffusionSharp.Tensors;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Training;

/// <summary>
/// The fixed tree in which micro-batch gradients are added: the shares of 2 and 4 ranks are subtrees, so adding the ranks'
/// sums in pairs gives the one-process sum bit for bit; every micro-batch is run once; the sum is the sum.
/// </summary>
public class MicroBatchTreeTests
{
    private const int Size = 301;

    // Values of mixed sign and magnitude (1e-3 .. 1e3), so float32 addition order shows in the last bits.
    private static float[] Leaf(int m)
    {
        var g = new Generator(1000 + (ulong)m);
        var v = new float[Size];
        g.Normal(v);
        for (int i = 0; i < Size; i++) v[i] *= MathF.Pow(10, (i + m) % 7 - 3);
        return v;
    }

    // The node's sum as the trainer gets it, with the micro-batches it ran; half of the parameter's hooks fire during the last micro-batch.
    private static (float[] Sum, List<int> Ran) Run(TreeNode node)
    {
        var p = Tensor.Zeros(Size);
        p.RequiresGrad = true;
        var q = Tensor.Zeros(3);  // never reached by the loss: must come out as zeros
        q.RequiresGrad = true;
        var tree = new MicroBatchTree([p, q]);
        var ran = new List<int>();
        int finals = 0;
        tree.Run(node, (m, hook) =>
        {
            ran.Add(m);
            Assert.Null(p.Grad);
            p.Grad = Tensor.FromArray(Leaf(m), Size);
            hook?.Invoke(p);
        }, t => { Assert.Same(p, t); finals++; });
        Assert.Equal(1, finals);
        Assert.Equal(new float[3], q.Grad!.ToArray());
        return (p.Grad!.ToArray(), ran);
    }

    private static float[] Add(float[] a, float[] b) => a.Zip(b, (x, y) => x + y).ToArray();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(13)]
    [InlineData(16)]
    public void RankSubtreesAddUpToTheOneProcessSum(int leaves)
    {
        var (one, ran) = Run(new TreeNode(leaves, 0, 0, 0));
        Assert.Equal(Enumerable.Range(0, leaves), ran);
        for (int i = 0; i < Size; i++)
        {
            double exact = 0, scale = 0;
            for (int m = 0; m < leaves; m++) { exact += Leaf(m)[i]; scale += Math.Abs(Leaf(m)[i]); }
            Assert.True(Math.Abs(one[i] - exact) <= 1e-6 * scale, $"element {i}: {one[i]} vs {exact}");
        }
        if (leaves >= 2)
        {
            var halves = Enumerable.Range(0, 2).Select(r => Run(new TreeNode(leaves, 0, 1, r))).ToArray();
            Assert.Equal(Enumerable.Range(0, leaves), halves.SelectMany(h => h.Ran));
            Assert.Equal(one, Add(halves[0].Sum, halves[1].Sum));  // a + b, what a 2-rank all-reduce computes
        }
        if (leaves >= 4)
        {
            var quarters = Enumerable.Range(0, 4).Select(r => Run(new TreeNode(leaves, 0, 2, r))).ToArray();
            Assert.Equal(Enumerable.Range(0, leaves), quarters.SelectMany(h => h.Ran));
            Assert.Equal(one, Add(Add(quarters[0].Sum, quarters[1].Sum), Add(quarters[2].Sum, quarters[3].Sum)));
        }
    }

    [Fact]
    public void TheOrderOfTheSumMatters()
    {
        // the left-to-right sum of the same 13 micro-batches differs in some bits: the fixed tree is what makes the split irrelevant
        var (one, _) = Run(new TreeNode(13, 0, 0, 0));
        var left = Leaf(0);
        for (int m = 1; m < 13; m++) left = Add(left, Leaf(m));
        Assert.NotEqual(one, left);
    }
}
