using DiffusionSharp.Data;
using DiffusionSharp.IO;
using Xunit;

namespace DiffusionSharp.Tests.Data;

public class DatasetTests
{
    // Writes a tiny Fashion-MNIST lookalike: image i is filled with byte 10 * i + pixel index % 10; label i % 10.
    private static void WriteFakeMnist(string dir, int n, int size, string split, bool gz)
    {
        var imgs = new byte[n * size * size];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < size * size; p++) imgs[i * size * size + p] = (byte)(10 * i + p % 10);
        var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
        string sfx = gz ? ".gz" : "";
        var a = IdxTests.RawIdx(0x08, [n, size, size], imgs);
        var b = IdxTests.RawIdx(0x08, [n], labels);
        File.WriteAllBytes(Path.Combine(dir, $"{split}-images-idx3-ubyte{sfx}"), gz ? IdxTests.Gzip(a) : a);
        File.WriteAllBytes(Path.Combine(dir, $"{split}-labels-idx1-ubyte{sfx}"), gz ? IdxTests.Gzip(b) : b);
    }

    [Fact]
    public void FashionMnistResolvesUnderRoot()
    {
        using var dir = new TempDir();
        var fm = dir.Sub("fashion-mnist");
        WriteFakeMnist(fm, 12, 6, "train", gz: true);
        WriteFakeMnist(fm, 3, 6, "t10k", gz: false);
        var ds = Datasets.Open("fashion-mnist", new DatasetOptions { Root = dir.Path });
        Assert.Equal((12, 1, 6), (ds.Count, ds.Channels, ds.Size));
        Assert.Equal("Ankle boot", ds.ClassNames[9]);
        var (img, label) = ((IDataset)ds).Get(7);
        Assert.Equal(7, label);
        Assert.Equal(new[] { 1, 6, 6 }, img.Shape.ToArray());
        Assert.Equal((70 + 3) / 127.5f - 1f, img.Span[3], 6);
        var test = Datasets.Open("Fashion-MNIST", new DatasetOptions { Root = dir.Path, Train = false });
        Assert.Equal(3, test.Count);
        // resize + channel conversion on load
        var big = Datasets.Open("fashion-mnist", new DatasetOptions { Root = dir.Path, Size = 8, Channels = 3 });
        Assert.Equal((12, 3, 8), (big.Count, big.Channels, big.Size));
        // the same folder opened by path
        Assert.Equal(12, Datasets.Open(fm).Count);
    }

    [Fact]
    public void MissingOrInconsistentIdxIsExplained()
    {
        using var dir = new TempDir();
        var ex = Assert.Throws<DirectoryNotFoundException>(() => Datasets.Open("fashion-mnist", new DatasetOptions { Root = dir.Path }));
        Assert.Contains(Path.Combine(dir.Path, "fashion-mnist"), ex.Message);
        Assert.Contains("dataset-fashion-mnist", ex.Message);
        Assert.Throws<DirectoryNotFoundException>(() => Datasets.Open(dir.File("nowhere")));
        var fm = dir.Sub("fashion-mnist");
        WriteFakeMnist(fm, 4, 5, "train", gz: false);
        File.WriteAllBytes(Path.Combine(fm, "train-labels-idx1-ubyte"), IdxTests.RawIdx(0x08, [3], [0, 1, 2]));
        var m = Assert.Throws<InvalidDataException>(() => Datasets.Open("fashion-mnist", new DatasetOptions { Root = dir.Path })).Message;
        Assert.Contains("has 3 labels but", m);
        Assert.Contains("has 4 images", m);
    }

    [Fact]
    public void Cifar10BatchesArePlanarRgb()
    {
        using var dir = new TempDir();
        for (int f = 1; f <= 2; f++)
        {
            var bytes = new byte[3 * Datasets.Cifar10RecordBytes];
            for (int r = 0; r < 3; r++)
            {
                int o = r * Datasets.Cifar10RecordBytes;
                bytes[o] = (byte)(f * 3 + r);
                for (int c = 0; c < 3; c++) bytes.AsSpan(o + 1 + c * 1024, 1024).Fill((byte)(f * 50 + c * 10 + r));
            }
            File.WriteAllBytes(dir.File($"data_batch_{f}.bin"), bytes);
        }
        var ds = Datasets.Open(dir.Path);
        Assert.Equal((6, 3, 32), (ds.Count, ds.Channels, ds.Size));
        Assert.Equal("airplane", ds.ClassNames[0]);
        var (img, label) = ((IDataset)ds).Get(4);   // file 2, record 1
        Assert.Equal(7, label);
        Assert.Equal((100 + 10 + 1) / 127.5f - 1f, img.Span[1024 + 5], 6);  // green plane
        File.WriteAllBytes(dir.File("data_batch_3.bin"), new byte[Datasets.Cifar10RecordBytes + 100]);
        var m = Assert.Throws<InvalidDataException>(() => Datasets.Open(dir.Path)).Message;
        Assert.Contains("data_batch_3.bin", m);
        Assert.Contains("3173 bytes", m);
    }

    [Fact]
    public void TransformResizesAndConvertsEveryItem()
    {
        // item i is a gray ramp 0, 10, 20 ... along x; labels kept
        int n = 3, s = 4;
        var px = new byte[n * s * s];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < s * s; p++) px[i * s * s + p] = (byte)(i * 50 + (p % s) * 10);
        var ds = new InMemoryImageDataset(px, [2, 0, 1], 1, s);
        var t = ds.Transform(size: 2, channels: 3);
        Assert.Equal((3, 3, 2), (t.Count, t.Channels, t.Size));
        Assert.Equal(new[] { 2, 0, 1 }, Enumerable.Range(0, 3).Select(t.Label).ToArray());
        // area 4 -> 2 averages column pairs: 5 and 25 (+ 50 i), replicated to R, G, B planes
        Assert.Equal(new byte[] { 55, 75, 55, 75, 55, 75, 55, 75, 55, 75, 55, 75 }, t.Pixels(1).ToArray());
        Assert.Same(ds, ds.Transform(4, 1));
        var (img, label) = t.Get(2);
        Assert.Equal(1, label);
        Assert.Equal(105 / 127.5f - 1f, img.Span[0], 6);
    }

    private static void WritePng(string path, int w, int h, int c, byte fill)
    {
        var img = new Image(w, h, c);
        img.Data.AsSpan().Fill(fill);
        PngEncoder.Write(path, img);
    }

    [Fact]
    public void ImageFolderLabelsFromSubFolders()
    {
        using var dir = new TempDir();
        WritePng(Path.Combine(dir.Sub("dog"), "a.png"), 10, 6, 3, 200);
        WritePng(Path.Combine(dir.Sub("dog", "deep"), "b.png"), 8, 8, 1, 40);
        WritePng(Path.Combine(dir.Sub("cat"), "c.png"), 4, 4, 4, 90);
        File.WriteAllText(Path.Combine(dir.Sub("notes"), "readme.txt"), "not an image");
        var ds = ImageFolder.Load(dir.Path, size: 4);
        Assert.Equal(new[] { "cat", "dog" }, ds.ClassNames);
        Assert.Equal((3, 3, 4), (ds.Count, ds.Channels, ds.Size));
        Assert.Equal(new[] { 0, 1, 1 }, Enumerable.Range(0, 3).Select(ds.Label).ToArray());
        Assert.All(ds.Pixels(0).ToArray(), v => Assert.Equal(90, v));   // RGBA: alpha dropped
        Assert.All(ds.Pixels(2).ToArray(), v => Assert.Equal(40, v));   // gray replicated to RGB
        var gray = ImageFolder.Load(dir.Path, size: 4, channels: 1);
        Assert.Equal((byte)Math.Round(200.0), gray.Pixels(1)[0]);       // gray of (200, 200, 200)
    }

    [Fact]
    public void ImageFolderProblemsAreReported()
    {
        using var dir = new TempDir();
        Assert.Contains("Image folder not found", Assert.Throws<DirectoryNotFoundException>(() => ImageFolder.Load(dir.File("absent"))).Message);
        var empty = dir.Sub("empty");
        Assert.Contains("no files at all", Assert.Throws<InvalidDataException>(() => ImageFolder.Load(empty)).Message);
        File.WriteAllText(Path.Combine(dir.Sub("docs", "cls"), "x.doc"), "text");
        var m = Assert.Throws<InvalidDataException>(() => ImageFolder.Load(dir.File("docs"))).Message;
        Assert.Contains("no images", m);
        Assert.Contains("x.doc", m);
        var bad = dir.Sub("bad", "cls");
        WritePng(Path.Combine(bad, "good.png"), 4, 4, 3, 1);
        File.WriteAllBytes(Path.Combine(bad, "broken.png"), PngEncoder.Encode(new Image(4, 4, 3))[..40]);
        var m2 = Assert.Throws<InvalidDataException>(() => ImageFolder.Load(dir.File("bad"), size: 4)).Message;
        Assert.Contains(Path.Combine(bad, "broken.png"), m2);
        Assert.Contains("truncated", m2);
        // a flat folder is one class
        var flat = dir.Sub("flat");
        WritePng(Path.Combine(flat, "1.png"), 5, 5, 1, 7);
        var ds = ImageFolder.Load(flat);
        Assert.Equal((1, 1, 5), (ds.Count, ds.Channels, ds.Size));
        Assert.Equal(new[] { "flat" }, ds.ClassNames);
    }
}

