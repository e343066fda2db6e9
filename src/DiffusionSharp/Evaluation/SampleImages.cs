using DiffusionSharp.IO;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Evaluation;

/// <summary>Loads sets of sample images (e.g. written by <c>diffusion sample --each DIR</c>) for evaluation.</summary>
public static class SampleImages
{
    /// <summary>The *.png files directly inside <paramref name="directory"/>, in ordinal name order.</summary>
    public static string[] ListPngs(string directory)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"Sample folder not found: {directory}");
        var files = Directory.GetFiles(directory)
            .Where(f => f.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            .OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (files.Length == 0) throw new FileNotFoundException($"No .png files in the sample folder {directory}.");
        return files;
    }

    /// <summary>
    /// Reads every PNG of <paramref name="directory"/> as [N, channels, size, size] in [-1, 1]. Each image must be
    /// size x size with the same colour type (gray or RGB, alpha ignored); an unreadable or mismatched file is named in the error.
    /// </summary>
    public static Tensor LoadPngFolder(string directory, int channels, int size, int? limit = null, Action<int, int>? progress = null)
    {
        var files = ListPngs(directory);
        if (limit is int l && l < files.Length) files = files[..l];
        int per = channels * size * size;
        var x = Tensor.Empty(files.Length, channels, size, size);
        try
        {
            for (int i = 0; i < files.Length; i++)
            {
                var img = Read(files[i]);
                int colour = img.Channels >= 3 ? 3 : 1;
                if (img.Width != size || img.Height != size || colour != channels)
                    throw new InvalidDataException(
                        $"{files[i]} is a {img.Width}x{img.Height} {(colour == 3 ? "RGB" : "gray")} image; the classifier takes " +
                        $"{size}x{size} {(channels == 3 ? "RGB" : "gray")} images.");
                img.ConvertChannels(channels).CopyToChw(x.Span.Slice(i * per, per));
                progress?.Invoke(i + 1, files.Length);
            }
        }
        catch
        {
            x.Dispose();
            throw;
        }
        return x;
    }

    private static Image Read(string file)
    {
        try
        {
            return Png.Read(file).To8Bit();
        }
        catch (Exception e) when (e is InvalidDataException or IOException or NotSupportedException or ArgumentException)
        {
            throw new InvalidDataException($"Cannot read sample image {file}: {e.Message}", e);
        }
    }
}
