using System.Globalization;

namespace DiffusionSharp.IO;

/// <summary>
/// A minimal line-plot renderer (e.g. a training loss curve): axes, "nice" ticks with labels, a polyline per series,
/// an optional log-scaled y axis and a legend; writes an RGB PNG.
/// </summary>
public sealed class LinePlot
{
    private readonly List<(string Name, double[] X, double[] Y, Rgb Color)> _series = new();

    /// <summary>Default series colours.</summary>
    public static readonly Rgb[] Palette = [new(31, 119, 180), new(255, 127, 14), new(44, 160, 44), new(214, 39, 40), new(148, 103, 189)];

    /// <summary>Image width in pixels.</summary>
    public int Width { get; init; } = 640;

    /// <summary>Image height in pixels.</summary>
    public int Height { get; init; } = 400;

    /// <summary>Title drawn above the plot.</summary>
    public string? Title { get; init; }

    /// <summary>Label under the x axis.</summary>
    public string? XLabel { get; init; }

    /// <summary>Label beside the y axis.</summary>
    public string? YLabel { get; init; }

    /// <summary>Log-scale the y axis (non-positive values are skipped).</summary>
    public bool LogY { get; init; }

    /// <summary>Margins around the plotting area: left, top, right, bottom.</summary>
    public (int Left, int Top, int Right, int Bottom) Margins { get; init; } = (64, 24, 16, 40);

    /// <summary>Adds a series; colours cycle through <see cref="Palette"/> unless given.</summary>
    public LinePlot Add(string name, IReadOnlyList<double> x, IReadOnlyList<double> y, Rgb? color = null)
    {
        if (x.Count != y.Count) throw new ArgumentException($"Series '{name}' has {x.Count} x values but {y.Count} y values.");
        _series.Add((name, x.ToArray(), y.ToArray(), color ?? Palette[_series.Count % Palette.Length]));
        return this;
    }

    /// <summary>Adds a series with x = 0, 1, 2, ...</summary>
    public LinePlot Add(string name, IReadOnlyList<double> y, Rgb? color = null) =>
        Add(name, Enumerable.Range(0, y.Count).Select(i => (double)i).ToArray(), y, color);

    /// <summary>The plotting area in pixels: left, top, width, height.</summary>
    public (int X, int Y, int W, int H) PlotArea =>
        (Margins.Left, Margins.Top, Width - Margins.Left - Margins.Right, Height - Margins.Top - Margins.Bottom);

    /// <summary>Data ranges shown on the axes (after "nice" rounding), y in data units even when log-scaled.</summary>
    public (double X0, double X1, double Y0, double Y1) Ranges()
    {
        double x0 = double.PositiveInfinity, x1 = double.NegativeInfinity, y0 = double.PositiveInfinity, y1 = double.NegativeInfinity;
        foreach (var s in _series)
            for (int i = 0; i < s.X.Length; i++)
            {
                double xv = s.X[i], yv = s.Y[i];
                if (!double.IsFinite(xv) || !double.IsFinite(yv) || (LogY && yv <= 0)) continue;
                x0 = Math.Min(x0, xv); x1 = Math.Max(x1, xv); y0 = Math.Min(y0, yv); y1 = Math.Max(y1, yv);
            }
        if (double.IsInfinity(x0)) { x0 = 0; x1 = 1; y0 = LogY ? 1 : 0; y1 = LogY ? 10 : 1; }
        if (x1 == x0) { x0 -= 0.5; x1 += 0.5; }
        if (LogY)
        {
            double l0 = Math.Floor(Math.Log10(y0)), l1 = Math.Ceiling(Math.Log10(y1));
            if (l1 == l0) l1 += 1;
            return (x0, x1, Math.Pow(10, l0), Math.Pow(10, l1));
        }
        if (y1 == y0) { y0 -= 0.5 * Math.Max(1, Math.Abs(y0)); y1 += 0.5 * Math.Max(1, Math.Abs(y1)); }
        double step = NiceStep(y1 - y0, 5);
        return (x0, x1, Math.Floor(y0 / step) * step, Math.Ceiling(y1 / step) * step);
    }

    /// <summary>A step of 1, 2 or 5 times a power of ten giving about <paramref name="target"/> intervals over <paramref name="span"/>.</summary>
    public static double NiceStep(double span, int target)
    {
        double raw = span / Math.Max(1, target);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / mag;
        return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    }

