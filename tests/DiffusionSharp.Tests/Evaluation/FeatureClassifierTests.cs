using System.Diagnostics;
using DiffusionSharp.Data;
using DiffusionSharp.Evaluation;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tests.Data;
using Xunit;

namespace DiffusionSharp.Tests.Evaluation;

public class FeatureClassifierTests
{
    /// <summary>Two classes of 8x8 gray patterns: horizontal stripes (0) and vertical stripes (1), random phase, period and noise.</summary>
    public static InMemoryImageDataset Stripes(int count, int seed, int size = 8)
    {
        var rng = new Random(seed);
        var pixels = new byte[count * size * size];
        var labels = new int[count];
        for (int n = 0; n < count; n++)
        {
            int label = n % 2, period = 2 + rng.Next(3), phase = rng.Next(period);
            labels[n] = label;
            for (int y = 0; y < size; y++)
                for (int x = 0; x < size; x++)
                {
                    int t = label == 0 ? y : x;
                    double v = ((t + phase) % period < period / 2.0 ? 200 : 55) + rng.Next(-40, 41);
                    pixels[n * size * size + y * size + x] = (byte)Math.Clamp(v, 0, 255);
                }
        }
        return new InMemoryImageDataset(pixels, labels, 1, size, ["horizontal", "vertical"], "stripes");
    }

    public static ClassifierConfig TinyConfig(int size = 8, int channels = 1) => new()
    {
        ImageSize = size, InChannels = channels, Channels = [8, 16], FeatureDim = 16, NumClasses = 2, ClassNames = ["horizontal", "vertical"],
    };

    [Fact]
    public void LearnsSyntheticPatternsQuickly()
    {
        var sw = Stopwatch.StartNew();
        var model = new FeatureClassifier(TinyConfig(), new Generator(1));
        var before = ClassifierTraining.Evaluate(model, Stripes(200, 2));
        var last = ClassifierTraining.Train(model, Stripes(512, 1), new ClassifierTrainOptions { Steps = 80, BatchSize = 32, LearningRate = 5e-3, WarmupSteps = 5, Seed = 3 });
        double acc = ClassifierTraining.Evaluate(model, Stripes(200, 2));
        Assert.Equal(80, last.Step);
        Assert.True(acc >= 0.95, $"test accuracy {acc} (before training {before}, last loss {last.Loss})");
        Assert.True(last.Loss < 0.3, $"last batch loss {last.Loss}");
        Assert.True(sw.Elapsed.TotalSeconds < 10, $"took {sw.Elapsed.TotalSeconds:F1} s");
    }

    [Fact]
    public void CrossEntropyMatchesDefinitionAndGradient()
    {
        var logits = Tensor.FromArray([1f, 2f, 0.5f, -1f, 0f, 3f], 2, 3);
        logits.RequiresGrad = true;
        var loss = ClassifierTraining.CrossEntropy(logits, [1, 0], 3);
        double l0 = Math.Log(Math.Exp(1) + Math.Exp(2) + Math.Exp(0.5)) - 2, l1 = Math.Log(Math.Exp(-1) + 1 + Math.Exp(3)) + 1;
        Assert.Equal((l0 + l1) / 2, loss.Item(), 5);
        loss.Backward();
        // d/dz mean CE = (softmax - onehot) / N
        var g = logits.Grad!.ToArray();
        double z0 = Math.Exp(1) + Math.Exp(2) + Math.Exp(0.5);
        Assert.Equal((Math.Exp(2) / z0 - 1) / 2, g[1], 5);
        Assert.Equal(Math.Exp(1) / z0 / 2, g[0], 5);
    }

    [Fact]
    public void SaveAndLoadGiveTheSameFeatures()
    {
        using var tmp = new TempDir();
        var model = new FeatureClassifier(TinyConfig() with { TestAccuracy = 0.5, Dataset = "stripes" }, new Generator(4));
        var data = Stripes(10, 5);
        var f1 = model.ExtractFeatures(data, 10, batchSize: 3);
        model.Save(tmp.Path);
        var loaded = FeatureClassifier.Load(tmp.Path);
        Assert.Equal(0.5, loaded.Config.TestAccuracy);
        Assert.Equal("stripes", loaded.Config.Dataset);
        Assert.Equal(new[] { 8, 16 }, loaded.Config.Channels);
        var f2 = loaded.ExtractFeatures(data, 10, batchSize: 10);
        Assert.Equal(10 * 16, f2.Length);
        for (int i = 0; i < f1.Length; i++) Assert.Equal(f1[i], f2[i], 5);
    }

    [Fact]
    public void ImagesOfAnotherSizeOrChannelCountAreRejected()
    {
        var model = new FeatureClassifier(TinyConfig(size: 16));
        var e = Assert.Throws<InvalidDataException>(() => model.ExtractFeatures(Stripes(4, 1, size: 8), 4));
        Assert.Contains("1x16x16", e.Message);
        Assert.Contains("1x8x8", e.Message);
        using var rgb = Tensor.Zeros(2, 3, 16, 16);
        e = Assert.Throws<InvalidDataException>(() => model.ExtractFeatures(rgb));
        Assert.Contains("3x16x16", e.Message);
    }

    [Fact]
    public void BadFoldersAreReportedClearly()
    {
        using var tmp = new TempDir();
        var e1 = Assert.Throws<FileNotFoundException>(() => FeatureClassifier.Load(tmp.Path));
        Assert.Contains("config.json", e1.Message);
        File.WriteAllText(Path.Combine(tmp.Path, "config.json"), """{"architecture": "something-else"}""");
        File.WriteAllBytes(Path.Combine(tmp.Path, "model.safetensors"), new byte[16]);
        var e2 = Assert.Throws<InvalidDataException>(() => FeatureClassifier.Load(tmp.Path));
        Assert.Contains("something-else", e2.Message);
    }
}
