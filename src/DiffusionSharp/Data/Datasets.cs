using DiffusionSharp.IO;

namespace DiffusionSharp.Data;

/// <summary>Options for <see cref="Datasets.Open"/>.</summary>
public sealed record DatasetOptions
{
    /// <summary>Training split (true) or test split (false).</summary>
    public bool Train { get; init; } = true;

    /// <summary>Resize every image to this square size (null keeps the native size; image folders require it unless all images share one square size).</summary>
    public int? Size { get; init; }

    /// <summary>Convert to 1 (gray) or 3 (RGB) channels (null keeps the native channels).</summary>
    public int? Channels { get; init; }

    /// <summary>How image-folder pictures are fitted to <see cref="Size"/>.</summary>
    public FitMode Fit { get; init; } = FitMode.CenterCrop;

    /// <summary>Resampling filter for image-folder pictures.</summary>
    public ResizeFilter Filter { get; init; } = ResizeFilter.Area;

    /// <summary>Alpha handling for image-folder pictures.</summary>
    public AlphaMode Alpha { get; init; } = AlphaMode.Drop;

    /// <summary>Folder holding the named data sets (default: env DIFFUSIONSHARP_DATASETS, else /usr/share/datasets).</summary>
    public string? Root { get; init; }
}

/// <summary>Loaders for MNIST-style IDX sets, CIFAR-10 binary batches and folders of images (PNG, JPEG, BMP, GIF, TIFF, WebP), plus resolution of data set names.</summary>
public static class Datasets
{
    /// <summary>The Fashion-MNIST class names by label.</summary>
    public static readonly string[] FashionMnistClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>The CIFAR-10 class names by label.</summary>
    public static readonly string[] Cifar10Classes =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    /// <summary>Default folder of installed data sets.</summary>
    public static string DefaultRoot =>
        Environment.GetEnvironmentVariable("DIFFUSIONSHARP_DATASETS") is { Length: > 0 } env ? env : "/usr/share/datasets";

    /// <summary>
    /// Opens a data set by name or path: "fashion-mnist" or "mnist" (IDX files under the data set root), a folder with
    /// IDX files, a folder with CIFAR-10 binary batches, or a folder of images whose sub-folders are the classes.
    /// </summary>
    public static InMemoryImageDataset Open(string spec, DatasetOptions? options = null)
    {
        options ??= new DatasetOptions();
        string root = options.Root ?? DefaultRoot;
        InMemoryImageDataset ds;
        string key = spec.Trim().ToLowerInvariant();
        if (key is "fashion-mnist" or "fashion_mnist" or "fashionmnist" or "mnist")
        {
            string name = key == "mnist" ? "mnist" : "fashion-mnist";
            string dir = Path.Combine(root, name);
            if (!Directory.Exists(dir))
                throw new DirectoryNotFoundException(name == "fashion-mnist"
                    ? $"Fashion-MNIST not found at {dir}. Install the Debian package (apt-get install dataset-fashion-mnist) or pass the folder holding its IDX files."
                    : $"MNIST not found at {dir}. Pass the folder holding train-images-idx3-ubyte[.gz] and the other IDX files.");
            ds = OpenIdxFolder(dir, options.Train, name == "fashion-mnist" ? FashionMnistClasses : Enumerable.Range(0, 10).Select(i => i.ToString()).ToArray());
        }
        else if (Directory.Exists(spec))
        {
            if (FindIdx(spec, options.Train, "images") != null) ds = OpenIdxFolder(spec, options.Train, null);
            else if (CifarFiles(spec, options.Train).Length > 0) ds = LoadCifar10(CifarFiles(spec, options.Train));
            else return ImageFolder.Load(spec, options.Size, options.Channels ?? 0, options.Fit, options.Filter, options.Alpha);
        }
        else if (File.Exists(spec))
            throw new ArgumentException($"Data set '{spec}' is a file; pass a folder (IDX files, CIFAR-10 batches or class sub-folders of images) or a name such as fashion-mnist.");
        else
            throw new DirectoryNotFoundException($"Data set '{spec}' is neither a known name (fashion-mnist, mnist) nor an existing folder.");
        return ds.Transform(options.Size, options.Channels);
    }