    /// <summary>Tick positions: multiples of a nice step inside [lo, hi].</summary>
    public static List<double> Ticks(double lo, double hi, int target = 5)
    {
        double step = NiceStep(hi - lo, target);
        var t = new List<double>();
        for (double k = Math.Ceiling(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) t.Add(Math.Abs(k * step) < step * 1e-9 ? 0 : k * step);
        return t;
    }

    /// <summary>Short tick label: up to 4 significant digits, scientific for very large or small values.</summary>
    public static string Label(double v)
    {
        if (v == 0) return "0";
        double a = Math.Abs(v);
        if (a >= 1e5 || a < 1e-3) return v.ToString("0.##e+0", CultureInfo.InvariantCulture);
        return v.ToString("G4", CultureInfo.InvariantCulture);
    }

    /// <summary>Renders the plot.</summary>
    public Image Render()
    {
        var (px, py, pw, ph) = PlotArea;
        if (pw < 10 || ph < 10) throw new InvalidOperationException($"A {Width}x{Height} plot leaves no room for the plotting area.");
        var cv = new Canvas(Width, Height, Rgb.White);
        var (x0, x1, y0, y1) = Ranges();
        var grid = new Rgb(225, 225, 225);
        var axis = new Rgb(40, 40, 40);
        Func<double, double> fy = LogY ? Math.Log10 : v => v;
        double ly0 = fy(y0), ly1 = fy(y1);
        int MapX(double v) => px + (int)Math.Round((v - x0) / (x1 - x0) * (pw - 1));
        int MapY(double v) => py + ph - 1 - (int)Math.Round((fy(v) - ly0) / (ly1 - ly0) * (ph - 1));

        foreach (var t in Ticks(x0, x1, Math.Max(2, pw / 90)))
        {
            int x = MapX(t);
            cv.Line(x, py, x, py + ph - 1, grid);
            cv.Line(x, py + ph, x, py + ph + 3, axis);
            var s = Label(t);
            cv.Text(x - BitmapFont.Measure(s) / 2, py + ph + 6, s, axis);
        }
        var yTicks = LogY
            ? Enumerable.Range((int)ly0, (int)(ly1 - ly0) + 1).Select(e => Math.Pow(10, e)).ToList()
            : Ticks(y0, y1, Math.Max(2, ph / 60));
        foreach (var t in yTicks)
        {
            int y = MapY(t);
            cv.Line(px, y, px + pw - 1, y, grid);
            cv.Line(px - 4, y, px - 1, y, axis);
            var s = Label(t);
            cv.Text(px - 7 - BitmapFont.Measure(s), y - 3, s, axis);
        }
        cv.Line(px - 1, py, px - 1, py + ph, axis);            // y axis
        cv.Line(px - 1, py + ph, px + pw - 1, py + ph, axis);  // x axis

        foreach (var s in _series)
        {
            int? lastX = null, lastY = null;
            for (int i = 0; i < s.X.Length; i++)
            {
                if (!double.IsFinite(s.X[i]) || !double.IsFinite(s.Y[i]) || (LogY && s.Y[i] <= 0)) { lastX = null; continue; }
                int x = MapX(s.X[i]), y = MapY(s.Y[i]);
                if (lastX is int lx && lastY is int lyv) cv.Line(lx, lyv, x, y, s.Color, 2);
                else cv.Set(x, y, s.Color);
                lastX = x; lastY = y;
            }
        }
        if (Title != null) cv.Text(px + (pw - BitmapFont.Measure(Title)) / 2, Math.Max(2, py - 14), Title, axis);
        if (XLabel != null) cv.Text(px + (pw - BitmapFont.Measure(XLabel)) / 2, py + ph + 20, XLabel, axis);
        if (YLabel != null) cv.TextVertical(4, py + (ph + BitmapFont.Measure(YLabel)) / 2, YLabel, axis);
        if (_series.Count > 1)
            for (int k = 0; k < _series.Count; k++)
            {
                int ly = py + 6 + k * 12, lx = px + pw - 12 - BitmapFont.Measure(_series[k].Name) - 18;
                cv.FillRect(lx, ly + 2, 14, 3, _series[k].Color);
                cv.Text(lx + 18, ly, _series[k].Name, axis);
            }
        return cv.Image;
    }

    /// <summary>
    /// A training-loss plot: the raw losses and their bias-corrected exponential moving average (weight <paramref name="emaBeta"/>),
    /// on a log y axis when every loss is positive.
    /// </summary>
    public static LinePlot LossCurve(IReadOnlyList<double> steps, IReadOnlyList<double> losses, double emaBeta = 0.98, string title = "training loss")
    {
        if (steps.Count != losses.Count) throw new ArgumentException($"{steps.Count} steps but {losses.Count} losses.");
        if (emaBeta < 0 || emaBeta >= 1) throw new ArgumentOutOfRangeException(nameof(emaBeta), $"EMA weight must be in [0, 1), got {emaBeta}.");
        var ema = new double[losses.Count];
        double acc = 0, norm = 0;
        for (int i = 0; i < losses.Count; i++)
        {
            if (double.IsFinite(losses[i])) { acc = emaBeta * acc + (1 - emaBeta) * losses[i]; norm = emaBeta * norm + (1 - emaBeta); }
            ema[i] = norm > 0 ? acc / norm : double.NaN;  // divide by 1 - beta^k as Adam does for its moments
        }
        bool log = losses.Count > 0 && losses.All(v => !double.IsFinite(v) || v > 0);
        var plot = new LinePlot { Title = title, XLabel = "step", YLabel = "loss", LogY = log };
        plot.Add("loss", steps, losses, new Rgb(160, 190, 230));
        plot.Add("ema", steps, ema, new Rgb(31, 119, 180));
        return plot;
    }

    /// <summary>Renders and writes the plot as a PNG.</summary>
    public void Save(string path) => PngEncoder.Write(path, Render());
}
