using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Training;

/// <summary>
/// Sums parameter gradients over the ranks of a data-parallel job in buckets, as PyTorch DDP does: parameters are
/// grouped in reverse registration order (roughly the order backward finishes them) into buckets of about
/// <c>bucketBytes</c>; a bucket's non-blocking all-reduce starts as soon as its last gradient is final, while the backward
/// pass continues. Buckets start in index order on every rank, so the collectives match across ranks.
/// </summary>
public sealed class GradientReducer
{
    private readonly ICommunicator _comm;
    private readonly Tensor[] _params;
    private readonly Dictionary<Tensor, int> _index = new(ReferenceEqualityComparer.Instance);
    private readonly int[] _bucketOf, _offsetInBucket, _pendingInBucket;
    private readonly int[] _bucketSize, _bucketCount;
    private readonly List<int>[] _members;
    private readonly float[][] _buffers;
    private readonly IReduceRequest?[] _requests;
    private readonly bool[] _ready;
    private int _nextToStart;

    private long _commTicks;

    /// <summary>Seconds spent inside MPI calls (starting, progressing and waiting for the all-reduces) since creation.</summary>
    public double CommunicationSeconds => _commTicks / (double)System.Diagnostics.Stopwatch.Frequency;
    /// <summary>Seconds of <see cref="CommunicationSeconds"/> spent in <see cref="Finish"/>, after backward ended: the part not overlapped.</summary>
    public double WaitSeconds { get; private set; }

    /// <summary>Number of buckets.</summary>
    public int BucketCount => _buffers.Length;

    /// <summary>Creates the buckets for <paramref name="parameters"/>.</summary>
    public GradientReducer(ICommunicator comm, IReadOnlyList<Tensor> parameters, long bucketBytes = 8L << 20)
    {
        _comm = comm;
        _params = parameters.ToArray();
        int n = _params.Length;
        _bucketOf = new int[n];
        _offsetInBucket = new int[n];
        _ready = new bool[n];
        long cap = Math.Max(1, bucketBytes / sizeof(float));
        var sizes = new List<int>();
        var members = new List<List<int>>();
        long fill = cap;
        for (int i = n - 1; i >= 0; i--)
        {
            _index[_params[i]] = i;
            if (fill + _params[i].Size > cap && fill > 0)
            {
                sizes.Add(0);
                members.Add(new List<int>());
                fill = 0;
            }
            int b = sizes.Count - 1;
            _bucketOf[i] = b;
            _offsetInBucket[i] = sizes[b];
            sizes[b] += _params[i].Size;
            members[b].Add(i);
            fill += _params[i].Size;
        }
        _bucketSize = sizes.ToArray();
        _members = members.ToArray();
        _bucketCount = _members.Select(m => m.Count).ToArray();
        _pendingInBucket = new int[_bucketSize.Length];
        _buffers = _bucketSize.Select(s => GC.AllocateUninitializedArray<float>(s, pinned: true)).ToArray();
        _requests = new IReduceRequest?[_bucketSize.Length];
        Reset();
    }

    private void Reset()
    {
        Array.Clear(_ready);
        Array.Copy(_bucketCount, _pendingInBucket, _bucketCount.Length);
        Array.Clear(_requests);
        _nextToStart = 0;
    }

    /// <summary>The backward hook: marks <paramref name="leaf"/>'s gradient final and starts every bucket that is now complete.</summary>
    public void OnGradReady(Tensor leaf)
    {
        if (!_index.TryGetValue(leaf, out int i) || _ready[i]) return;
        _ready[i] = true;
        int b = _bucketOf[i];
        CopyIn(i);
        _pendingInBucket[b]--;
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        while (_nextToStart < _buffers.Length && _pendingInBucket[_nextToStart] == 0) StartNext();
        for (int k = 0; k < _nextToStart; k++) _requests[k]!.Test();  // lets the library move data while backward runs
        _commTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
    }

    private void CopyIn(int i)
    {
        var dst = _buffers[_bucketOf[i]].AsSpan(_offsetInBucket[i], _params[i].Size);
        if (_params[i].Grad is Tensor g) g.Span.CopyTo(dst);
        else dst.Clear();  // a parameter the loss did not reach contributes zeros
    }

    private void StartNext()
    {
        int b = _nextToStart++;
        _requests[b] = _comm.StartAllReduceSum(_buffers[b], _bucketSize[b]);
    }

    /// <summary>
    /// Starts the buckets still waiting (parameters without a gradient contribute zeros), waits for all of them, and writes
    /// the summed gradients back into every parameter's <see cref="Tensor.Grad"/>.
    /// </summary>
    public void Finish()
    {
        for (int i = 0; i < _params.Length; i++)
            if (!_ready[i]) { _ready[i] = true; CopyIn(i); _pendingInBucket[_bucketOf[i]]--; }
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        while (_nextToStart < _buffers.Length) StartNext();
        _commTicks += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
        for (int b = 0; b < _buffers.Length; b++)
        {
            long w0 = System.Diagnostics.Stopwatch.GetTimestamp();
            _requests[b]!.Wait();
            long w = System.Diagnostics.Stopwatch.GetTimestamp() - w0;
            _commTicks += w;
            WaitSeconds += w / (double)System.Diagnostics.Stopwatch.Frequency;
            foreach (int i in _members[b])
            {
                var src = _buffers[b].AsSpan(_offsetInBucket[i], _params[i].Size);
                _params[i].Grad ??= TensorScope.OwnLike(Tensor.Zeros(_params[i].Shape), _params[i]);
                src.CopyTo(_params[i].Grad!.Span);
            }
        }
        Reset();
    }
}
