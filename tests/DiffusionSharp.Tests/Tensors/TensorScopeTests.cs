using DiffusionSharp.Autograd;
using DiffusionSharp.Nn.UNet;
using DiffusionSharp.Optim;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

public class TensorScopeTests
{
    [Fact]
    public void EndingAScopeDisposesWhatItCreated()
    {
        using var before = Tensor.Ones(4, 16);
        Tensor a, b, view;
        using (var scope = TensorScope.Begin())
        {
            a = Tensor.Ones(4, 16);
            b = a * 3f + before;
            view = b.Reshape(64);
            Assert.True(scope.Owns(a) && scope.Owns(b) && scope.Owns(view));
            Assert.False(scope.Owns(before));
            Assert.Equal(4, scope.OwnedCount);  // a, a * 3, b and the view
        }
        foreach (var t in new[] { a, b, view })
        {
            Assert.True(t.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => t.Span[0]);
        }
        Assert.False(before.IsDisposed);
        Assert.Equal(1f, before.Span[7]);
        Assert.Null(TensorScope.Current);
    }

    [Fact]
    public void KeptTensorsMoveToTheEnclosingScope()
    {
        Tensor kept, inner, survivor;
        using (var outer = TensorScope.Begin())
        {
            using (var scope = TensorScope.Begin())
            {
                Assert.Same(scope, TensorScope.Current);
                inner = Tensor.Full(new Shape(40), 2f);
                kept = scope.Keep(inner + 1f);
                survivor = scope.Keep(outer.Keep(Tensor.Full(new Shape(40), 5f)));  // outer does not own it: a no-op there
            }
            Assert.Same(outer, TensorScope.Current);
            Assert.True(inner.IsDisposed);
            Assert.False(kept.IsDisposed);
            Assert.Equal(3f, kept.Span[39]);
            Assert.True(outer.Owns(kept));
            Assert.True(outer.Owns(survivor));
            outer.Keep(survivor);
        }
        Assert.True(kept.IsDisposed);
        Assert.False(survivor.IsDisposed);
        Assert.Equal(5f, survivor.Span[0]);
        survivor.Dispose();
    }

    [Fact]
    public void SuspendedAndPersistedTensorsOutliveTheScope()
    {
        Tensor suspended, persisted, owned;
        using (var scope = TensorScope.Begin())
        {
            using (TensorScope.Suspend())
            {
                Assert.Null(TensorScope.Current);
                suspended = Tensor.Zeros(50);
            }
            persisted = TensorScope.Persist(Tensor.Zeros(50));
            owned = Tensor.Zeros(50);
            Assert.False(scope.Owns(suspended));
            Assert.False(scope.Owns(persisted));
        }
        Assert.False(suspended.IsDisposed);
        Assert.False(persisted.IsDisposed);
        Assert.True(owned.IsDisposed);
        suspended.Dispose();
        persisted.Dispose();
    }

    [Fact]
    public void ScopesMustEndInnermostFirst()
    {
        var outer = TensorScope.Begin();
        var inner = TensorScope.Begin();
        var e = Assert.Throws<InvalidOperationException>(() => outer.Dispose());
        Assert.Contains("innermost first", e.Message);
        inner.Dispose();
        outer.Dispose();
        Assert.Null(TensorScope.Current);
    }

    [Fact]
    public void ADisposedViewKeepsSharedStorageAliveUntilTheLastReference()
    {
        Tensor kept;
        using (var scope = TensorScope.Begin())
        {
            var x = Tensor.Full(new Shape(8, 8), 7f);
            kept = scope.Keep(x.Reshape(64));  // the base tensor is disposed, the view still holds the storage
        }
        Assert.Equal(7f, kept.Span[63]);
        kept.Dispose();
    }

    private const string TinyConfig = """
    {
      "sample_size": 8, "in_channels": 1, "out_channels": 1,
      "block_out_channels": [8, 16],
      "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
      "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
      "layers_per_block": 1, "attention_head_dim": 8, "norm_num_groups": 4, "dropout": 0.1
    }
    """;

    private sealed class Run
    {
        public readonly UNet2DModel Net;
        public readonly Tensor[] Params;
        public readonly Adam Opt;
        public readonly Ema Ema;
        private readonly Generator _data = new(11);

        public Run()
        {
            Net = new UNet2DModel(UNet2DConfig.Parse(TinyConfig, "tiny.json"), new Generator(3));
            Net.SetDropoutGenerator(new Generator(4));
            Net.Train();
            Params = Net.Parameters().ToArray();
            Opt = new Adam(Params, 1e-2);
            Ema = new Ema(Params, 0.9);
        }