    private static string? FindIdx(string dir, bool train, string what)
    {
        string prefix = train ? "train" : "t10k";
        string stem = what == "images" ? $"{prefix}-images-idx3-ubyte" : $"{prefix}-labels-idx1-ubyte";
        foreach (var name in new[] { stem, stem + ".gz", stem.Replace("-idx", ".idx"), stem.Replace("-idx", ".idx") + ".gz" })
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    private static InMemoryImageDataset OpenIdxFolder(string dir, bool train, string[]? classes)
    {
        string split = train ? "train" : "t10k";
        var images = FindIdx(dir, train, "images") ?? throw new FileNotFoundException($"{dir}: no {split}-images-idx3-ubyte[.gz] file");
        var labels = FindIdx(dir, train, "labels") ?? throw new FileNotFoundException($"{dir}: no {split}-labels-idx1-ubyte[.gz] file");
        return LoadIdx(images, labels, classes);
    }

    /// <summary>Loads MNIST-style IDX images [N, H, W] (uint8, H = W) and labels [N] (uint8).</summary>
    public static InMemoryImageDataset LoadIdx(string imagesPath, string labelsPath, IReadOnlyList<string>? classNames = null)
    {
        var img = Idx.Read(imagesPath);
        if (img.Type != IdxType.UInt8 || img.Dims.Length != 3)
            throw new InvalidDataException($"{imagesPath}: expected uint8 images [N, H, W], found {img.Type} [{string.Join(", ", img.Dims)}]");
        if (img.Dims[1] != img.Dims[2])
            throw new InvalidDataException($"{imagesPath}: images are {img.Dims[1]}x{img.Dims[2]}; square images are expected");
        var lab = Idx.Read(labelsPath);
        if (lab.Type != IdxType.UInt8 || lab.Dims.Length != 1)
            throw new InvalidDataException($"{labelsPath}: expected uint8 labels [N], found {lab.Type} [{string.Join(", ", lab.Dims)}]");
        if (lab.Dims[0] != img.Dims[0])
            throw new InvalidDataException($"{labelsPath} has {lab.Dims[0]} labels but {imagesPath} has {img.Dims[0]} images");
        var labels = lab.Raw.Select(b => (int)b).ToArray();
        int classes = classNames?.Count ?? (labels.Length == 0 ? 0 : labels.Max() + 1);
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes) throw new InvalidDataException($"{labelsPath}: label {labels[i]} at index {i} is outside the {classes} classes");
        return new InMemoryImageDataset(img.Raw, labels, 1, img.Dims[1],
            classNames ?? Enumerable.Range(0, classes).Select(i => i.ToString()).ToArray(), imagesPath);
    }

    private static string[] CifarFiles(string dir, bool train)
    {
        var files = train
            ? Enumerable.Range(1, 5).Select(i => Path.Combine(dir, $"data_batch_{i}.bin")).Where(File.Exists).ToArray()
            : new[] { Path.Combine(dir, "test_batch.bin") }.Where(File.Exists).ToArray();
        return files;
    }

    /// <summary>Bytes per CIFAR-10 record: a label byte and 32x32 red, green, blue planes.</summary>
    public const int Cifar10RecordBytes = 1 + 3 * 32 * 32;

    /// <summary>Loads CIFAR-10 binary batch files (records of a label byte and 3072 planar RGB bytes).</summary>
    public static InMemoryImageDataset LoadCifar10(IReadOnlyList<string> files)
    {
        if (files.Count == 0) throw new ArgumentException("No CIFAR-10 batch files given.");
        long total = 0;
        foreach (var f in files)
        {
            if (!File.Exists(f)) throw new FileNotFoundException($"CIFAR-10 batch not found: {f}", f);
            long len = new FileInfo(f).Length;
            if (len == 0 || len % Cifar10RecordBytes != 0)
                throw new InvalidDataException($"{f}: {len} bytes is not a whole number of {Cifar10RecordBytes}-byte CIFAR-10 records (truncated? the last record starts at offset {len / Cifar10RecordBytes * Cifar10RecordBytes})");
            total += len / Cifar10RecordBytes;
        }
        var pixels = new byte[total * 3072];
        var labels = new int[total];
        int n = 0;
        foreach (var f in files)
        {
            var bytes = File.ReadAllBytes(f);
            for (int r = 0; r < bytes.Length / Cifar10RecordBytes; r++, n++)
            {
                int o = r * Cifar10RecordBytes;
                if (bytes[o] > 9) throw new InvalidDataException($"{f}: record {r} (offset {o}) has label {bytes[o]}; CIFAR-10 labels are 0..9");
                labels[n] = bytes[o];
                bytes.AsSpan(o + 1, 3072).CopyTo(pixels.AsSpan(n * 3072));
            }
        }
        return new InMemoryImageDataset(pixels, labels, 3, 32, Cifar10Classes, string.Join(", ", files));
    }
}

