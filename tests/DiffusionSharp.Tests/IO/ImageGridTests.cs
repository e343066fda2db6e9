using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.IO;

public class ImageGridTests
{
    [Fact]
    public void TilesBatchRowMajorWithPadding()
    {
        int n = 5, c = 3, h = 3, w = 4;
        var t = Tensor.Empty(n, c, h, w);
        var s = t.Span;
        // image k, channel ch is constant, mapping to byte 10 * (k * 3 + ch)
        for (int k = 0; k < n; k++)
            for (int ch = 0; ch < c; ch++)
                s.Slice((k * c + ch) * h * w, h * w).Fill(10 * (k * 3 + ch) / 127.5f - 1f);
        var g = ImageGrid.Make(t, nrow: 2, padding: 1, padValue: 7);
        Assert.Equal(2 * (w + 1) + 1, g.Width);
        Assert.Equal(3 * (h + 1) + 1, g.Height);
        Assert.Equal(3, g.Channels);
        for (int k = 0; k < n; k++)
        {
            int ox = 1 + (k % 2) * (w + 1), oy = 1 + (k / 2) * (h + 1);
            for (int ch = 0; ch < c; ch++)
            {
                byte expect = (byte)(10 * (k * 3 + ch));
                Assert.Equal(expect, g.Data[((oy + h - 1) * g.Width + ox + w - 1) * 3 + ch]);
                Assert.Equal(expect, g.Data[(oy * g.Width + ox) * 3 + ch]);
            }
        }
        Assert.Equal(7, g.Data[0]);                                      // corner padding
        Assert.Equal(7, g.Data[((1 + 2 * (h + 1)) * g.Width + 1 + w + 1) * 3]);  // empty sixth slot
    }