        // One L_simple-style step; returns the loss tensor and the network output so callers can check their fate.
        public (Tensor Loss, Tensor Output) Step()
        {
            var x = Tensor.Randn(_data, 3, 1, 8, 8);
            var target = Tensor.Randn(_data, 3, 1, 8, 8);
            var t = Tensor.FromValues(10f, 500f, 990f);
            var y = Net.Forward(x, t);
            var loss = Tensor.MseLoss(y, target);
            Opt.ZeroGrad();
            loss.Backward();
            Opt.Step();
            Ema.Step(Params);
            return (loss, y);
        }
    }

    private static float[] Flatten(IEnumerable<Tensor> ts) => ts.SelectMany(p => p.ToArray()).ToArray();

    [Fact]
    public void AScopedTrainingStepKeepsGradientsAndOptimizerStateAndMatchesAnUnscopedOne()
    {
        var plain = new Run();
        var scoped = new Run();
        for (int step = 0; step < 3; step++)
        {
            plain.Step();
            Tensor loss, output;
            using (var scope = TensorScope.Begin())
            {
                (loss, output) = scoped.Step();
                Assert.True(scope.OwnedCount > 50);  // the forward graph of a U-Net
            }
            Assert.True(loss.IsDisposed);
            Assert.True(output.IsDisposed);
            Assert.Throws<ObjectDisposedException>(() => output.Span[0]);
        }
        for (int i = 0; i < scoped.Params.Length; i++)
        {
            var p = scoped.Params[i];
            Assert.False(p.IsDisposed);
            Assert.NotNull(p.Grad);
            Assert.False(p.Grad!.IsDisposed);
            Assert.False(scoped.Opt.ExpAvg(i)!.IsDisposed);
            Assert.False(scoped.Opt.ExpAvgSq(i)!.IsDisposed);
            Assert.False(scoped.Ema.Shadow[i].IsDisposed);
            Assert.Equal(plain.Params[i].Grad!.ToArray(), p.Grad.ToArray());
        }
        Assert.Equal(Flatten(plain.Params), Flatten(scoped.Params));
        Assert.Equal(Flatten(Enumerable.Range(0, plain.Params.Length).Select(i => plain.Opt.ExpAvgSq(i)!)),
            Flatten(Enumerable.Range(0, scoped.Params.Length).Select(i => scoped.Opt.ExpAvgSq(i)!)));
        Assert.Equal(Flatten(plain.Ema.Shadow), Flatten(scoped.Ema.Shadow));
    }

    [Fact]
    public void ScopedNoGradInferenceGivesTheSameOutputAndFreesActivations()
    {
        var net = new UNet2DModel(UNet2DConfig.Parse(TinyConfig, "tiny.json"), new Generator(3));
        net.Eval();
        var x = Tensor.Randn(new Generator(8), 2, 1, 8, 8);
        var t = Tensor.FromValues(3f, 700f);
        using var _ = GradMode.NoGrad();
        var expected = net.Forward(x, t).ToArray();
        Tensor y;
        int created;
        using (var scope = TensorScope.Begin())
        {
            y = scope.Keep(net.Forward(x, t));
            created = scope.OwnedCount;
        }
        Assert.True(created > 15, $"{created} tensors created in the scope");  // the forward's intermediates (20 with the fused norms)
        Assert.Equal(expected, y.ToArray());
        Assert.False(x.IsDisposed);
        Assert.DoesNotContain(net.Parameters(), p => p.IsDisposed);
    }

    [Fact]
    public void PoolSizeClassesWasteAtMostAQuarter()
    {
        for (int n = 0; n <= 40000; n += n < 300 ? 1 : 97)
        {
            int len = TensorPool.PooledLength(n);
            Assert.True(len >= n, $"length {n} -> {len}");
            if (n > 32) Assert.True(len <= n + (n + 3) / 4, $"length {n} -> {len}");
            else Assert.Equal(n, len);
        }
        Assert.Equal(64, TensorPool.PooledLength(64));
        Assert.Equal(80, TensorPool.PooledLength(65));
        Assert.Equal(1 << 20, TensorPool.PooledLength(1 << 20));
        Assert.Equal((1 << 20) + (1 << 18), TensorPool.PooledLength((1 << 20) + 1));
    }
}
