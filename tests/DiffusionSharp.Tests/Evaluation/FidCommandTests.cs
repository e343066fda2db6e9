using System.Text.Json;
using DiffusionSharp.Cli;
using DiffusionSharp.Evaluation;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tests.Data;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Evaluation;

[Collection("console")]
public class FidCommandTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (o, e) = (Console.Out, Console.Error);
        var so = new StringWriter();
        var se = new StringWriter();
        Console.SetOut(so);
        Console.SetError(se);
        try { return (Program.Main(args), so.ToString(), se.ToString()); }
        finally { Console.SetOut(o); Console.SetError(e); }
    }

    // A stripes data set as a PNG folder with one sub-folder per class (what --data accepts).
    internal static string WriteStripes(TempDir tmp, string name, int count, int seed, int size = 8)
    {
        var ds = FeatureClassifierTests.Stripes(count, seed, size);
        var root = tmp.Sub(name);
        for (int i = 0; i < count; i++)
        {
            var (img, label) = ((DiffusionSharp.Data.IDataset)ds).Get(i);
            var dir = Directory.CreateDirectory(Path.Combine(root, ds.ClassNames[label])).FullName;
            PngEncoder.Write(Path.Combine(dir, $"{i:D4}.png"), Image.FromTensor(img));
            img.Dispose();
        }
        return root;
    }

    private static string WriteFlatPngs(TempDir tmp, string name, int count, int seed, int size = 8)
    {
        var ds = FeatureClassifierTests.Stripes(count, seed, size);
        var dir = tmp.Sub(name);
        for (int i = 0; i < count; i++)
        {
            var (img, _) = ((DiffusionSharp.Data.IDataset)ds).Get(i);
            PngEncoder.Write(Path.Combine(dir, $"{i:D5}.png"), Image.FromTensor(img));
            img.Dispose();
        }
        return dir;
    }

    [Fact]
    public void TrainClassifierThenEvalFidOnPngFolder()
    {
        using var tmp = new TempDir();
        var data = WriteStripes(tmp, "data", 96, 1);
        var cls = tmp.File("cls");
        var (code, output, err) = Run("train-classifier", "--data", data, "-o", cls, "--steps", "40", "--batch", "16", "--widths", "8,16", "--features", "16", "--lr", "5e-3", "--json");
        Assert.True(code == 0, err);
        var trained = JsonDocument.Parse(output).RootElement;
        Assert.True(trained.GetProperty("test_accuracy").GetDouble() > 0.9, output);
        var loaded = FeatureClassifier.Load(cls);
        Assert.Equal(trained.GetProperty("test_accuracy").GetDouble(), loaded.Config.TestAccuracy!.Value, 5);

        // the data set's own images against itself: FID ~ 0, precision = recall = 1
        (code, output, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", data + "/horizontal", "--json");
        Assert.True(code == 0, err);
        var r = JsonDocument.Parse(output).RootElement;
        Assert.Equal(48, r.GetProperty("samples").GetInt32());
        Assert.Equal(96, r.GetProperty("reference_images").GetInt32());
        Assert.Equal(1.0, r.GetProperty("precision").GetDouble());
        Assert.Equal(0.5, r.GetProperty("recall").GetDouble(), 1);  // one class of two: about half the real manifold
        double oneClass = r.GetProperty("fid").GetDouble();

        var same = WriteFlatPngs(tmp, "same", 96, 1);
        (code, output, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", same, "--json");
        Assert.True(code == 0, err);
        r = JsonDocument.Parse(output).RootElement;
        Assert.True(Math.Abs(r.GetProperty("fid").GetDouble()) < 1e-6, output);
        Assert.Equal(1.0, r.GetProperty("precision").GetDouble());
        Assert.Equal(1.0, r.GetProperty("recall").GetDouble());
        Assert.True(oneClass > 100 * Math.Abs(r.GetProperty("fid").GetDouble()) && oneClass > 0, $"one class only: FID {oneClass}");
        Assert.Equal(loaded.Config.TestAccuracy!.Value, r.GetProperty("classifier_test_accuracy").GetDouble(), 6);

        // text output names the feature space
        (code, output, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", same);
        Assert.True(code == 0, err);
        Assert.Contains("FID", output);
        Assert.Contains("not Inception", output);
    }

    [Fact]
    public void CorruptPngIsNamedInTheError()
    {
        using var tmp = new TempDir();
        var cls = tmp.File("cls");
        new FeatureClassifier(FeatureClassifierTests.TinyConfig()).Save(cls);
        var data = WriteStripes(tmp, "data", 8, 1);
        var samples = WriteFlatPngs(tmp, "samples", 6, 2);
        var bad = Path.Combine(samples, "00003.png");
        var bytes = File.ReadAllBytes(bad);
        File.WriteAllBytes(bad, bytes[..(bytes.Length / 2)]);  // truncated
        var (code, _, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", samples);
        Assert.Equal(1, code);
        Assert.Contains("00003.png", err);
    }

    [Fact]
    public void ClassifierForAnotherImageSizeIsRejected()
    {
        using var tmp = new TempDir();
        var cls = tmp.File("cls16");
        new FeatureClassifier(FeatureClassifierTests.TinyConfig(size: 16)).Save(cls);
        var data = WriteStripes(tmp, "data", 8, 1);
        var samples = WriteFlatPngs(tmp, "samples", 6, 2, size: 8);
        var (code, _, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", samples);
        Assert.Equal(1, code);
        Assert.Contains("00000.png", err);
        Assert.Contains("8x8", err);
        Assert.Contains("16x16", err);

        // generating from a model of another size is refused before sampling
        var model = TinyModel(tmp);
        (code, _, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "-m", model, "--samples", "4", "--steps", "2");
        Assert.Equal(1, code);
        Assert.Contains("1x16x16", err);
        Assert.Contains("1x8x8", err);
        Assert.Contains(model, err);
    }

    [Fact]
    public void GeneratedSamplesAndSplitSamplesAreEvaluated()
    {
        using var tmp = new TempDir();
        var cls = tmp.File("cls");
        new FeatureClassifier(FeatureClassifierTests.TinyConfig(), new Generator(2)).Save(cls);
        var data = WriteStripes(tmp, "data", 16, 1);
        var model = TinyModel(tmp);
        var (code, output, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "-m", model, "--samples", "6", "--steps", "2", "--json");
        Assert.True(code == 0, err);
        var r = JsonDocument.Parse(output).RootElement;
        Assert.Equal(6, r.GetProperty("samples").GetInt32());
        Assert.True(double.IsFinite(r.GetProperty("fid").GetDouble()));
        (code, output, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", "train:16", "--json");
        Assert.True(code == 0, err);
        r = JsonDocument.Parse(output).RootElement;
        Assert.Equal(16, r.GetProperty("samples").GetInt32());
        Assert.True(Math.Abs(r.GetProperty("fid").GetDouble()) < 1e-6, output);  // an image folder's splits are the same images
        (code, _, err) = Run("eval", "--fid", "--classifier", cls, "--data", data, "--samples", "no-such-thing");
        Assert.Equal(1, code);
        Assert.Contains("no-such-thing", err);
    }

    // A tiny 8x8 gray model folder made by the trainer (1 step unless told otherwise).
    internal static string TinyModel(TempDir tmp, int steps = 1, bool classConditional = false)
    {
        var cfg = tmp.File("unet.json");
        File.WriteAllText(cfg, """
        {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
         "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
         "layers_per_block": 1, "norm_num_groups": 4}
        """);
        var dir = tmp.File("model");
        var t = Trainer.Create(new TrainOptions { ModelConfigPath = cfg, BatchSize = 4, Steps = steps, CheckpointEvery = 0, ClassConditional = classConditional }, dir, FeatureClassifierTests.Stripes(8, 3));
        t.Run(CancellationToken.None);
        return dir;
    }
}
