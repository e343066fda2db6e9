namespace DiffusionSharp.Tensors;

/// <summary>An immutable tensor shape (row-major dimensions).</summary>
public readonly struct Shape : IEquatable<Shape>
{
    private readonly int[]? _dims;

    /// <summary>Creates a shape from its dimensions; every dimension must be non-negative.</summary>
    public Shape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        foreach (var d in dims)
            if (d < 0) throw new ArgumentException($"Negative dimension in shape [{string.Join(", ", dims)}].");
        _dims = (int[])dims.Clone();
        long n = 1;
        foreach (var d in dims) n *= d;
        if (n > Array.MaxLength) throw new ArgumentException($"Shape [{string.Join(", ", dims)}] has {n} elements, more than one array can hold.");
    }

    /// <summary>Number of dimensions.</summary>
    public int Rank => _dims?.Length ?? 0;

    /// <summary>Size of dimension <paramref name="i"/>; negative indices count from the end.</summary>
    public int this[int i] => Dims[i < 0 ? i + Rank : i];

    /// <summary>The dimensions.</summary>
    public ReadOnlySpan<int> Dims => _dims ?? Array.Empty<int>();

    /// <summary>Total number of elements (1 for a scalar).</summary>
    public int Size
    {
        get
        {
            int n = 1;
            foreach (var d in Dims) n *= d;
            return n;
        }
    }

    /// <summary>A copy of the dimensions.</summary>
    public int[] ToArray() => Dims.ToArray();

    /// <summary>Row-major strides in elements.</summary>
    public int[] Strides()
    {
        var s = new int[Rank];
        int acc = 1;
        for (int i = Rank - 1; i >= 0; i--) { s[i] = acc; acc *= Dims[i]; }
        return s;
    }

    /// <summary>Resolves a possibly negative axis, throwing if out of range.</summary>
    public int Axis(int axis)
    {
        int a = axis < 0 ? axis + Rank : axis;
        if (a < 0 || a >= Rank) throw new ArgumentOutOfRangeException(nameof(axis), $"Axis {axis} is out of range for shape {this}.");
        return a;
    }

    /// <summary>Broadcast shape of two shapes (NumPy rules), or throws naming both.</summary>
    public static Shape Broadcast(Shape a, Shape b)
    {
        int r = Math.Max(a.Rank, b.Rank);
        var d = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i < r - a.Rank ? 1 : a.Dims[i - (r - a.Rank)];
            int db = i < r - b.Rank ? 1 : b.Dims[i - (r - b.Rank)];
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"Shapes {a} and {b} cannot be broadcast together.");
            d[i] = da == 1 ? db : da;
        }
        return new Shape(d);
    }

    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var d in Dims) h.Add(d);
        return h.ToHashCode();
    }
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);
    public static implicit operator Shape(int[] dims) => new(dims);

    /// <summary>Formats as <c>[2, 3, 16, 16]</c>.</summary>
    public override string ToString() => "[" + string.Join(", ", Dims.ToArray()) + "]";
}
