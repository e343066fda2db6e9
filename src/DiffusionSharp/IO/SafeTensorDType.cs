namespace DiffusionSharp.IO;

/// <summary>Element types of the safetensors format (names as written in the header).</summary>
public enum SafeTensorDType
{
    /// <summary>Boolean, one byte.</summary>
    Bool,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 5 exponent and 2 mantissa bits (header name F8_E5M2).</summary>
    F8E5M2,
    /// <summary>8-bit float, 4 exponent and 3 mantissa bits, no infinities (header name F8_E4M3).</summary>
    F8E4M3,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE half precision.</summary>
    F16,
    /// <summary>bfloat16 (the upper half of a float32).</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE single precision.</summary>
    F32,
    /// <summary>IEEE double precision.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Names and sizes of <see cref="SafeTensorDType"/> values.</summary>
public static class SafeTensorDTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.Bool or SafeTensorDType.U8 or SafeTensorDType.I8 or SafeTensorDType.F8E5M2 or SafeTensorDType.F8E4M3 => 1,
        SafeTensorDType.I16 or SafeTensorDType.U16 or SafeTensorDType.F16 or SafeTensorDType.BF16 => 2,
        SafeTensorDType.I32 or SafeTensorDType.U32 or SafeTensorDType.F32 => 4,
        SafeTensorDType.F64 or SafeTensorDType.I64 or SafeTensorDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown safetensors dtype."),
    };

    /// <summary>The name used in a safetensors header, e.g. "BF16" or "F8_E4M3".</summary>
    public static string HeaderName(this SafeTensorDType dtype) => dtype switch
    {
        SafeTensorDType.Bool => "BOOL",
        SafeTensorDType.F8E5M2 => "F8_E5M2",
        SafeTensorDType.F8E4M3 => "F8_E4M3",
        _ when Enum.IsDefined(dtype) => dtype.ToString(),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown safetensors dtype."),
    };

    /// <summary>Parses a header dtype name (case-sensitive, as the format specifies).</summary>
    public static bool TryParse(string? name, out SafeTensorDType dtype)
    {
        dtype = default;
        switch (name)
        {
            case "BOOL": dtype = SafeTensorDType.Bool; return true;
            case "U8": dtype = SafeTensorDType.U8; return true;
            case "I8": dtype = SafeTensorDType.I8; return true;
            case "F8_E5M2": dtype = SafeTensorDType.F8E5M2; return true;
            case "F8_E4M3": dtype = SafeTensorDType.F8E4M3; return true;
            case "I16": dtype = SafeTensorDType.I16; return true;
            case "U16": dtype = SafeTensorDType.U16; return true;
            case "F16": dtype = SafeTensorDType.F16; return true;
            case "BF16": dtype = SafeTensorDType.BF16; return true;
            case "I32": dtype = SafeTensorDType.I32; return true;
            case "U32": dtype = SafeTensorDType.U32; return true;
            case "F32": dtype = SafeTensorDType.F32; return true;
            case "F64": dtype = SafeTensorDType.F64; return true;
            case "I64": dtype = SafeTensorDType.I64; return true;
            case "U64": dtype = SafeTensorDType.U64; return true;
            default: return false;
        }
    }
}
