using DiffusionSharp.Tensors;

namespace DiffusionSharp.Tests;

/// <summary>Seeded test inputs shared by the kernel tests.</summary>
public static class TestArrays
{
    /// <summary>n standard-normal floats from the project's generator seeded with <paramref name="seed"/>.</summary>
    public static float[] Normal(int seed, int n)
    {
        var a = new float[n];
        new Generator((ulong)seed).Normal(a);
        return a;
    }
}
