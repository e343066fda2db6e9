// Load a diffusers model folder, sample a grid of images, save it as a PNG.
// dotnet run --project examples/SampleModel -- models/fashion-mnist grid.png
using DiffusionSharp.Diffusion;
using DiffusionSharp.IO;

string modelDir = args.Length > 0 ? args[0] : "models/fashion-mnist";   // unet/ + scheduler/ (diffusers layout)
string output = args.Length > 1 ? args[1] : "grid.png";

var pipe = DiffusionPipeline.FromPretrained(modelDir);
var request = new SampleRequest
{
    Count = 16,
    Steps = 20,
    Sampler = "auto",                                    // the model's default sampler (DPM-Solver++(2M))
    Seed = 0,
    ClassLabel = pipe.Unet.Config.NumClassEmbeds is null ? null : 7,
};
using var images = pipe.Sample(request);                 // [16, C, H, W] in [-1, 1]
ImageGrid.Save(output, images, nrow: 4);
Console.WriteLine($"wrote {output}: {images.Dim(0)} images of {images.Dim(2)}x{images.Dim(3)}");
