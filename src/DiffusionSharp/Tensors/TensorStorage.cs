namespace DiffusionSharp.Tensors;

/// <summary>Reference-counted float storage shared by a tensor and its reshaped views; returns to the pool at zero.</summary>
internal sealed class TensorStorage
{
    internal float[] Data;
    private int _refs = 1;

    internal TensorStorage(float[] data) => Data = data;

    internal void AddRef() => Interlocked.Increment(ref _refs);

    internal void Release()
    {
        if (Interlocked.Decrement(ref _refs) == 0)
        {
            TensorPool.Return(Data);
            Data = Array.Empty<float>();
        }
    }
}
