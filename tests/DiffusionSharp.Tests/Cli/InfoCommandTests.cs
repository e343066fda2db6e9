using System.Text.Json;
using DiffusionSharp.Cli.Commands;
using DiffusionSharp.IO;
using Xunit;

namespace DiffusionSharp.Tests.Cli;

public class InfoCommandTests
{
    [Fact]
    public void DescribesAFixtureFromItsHeader()
    {
        var header = SafeTensors.ReadHeader(Fixtures.PathOf("unet_tiny_class.safetensors"));
        var text = InfoCommand.Describe(header, limit: 3);
        Assert.Contains($"{header.Tensors.Count} tensors", text);
        Assert.Contains("I64 ", text);                       // class_labels
        Assert.Contains("R  ", text);                         // first name in ordinal order, padded
        Assert.Contains($"... {header.Tensors.Count - 3} more", text);
        var full = InfoCommand.Describe(header);
        Assert.Contains("class_labels", full);
        Assert.Contains("[2, 3, 16, 16]", full);
    }

    [Fact]
    public void JsonListsEveryTensor()
    {
        var header = SafeTensors.ReadHeader(Fixtures.PathOf("dtypes.safetensors"));
        using var doc = JsonDocument.Parse(InfoCommand.ToJson(header));
        var root = doc.RootElement;
        Assert.Equal(header.Tensors.Count, root.GetProperty("entries").EnumerateObject().Count());
        Assert.Equal("BF16", root.GetProperty("entries").GetProperty("as_bf16").GetProperty("dtype").GetString());
        Assert.Equal(header.Tensors.Sum(t => t.ElementCount), root.GetProperty("elements").GetInt64());
        Assert.Equal("tools/make_optim_fixtures.py", root.GetProperty("metadata").GetProperty("generator").GetString());
    }

    [Fact]
    public void ResolvesModelDirectories()
    {
        var dir = Path.Combine(Path.GetTempPath(), "ds-info-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            Assert.Throws<FileNotFoundException>(() => InfoCommand.ResolveFile(dir));
            var f = Path.Combine(dir, "diffusion_pytorch_model.safetensors");
            File.Copy(Fixtures.PathOf("dtypes.safetensors"), f);
            File.Copy(Fixtures.PathOf("dtypes.safetensors"), Path.Combine(dir, "other.safetensors"));
            Assert.Equal(f, InfoCommand.ResolveFile(dir));
            Assert.Throws<FileNotFoundException>(() => InfoCommand.ResolveFile(Path.Combine(dir, "missing")));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
