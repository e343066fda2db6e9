namespace DiffusionSharp.Web;

/// <summary>
/// First-come first-served queue in front of the sampler: one job runs at a time (sampling already uses every core), the
/// others wait and can read their position. A waiter that gives up leaves the queue and the positions behind it move up.
/// </summary>
public sealed class SampleQueue(int maxWaiting)
{
    private readonly object _lock = new();
    private readonly LinkedList<Ticket> _waiting = new();
    private Ticket? _running;
    private long _completed, _cancelled, _failed;

    /// <summary>A place in the queue; dispose it when the job ends (or is abandoned).</summary>
    public sealed class Ticket : IDisposable
    {
        private readonly SampleQueue _queue;
        internal readonly TaskCompletionSource Turn = new(TaskCreationOptions.RunContinuationsAsynchronously);
        internal TaskCompletionSource Changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        internal LinkedListNode<Ticket>? Node;

        internal Ticket(SampleQueue queue) => _queue = queue;

        /// <summary>0 while running, else the number of jobs ahead of this one (1 = next).</summary>
        public int Position => _queue.PositionOf(this);

        /// <summary>Completes when it is this ticket's turn to run.</summary>
        public Task TurnTask => Turn.Task;

        /// <summary>Completes at the next change of <see cref="Position"/> (or the turn).</summary>
        public Task ChangedTask { get { lock (_queue._lock) return Changed.Task; } }

        /// <summary>Leaves the queue, or frees the sampler for the next job.</summary>
        public void Dispose() => _queue.Leave(this);
    }

    /// <summary>Jobs waiting now.</summary>
    public int Waiting { get { lock (_lock) return _waiting.Count; } }
    /// <summary>True while a job holds the sampler.</summary>
    public bool Running { get { lock (_lock) return _running != null; } }
    /// <summary>Jobs finished with images.</summary>
    public long Completed => Interlocked.Read(ref _completed);
    /// <summary>Jobs ended by their client going away.</summary>
    public long Cancelled => Interlocked.Read(ref _cancelled);
    /// <summary>Jobs ended by an error.</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Takes a place at the end of the queue, or null when <c>maxWaiting</c> jobs already wait.</summary>
    public Ticket? TryEnter()
    {
        var t = new Ticket(this);
        lock (_lock)
        {
            if (_running == null) { _running = t; t.Turn.SetResult(); return t; }
            if (_waiting.Count >= maxWaiting) return null;
            t.Node = _waiting.AddLast(t);
            return t;
        }
    }

    /// <summary>Counts how a job ended.</summary>
    public void Record(JobOutcome outcome)
    {
        switch (outcome)
        {
            case JobOutcome.Completed: Interlocked.Increment(ref _completed); break;
            case JobOutcome.Cancelled: Interlocked.Increment(ref _cancelled); break;
            default: Interlocked.Increment(ref _failed); break;
        }
    }

    private int PositionOf(Ticket t)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_running, t)) return 0;
            int i = 1;
            for (var n = _waiting.First; n != null; n = n.Next, i++)
                if (ReferenceEquals(n.Value, t)) return i;
            return -1;
        }
    }

    private void Leave(Ticket t)
    {
        var wake = new List<TaskCompletionSource>();
        lock (_lock)
        {
            if (ReferenceEquals(_running, t))
            {
                _running = null;
                if (_waiting.First is { } next)
                {
                    _waiting.RemoveFirst();
                    next.Value.Node = null;
                    _running = next.Value;
                    wake.Add(next.Value.Turn);
                }
            }
            else if (t.Node != null)
            {
                _waiting.Remove(t.Node);
                t.Node = null;
            }
            else return;
            foreach (var w in _waiting)
            {
                wake.Add(w.Changed);
                w.Changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
        foreach (var w in wake) w.TrySetResult();
    }
}

/// <summary>How a sampling job ended.</summary>
public enum JobOutcome
{
    /// <summary>Images delivered.</summary>
    Completed,
    /// <summary>The client went away.</summary>
    Cancelled,
    /// <summary>An error ended it.</summary>
    Failed,
}
