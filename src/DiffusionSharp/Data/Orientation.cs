namespace DiffusionSharp.Data;

/// <summary>One class's left-right orientation: the share of its images nearer (in L2) to the class's mean image than to
/// that mean's mirror image.</summary>
/// <param name="Label">The class label (0 for a set without labels).</param>
/// <param name="Name">The class name, or "all images" for a set without labels.</param>
/// <param name="Images">Images measured.</param>
/// <param name="NearerMean">The share nearer the mean than its mirror, in [0, 1].</param>
public sealed record ClassOrientation(int Label, string Name, int Images, double NearerMean)
{
    /// <summary>True where nearly every image faces the same way (random flips would teach the model mirrored images
    /// that the data never has).</summary>
    public bool FacesOneWay => NearerMean >= Orientation.OneWayShare;
}

/// <summary>
/// Whether a data set's classes face one way. Classes without a preferred orientation put half to about four fifths of their
/// images nearer the class mean than its mirror (the mean is made of those images, so a little over half); classes that face
/// one way, such as Fashion-MNIST's shoes, put nearly all of them there.
/// </summary>
public static class Orientation
{
    /// <summary>The share at and above which a class counts as facing one way.</summary>
    public const double OneWayShare = 0.9;

    /// <summary>Measures every class on at most <paramref name="maxPerClass"/> images of each (the first ones in the set).</summary>
    public static IReadOnlyList<ClassOrientation> Measure(IDataset data, int maxPerClass = 2000)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPerClass, 1);
        int classes = Math.Max(1, data.ClassNames.Count), c = data.Channels, s = data.Size, per = c * s * s;
        var picked = new List<int>[classes];
        for (int k = 0; k < classes; k++) picked[k] = new List<int>();
        var img = new float[per];
        var mean = new double[classes][];
        int full = 0;
        for (int i = 0; i < data.Count && full < classes; i++)
        {
            int label = data.Load(i, img);
            int k = (uint)label < (uint)classes ? label : 0;
            if (picked[k].Count >= maxPerClass) continue;
            picked[k].Add(i);
            if (picked[k].Count == maxPerClass) full++;
            var m = mean[k] ??= new double[per];
            for (int j = 0; j < per; j++) m[j] += img[j];
        }
        var result = new List<ClassOrientation>();
        for (int k = 0; k < classes; k++)
        {
            int n = picked[k].Count;
            if (n == 0) continue;
            var m = mean[k];
            for (int j = 0; j < per; j++) m[j] /= n;
            int nearer = 0;
            foreach (int i in picked[k])
            {
                data.Load(i, img);
                double toMean = 0, toMirror = 0;
                for (int ch = 0; ch < c; ch++)
                    for (int y = 0; y < s; y++)
                    {
                        int at = (ch * s + y) * s;
                        for (int x = 0; x < s; x++)
                        {
                            double v = img[at + x], a = v - m[at + x], b = v - m[at + s - 1 - x];
                            toMean += a * a; toMirror += b * b;
                        }
                    }
                if (toMean < toMirror) nearer++;
            }
            result.Add(new ClassOrientation(k, data.ClassNames.Count > 0 ? data.ClassNames[k] : "all images", n, (double)nearer / n));
        }
        return result;
    }
}