/// <summary>A folder of images (PNG, JPEG, BMP, GIF, TIFF, WebP) whose sub-folders name the classes (or a flat folder: one class).</summary>
public static class ImageFolder
{
    /// <summary>
    /// Loads every image under <paramref name="root"/> (extensions in <see cref="ImageFile.Extensions"/>): each sub-folder
    /// (sorted by name, searched recursively) is a class; images directly in <paramref name="root"/> form a single class when
    /// there are no class sub-folders. EXIF orientation is applied, alpha dropped or composited (<paramref name="alpha"/>),
    /// images fitted to <paramref name="size"/> (<paramref name="fit"/>, <paramref name="filter"/>; a random crop is drawn once
    /// per image, seeded by its index) and converted to <paramref name="channels"/> (0: RGB if any image has colour, else gray).
    /// </summary>
    public static InMemoryImageDataset Load(string root, int? size = null, int channels = 0, FitMode fit = FitMode.CenterCrop,
        ResizeFilter filter = ResizeFilter.Area, AlphaMode alpha = AlphaMode.Drop)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"Image folder not found: {root}");
        if (channels is not (0 or 1 or 3)) throw new ArgumentException($"Channels must be 1 (gray), 3 (RGB) or 0 (automatic), got {channels}.");
        var classes = new List<string>();
        var items = new List<(string Path, int Label)>();
        foreach (var sub in Directory.GetDirectories(root).OrderBy(d => d, StringComparer.Ordinal))
        {
            var files = ImageFiles(sub, SearchOption.AllDirectories);
            if (files.Length == 0) continue;
            foreach (var f in files) items.Add((f, classes.Count));
            classes.Add(Path.GetFileName(sub));
        }
        if (classes.Count == 0)
        {
            var files = ImageFiles(root, SearchOption.TopDirectoryOnly);
            foreach (var f in files) items.Add((f, 0));
            if (files.Length > 0) classes.Add(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(root))));
        }
        if (items.Count == 0)
        {
            var others = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Take(1000).ToList();
            string detail = others.Count == 0 ? "the folder has no files at all"
                : $"found {others.Count}{(others.Count == 1000 ? "+" : "")} other files (e.g. {Path.GetFileName(others[0])}), but only {string.Join("/", ImageFile.Extensions)} images are read";
            throw new InvalidDataException($"{root}: no images found in it or its sub-folders; {detail}");
        }
        var images = new Image[items.Count];
        try
        {
            Runtime.Threading.For(items.Count, 16, (a, b) =>
            {
                for (int i = a; i < b; i++)
                    images[i] = ImageFile.Load(items[i].Path, new ImageLoadOptions { Size = size, Fit = fit, Filter = filter, Alpha = alpha, CropSeed = (ulong)i });
            });
        }
        catch (AggregateException e) when (e.InnerException != null)
        {
            // the decoder's message already names the file and what is wrong
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
        int c = channels != 0 ? channels : images.Any(im => im.Channels >= 3) ? 3 : 1;
        int s = size ?? 0;
        if (s == 0)
        {
            var first = images[0];
            if (first.Width != first.Height || images.Any(im => im.Width != first.Width || im.Height != first.Height))
                throw new ArgumentException($"{root}: images differ in size or are not square (first is {first.Width}x{first.Height}, {items[0].Path}); give a target size");
            s = first.Width;
        }
        var pixels = new byte[(long)items.Count * c * s * s];
        Runtime.Threading.For(items.Count, 16, (a, b) =>
        {
            for (int i = a; i < b; i++)
            {
                var converted = images[i].ConvertChannels(c);
                var fitted = converted.Width == s && converted.Height == s ? converted : ImageOps.FitSquare(converted, s, fit);
                ImageOps.ToPlanar(fitted, pixels.AsSpan(i * c * s * s, c * s * s));
            }
        });
        return new InMemoryImageDataset(pixels, items.Select(t => t.Label).ToArray(), c, s, classes, root);
    }

    private static string[] ImageFiles(string dir, SearchOption option) =>
        Directory.EnumerateFiles(dir, "*", option)
            .Where(ImageFile.HasImageExtension)
            .OrderBy(f => f, StringComparer.Ordinal).ToArray();
}
