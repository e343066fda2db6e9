using DiffusionSharp.Data;
using DiffusionSharp.Tensors;
using Xunit;

namespace DiffusionSharp.Tests.Data;

public class OrientationTests
{
    // 12x12 gray images with a bright 3x3 patch: label 0 always in the left third, label 1 centred with a symmetric jitter.
    private static InMemoryImageDataset Patches(int perClass, bool labelled)
    {
        const int s = 12;
        var g = new Generator(4);
        var pixels = new byte[2 * perClass * s * s];
        var labels = new int[2 * perClass];
        for (int i = 0; i < 2 * perClass; i++)
        {
            int label = i % 2, row = 1 + g.NextInt(s - 4);
            int col = label == 0 ? 1 + g.NextInt(3) : (s - 3) / 2 + g.NextInt(2) * (g.NextInt(2) == 0 ? 1 : -1);
            labels[i] = labelled ? label : 0;
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 3; x++)
                    pixels[i * s * s + (row + y) * s + col + x] = 255;
        }
        return new InMemoryImageDataset(pixels, labels, 1, s, labelled ? ["left", "centre"] : null);
    }

    [Fact]
    public void ClassFacingOneWayIsFoundAndASymmetricOneIsNot()
    {
        var found = Orientation.Measure(Patches(200, labelled: true));
        Assert.Equal(2, found.Count);
        Assert.Equal(("left", 200), (found[0].Name, found[0].Images));
        Assert.Equal(1.0, found[0].NearerMean);   // every patch sits left of the mirror line
        Assert.True(found[0].FacesOneWay);
        Assert.InRange(found[1].NearerMean, 0.2, 0.8);
        Assert.False(found[1].FacesOneWay);
    }

    [Fact]
    public void UnlabelledSetIsOneClassAndTheCapHolds()
    {
        var found = Orientation.Measure(Patches(100, labelled: false), maxPerClass: 50);
        var all = Assert.Single(found);
        Assert.Equal(("all images", 50), (all.Name, all.Images));
        Assert.Throws<ArgumentOutOfRangeException>(() => Orientation.Measure(Patches(10, true), maxPerClass: 0));
    }
}
