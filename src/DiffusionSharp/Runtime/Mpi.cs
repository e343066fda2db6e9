using System.Runtime.InteropServices;

namespace DiffusionSharp.Runtime;

/// <summary>
/// The processes of one job and the collectives between them: a single process (<see cref="Single"/>) or the
/// ranks of an MPI job (<see cref="Mpi"/>).
/// </summary>
public interface ICommunicator
{
    /// <summary>This process's index in [0, <see cref="Size"/>).</summary>
    int Rank { get; }
    /// <summary>Number of processes.</summary>
    int Size { get; }
    /// <summary>Sums <paramref name="data"/> element-wise over all ranks, in place on every rank.</summary>
    void AllReduceSum(Span<float> data);
    /// <summary>Sums <paramref name="data"/> element-wise over all ranks, in place on every rank.</summary>
    void AllReduceSum(Span<double> data);
    /// <summary>Starts summing a pinned buffer over all ranks in place; the buffer must stay untouched until the request completes.</summary>
    IReduceRequest StartAllReduceSum(float[] pinned, int count);
    /// <summary>Copies <paramref name="data"/> from rank <paramref name="root"/> to every rank.</summary>
    void Broadcast(Span<float> data, int root = 0);
    /// <summary>Copies <paramref name="data"/> from rank <paramref name="root"/> to every rank.</summary>
    void Broadcast(Span<byte> data, int root = 0);
    /// <summary>Returns when every rank has called it.</summary>
    void Barrier();
}

/// <summary>A collective started by <see cref="ICommunicator.StartAllReduceSum"/>.</summary>
public interface IReduceRequest
{
    /// <summary>Lets the library progress the transfer; true once it is complete.</summary>
    bool Test();
    /// <summary>Blocks until the transfer is complete.</summary>
    void Wait();
}

/// <summary>One process: every collective is the identity.</summary>
public sealed class SingleProcess : ICommunicator
{
    /// <summary>The instance.</summary>
    public static readonly SingleProcess Instance = new();
    private SingleProcess() { }
    /// <inheritdoc/>
    public int Rank => 0;
    /// <inheritdoc/>
    public int Size => 1;
    /// <inheritdoc/>
    public void AllReduceSum(Span<float> data) { }
    /// <inheritdoc/>
    public void AllReduceSum(Span<double> data) { }
    /// <inheritdoc/>
    public IReduceRequest StartAllReduceSum(float[] pinned, int count) => Done.Instance;
    /// <inheritdoc/>
    public void Broadcast(Span<float> data, int root = 0) { }
    /// <inheritdoc/>
    public void Broadcast(Span<byte> data, int root = 0) { }
    /// <inheritdoc/>
    public void Barrier() { }

    private sealed class Done : IReduceRequest
    {
        public static readonly Done Instance = new();
        public bool Test() => true;
        public void Wait() { }
    }
}

/// <summary>
/// A minimal binding to Open MPI's <c>libmpi.so.40</c> (MPI_COMM_WORLD only): init with a thread level, rank and size,
/// blocking and non-blocking all-reduce, broadcast, barrier, abort and finalize. Open MPI's handles are addresses of
/// exported globals (<c>ompi_mpi_comm_world</c>, <c>ompi_mpi_float</c>, ...), looked up at load time. The library is
/// loaded only when <see cref="LaunchedByMpirun"/> is true, so a single process never needs MPI installed.
/// </summary>
public sealed unsafe class Mpi : ICommunicator
{
    private const int ThreadSerialized = 2;  // MPI_THREAD_SERIALIZED: only the main thread calls MPI here
    private static Mpi? _world;
    private static readonly object Gate = new();

    private readonly nint _comm, _float, _double, _byte, _sum;
    private readonly delegate* unmanaged<int*, int> _initialized, _finalized;
    private readonly delegate* unmanaged<int*, nint, int, int*, int> _initThread;
    private readonly delegate* unmanaged<nint, int*, int> _commRank, _commSize;
    private readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> _allreduce;
    private readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, nint*, int> _iallreduce;
    private readonly delegate* unmanaged<nint*, int*, nint, int> _test;
    private readonly delegate* unmanaged<nint*, nint, int> _wait;
    private readonly delegate* unmanaged<nint, int, nint, int, nint, int> _bcast;
    private readonly delegate* unmanaged<nint, int> _barrier;
    private readonly delegate* unmanaged<nint, int, int> _abort;
    private readonly delegate* unmanaged<int> _finalize;

    /// <inheritdoc/>
    public int Rank { get; }
    /// <inheritdoc/>
    public int Size { get; }
    /// <summary>The thread level the library granted (0 single .. 3 multiple).</summary>
    public int ThreadLevel { get; }

