using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace DiffusionSharp.IO;

/// <summary>Conversions between little-endian safetensors element bytes and float32.</summary>
public static class DTypeConversion
{
    /// <summary>Decodes <paramref name="dst"/>.Length elements of <paramref name="dtype"/> from little-endian <paramref name="src"/>.</summary>
    public static void Decode(SafeTensorDType dtype, ReadOnlySpan<byte> src, Span<float> dst)
    {
        int n = dst.Length;
        if (src.Length != (long)n * dtype.SizeOf())
            throw new ArgumentException($"{n} elements of {dtype.HeaderName()} need {(long)n * dtype.SizeOf()} bytes, got {src.Length}.");
        bool le = BitConverter.IsLittleEndian;
        switch (dtype)
        {
            case SafeTensorDType.F32:
                if (le) MemoryMarshal.Cast<byte, float>(src).CopyTo(dst);
                else for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(src[(4 * i)..]);
                break;
            case SafeTensorDType.F16:
                if (le) TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(src), dst);
                else for (int i = 0; i < n; i++) dst[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(src[(2 * i)..]);
                break;
            case SafeTensorDType.BF16:
                for (int i = 0; i < n; i++) dst[i] = BFloat16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]));
                break;
            case SafeTensorDType.F64:
                for (int i = 0; i < n; i++) dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(src[(8 * i)..]);
                break;
            case SafeTensorDType.I64:
                for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(src[(8 * i)..]);
                break;
            case SafeTensorDType.U64:
                for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadUInt64LittleEndian(src[(8 * i)..]);
                break;
            case SafeTensorDType.I32:
                for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(src[(4 * i)..]);
                break;
            case SafeTensorDType.U32:
                for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadUInt32LittleEndian(src[(4 * i)..]);
                break;
            case SafeTensorDType.I16:
                for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(2 * i)..]);
                break;
            case SafeTensorDType.U16:
                for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]);
                break;
            case SafeTensorDType.I8:
                for (int i = 0; i < n; i++) dst[i] = (sbyte)src[i];
                break;
            case SafeTensorDType.U8:
                for (int i = 0; i < n; i++) dst[i] = src[i];
                break;
            case SafeTensorDType.Bool:
                for (int i = 0; i < n; i++) dst[i] = src[i] != 0 ? 1f : 0f;
                break;
            case SafeTensorDType.F8E5M2:
                // E5M2 is the top byte of an IEEE half.
                for (int i = 0; i < n; i++) dst[i] = (float)BitConverter.UInt16BitsToHalf((ushort)(src[i] << 8));
                break;
            case SafeTensorDType.F8E4M3:
                for (int i = 0; i < n; i++) dst[i] = Float8E4M3ToSingle(src[i]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown safetensors dtype.");
        }
    }

    /// <summary>Encodes float32 values as little-endian <paramref name="dtype"/> (F32, F16 or BF16; round to nearest even).</summary>
    public static void Encode(SafeTensorDType dtype, ReadOnlySpan<float> src, Span<byte> dst)
    {
        int n = src.Length;
        if (!CanEncode(dtype))
            throw new ArgumentException($"Writing {dtype.HeaderName()} is not supported; use F32, F16 or BF16.", nameof(dtype));
        if (dst.Length != (long)n * dtype.SizeOf())
            throw new ArgumentException($"{n} elements of {dtype.HeaderName()} need {(long)n * dtype.SizeOf()} bytes, got {dst.Length}.");
        bool le = BitConverter.IsLittleEndian;
        switch (dtype)
        {
            case SafeTensorDType.F32:
                if (le) src.CopyTo(MemoryMarshal.Cast<byte, float>(dst));
                else for (int i = 0; i < n; i++) BinaryPrimitives.WriteSingleLittleEndian(dst[(4 * i)..], src[i]);
                break;
            case SafeTensorDType.F16:
                if (le) TensorPrimitives.ConvertToHalf(src, MemoryMarshal.Cast<byte, Half>(dst));
                else for (int i = 0; i < n; i++) BinaryPrimitives.WriteHalfLittleEndian(dst[(2 * i)..], (Half)src[i]);
                break;
            case SafeTensorDType.BF16:
                for (int i = 0; i < n; i++) BinaryPrimitives.WriteUInt16LittleEndian(dst[(2 * i)..], SingleToBFloat16(src[i]));
                break;
        }
    }

    /// <summary>Whether <see cref="Encode"/> can write this dtype.</summary>
    public static bool CanEncode(SafeTensorDType dtype) =>
        dtype is SafeTensorDType.F32 or SafeTensorDType.F16 or SafeTensorDType.BF16;

    /// <summary>bfloat16 bits to float32: the bits are the upper half of the float.</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>float32 to bfloat16 bits with round-to-nearest-even; NaN stays a (quiet) NaN.</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x0040);
        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }

    /// <summary>float8 E4M3 (finite-only "fn" variant: bias 7, S.1111.111 is NaN, no infinities) to float32.</summary>
    public static float Float8E4M3ToSingle(byte b)
    {
        int sign = b >> 7, exp = (b >> 3) & 0xF, man = b & 7;
        float mag;
        if (exp == 0xF && man == 7) return float.NaN;
        if (exp == 0) mag = man / 8f * MathF.Pow(2, -6);          // subnormal
        else mag = (1 + man / 8f) * MathF.Pow(2, exp - 7);
        return sign != 0 ? -mag : mag;
    }
}
