using System.Globalization;
using System.Text;
using DiffusionSharp.Autograd;

namespace DiffusionSharp.Tensors;

/// <summary>
/// A float32 tensor with contiguous row-major storage and optional reverse-mode autograd.
/// Operations live in partial files under Autograd/ with each backward beside its forward.
/// </summary>
public sealed partial class Tensor : IDisposable
{
    internal TensorStorage StorageRef;
    private bool _disposed;

    /// <summary>The scope that disposes this tensor when it ends (null: none).</summary>
    internal TensorScope? Owner;

    /// <summary>The shape.</summary>
    public Shape Shape { get; }

    /// <summary>Number of elements.</summary>
    public int Size { get; }

    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Rank;

    /// <summary>An optional name shown in messages.</summary>
    public string? Name { get; set; }

    internal Tensor(Shape shape, TensorStorage storage)
    {
        Shape = shape;
        Size = shape.Size;
        StorageRef = storage;
        TensorScope.OnCreated(this);
    }

    /// <summary>True once <see cref="Dispose"/> has run (directly or by the owning <see cref="TensorScope"/>).</summary>
    public bool IsDisposed => _disposed;

    /// <summary>The underlying array (may be longer than <see cref="Size"/>).</summary>
    internal float[] Storage => _disposed ? throw new ObjectDisposedException($"Tensor {Shape}") : StorageRef.Data;

    /// <summary>The elements, row-major.</summary>
    public Span<float> Span => Storage.AsSpan(0, Size);

    /// <summary>Size of dimension <paramref name="axis"/> (negative counts from the end).</summary>
    public int Dim(int axis) => Shape[Shape.Axis(axis)];

    // ---------- creation ----------

    /// <summary>A tensor with uninitialised (pooled) storage.</summary>
    public static Tensor Empty(params int[] shape) => Empty(new Shape(shape));

    /// <summary>A tensor with uninitialised (pooled) storage.</summary>
    public static Tensor Empty(Shape shape) => new(shape, new TensorStorage(TensorPool.Rent(shape.Size, clear: false)));

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(params int[] shape) => Zeros(new Shape(shape));

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(Shape shape) => new(shape, new TensorStorage(TensorPool.Rent(shape.Size, clear: true)));

    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(params int[] shape) => Full(new Shape(shape), 1f);

    /// <summary>A tensor filled with <paramref name="value"/>.</summary>
    public static Tensor Full(Shape shape, float value)
    {
        var t = Empty(shape);
        t.Span.Fill(value);
        return t;
    }

    /// <summary>A scalar (rank-0) tensor.</summary>
    public static Tensor Scalar(float value) => Full(new Shape(), value);

    /// <summary>Copies <paramref name="data"/> into a new tensor of the given shape.</summary>
    public static Tensor FromArray(float[] data, params int[] shape) => FromSpan(data, new Shape(shape));

    /// <summary>Copies <paramref name="data"/> into a new tensor of the given shape.</summary>
    public static Tensor FromSpan(ReadOnlySpan<float> data, Shape shape)
    {
        if (data.Length != shape.Size)
            throw new ArgumentException($"Data has {data.Length} elements but shape {shape} needs {shape.Size}.");
        var t = Empty(shape);
        data.CopyTo(t.Span);
        return t;
    }

    /// <summary>A 1-D tensor from values.</summary>
    public static Tensor FromValues(params float[] values) => FromArray(values, values.Length);

    /// <summary>Standard-normal samples from <paramref name="generator"/>.</summary>
    public static Tensor Randn(Generator generator, params int[] shape)
    {
        var t = Empty(new Shape(shape));
        generator.Normal(t.Span);
        return t;
    }

    /// <summary>Uniform [0, 1) samples from <paramref name="generator"/>.</summary>
    public static Tensor Rand(Generator generator, params int[] shape)
    {
        var t = Empty(new Shape(shape));
        generator.Uniform(t.Span);
        return t;
    }

    /// <summary>Copies the elements into a new array.</summary>
    public float[] ToArray() => Span.ToArray();

    /// <summary>The single value of a one-element tensor.</summary>
    public float Item()
    {
        if (Size != 1) throw new InvalidOperationException($"Item() needs a tensor with one element, got shape {Shape}.");
        return Storage[0];
    }

    /// <summary>A copy that does not track gradients.</summary>
    public Tensor Clone()
    {
        var t = Empty(Shape);
        Span.CopyTo(t.Span);
        return t;
    }

    /// <summary>A tensor sharing this storage but cut from the autograd graph.</summary>
    public Tensor Detach()
    {
        StorageRef.AddRef();
        return new Tensor(Shape, StorageRef);
    }

    /// <summary>Throws unless this tensor has exactly <paramref name="shape"/>.</summary>
    public void ExpectShape(Shape shape, string what = "tensor")
    {
        if (Shape != shape) throw new ArgumentException($"Expected {what} of shape {shape}, got {Shape}.");
    }

    /// <summary>Returns storage to the pool. Using the tensor afterwards throws.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        StorageRef.Release();
        BackwardFn = null;
        Parents = null;
    }

    /// <summary>
    /// Returns the storage to the pool but keeps this tensor's place in the autograd graph, for intermediates whose values no
    /// backward function reads (the sum inputs, broadcast copies): gradients still flow through, reading the values throws.
    /// Without a recorded graph this is <see cref="Dispose"/>.
    /// </summary>
    internal void ReleaseData()
    {
        if (BackwardFn == null) { Dispose(); return; }
        if (_disposed) return;
        _disposed = true;
        StorageRef.Release();
    }

    /// <summary>Shape and the first few values.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append("Tensor").Append(Shape);
        if (Name != null) sb.Append(" '").Append(Name).Append('\'');
        if (_disposed) return sb.Append(" (disposed)").ToString();
        sb.Append(" [");
        int n = Math.Min(Size, 8);
        for (int i = 0; i < n; i++)
        {
            if (i > 0) sb.Append(", ");
            sb.Append(Storage[i].ToString("G6", CultureInfo.InvariantCulture));
        }
        if (Size > n) sb.Append(", ...");
        sb.Append(']');
        if (RequiresGrad) sb.Append(" requires_grad");
        return sb.ToString();
    }
}