public class ImageOpsTests
{
    [Fact]
    public void AreaDownscaleAveragesBlocks()
    {
        var src = new Image(4, 4, 1, Enumerable.Range(0, 16).Select(i => (byte)(i * 10)).ToArray());
        var r = ImageOps.Resize(src, 2, 2);
        // block means of rows 0-1 / 2-3 and columns 0-1 / 2-3
        Assert.Equal(new byte[] { 25, 45, 105, 125 }, r.Data);
        // a non-integer factor: 3 -> 2 covers [0, 1.5) and [1.5, 3)
        var s3 = new Image(3, 1, 1, [0, 90, 180]);
        Assert.Equal(new byte[] { 30, 150 }, ImageOps.Resize(s3, 2, 1).Data);
    }

    [Fact]
    public void BilinearUpscaleUsesHalfPixelCentres()
    {
        var src = new Image(2, 1, 1, [0, 200]);
        // output centres at input coords -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped)
        Assert.Equal(new byte[] { 0, 50, 150, 200 }, ImageOps.Resize(src, 4, 1).Data);
    }

    [Fact]
    public void CenterCropKeepsTheMiddle()
    {
        var src = new Image(8, 4, 1, Enumerable.Range(0, 32).Select(i => (byte)(i % 8 * 10)).ToArray());
        var c = ImageOps.FitSquare(src, 4);
        Assert.Equal(new byte[] { 20, 30, 40, 50 }, c.Data[..4]);
        var st = ImageOps.FitSquare(src, 4, FitMode.Stretch);
        Assert.Equal(new byte[] { 5, 25, 45, 65 }, st.Data[..4]);
    }
}

