using System.Text.Json;
using DiffusionSharp.IO;
using DiffusionSharp.Tests.Data;
using DiffusionSharp.Training;
using Xunit;

namespace DiffusionSharp.Tests.Evaluation;

[Collection("console")]
public class SweepCommandTests
{
    // A tiny class-conditional 8x8 model (trained 2 steps), a classifier and a stripes folder whose test split is itself.
    private static (string Model, string Classifier, string Data) Fixture(TempDir tmp)
    {
        var model = FidCommandTests.TinyModel(tmp, steps: 2, classConditional: true);
        var cls = tmp.File("cls");
        new DiffusionSharp.Evaluation.FeatureClassifier(FeatureClassifierTests.TinyConfig(), new DiffusionSharp.Tensors.Generator(2)).Save(cls);
        return (model, cls, FidCommandTests.WriteStripes(tmp, "data", 12, 1));
    }

    [Fact]
    public void StepsAndGuidanceSweepsWriteTheTableAndPlot()
    {
        using var tmp = new TempDir();
        var (model, cls, data) = Fixture(tmp);
        var prefix = tmp.File("out", "steps");
        var (code, output, err) = FidCommandTests.Run("eval", "--sweep", "steps", "-m", model, "--classifier", cls, "--data", data, "--count", "6",
            "--sweep-steps", "2,3", "--sweep-samplers", "dpmpp,k-heun", "--seed", "4", "-o", prefix, "--json");
        Assert.True(code == 0, err);
        var rows = JsonDocument.Parse(output).RootElement.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(new[] { ("dpmpp", 2), ("dpmpp", 3), ("k-heun", 2), ("k-heun", 3) },
            rows.Select(r => (r.GetProperty("sampler").GetString()!, r.GetProperty("steps").GetInt32())).ToArray());
        Assert.Equal(new[] { 2, 3, 3, 5 }, rows.Select(r => r.GetProperty("network_calls").GetInt32()).ToArray());
        foreach (var r in rows)
        {
            Assert.True(double.IsFinite(r.GetProperty("fid").GetDouble()) && r.GetProperty("fid").GetDouble() >= 0);
            Assert.InRange(r.GetProperty("precision").GetDouble(), 0, 1);
            Assert.InRange(r.GetProperty("recall").GetDouble(), 0, 1);
        }
        var csv = File.ReadAllLines(prefix + ".csv");
        Assert.Equal("sampler,steps,guidance,network_calls,fid,precision,recall,seconds", csv[0]);
        Assert.Equal(5, csv.Length);
        Assert.Equal(rows[2].GetProperty("fid").GetDouble(), double.Parse(csv[3].Split(',')[4], System.Globalization.CultureInfo.InvariantCulture));
        var png = Png.Read(prefix + ".png");
        Assert.Equal((800, 500), (png.Width, png.Height));

        // a point of the sweep is exactly what eval --fid reports for the same samples
        (code, output, err) = FidCommandTests.Run("eval", "--fid", "-m", model, "--classifier", cls, "--data", data, "--samples", "6", "--steps", "3",
            "--sampler", "k-heun", "--seed", "4", "--json");
        Assert.True(code == 0, err);
        Assert.Equal(rows[3].GetProperty("fid").GetDouble(), JsonDocument.Parse(output).RootElement.GetProperty("fid").GetDouble());

        // the outputs are not replaced without --overwrite, before any sampling
        (code, _, err) = FidCommandTests.Run("eval", "--sweep", "steps", "-m", model, "--classifier", cls, "--data", data, "--count", "6", "-o", prefix);
        Assert.Equal(1, code);
        Assert.Contains("--overwrite", err);

        var gprefix = tmp.File("out", "guidance");
        (code, output, err) = FidCommandTests.Run("eval", "--sweep", "guidance", "-m", model, "--classifier", cls, "--data", data, "--count", "6",
            "--sweep-guidance", "1,3", "--sampler", "ddim", "--steps", "2", "-o", gprefix, "--json");
        Assert.True(code == 0, err);
        var g = JsonDocument.Parse(output).RootElement.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(new[] { 1.0, 3.0 }, g.Select(r => r.GetProperty("guidance").GetDouble()).ToArray());
        Assert.NotEqual(g[0].GetProperty("fid").GetDouble(), g[1].GetProperty("fid").GetDouble());
        Assert.Equal((800, 500), (Png.Read(gprefix + ".png").Width, Png.Read(gprefix + ".png").Height));

        (code, _, err) = FidCommandTests.Run("eval", "--sweep", "steps", "-m", model, "--classifier", cls, "--data", data, "--count", "6", "--sweep-samplers", "dpmpp,nope", "-o", tmp.File("x"));
        Assert.Equal(2, code);  // a usage error, found before the model is read
        Assert.Contains("nope", err);
    }
}
