using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Group normalisation (Wu and He 2018) of an [N, C, ...] tensor: each sample's C channels are split into
    /// <paramref name="groups"/> groups normalised to zero mean and unit (biased) variance, then scaled by weight[c]
    /// and shifted by bias[c] (each optional, shape [C]).
    /// </summary>
    public Tensor GroupNorm(int groups, Tensor? weight, Tensor? bias, float eps)
    {
        var (n, c, spatial) = GroupNormDims(groups, weight, bias);
        var y = Empty(Shape);
        var mean = new float[n * groups];
        var rstd = new float[n * groups];
        NormKernels.GroupNormForward(Storage, y.Storage, n, c, spatial, groups, weight?.Storage, bias?.Storage, eps, mean, rstd);
        var x = this;
        var inputs = weight == null && bias == null ? new[] { this } : new[] { this, weight ?? this, bias ?? this };
        y.Track(g =>
        {
            var gx = x.RequiresGrad ? Empty(x.Shape) : null;
            bool wantW = weight?.RequiresGrad == true, wantB = bias?.RequiresGrad == true;
            var dwPart = wantW ? new double[n * c] : null;
            var dbPart = wantB ? new double[n * c] : null;
            NormKernels.GroupNormBackward(x.Storage, g.Storage, gx?.Storage, n, c, spatial, groups, weight?.Storage, mean, rstd, dwPart, dbPart);
            if (gx != null) x.AccumulateGrad(gx, owned: true);
            if (wantW) weight!.AccumulateGrad(SumOverSamples(dwPart!, n, c), owned: true);
            if (wantB) bias!.AccumulateGrad(SumOverSamples(dbPart!, n, c), owned: true);
        }, inputs);
        return y;
    }

    /// <summary>
    /// SiLU of the group norm of this + <paramref name="addNC"/> ([N, C] broadcast over the spatial axes, optional): the
    /// values of <see cref="GroupNorm"/> then <see cref="Silu"/> (after a broadcast add), recorded as one op. Forward writes
    /// only the activation; backward recomputes the pre-activation per channel and runs the SiLU and norm gradients in one
    /// pass per group, with gradients for this, weight, bias and addNC.
    /// </summary>
    public Tensor GroupNormSilu(int groups, Tensor? weight, Tensor? bias, float eps, Tensor? addNC = null)
    {
        var (n, c, spatial) = GroupNormDims(groups, weight, bias);
        addNC?.ExpectShape(new Shape(n, c), "GroupNorm added [N, C] term");
        var y = Empty(Shape);
        var mean = new float[n * groups];
        var rstd = new float[n * groups];
        NormKernels.GroupNormForward(Storage, y.Storage, n, c, spatial, groups, weight?.Storage, bias?.Storage, eps, mean, rstd, silu: true, addNC: addNC?.Storage);
        var x = this;
        var inputs = new List<Tensor> { this };
        if (weight != null) inputs.Add(weight);
        if (bias != null) inputs.Add(bias);
        if (addNC != null) inputs.Add(addNC);
        y.Track(g =>
        {
            bool wantX = x.RequiresGrad, wantAdd = addNC?.RequiresGrad == true;
            bool wantW = weight?.RequiresGrad == true, wantB = bias?.RequiresGrad == true;
            var gx = wantX || wantAdd ? Empty(x.Shape) : null;
            var dwPart = wantW ? new double[n * c] : null;
            var dbPart = wantB ? new double[n * c] : null;
            var daPart = wantAdd ? new double[n * c] : null;
            NormKernels.GroupNormSiluBackward(x.Storage, addNC?.Storage, g.Storage, gx?.Storage, n, c, spatial, groups, weight?.Storage, bias?.Storage,
                mean, rstd, dwPart, dbPart, daPart);
            if (wantW) weight!.AccumulateGrad(SumOverSamples(dwPart!, n, c), owned: true);
            if (wantB) bias!.AccumulateGrad(SumOverSamples(dbPart!, n, c), owned: true);
            if (wantAdd)
            {
                var ga = Empty(n, c);
                var gs = ga.Span;
                for (int i = 0; i < gs.Length; i++) gs[i] = (float)daPart![i];
                addNC!.AccumulateGrad(ga, owned: true);
            }
            if (wantX) x.AccumulateGrad(gx!, owned: true);
            else gx?.Dispose();
        }, inputs.ToArray());
        return y;
    }

    /// <summary>
    /// SiLU of the group norm (<see cref="GroupNorm"/> then <see cref="Silu"/>) in one pass, for inference: no graph is
    /// recorded, so it is refused while gradients are recorded. With <paramref name="addNC"/> ([N, C]) the normalised
    /// input is this + addNC broadcast over the spatial axes, with the same float32 sums as adding it first.
    /// </summary>
    internal Tensor GroupNormSiluInference(int groups, Tensor? weight, Tensor? bias, float eps, Tensor? addNC = null)
    {
        if (Autograd.GradMode.Enabled) throw new InvalidOperationException("GroupNormSiluInference records no graph; call it inside GradMode.NoGrad().");
        var (n, c, spatial) = GroupNormDims(groups, weight, bias);
        addNC?.ExpectShape(new Shape(n, c), "GroupNorm added [N, C] term");
        var y = Empty(Shape);
        NormKernels.GroupNormForward(Storage, y.Storage, n, c, spatial, groups, weight?.Storage, bias?.Storage, eps,
            new float[n * groups], new float[n * groups], silu: true, addNC: addNC?.Storage);
        return y;
    }

    // [N, C, spatial] of a group norm's input, its groups and affine parameters checked.
    private (int N, int C, int Spatial) GroupNormDims(int groups, Tensor? weight, Tensor? bias)
    {
        if (Rank < 2) throw new ArgumentException($"GroupNorm expects [N, C, ...], got shape {Shape}.");
        int n = Shape[0], c = Shape[1];
        if (groups <= 0 || c % groups != 0) throw new ArgumentException($"GroupNorm: {c} channels of shape {Shape} do not split into {groups} groups.");
        weight?.ExpectShape(new Shape(c), "GroupNorm weight");
        bias?.ExpectShape(new Shape(c), "GroupNorm bias");
        int spatial = c == 0 || n == 0 ? 0 : Size / (n * c);
        return (n, c, spatial);
    }

    // [c] tensor of sum over i of part[i * c + j].
    private static Tensor SumOverSamples(double[] part, int n, int c)
    {
        var t = Empty(c);
        var s = t.Span;
        for (int j = 0; j < c; j++)
        {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += part[i * c + j];
            s[j] = (float)acc;
        }
        return t;
    }

    /// <summary>
    /// Layer normalisation (Ba et al. 2016) over the last dimension D, with optional elementwise weight and bias of shape [D].
    /// </summary>
    public Tensor LayerNorm(Tensor? weight, Tensor? bias, float eps)
    {
        if (Rank < 1) throw new ArgumentException($"LayerNorm needs at least one dimension, got shape {Shape}.");
        int d = Shape[-1];
        weight?.ExpectShape(new Shape(d), "LayerNorm weight");
        bias?.ExpectShape(new Shape(d), "LayerNorm bias");
        int rows = d == 0 ? 0 : Size / d;
        var y = Empty(Shape);
        var mean = new float[rows];
        var rstd = new float[rows];
        NormKernels.LayerNormForward(Storage, y.Storage, rows, d, weight?.Storage, bias?.Storage, eps, mean, rstd);
        var x = this;
        var inputs = weight == null && bias == null ? new[] { this } : new[] { this, weight ?? this, bias ?? this };
        y.Track(g =>
        {
            var gx = x.RequiresGrad ? Empty(x.Shape) : null;
            bool wantW = weight?.RequiresGrad == true, wantB = bias?.RequiresGrad == true;
            var dw = wantW ? new double[d] : null;
            var db = wantB ? new double[d] : null;
            NormKernels.LayerNormBackward(x.Storage, g.Storage, gx?.Storage, rows, d, weight?.Storage, mean, rstd, dw, db);
            if (gx != null) x.AccumulateGrad(gx, owned: true);
            if (wantW) weight!.AccumulateGrad(FromDoubles(dw!), owned: true);
            if (wantB) bias!.AccumulateGrad(FromDoubles(db!), owned: true);
        }, inputs);
        return y;
    }

    private static Tensor FromDoubles(double[] v)
    {
        var t = Empty(v.Length);
        var s = t.Span;
        for (int i = 0; i < v.Length; i++) s[i] = (float)v[i];
        return t;
    }
}
