using System.Text.Json;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Data;

/// <summary>A batch of images [B, C, H, W] in [-1, 1] with their labels.</summary>
public sealed class Batch : IDisposable
{
    /// <summary>Images [B, C, H, W] in [-1, 1].</summary>
    public Tensor Images { get; }

    /// <summary>Labels, one per image.</summary>
    public int[] Labels { get; }

    /// <summary>Dataset indices of the images.</summary>
    public int[] Indices { get; }

    /// <summary>Epoch the batch belongs to.</summary>
    public int Epoch { get; }

    internal Batch(Tensor images, int[] labels, int[] indices, int epoch) { Images = images; Labels = labels; Indices = indices; Epoch = epoch; }

    /// <summary>Returns the image storage to the pool.</summary>
    public void Dispose() => Images.Dispose();
}

/// <summary>
/// Where a <see cref="DataLoader"/> stands: epoch, position in the epoch's order, and the generator offsets at the epoch start
/// and now. Restoring it replays exactly the batches that would have followed.
/// </summary>
public sealed record DataLoaderState(ulong Seed, int DatasetCount, int BatchSize, int Epoch, int Index, ulong EpochStartOffset, ulong GeneratorOffset)
{
    /// <summary>The state as JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this);

    /// <summary>Parses <see cref="ToJson"/> output.</summary>
    public static DataLoaderState FromJson(string json) =>
        JsonSerializer.Deserialize<DataLoaderState>(json) ?? throw new InvalidDataException("Data loader state JSON is empty.");
}

/// <summary>
/// Endless batches from a dataset: a fresh shuffle each epoch from a seeded counter-based <see cref="Generator"/>,
/// optional random horizontal flips, and a saveable position so a resumed run sees the same batches.
/// </summary>
public sealed class DataLoader
{
    private readonly IDataset _data;
    private readonly Generator _gen;
    private int[] _order;
    private ulong _epochStart;

    /// <summary>Images per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether each epoch visits the items in a new random order.</summary>
    public bool Shuffle { get; }

    /// <summary>Whether each image is mirrored left-right with probability 1/2.</summary>
    public bool RandomFlip { get; }

    /// <summary>Whether an incomplete final batch of an epoch is skipped (otherwise it is returned smaller).</summary>
    public bool DropLast { get; }

    /// <summary>Current epoch (0-based).</summary>
    public int Epoch { get; private set; }

    /// <summary>Position of the next item in the current epoch's order.</summary>
    public int Index { get; private set; }

    /// <summary>Full batches per epoch (plus one partial when <see cref="DropLast"/> is false and the count does not divide).</summary>
    public int BatchesPerEpoch => DropLast ? _data.Count / BatchSize : (_data.Count + BatchSize - 1) / BatchSize;

    /// <summary>The dataset.</summary>
    public IDataset Dataset => _data;

    /// <summary>Creates a loader; the first epoch's order is drawn at once.</summary>
    public DataLoader(IDataset data, int batchSize, ulong seed, bool shuffle = true, bool randomFlip = false, bool dropLast = true)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), $"Batch size must be at least 1, got {batchSize}.");
        if (data.Count == 0) throw new ArgumentException("The dataset is empty.");
        if (dropLast && data.Count < batchSize)
            throw new ArgumentException($"The dataset has {data.Count} items, fewer than one batch of {batchSize} (with drop-last no batch could be made).");
        _data = data; BatchSize = batchSize; Shuffle = shuffle; RandomFlip = randomFlip; DropLast = dropLast;
        _gen = new Generator(seed);
        _order = NewOrder();
    }

    private int[] NewOrder()
    {
        _epochStart = _gen.Offset;
        var order = new int[_data.Count];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        if (Shuffle)
            for (int i = order.Length - 1; i > 0; i--)  // Fisher-Yates
            {
                int j = _gen.NextInt(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
        return order;
    }

    /// <summary>The next batch, moving to a new epoch (and order) when the current one is used up.</summary>
    public Batch Next() => Next(0, int.MaxValue);

    /// <summary>
    /// Items <paramref name="first"/> .. <paramref name="first"/> + <paramref name="count"/> - 1 of the next batch (a
    /// data-parallel rank's shard): the loader advances by the whole batch, exactly as <see cref="Next()"/> does, but only
    /// the shard's images are loaded.
    /// </summary>
    public Batch Next(int first, int count)
    {
        if (first < 0 || count < 0) throw new ArgumentOutOfRangeException(nameof(first), $"Shard {first} + {count} is negative.");
        int remaining = _data.Count - Index;
        if (remaining == 0 || (DropLast && remaining < BatchSize))
        {
            Epoch++;
            Index = 0;
            _order = NewOrder();
            remaining = _data.Count;
        }
        int whole = Math.Min(BatchSize, remaining);
        int lo = Math.Min(first, whole), b = (int)Math.Min((long)count, whole - lo);
        int c = _data.Channels, s = _data.Size, per = c * s * s;
        var idx = new int[b];
        var flip = new bool[b];
        for (int k = 0; k < whole; k++)
        {
            bool f = RandomFlip && _gen.NextDouble() < 0.5;  // one draw per item of the whole batch keeps the stream position predictable
            if (k >= lo && k < lo + b) { idx[k - lo] = _order[Index + k]; flip[k - lo] = f; }
        }
        Index += whole;
        var images = Tensor.Empty(b, c, s, s);
        var labels = new int[b];
        unsafe
        {
            fixed (float* basePtr = images.Span)
            {
                float* p0 = basePtr;
                Runtime.Threading.For(b, 4, (lo, hi) =>
                {
                    for (int k = lo; k < hi; k++)
                    {
                        var dest = new Span<float>(p0 + (long)k * per, per);
                        labels[k] = _data.Load(idx[k], dest);
                        if (flip[k])
                            for (int row = 0; row < c * s; row++) dest.Slice(row * s, s).Reverse();
                    }
                });
            }
        }
        return new Batch(images, labels, idx, Epoch);
    }

    /// <summary>The current position (save it with a checkpoint).</summary>
    public DataLoaderState State => new(_gen.Seed, _data.Count, BatchSize, Epoch, Index, _epochStart, _gen.Offset);

    /// <summary>Moves to a saved position: the epoch's order is redrawn from its start offset and the stream set to the saved offset.</summary>
    public void Restore(DataLoaderState state)
    {
        if (state.Seed != _gen.Seed || state.DatasetCount != _data.Count || state.BatchSize != BatchSize)
            throw new ArgumentException($"Loader state (seed {state.Seed}, {state.DatasetCount} items, batch {state.BatchSize}) does not match this loader (seed {_gen.Seed}, {_data.Count} items, batch {BatchSize}).");
        if (state.Index < 0 || state.Index > _data.Count || state.Epoch < 0 || state.GeneratorOffset < state.EpochStartOffset)
            throw new ArgumentException($"Loader state is inconsistent: epoch {state.Epoch}, index {state.Index} of {_data.Count}, offsets {state.EpochStartOffset}..{state.GeneratorOffset}.");
        _gen.Offset = state.EpochStartOffset;
        _order = NewOrder();
        if (_gen.Offset > state.GeneratorOffset)
            throw new ArgumentException($"Loader state offset {state.GeneratorOffset} lies inside the epoch's shuffle (which ends at {_gen.Offset}); the shuffle settings differ.");
        _gen.Offset = state.GeneratorOffset;
        Epoch = state.Epoch;
        Index = state.Index;
    }
}
