using System.Text.Json;
using DiffusionSharp.Cli;
using DiffusionSharp.Data;
using DiffusionSharp.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using Xunit;
using Image = DiffusionSharp.IO.Image;

namespace DiffusionSharp.Tests.IO;

/// <summary>Image reading through ImageSharp: formats, EXIF orientation, alpha, resize filters, crops and error messages.</summary>
[Collection("console")]
public sealed class ImageFileTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "ds-img-" + Guid.NewGuid().ToString("N"));

    public ImageFileTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    // A smooth colour picture (gradients survive lossy codecs) of the given size.
    private static Image<Rgba32> Picture(int w, int h, int seed)
    {
        var img = new Image<Rgba32>(w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                img[x, y] = new Rgba32((byte)(255 * x / w), (byte)(255 * y / h), (byte)((seed * 40) % 256), 255);
        return img;
    }

    private string Save(Image<Rgba32> img, string name)
    {
        var path = Path.Combine(_root, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        img.Save(path);  // the encoder follows the extension
        return path;
    }

    [Fact]
    public void EveryFormatDecodesToItsPixels()
    {
        foreach (var ext in new[] { ".png", ".jpg", ".bmp", ".gif", ".tiff", ".webp" })
        {
            using var pic = Picture(24, 16, 2);
            var img = ImageFile.Read(Save(pic, "fmt/a" + ext));
            Assert.Equal((24, 16, 3), (img.Width, img.Height, img.Channels));
            // Lossy (JPEG, WebP) and palette (GIF) codecs: within a few levels of the source on average.
            double err = 0;
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 24; x++)
                    err += Math.Abs(img.Data[(y * 24 + x) * 3] - pic[x, y].R) + Math.Abs(img.Data[(y * 24 + x) * 3 + 1] - pic[x, y].G);
            Assert.True(err / (2 * 24 * 16) < 8, $"{ext}: mean error {err / (2 * 24 * 16):F1} levels");
        }
    }

    [Fact]
    public void ExifOrientationIsApplied()
    {
        // A camera-style JPEG stored sideways: orientation 6 means the display turns it a quarter clockwise.
        using var pic = Picture(16, 8, 1);
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) pic[x, y] = new Rgba32(255, 255, 255, 255);
        pic.Metadata.ExifProfile = new ExifProfile();
        pic.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
        var img = ImageFile.Read(Save(pic, "exif.jpg"));
        Assert.Equal((8, 16), (img.Width, img.Height));
        // Stored (x, y) is shown at (7 - y, x): the white top-left block ends at the top-right.
        Assert.True(img.Data[(1 * 8 + 6) * 3] > 200, "top-right is not white");
        Assert.True(img.Data[(1 * 8 + 1) * 3] < 100, "top-left is white");
    }

    [Fact]
    public void AlphaIsDroppedOrComposited()
    {
        using var pic = new Image<Rgba32>(2, 1);
        pic[0, 0] = new Rgba32(200, 100, 0, 0);
        pic[1, 0] = new Rgba32(200, 100, 0, 102);  // alpha 0.4
        var path = Save(pic, "alpha.png");
        var dropped = ImageFile.Load(path, new ImageLoadOptions());
        Assert.Equal(new byte[] { 200, 100, 0, 200, 100, 0 }, dropped.Data);
        var white = ImageFile.Load(path, new ImageLoadOptions { Alpha = AlphaMode.White });
        // c = a c + (1 - a) 255: 0.4 * 200 + 0.6 * 255 = 233, 0.4 * 100 + 153 = 193, 0 + 153 = 153
        Assert.Equal(new byte[] { 255, 255, 255, 233, 193, 153 }, white.Data);
        var black = ImageFile.Load(path, new ImageLoadOptions { Alpha = AlphaMode.Black });
        Assert.Equal(new byte[] { 0, 0, 0, 80, 40, 0 }, black.Data);
    }

    [Fact]
    public void AreaResizeAveragesAndBicubicDoesNot()
    {
        // A one-pixel checkerboard of 0 / 255: every 2x2 area averages to 127.5.
        using var pic = new Image<Rgba32>(16, 16);
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) { byte v = (byte)((x + y) % 2 * 255); pic[x, y] = new Rgba32(v, v, v, 255); }
        var path = Save(pic, "checker.png");
        var area = ImageFile.Load(path, new ImageLoadOptions { Size = 8, Filter = ResizeFilter.Area });
        Assert.Equal((8, 8), (area.Width, area.Height));
        Assert.All(area.Data, v => Assert.InRange(v, 126, 129));
        var cubic = ImageFile.Load(path, new ImageLoadOptions { Size = 8, Filter = ResizeFilter.Bicubic });
        Assert.Equal(8, cubic.Width);
        Assert.NotEqual(area.Data, cubic.Data);
    }

    [Fact]
    public void CropsCutTheCentreOrASeededWindow()
    {
        // 64x32 with the column index in red: after scaling by 1/2 the 16-px window starts at column 8 (centre).
        using var pic = new Image<Rgba32>(64, 32);
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 64; x++) pic[x, y] = new Rgba32((byte)(4 * x), 0, 0, 255);
        var path = Save(pic, "wide.png");
        var centre = ImageFile.Load(path, new ImageLoadOptions { Size = 16 });
        Assert.InRange(centre.Data[0], 4 * 16 - 3, 4 * 17 + 3);  // output column 0 averages input columns 16 and 17
        var offsets = new HashSet<int>();
        for (ulong seed = 0; seed < 8; seed++)
        {
            var a = ImageFile.Load(path, new ImageLoadOptions { Size = 16, Fit = FitMode.RandomCrop, CropSeed = seed });
            var b = ImageFile.Load(path, new ImageLoadOptions { Size = 16, Fit = FitMode.RandomCrop, CropSeed = seed });
            Assert.Equal(a.Data, b.Data);
            offsets.Add(a.Data[0]);
        }
        Assert.True(offsets.Count > 2, $"random crops start at only {offsets.Count} positions");
    }

    [Fact]
    public void CorruptOrUnknownFilesNameTheFile()
    {
        using var pic = Picture(16, 16, 3);
        var good = Save(pic, "c/good.jpg");
        var bytes = File.ReadAllBytes(good);
        var truncated = Path.Combine(_root, "c", "truncated.jpg");
        File.WriteAllBytes(truncated, bytes[..20]);
        var e = Assert.Throws<InvalidDataException>(() => ImageFile.Read(truncated));
        Assert.StartsWith(truncated + ":", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        var text = Path.Combine(_root, "c", "notes.png");
        File.WriteAllText(text, "not an image");
        Assert.StartsWith(text + ":", Assert.Throws<InvalidDataException>(() => ImageFile.Read(text)).Message);
        Assert.Throws<FileNotFoundException>(() => ImageFile.Read(Path.Combine(_root, "missing.webp")));
    }

    [Theory]
    [InlineData("pal4_trns_i.png")]
    [InlineData("filt_rgb16.png")]
    [InlineData("gray2_i.png")]
    [InlineData("pil_apng.png")]
    public void RandomCorruptionEitherDecodesOrThrowsInvalidData(string file)
    {
        foreach (var b in PngFuzzTests.Corruptions(file, 200))
        {
            try { ImageFile.Decode(b, "fuzz.png", new ImageLoadOptions()); }
            catch (InvalidDataException e) { Assert.StartsWith("fuzz.png:", e.Message); }
        }
    }

    [Theory]
    [InlineData(".jpg")]
    [InlineData(".webp")]
    [InlineData(".gif")]
    [InlineData(".bmp")]
    [InlineData(".tiff")]
    public void RandomCorruptionOfOtherFormatsEitherDecodesOrThrowsInvalidData(string ext)
    {
        using var pic = Picture(40, 30, 5);
        var original = File.ReadAllBytes(Save(pic, "fuzz/src" + ext));
        var rng = new Random(ext.Length);
        for (int trial = 0; trial < 100; trial++)
        {
            var b = (byte[])original.Clone();
            int flips = 1 + rng.Next(4);
            for (int k = 0; k < flips; k++) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
            try { ImageFile.Decode(b, "fuzz" + ext, new ImageLoadOptions { Size = 16 }); }
            catch (InvalidDataException e) { Assert.StartsWith("fuzz" + ext + ":", e.Message); }
        }
    }

    [Fact]
    public void EditCommandsReadJpegWebpAndBmp()
    {
        var model = Path.GetDirectoryName(OnnxExportTests.FindBundledUNet())!;
        using (var a = Picture(28, 40, 1)) Save(a, "edit/a.jpg");
        using (var b = Picture(30, 30, 6)) Save(b, "edit/b.webp");
        using (var mask = new Image<Rgba32>(28, 28))
        {
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++) mask[x, y] = x < 14 ? new Rgba32(255, 255, 255, 255) : new Rgba32(0, 0, 0, 255);
            Save(mask, "edit/mask.bmp");
        }
        string A = Path.Combine(_root, "edit", "a.jpg"), B = Path.Combine(_root, "edit", "b.webp"), M = Path.Combine(_root, "edit", "mask.bmp");
        var (code, error) = RunCli("img2img", "-m", model, "-i", A, "--strength", "0.05", "-n", "1", "--steps", "20", "--class", "0",
            "-o", Path.Combine(_root, "i2i.png"));
        Assert.True(code == 0, error);
        (code, error) = RunCli("inpaint", "-m", model, "-i", B, "--mask", M, "-n", "1", "--steps", "3", "--jumps", "1", "--class", "0",
            "-o", Path.Combine(_root, "inpaint.png"));
        Assert.True(code == 0, error);
        (code, error) = RunCli("interpolate", "-m", model, "--a", A, "--b", B, "--frames", "2", "--steps", "2", "--class", "0",
            "-o", Path.Combine(_root, "interp.png"));
        Assert.True(code == 0, error);
        foreach (var f in new[] { "i2i.png", "inpaint.png", "interp.png" }) Assert.True(File.Exists(Path.Combine(_root, f)), f);
    }

    private const string TinyConfig = """
        {"sample_size": 32, "in_channels": 3, "out_channels": 3, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "norm_num_groups": 4}
        """;

    private static (int Code, string Error) RunCli(params string[] args)
    {
        var err = Console.Error;
        var sw = new StringWriter();
        Console.SetError(sw);
        try { return (Program.Main(args), sw.ToString()); }
        finally { Console.SetError(err); }
    }

    [Fact]
    public void MixedFormatFolderOfDifferentSizesTrainsAtResolution32()
    {
        var data = Path.Combine(_root, "mixed");
        var specs = new (string Name, int W, int H)[]
        {
            ("cats/a.jpg", 48, 40), ("cats/b.png", 32, 32), ("cats/c.webp", 64, 50),
            ("dogs/d.png", 40, 72), ("dogs/e.jpeg", 33, 35), ("dogs/f.webp", 100, 60),
        };
        for (int i = 0; i < specs.Length; i++)
        {
            using var pic = Picture(specs[i].W, specs[i].H, i);
            Save(pic, Path.Combine("mixed", specs[i].Name));
        }
        var ds = Datasets.Open(data, new DatasetOptions { Size = 32 });
        Assert.Equal(6, ds.Count);
        Assert.Equal((3, 32), (ds.Channels, ds.Size));
        Assert.Equal(new[] { "cats", "dogs" }, ds.ClassNames);

        var cfg = Path.Combine(_root, "tiny.json");
        File.WriteAllText(cfg, TinyConfig);
        var run = Path.Combine(_root, "run");
        var (code, error) = RunCli("train", "-o", run, "--data", data, "--config", cfg, "--resolution", "32", "--resize", "Bicubic",
            "--crop", "random", "--batch", "3", "--steps", "2", "--checkpoint-every", "0", "--warmup", "1", "--threads", "1");
        Assert.True(code == 0, error);
        Assert.True(Directory.EnumerateFiles(run, "*.safetensors", SearchOption.AllDirectories).Any(), "no weights written");

        // A corrupt JPEG among them: one line that names the file.
        var bad = Path.Combine(data, "dogs", "broken.jpg");
        File.WriteAllBytes(bad, File.ReadAllBytes(Path.Combine(data, "cats", "a.jpg"))[..30]);
        (code, error) = RunCli("train", "-o", Path.Combine(_root, "run2"), "--data", data, "--config", cfg, "--resolution", "32", "--steps", "1");
        Assert.Equal(1, code);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.Contains(bad, lines[0]);
    }
}
