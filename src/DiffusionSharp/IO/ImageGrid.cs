using DiffusionSharp.Tensors;

namespace DiffusionSharp.IO;

/// <summary>Tiles a batch of images into one picture, e.g. a sheet of samples.</summary>
public static class ImageGrid
{
    /// <summary>
    /// Tiles <paramref name="batch"/> [N, C, H, W] (values in [-1, 1], C in 1..4) into an 8-bit image with
    /// <paramref name="nrow"/> images per row and <paramref name="padding"/> pixels of <paramref name="padValue"/> around each.
    /// </summary>
    public static Image Make(Tensor batch, int nrow = 8, int padding = 2, byte padValue = 0)
    {
        if (batch.Rank != 4 && batch.Rank != 3) throw new ArgumentException($"Expected a batch of images [N, C, H, W], got {batch.Shape}.");
        int lead = batch.Rank - 3;  // a single [C, H, W] image is a batch of one
        int n = lead == 1 ? batch.Dim(0) : 1, c = batch.Dim(lead), h = batch.Dim(lead + 1), w = batch.Dim(lead + 2);
        if (n == 0) throw new ArgumentException($"Cannot make a grid of an empty batch {batch.Shape}.");
        if (c < 1 || c > 4) throw new ArgumentException($"Expected 1 to 4 channels in the batch [N, C, H, W], got {batch.Shape}.");
        if (nrow < 1) throw new ArgumentOutOfRangeException(nameof(nrow), $"Images per row must be at least 1, got {nrow}.");
        if (padding < 0) throw new ArgumentOutOfRangeException(nameof(padding), $"Padding cannot be negative, got {padding}.");
        int cols = Math.Min(nrow, n), rows = (n + cols - 1) / cols;
        int gw = cols * (w + padding) + padding, gh = rows * (h + padding) + padding;
        var grid = new Image(gw, gh, c);
        grid.Data.AsSpan().Fill(padValue);
        var tile = new byte[h * w * c];
        var src = batch.Span;
        int per = c * h * w;
        for (int k = 0; k < n; k++)
        {
            Image.FromChw(src.Slice(k * per, per), c, h, w, tile);
            int ox = padding + (k % cols) * (w + padding), oy = padding + (k / cols) * (h + padding);
            for (int y = 0; y < h; y++)
                tile.AsSpan(y * w * c, w * c).CopyTo(grid.Data.AsSpan(((oy + y) * gw + ox) * c, w * c));
        }
        return grid;
    }

    /// <summary>Tiles <paramref name="batch"/> (see <see cref="Make"/>) and writes it as a PNG.</summary>
    public static void Save(string path, Tensor batch, int nrow = 8, int padding = 2, byte padValue = 0) =>
        PngEncoder.Write(path, Make(batch, nrow, padding, padValue));
}