    /// <summary>
    /// True when this process was started by Open MPI's <c>mpirun</c>/<c>mpiexec</c> with more than one rank
    /// (environment <c>OMPI_COMM_WORLD_SIZE</c>); <c>DIFFUSIONSHARP_MPI=0</c> turns MPI off.
    /// </summary>
    public static bool LaunchedByMpirun =>
        Environment.GetEnvironmentVariable("DIFFUSIONSHARP_MPI") != "0" &&
        int.TryParse(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE"), out int n) && n > 1;

    /// <summary>The world communicator once <see cref="Initialize"/> has run, else null.</summary>
    public static Mpi? World => _world;

    /// <summary>The job's communicator: MPI's world when launched by mpirun (initializing it once), else a single process.</summary>
    public static ICommunicator Current => LaunchedByMpirun ? Initialize() : (ICommunicator)SingleProcess.Instance;

    /// <summary>Loads libmpi (or <c>DIFFUSIONSHARP_LIBMPI</c>) and calls MPI_Init_thread once.</summary>
    public static Mpi Initialize()
    {
        lock (Gate) return _world ??= new Mpi();
    }

    private Mpi()
    {
        var name = Environment.GetEnvironmentVariable("DIFFUSIONSHARP_LIBMPI") ?? "libmpi.so.40";
        nint lib;
        try
        {
            // Open MPI's plugins resolve libmpi's symbols globally: load it RTLD_NOW | RTLD_GLOBAL, not .NET's RTLD_LOCAL.
            lib = DlOpen(name, 0x102);
            if (lib == 0) lib = NativeLibrary.Load(name);
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            throw new InvalidOperationException($"Launched by mpirun (OMPI_COMM_WORLD_SIZE is set) but Open MPI's {name} could not be loaded: {e.Message} Install openmpi-bin and libopenmpi-dev, or set DIFFUSIONSHARP_LIBMPI to its path.", e);
        }
        nint F(string s) => NativeLibrary.GetExport(lib, s);
        _comm = F("ompi_mpi_comm_world"); _float = F("ompi_mpi_float"); _double = F("ompi_mpi_double");
        _byte = F("ompi_mpi_byte"); _sum = F("ompi_mpi_op_sum");
        _initialized = (delegate* unmanaged<int*, int>)F("MPI_Initialized");
        _finalized = (delegate* unmanaged<int*, int>)F("MPI_Finalized");
        _initThread = (delegate* unmanaged<int*, nint, int, int*, int>)F("MPI_Init_thread");
        _commRank = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_rank");
        _commSize = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_size");
        _allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)F("MPI_Allreduce");
        _iallreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, nint*, int>)F("MPI_Iallreduce");
        _test = (delegate* unmanaged<nint*, int*, nint, int>)F("MPI_Test");
        _wait = (delegate* unmanaged<nint*, nint, int>)F("MPI_Wait");
        _bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)F("MPI_Bcast");
        _barrier = (delegate* unmanaged<nint, int>)F("MPI_Barrier");
        _abort = (delegate* unmanaged<nint, int, int>)F("MPI_Abort");
        _finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
        int flag = 0, provided = 0, rank = 0, size = 0;
        Check(_initialized(&flag), "MPI_Initialized");
        if (flag == 0) Check(_initThread(null, 0, ThreadSerialized, &provided), "MPI_Init_thread");
        ThreadLevel = provided;
        Check(_commRank(_comm, &rank), "MPI_Comm_rank");
        Check(_commSize(_comm, &size), "MPI_Comm_size");
        Rank = rank;
        Size = size;
    }

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint DlOpenNative(string file, int mode);

    private static nint DlOpen(string file, int mode)
    {
        try { return DlOpenNative(file, mode); }
        catch (EntryPointNotFoundException) { return 0; }
        catch (DllNotFoundException) { return 0; }
    }

    private void Check(int rc, string call)
    {
        if (rc != 0) throw new InvalidOperationException($"{call} failed with MPI error code {rc} on rank {Rank}.");
    }

    /// <inheritdoc/>
    public void AllReduceSum(Span<float> data)
    {
        if (data.IsEmpty) return;
        fixed (float* p = data) Check(_allreduce(1, (nint)p, data.Length, _float, _sum, _comm), "MPI_Allreduce");  // 1 = MPI_IN_PLACE
    }

    /// <inheritdoc/>
    public void AllReduceSum(Span<double> data)
    {
        if (data.IsEmpty) return;
        fixed (double* p = data) Check(_allreduce(1, (nint)p, data.Length, _double, _sum, _comm), "MPI_Allreduce");
    }

    /// <inheritdoc/>
    public IReduceRequest StartAllReduceSum(float[] pinned, int count)
    {
        if ((uint)count > (uint)pinned.Length) throw new ArgumentOutOfRangeException(nameof(count));
        nint req = 0;
        fixed (float* p = pinned) Check(_iallreduce(1, (nint)p, count, _float, _sum, _comm, &req), "MPI_Iallreduce");  // the array lives on the pinned heap
        return new Request(this, req);
    }

    private sealed class Request(Mpi mpi, nint handle) : IReduceRequest
    {
        private nint _handle = handle;
        private bool _done;

        public bool Test()
        {
            if (_done) return true;
            int flag = 0;
            fixed (nint* h = &_handle) mpi.Check(mpi._test(h, &flag, 0), "MPI_Test");
            return _done = flag != 0;
        }

        public void Wait()
        {
            if (_done) return;
            fixed (nint* h = &_handle) mpi.Check(mpi._wait(h, 0), "MPI_Wait");
            _done = true;
        }
    }

    /// <inheritdoc/>
    public void Broadcast(Span<float> data, int root = 0)
    {
        if (data.IsEmpty) return;
        fixed (float* p = data) Check(_bcast((nint)p, data.Length, _float, root, _comm), "MPI_Bcast");
    }

    /// <inheritdoc/>
    public void Broadcast(Span<byte> data, int root = 0)
    {
        if (data.IsEmpty) return;
        fixed (byte* p = data) Check(_bcast((nint)p, data.Length, _byte, root, _comm), "MPI_Bcast");
    }

    /// <inheritdoc/>
    public void Barrier() => Check(_barrier(_comm), "MPI_Barrier");

    /// <summary>Ends every rank of the job with <paramref name="code"/> (MPI_Abort on the world communicator).</summary>
    public void Abort(int code) => _abort(_comm, code);

    /// <summary>MPI_Finalize, once, when not yet finalized.</summary>
    public void Shutdown()
    {
        int flag = 0;
        _finalized(&flag);
        if (flag == 0) _finalize();
    }
}
