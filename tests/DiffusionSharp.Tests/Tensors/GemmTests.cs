using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;
using Xunit;

namespace DiffusionSharp.Tests.Tensors;

public class GemmTests
{
    private const int Max = 67;

    // Small integers make every partial sum exact in float32, so results must match the reference bit for bit.
    private static float[] IntMatrix(int seed, int count)
    {
        var g = new Generator((ulong)seed);
        var v = new float[count];
        for (int i = 0; i < v.Length; i++) v[i] = g.NextInt(9) - 4;
        return v;
    }

    [Fact]
    public void EveryShapeUpTo67MatchesExactReference()
    {
        // A and B are Max x Max (lda = ldb = Max); R_k = A[:, :k] * B[:k, :] in double, built one rank-1 update per k.
        var a = IntMatrix(1, Max * Max);
        var b = IntMatrix(2, Max * Max);
        var r = new double[Max * Max];
        const int ldc = Max + 3;
        var c = new float[Max * ldc];
        Array.Fill(c, float.NaN);  // beta = 0 must ignore old contents; each check restores the NaNs it read
        for (int k = 1; k <= Max; k++)
        {
            for (int i = 0; i < Max; i++)
            {
                double aik = a[i * Max + k - 1];
                for (int j = 0; j < Max; j++) r[i * Max + j] += aik * b[(k - 1) * Max + j];
            }
            for (int m = 1; m <= Max; m++)
            {
                for (int n = 1; n <= Max; n++)
                {
                    Gemm.Sgemm(false, false, m, n, k, 1f, a, Max, b, Max, 0f, c, ldc);
                    for (int i = 0; i < m; i++)
                    {
                        for (int j = 0; j < n; j++)
                        {
                            if (c[i * ldc + j] != r[i * Max + j])
                                Assert.Fail($"m={m} n={n} k={k}: C[{i},{j}] = {c[i * ldc + j]}, expected {r[i * Max + j]}.");
                            c[i * ldc + j] = float.NaN;
                        }
                        if (!float.IsNaN(c[i * ldc + n])) Assert.Fail($"m={m} n={n} k={k}: wrote past column {n - 1} in row {i}.");
                    }
                    if (m < Max && !float.IsNaN(c[m * ldc])) Assert.Fail($"m={m} n={n} k={k}: wrote past row {m - 1}.");
                }
            }
        }
    }

    public static IEnumerable<object[]> Kernels()
    {
        foreach (var k in Enum.GetValues<GemmKernel>())
            if (Gemm.IsSupported(k)) yield return new object[] { k };
    }