public class Toy2DTests
{
    [Fact]
    public void MoonsLieOnTheirHalfCircles()
    {
        var t = Toy2D.TwoMoons(2000, new DiffusionSharp.Tensors.Generator(1), noise: 0.0);
        var d = t.Span;
        int upper = 0;
        for (int i = 0; i < 2000; i++)
        {
            double x = d[2 * i], y = d[2 * i + 1];
            double r0 = Math.Sqrt(x * x + y * y), r1 = Math.Sqrt((x - 1) * (x - 1) + (y - 0.5) * (y - 0.5));
            bool onUpper = Math.Abs(r0 - 1) < 1e-5 && y >= -1e-6, onLower = Math.Abs(r1 - 1) < 1e-5 && y <= 0.5 + 1e-6;
            Assert.True(onUpper || onLower, $"point ({x}, {y}) is on neither moon");
            if (onUpper) upper++;
        }
        Assert.InRange(upper, 900, 1100);
    }

    [Fact]
    public void EightGaussiansClusterAtTheirCentres()
    {
        var d = Toy2D.EightGaussians(4000, new DiffusionSharp.Tensors.Generator(2), radius: 2, std: 0.1).ToArray();
        var counts = new int[8];
        for (int i = 0; i < 4000; i++)
        {
            double a = Math.Atan2(d[2 * i + 1], d[2 * i]);
            int k = ((int)Math.Round(a / (Math.PI / 4)) + 8) % 8;
            double cx = 2 * Math.Cos(k * Math.PI / 4), cy = 2 * Math.Sin(k * Math.PI / 4);
            Assert.True(Math.Sqrt((d[2 * i] - cx) * (d[2 * i] - cx) + (d[2 * i + 1] - cy) * (d[2 * i + 1] - cy)) < 0.7);
            counts[k]++;
        }
        Assert.All(counts, c => Assert.InRange(c, 400, 600));
    }

    [Fact]
    public void CheckerboardUsesDarkCellsOnly()
    {
        var d = Toy2D.Checkerboard(3000, new DiffusionSharp.Tensors.Generator(3)).ToArray();
        var cells = new HashSet<(int, int)>();
        for (int i = 0; i < 3000; i++)
        {
            int cx = (int)Math.Floor((d[2 * i] + 4) / 2), cy = (int)Math.Floor((d[2 * i + 1] + 4) / 2);
            Assert.InRange(cx, 0, 3);
            Assert.InRange(cy, 0, 3);
            Assert.Equal(0, (cx + cy) % 2);
            cells.Add((cx, cy));
        }
        Assert.Equal(8, cells.Count);
    }

    [Fact]
    public void SwissRollRadiusGrowsWithAngleAndSeedsRepeat()
    {
        var d = Toy2D.SwissRoll(500, new DiffusionSharp.Tensors.Generator(4), noise: 0).ToArray();
        for (int i = 0; i < 500; i++)
        {
            double r = Math.Sqrt(d[2 * i] * d[2 * i] + d[2 * i + 1] * d[2 * i + 1]) * 5;  // equals t
            Assert.InRange(r, 1.5 * Math.PI - 1e-3, 4.5 * Math.PI + 1e-3);
            Assert.Equal(Math.Cos(r), d[2 * i] * 5 / r, 3);
        }
        Assert.Equal(Toy2D.Sample("moons", 64, new DiffusionSharp.Tensors.Generator(9)).ToArray(),
                     Toy2D.Sample("moons", 64, new DiffusionSharp.Tensors.Generator(9)).ToArray());
        Assert.Throws<ArgumentException>(() => Toy2D.Sample("spiral", 4, new DiffusionSharp.Tensors.Generator(1)));
    }
}
