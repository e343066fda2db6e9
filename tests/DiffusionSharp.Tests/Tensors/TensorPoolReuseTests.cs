using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

/// <summary>Tests that empty the shared pool run alone, so no concurrent test rents or returns arrays between their steps.</summary>
[CollectionDefinition("TensorPool alone", DisableParallelization = true)]
public sealed class TensorPoolAloneCollection;

[Collection("TensorPool alone")]
public class TensorPoolReuseTests
{
    [Fact]
    public void PoolHandsBackAReturnedArrayOfTheSameClass()
    {
        TensorPool.Clear();
        const int n = 1_234_567;
        var a = TensorPool.Rent(n, clear: false);
        Assert.Equal(TensorPool.PooledLength(n), a.Length);
        a[n - 1] = 42f;
        TensorPool.Return(a);
        var b = TensorPool.Rent(n - 1000, clear: true);
        Assert.Same(a, b);
        Assert.Equal(0f, b[n - 1001]);
        TensorPool.Return(b);
        TensorPool.Return(new float[n]);  // not a class length: ignored
    }

    [Fact]
    public void AnEmptyClassTakesAnIdleArrayOfUpToTwoLargerClassesOnly()
    {
        TensorPool.Clear();
        const int n = 1 << 20;                                   // class 2^20
        int twoUp = TensorPool.PooledLength((1 << 20) + (1 << 18) + 1);   // 1.5 * 2^20, two classes up
        int threeUp = TensorPool.PooledLength((1 << 20) + (1 << 19) + 1); // 1.75 * 2^20, three classes up
        Assert.Equal(3 << 19, twoUp);
        Assert.Equal(7 << 18, threeUp);

        var near = TensorPool.Rent(twoUp, clear: false);
        var far = TensorPool.Rent(threeUp, clear: false);
        TensorPool.Return(far);
        var fresh = TensorPool.Rent(n, clear: false);
        Assert.NotSame(far, fresh);                                // three classes up is too far: a new array
        Assert.Equal(n, fresh.Length);

        Array.Fill(near, 7f);
        TensorPool.Return(near);
        var taken = TensorPool.Rent(n, clear: true);
        Assert.Same(near, taken);                                  // two classes up serves the request
        Assert.Equal(0f, taken[n - 1]);                            // cleared up to the request
        Assert.Equal(7f, taken[n]);                                // beyond it, the contents are left as they were
        TensorPool.Clear();
    }
}