    // Reference: C = alpha * op(A) op(B) + beta * C0 in double.
    private static double[] Reference(bool tA, bool tB, int m, int n, int k, float alpha, float[] a, int lda, float[] b, int ldb, float beta, float[] c0, int ldc)
    {
        var r = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = 0;
                for (int p = 0; p < k; p++)
                    acc += (double)(tA ? a[p * lda + i] : a[i * lda + p]) * (tB ? b[j * ldb + p] : b[p * ldb + j]);
                r[i * n + j] = alpha * acc + (beta == 0 ? 0 : beta * (double)c0[i * ldc + j]);
            }
        return r;
    }

    private static void CheckCase(GemmKernel kernel, bool tA, bool tB, int m, int n, int k, float alpha, float beta, int pad, int seed)
    {
        int lda = (tA ? m : k) + pad, ldb = (tB ? k : n) + pad, ldc = n + pad;
        var a = GradCheck.Rand(seed, (tA ? k : m) * lda).ToArray();
        var b = GradCheck.Rand(seed + 1, (tB ? n : k) * ldb).ToArray();
        var c0 = GradCheck.Rand(seed + 2, m * ldc).ToArray();
        var c = (float[])c0.Clone();
        Gemm.Sgemm(kernel, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        var r = Reference(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
        double tol = 1e-5 * Math.Sqrt(k) * 4;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double err = Math.Abs(c[i * ldc + j] - r[i * n + j]);
                if (!(err <= tol + 1e-5 * Math.Abs(r[i * n + j])))
                    Assert.Fail($"{kernel} tA={tA} tB={tB} m={m} n={n} k={k} alpha={alpha} beta={beta} pad={pad}: C[{i},{j}] = {c[i * ldc + j]}, expected {r[i * n + j]}.");
            }
            for (int j = n; j < ldc; j++)
                if (c[i * ldc + j] != c0[i * ldc + j]) Assert.Fail($"{kernel} m={m} n={n} k={k}: padding column {j} of row {i} changed.");
        }
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void AllTransposesAlphaBetaAndStridesMatchReference(GemmKernel kernel)
    {
        // Sizes around every tile edge of every kernel family (MR 4/6, NR 4/8/16/64, KC 256).
        int[] sizes = { 1, 3, 4, 5, 6, 7, 9, 13, 16, 17, 33, 63, 64, 65, 97 };
        int seed = 10;
        foreach (bool tA in new[] { false, true })
            foreach (bool tB in new[] { false, true })
                for (int si = 0; si < sizes.Length; si++)
                {
                    int m = sizes[si], n = sizes[(si * 7 + 3) % sizes.Length], k = sizes[(si * 11 + 5) % sizes.Length];
                    CheckCase(kernel, tA, tB, m, n, k, 1f, 0f, 0, seed++);
                    CheckCase(kernel, tA, tB, n, k, m, -0.5f, 1f, 3, seed++);
                    CheckCase(kernel, tA, tB, k, m, n, 2f, 0.25f, 1, seed++);
                }
        // Beyond one KC block and one NC/MC block, multithreaded.
        CheckCase(kernel, false, false, 130, 600, 300, 1f, 0f, 2, 99);
        CheckCase(kernel, true, true, 200, 150, 520, 0.5f, -1f, 0, 98);
        CheckCase(kernel, false, true, 70, 530, 257, 1f, 1f, 5, 97);
        CheckCase(kernel, true, false, 515, 40, 70, 1f, 0f, 0, 96);
    }

    [Fact]
    public void KernelVariableNamesEveryFamilyAndRejectsOthersByName()
    {
        Assert.Equal(GemmKernel.Vector256, Gemm.ParseKernel("AVX2", Gemm.KernelVariable));
        Assert.Equal(GemmKernel.Vector512, Gemm.ParseKernel("avx512", Gemm.KernelVariable));
        Assert.Equal(GemmKernel.Vector128, Gemm.ParseKernel(" vector128 ", Gemm.KernelVariable));
        Assert.Equal(GemmKernel.Scalar, Gemm.ParseKernel("scalar", Gemm.KernelVariable));
        Assert.Equal(Gemm.Best(), Gemm.ParseKernel(null, Gemm.KernelVariable));
        var ex = Assert.Throws<ArgumentException>(() => Gemm.ParseKernel("avx3", Gemm.KernelVariable));
        Assert.Contains("DIFFUSIONSHARP_GEMM", ex.Message);
        Assert.Contains("'avx3'", ex.Message);
    }

    [Fact]
    public void ZeroKScalesByBeta()
    {
        var c = new float[] { 1, 2, 3, 4 };
        Gemm.Sgemm(false, false, 2, 2, 0, 1f, Array.Empty<float>(), 1, Array.Empty<float>(), 2, 3f, c, 2);
        Assert.Equal(new float[] { 3, 6, 9, 12 }, c);
        Gemm.Sgemm(false, false, 2, 2, 0, 1f, Array.Empty<float>(), 1, Array.Empty<float>(), 2, 0f, c, 2);
        Assert.Equal(new float[] { 0, 0, 0, 0 }, c);
    }

    [Fact]
    public void TooSmallBuffersAreRejectedWithShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 3, 3, 3, 1f, new float[8], 3, new float[9], 3, 0f, new float[9], 3));
        Assert.Contains("A (3 x 3, ld 3)", ex.Message);
        Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 3, 3, 3, 1f, new float[9], 2, new float[9], 3, 0f, new float[9], 3));
    }
    [Theory]
    [MemberData(nameof(Kernels))]
    public unsafe void BlockedPackedSumsEachBlockInRegistersThenAddsItToC(GemmKernel kernel)
    {
        // Blocked definition: each block of `block` terms is a chain of multiply-adds from zero (fused on the SIMD kernels, as
        // Vector512/256.FusedMultiplyAdd; the scalar kernel rounds products and sums separately), then added to C.
        const int block = 16;
        foreach (var (m, n, k, accumulate, transA) in new[] { (13, 70, 37, false, false), (6, 64, 32, true, false), (25, 20, 16, true, false), (1, 17, 5, false, false),
            (40, 130, 48, true, false), (30, 32, 40, false, false), (13, 70, 37, false, true), (12, 64, 33, true, true), (25, 20, 16, true, true), (1, 17, 5, false, true), (64, 32, 90, true, true) })
        {
            // op(A)[i, q] is A[i * lda + q], or A[q * lda + i] when transA
            int lda = (transA ? m : k) + 3, ldc = n + 5;
            int At(int i, int q) => transA ? q * lda + i : i * lda + q;
            var a = TestArrays.Normal(m * 1000 + k, (transA ? k : m) * lda);
            var b = TestArrays.Normal(n * 1000 + k, k * n);
            var c0 = TestArrays.Normal(m * n, m * ldc);
            var c = (float[])c0.Clone();
            var packed = new float[Gemm.PackedLength(kernel, k, n) + 16];
            fixed (float* pa = a, pb = b, pc = c, pk0 = packed)
            {
                float* pk = (float*)(((nint)pk0 + 63) & ~(nint)63);
                Gemm.PackPanels(kernel, pb, n, k, n, pk);
                Gemm.BlockedPacked(kernel, m, n, k, block, pa, lda, pk, accumulate, pc, ldc, transA);
            }
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    float Expected(bool fused)
                    {
                        float total = accumulate ? c0[i * ldc + j] : 0f;
                        for (int p = 0; p < k; p += block)
                        {
                            float acc = 0f;
                            for (int q = p; q < Math.Min(k, p + block); q++)
                                acc = fused ? MathF.FusedMultiplyAdd(a[At(i, q)], b[q * n + j], acc) : acc + a[At(i, q)] * b[q * n + j];
                            total = accumulate || p > 0 ? acc + total : acc;
                        }
                        return total;
                    }
                    float got = c[i * ldc + j];
                    bool ok = kernel switch
                    {
                        GemmKernel.Scalar => got == Expected(false),
                        GemmKernel.Vector128 => got == Expected(true) || got == Expected(false),  // MultiplyAddEstimate: fused where the CPU has FMA
                        _ => got == Expected(true),
                    };
                    Assert.True(ok, $"{kernel} {m}x{n}x{k} transA {transA} [{i},{j}]: {got} vs {Expected(kernel != GemmKernel.Scalar)}");
                }
            // columns beyond n in each row of C are left alone
            for (int i = 0; i < m; i++)
                for (int j = n; j < ldc && i * ldc + j < c.Length; j++) Assert.Equal(c0[i * ldc + j], c[i * ldc + j]);
        }
    }
}