    [Fact]
    public void SavesDecodablePng()
    {
        var t = Tensor.Rand(new Generator(3), 4, 1, 5, 5);
        foreach (ref float v in t.Span) v = v * 2f - 1f;
        var path = Path.Combine(Path.GetTempPath(), $"grid-{Guid.NewGuid():N}.png");
        try
        {
            ImageGrid.Save(path, t, nrow: 4, padding: 0);
            var img = Png.Read(path);
            Assert.Equal((20, 5, 1), (img.Width, img.Height, img.Channels));
            Assert.Equal(Image.ToByte(t.Span[5 * 5 + 2]), img.Data[0 * 20 + 5 + 2]);  // image 1, pixel (x 2, y 0)
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void RejectsBadShapes()
    {
        var ex = Assert.Throws<ArgumentException>(() => ImageGrid.Make(Tensor.Zeros(2, 5, 4, 4)));
        Assert.Contains("[2, 5, 4, 4]", ex.Message);
        Assert.Throws<ArgumentException>(() => ImageGrid.Make(Tensor.Zeros(4, 4)));
        var single = ImageGrid.Make(Tensor.Zeros(1, 3, 3), nrow: 8, padding: 2);  // a [C, H, W] image is a batch of one
        Assert.Equal((7, 7, 1), (single.Width, single.Height, single.Channels));
    }
}

public class LinePlotTests
{
    [Theory]
    [InlineData(1.0, 5, 0.2)]
    [InlineData(7.0, 5, 2.0)]
    [InlineData(0.03, 3, 0.01)]
    [InlineData(1234.0, 4, 500.0)]
    public void NiceStepIsOneTwoFiveTimesPowerOfTen(double span, int target, double step) =>
        Assert.Equal(step, LinePlot.NiceStep(span, target), 12);

    [Fact]
    public void TicksCoverRangeAtNiceMultiples()
    {
        var t = LinePlot.Ticks(0, 1, 5);
        Assert.Equal(new[] { 0, 0.2, 0.4, 0.6, 0.8, 1.0 }, t.Select(v => Math.Round(v, 12)).ToArray());
        Assert.Equal(new[] { -10.0, -5, 0, 5 }, LinePlot.Ticks(-12, 7, 4).ToArray());
        Assert.Equal("0.25", LinePlot.Label(0.25));
        Assert.Equal("1.5e-4", LinePlot.Label(0.00015));
    }

    private static bool Near(Canvas cv, int x, int y, Rgb c)
    {
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++)
                if (cv.Get(x + dx, y + dy) == c) return true;
        return false;
    }

    [Fact]
    public void PolylineGoesThroughMappedPoints()
    {
        var color = new Rgb(200, 10, 10);
        var xs = Enumerable.Range(0, 11).Select(i => (double)i).ToArray();
        var plot = new LinePlot { Width = 300, Height = 200, Title = "loss", XLabel = "step", YLabel = "mse" }.Add("y=x", xs, xs, color);
        var img = plot.Render();
        var cv = new Canvas(img.Width, img.Height, Rgb.White);
        img.Data.CopyTo(cv.Image.Data, 0);
        var (px, py, pw, ph) = plot.PlotArea;
        var (x0, x1, y0, y1) = plot.Ranges();
        Assert.Equal((0.0, 10.0, 0.0, 10.0), (x0, x1, y0, y1));
        foreach (double v in new[] { 0.0, 2.5, 5.0, 10.0 })
        {
            int x = px + (int)Math.Round(v / 10 * (pw - 1)), y = py + ph - 1 - (int)Math.Round(v / 10 * (ph - 1));
            Assert.True(Near(cv, x, y, color), $"no line pixel near ({x}, {y}) for value {v}");
        }
        // far from the diagonal there is no line colour
        Assert.False(Near(cv, px + pw * 3 / 4, py + ph * 3 / 4, color));
        // the y axis is a solid dark column over the plot height
        for (int y = py; y < py + ph; y++) Assert.Equal(new Rgb(40, 40, 40), cv.Get(px - 1, y));
        // the PNG round trip keeps it
        Assert.Equal(img.Data, Png.Decode(PngEncoder.Encode(img)).Data);
    }

    [Fact]
    public void LogAxisPlacesDecadesEvenly()
    {
        var color = new Rgb(0, 0, 255);
        var plot = new LinePlot { Width = 200, Height = 160, LogY = true }.Add("l", new double[] { 0, 1, 2, 3 }, new double[] { 1, 10, 100, 1000 }, color);
        var img = plot.Render();
        var cv = new Canvas(img.Width, img.Height, Rgb.White);
        img.Data.CopyTo(cv.Image.Data, 0);
        var (px, py, pw, ph) = plot.PlotArea;
        Assert.Equal((1.0, 1000.0), (plot.Ranges().Y0, plot.Ranges().Y1));
        int x = px + (int)Math.Round(1.0 / 3 * (pw - 1)), y = py + ph - 1 - (int)Math.Round(1.0 / 3 * (ph - 1));
        Assert.True(Near(cv, x, y, color));
    }

    [Fact]
    public void LossCurveSmoothsWithBiasCorrectedEma()
    {
        var steps = new double[] { 0, 1, 2 };
        var plot = LinePlot.LossCurve(steps, new double[] { 4, 2, 1 }, emaBeta: 0.5);
        Assert.True(plot.LogY);
        // ema_1 = 4; ema_2 = (0.25 * 4 + 0.5 * 2) / 0.75 = 8/3; ema_3 = (0.125 * 4 + 0.25 * 2 + 0.5 * 1) / 0.875 = 12/7
        var (_, _, y0, y1) = plot.Ranges();
        Assert.Equal((1.0, 10.0), (y0, y1));
        Assert.False(LinePlot.LossCurve(steps, new double[] { 1, -1, 0 }).LogY);
        var img = plot.Render();
        var ema = new Rgb(31, 119, 180);
        var (px, py, pw, ph) = plot.PlotArea;
        int yOf(double v) => py + ph - 1 - (int)Math.Round(Math.Log10(v) * (ph - 1));
        var cv = new Canvas(img.Width, img.Height, Rgb.White);
        img.Data.CopyTo(cv.Image.Data, 0);
        Assert.True(Near(cv, px + (pw - 1) / 2, yOf(8.0 / 3), ema));
        Assert.True(Near(cv, px + pw - 1, yOf(12.0 / 7), ema));
    }

    [Fact]
    public void BitmapTextInksInsideGlyphBox()
    {
        var cv = new Canvas(20, 10, Rgb.White);
        cv.Text(1, 1, "0", Rgb.Black);
        int ink = 0;
        for (int y = 0; y < 10; y++)
            for (int x = 0; x < 20; x++)
                if (cv.Get(x, y) == Rgb.Black)
                {
                    ink++;
                    Assert.InRange(x, 1, 5);
                    Assert.InRange(y, 1, 7);
                }
        Assert.Equal(19, ink);  // the 5x7 zero: rows of 3+2+3+3+3+2+3 pixels
        Assert.Equal(6 * 3 - 1, BitmapFont.Measure("abc"));
        Assert.NotEqual(BitmapFont.Glyph('0'), BitmapFont.Glyph('8'));
        Assert.Equal(BitmapFont.Glyph('A'), BitmapFont.Glyph('a'));
    }
}
