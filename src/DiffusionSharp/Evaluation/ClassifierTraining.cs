using DiffusionSharp.Autograd;
using DiffusionSharp.Data;
using DiffusionSharp.Optim;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Evaluation;

/// <summary>Settings of <see cref="ClassifierTraining.Train"/>.</summary>
public sealed record ClassifierTrainOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 3000;

    /// <summary>Images per batch.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Peak Adam learning rate (cosine decay to 0 after a short linear warm-up).</summary>
    public double LearningRate { get; init; } = 2e-3;

    /// <summary>Warm-up steps.</summary>
    public int WarmupSteps { get; init; } = 100;

    /// <summary>Seed of the data order and flips.</summary>
    public ulong Seed { get; init; }

    /// <summary>Mirror images left-right with probability 1/2.</summary>
    public bool RandomFlip { get; init; }
}

/// <summary>One training step's figures.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="Loss">Mean cross-entropy of the batch.</param>
/// <param name="Accuracy">Fraction of the batch classified correctly.</param>
/// <param name="LearningRate">Learning rate used.</param>
public readonly record struct ClassifierStep(int Step, double Loss, double Accuracy, double LearningRate);

/// <summary>Trains and scores a <see cref="FeatureClassifier"/> with cross-entropy and Adam.</summary>
public static class ClassifierTraining
{
    /// <summary>Trains <paramref name="model"/> on <paramref name="data"/>; <paramref name="onStep"/> sees every step.</summary>
    public static ClassifierStep Train(FeatureClassifier model, IDataset data, ClassifierTrainOptions options, Action<ClassifierStep>? onStep = null,
        CancellationToken cancel = default)
    {
        model.EnsureAccepts(data.Channels, data.Size, "the training data");
        if (options.Steps < 1) throw new ArgumentOutOfRangeException(nameof(options), $"Steps must be at least 1, got {options.Steps}.");
        var loader = new DataLoader(data, Math.Min(options.BatchSize, data.Count), options.Seed, shuffle: true, randomFlip: options.RandomFlip);
        var parameters = model.TrainableParameters().ToList();
        var opt = new Adam(parameters, options.LearningRate);
        model.Train();
        var last = default(ClassifierStep);
        for (int step = 0; step < options.Steps && !cancel.IsCancellationRequested; step++)
        {
            opt.LearningRate = LearningRateAt(options, step);
            using var scope = TensorScope.Begin();  // the step's activations and intermediate gradients go back to the pool
            using var batch = loader.Next();
            int n = batch.Images.Dim(0);
            var logits = model.Forward(batch.Images);
            double acc = Accuracy(logits, batch.Labels);
            var loss = CrossEntropy(logits, batch.Labels, model.Config.NumClasses);
            double value = loss.Item();
            if (!double.IsFinite(value)) throw new InvalidOperationException($"Classifier loss became {value} at step {step + 1}; lower the learning rate.");
            loss.Backward(releaseIntermediates: true);
            opt.Step();
            opt.ZeroGrad();
            last = new ClassifierStep(step + 1, value, acc, opt.LearningRate);
            onStep?.Invoke(last);
        }
        model.Eval();
        return last;
    }

    // Linear warm-up, then cosine decay to zero (Loshchilov and Hutter 2017, without restarts).
    private static double LearningRateAt(ClassifierTrainOptions o, int step)
    {
        if (step < o.WarmupSteps) return o.LearningRate * (step + 1) / o.WarmupSteps;
        double progress = (step - o.WarmupSteps) / (double)Math.Max(1, o.Steps - o.WarmupSteps);
        return o.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }

    /// <summary>Mean cross-entropy -log softmax(logits)[label] over the batch (differentiable).</summary>
    public static Tensor CrossEntropy(Tensor logits, int[] labels, int numClasses)
    {
        int n = logits.Dim(0);
        if (labels.Length != n) throw new ArgumentException($"{n} logit rows but {labels.Length} labels.");
        var onehot = new float[n * numClasses];
        for (int i = 0; i < n; i++)
        {
            if ((uint)labels[i] >= (uint)numClasses) throw new ArgumentException($"Label {labels[i]} at index {i} is outside the {numClasses} classes.");
            onehot[i * numClasses + labels[i]] = -1f / n;
        }
        var target = Tensor.FromArray(onehot, n, numClasses);  // kept alive: the product's backward reads it
        var logp = logits.LogSoftmax(1);
        var picked = logp * target;
        return picked.SumAll();
    }

    /// <summary>Fraction of rows of <paramref name="logits"/> whose largest entry is at the label.</summary>
    public static double Accuracy(Tensor logits, int[] labels)
    {
        int n = logits.Dim(0), c = logits.Dim(1), correct = 0;
        var s = logits.Span;
        for (int i = 0; i < n; i++)
        {
            var row = s.Slice(i * c, c);
            int best = 0;
            for (int j = 1; j < c; j++) if (row[j] > row[best]) best = j;
            if (best == labels[i]) correct++;
        }
        return n == 0 ? 0 : correct / (double)n;
    }

    /// <summary>Accuracy of <paramref name="model"/> on the first <paramref name="count"/> items of <paramref name="data"/> (all when null).</summary>
    public static double Evaluate(FeatureClassifier model, IDataset data, int? count = null, int batchSize = 256, Action<int, int>? progress = null)
    {
        model.EnsureAccepts(data.Channels, data.Size, "the test data");
        int total = Math.Min(count ?? data.Count, data.Count);
        using var _ = GradMode.NoGrad();
        model.Eval();
        int correct = 0, per = data.Channels * data.Size * data.Size;
        for (int start = 0; start < total; start += batchSize)
        {
            int n = Math.Min(batchSize, total - start);
            using var x = Tensor.Empty(n, data.Channels, data.Size, data.Size);
            var labels = new int[n];
            var span = x.Span;
            for (int i = 0; i < n; i++) labels[i] = data.Load(start + i, span.Slice(i * per, per));
            using var logits = model.Forward(x);
            correct += (int)Math.Round(Accuracy(logits, labels) * n);
            progress?.Invoke(start + n, total);
        }
        return total == 0 ? 0 : correct / (double)total;
    }
}
