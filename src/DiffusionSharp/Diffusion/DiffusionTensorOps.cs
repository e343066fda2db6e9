using DiffusionSharp.Tensors;

namespace DiffusionSharp.Diffusion;

/// <summary>
/// Small autograd helpers used by the diffusion losses: a pointwise map with a given derivative, per-sample reductions,
/// channel splitting and per-sample coefficient tensors. Elementwise math runs in double.
/// </summary>
public static class DiffusionTensorOps
{
    /// <summary>y = f(x) elementwise; backward multiplies by <paramref name="derivative"/>(x, y).</summary>
    public static Tensor Map(Tensor x, Func<double, double> f, Func<double, double, double> derivative)
    {
        var y = Tensor.Empty(x.Shape);
        var xs = x.Span; var ys = y.Span;
        for (int i = 0; i < xs.Length; i++) ys[i] = (float)f(xs[i]);
        y.Track(g =>
        {
            var gx = Tensor.Empty(x.Shape);
            var gs = g.Span; var xs2 = x.Span; var ys2 = y.Span; var o = gx.Span;
            for (int i = 0; i < o.Length; i++) o[i] = (float)(gs[i] * derivative(xs2[i], ys2[i]));
            x.AccumulateGrad(gx, owned: true);
        }, x);
        return y;
    }

    /// <summary>Elementwise exp with autograd.</summary>
    public static Tensor ExpD(Tensor x) => Map(x, Math.Exp, (_, y) => y);

    /// <summary>Elementwise natural log with autograd.</summary>
    public static Tensor LogD(Tensor x) => Map(x, Math.Log, (v, _) => 1.0 / v);

    /// <summary>Elementwise logistic sigmoid with autograd.</summary>
    public static Tensor SigmoidD(Tensor x) => Map(x, Sigmoid, (_, y) => y * (1 - y));

    /// <summary>Elementwise softplus log(1 + e^x) with autograd.</summary>
    public static Tensor SoftplusD(Tensor x) => Map(x, Softplus, (v, _) => Sigmoid(v));

    /// <summary>Elementwise square root with autograd.</summary>
    public static Tensor SqrtD(Tensor x) => Map(x, Math.Sqrt, (_, y) => 0.5 / y);

    /// <summary>Multiplies by a constant.</summary>
    public static Tensor Scale(Tensor x, double c) => Map(x, v => c * v, (_, _) => c);

    /// <summary>Numerically stable logistic sigmoid.</summary>
    public static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));

    /// <summary>Numerically stable softplus.</summary>
    public static double Softplus(double x) => x > 0 ? x + Math.Log(1 + Math.Exp(-x)) : Math.Log(1 + Math.Exp(x));

    /// <summary>Mean over every axis except the first: [B, ...] -> [B] (improved-diffusion's mean_flat).</summary>
    public static Tensor MeanFlat(Tensor x) => ReduceFlat(x, mean: true);

    /// <summary>Sum over every axis except the first: [B, ...] -> [B].</summary>
    public static Tensor SumFlat(Tensor x) => ReduceFlat(x, mean: false);

    private static Tensor ReduceFlat(Tensor x, bool mean)
    {
        if (x.Rank < 1) throw new ArgumentException($"Expected a tensor with a batch axis, got shape {x.Shape}.");
        int b = x.Dim(0), per = b == 0 ? 0 : x.Size / b;
        double scale = mean ? 1.0 / Math.Max(per, 1) : 1.0;
        var y = Tensor.Empty(b);
        var xs = x.Span; var ys = y.Span;
        for (int i = 0; i < b; i++)
        {
            double acc = 0;
            var row = xs.Slice(i * per, per);
            for (int j = 0; j < row.Length; j++) acc += row[j];
            ys[i] = (float)(acc * scale);
        }
        y.Track(g =>
        {
            var gx = Tensor.Empty(x.Shape);
            var gs = g.Span; var o = gx.Span;
            for (int i = 0; i < b; i++) o.Slice(i * per, per).Fill((float)(gs[i] * scale));
            x.AccumulateGrad(gx, owned: true);
        }, x);
        return y;
    }

    /// <summary>Splits axis 1 into two equal halves (e.g. a model's mean and variance outputs), with autograd.</summary>
    public static (Tensor First, Tensor Second) SplitChannels(Tensor x)
    {
        if (x.Rank < 2 || x.Dim(1) % 2 != 0)
            throw new ArgumentException($"Expected [B, 2C, ...] with an even axis 1, got shape {x.Shape}.");
        var dims = x.Shape.ToArray();
        int b = dims[0], c2 = dims[1], inner = x.Size / Math.Max(1, b * c2), half = c2 / 2 * inner;
        dims[1] = c2 / 2;
        var shape = new Shape(dims);
        Tensor Part(int which)
        {
            var y = Tensor.Empty(shape);
            var xs = x.Span; var ys = y.Span;
            for (int i = 0; i < b; i++) xs.Slice(i * 2 * half + which * half, half).CopyTo(ys.Slice(i * half, half));
            y.Track(g =>
            {
                var gx = Tensor.Zeros(x.Shape);
                var gs = g.Span; var o = gx.Span;
                for (int i = 0; i < b; i++) gs.Slice(i * half, half).CopyTo(o.Slice(i * 2 * half + which * half, half));
                x.AccumulateGrad(gx, owned: true);
            }, x);
            return y;
        }
        return (Part(0), Part(1));
    }

    /// <summary>Joins two [B, C, ...] tensors along axis 1 (no autograd).</summary>
    public static Tensor ConcatChannels(Tensor a, Tensor b)
    {
        if (a.Shape != b.Shape) throw new ArgumentException($"Expected equal shapes, got {a.Shape} and {b.Shape}.");
        var dims = a.Shape.ToArray();
        int n = dims[0], half = a.Size / Math.Max(1, n);
        dims[1] *= 2;
        var y = Tensor.Empty(dims);
        for (int i = 0; i < n; i++)
        {
            a.Span.Slice(i * half, half).CopyTo(y.Span.Slice(i * 2 * half, half));
            b.Span.Slice(i * half, half).CopyTo(y.Span.Slice(i * 2 * half + half, half));
        }
        return y;
    }

    /// <summary>A constant [B, 1, ..., 1] tensor holding one value per sample, broadcastable against <paramref name="like"/>.</summary>
    public static Tensor PerSample(ReadOnlySpan<double> values, Shape like)
    {
        if (like.Rank < 1 || like[0] != values.Length)
            throw new ArgumentException($"Expected {values.Length} per-sample values for batch shape {like}.");
        var dims = new int[like.Rank];
        Array.Fill(dims, 1);
        dims[0] = values.Length;
        var t = Tensor.Empty(dims);
        var s = t.Span;
        for (int i = 0; i < values.Length; i++) s[i] = (float)values[i];
        return t;
    }

    /// <summary>Gathers <paramref name="table"/>[t[i]] for each sample into a [B, 1, ..., 1] tensor.</summary>
    public static Tensor Gather(double[] table, ReadOnlySpan<int> t, Shape like)
    {
        var v = new double[t.Length];
        for (int i = 0; i < t.Length; i++) v[i] = table[t[i]];
        return PerSample(v, like);
    }
}
