using System.CommandLine;
using DiffusionSharp.Autograd;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Diffusion.Editing;
using DiffusionSharp.IO;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Cli.Commands;

/// <summary>Image editing commands: img2img (SDEdit), inpaint (RePaint), interpolate (DDIM inversion + slerp), denoise-steps.</summary>
public static class EditCommands
{
    private static Option<string?> ModelOption() => CliOptions.Model();
    private static Option<int> StepsOption(int def, int min = 1) =>
        CliOptions.InRange(new Option<int>("--steps") { Description = "Respaced diffusion steps (at most the model's num_train_timesteps)", DefaultValueFactory = _ => def }, min, DiffusionPipeline.MaxSteps);
    private static Option<ulong> SeedOption() => CliOptions.Seed();
    private static Option<string?> ClassOption() => CliOptions.Class();
    private static Option<string> OutputOption(string def) => CliOptions.Output("PNG to write", def);
    private static Option<bool> OverwriteOption() => CliOptions.Overwrite();

    private static void SaveRow(string path, Tensor images, int nrow) => OutputGuard.WriteAtomically(path, f => ImageGrid.Save(f, images, nrow: nrow));

    /// <summary>Largest accepted --frames of interpolate.</summary>
    public const int MaxFrames = 1000;

    /// <summary><c>diffusion img2img</c>: SDEdit (Meng et al. 2022).</summary>
    public static Command Img2Img()
    {
        var model = ModelOption(); var steps = StepsOption(100); var seed = SeedOption(); var cls = ClassOption(); var output = OutputOption("img2img.png"); var overwrite = OverwriteOption();
        var input = new Option<string>("--input", "-i") { Description = "Guide image (PNG, JPEG, BMP, GIF, TIFF or WebP)", Required = true };
        var strength = CliOptions.InRange(new Option<double>("--strength") { Description = "Noise level to start from, in (0, 1]", DefaultValueFactory = _ => 0.5 }, 1e-6, 1.0);
        var count = CliOptions.Count("Variations to make", 8);
        var cmd = new Command("img2img", "Edit an image: noise it to --strength and denoise (SDEdit).") { model, input, strength, count, steps, seed, cls, output, overwrite };
        cmd.SetAction(p =>
        {
            OutputGuard.CheckFile(p.GetValue(output)!, p.GetValue(overwrite), "--output");
            var pipe = DiffusionPipeline.FromPretrained(ModelLocator.Resolve(p.GetValue(model)));
            using var _ = GradMode.NoGrad();
            using var frozen = Tensors.Kernels.Convolution.FrozenWeights();  // the weights stay fixed over the sampling loop
            int n = p.GetValue(count);
            using var guide1 = pipe.LoadImage(p.GetValue(input)!);
            using var guide = guide1.Expand(new Shape(n, guide1.Dim(1), guide1.Dim(2), guide1.Dim(3))).Clone();
            var diffusion = pipe.CreateGaussianDiffusion(p.GetValue(steps));
            var model1 = pipe.Denoiser(SampleCommand.ParseClass(p.GetValue(cls), pipe.ClassNames));
            Tensor result = null!;
            Cli.Progress.Run("img2img", report =>
            {
                int calls = 0, total = Math.Max(1, (int)Math.Round(p.GetValue(strength) * diffusion.NumTimesteps));
                DenoiserModel counted = (x, t) => { report(++calls, total); return model1(x, t); };
                result = ImageEditing.SdEdit(diffusion, counted, guide, p.GetValue(strength), new NoiseSource(new Generator(p.GetValue(seed))), clipDenoised: true);
            });
            using var all = Tensor.Concat(new[] { guide1, result }, 0);
            SaveRow(p.GetValue(output)!, all, n + 1);
            Console.Error.WriteLine($"wrote {p.GetValue(output)}: the guide, then {n} edits");
            return 0;
        });
        return cmd;
    }

    /// <summary><c>diffusion inpaint</c>: RePaint-style resampling (Lugmayr et al. 2022).</summary>
    public static Command Inpaint()
    {
        var model = ModelOption(); var steps = StepsOption(100); var seed = SeedOption(); var cls = ClassOption(); var output = OutputOption("inpaint.png"); var overwrite = OverwriteOption();
        var input = new Option<string>("--input", "-i") { Description = "Image to complete (PNG, JPEG, BMP, GIF, TIFF or WebP)", Required = true };
        var mask = new Option<string?>("--mask") { Description = "Mask image: white = keep, black = regenerate (default: regenerate the right half)" };
        var count = CliOptions.Count("Completions to make", 8);
        var jumps = CliOptions.InRange(new Option<int>("--jumps") { Description = "RePaint resampling count per jump (1 = plain replacement)", DefaultValueFactory = _ => 5 }, 1, 100);
        var cmd = new Command("inpaint", "Fill the masked part of an image.") { model, input, mask, count, steps, jumps, seed, cls, output, overwrite };
        cmd.SetAction(p =>
        {
            OutputGuard.CheckFile(p.GetValue(output)!, p.GetValue(overwrite), "--output");
            var pipe = DiffusionPipeline.FromPretrained(ModelLocator.Resolve(p.GetValue(model)));
            using var _ = GradMode.NoGrad();
            using var frozen = Tensors.Kernels.Convolution.FrozenWeights();  // the weights stay fixed over the sampling loop
            int n = p.GetValue(count);
            using var ref1 = pipe.LoadImage(p.GetValue(input)!);
            int c = ref1.Dim(1), s = ref1.Dim(2);
            Tensor m1;
            if (p.GetValue(mask) is string maskPath)
            {
                var img = ImageFile.Load(maskPath, new ImageLoadOptions { Size = s }).ConvertChannels(1);
                var mv = new float[s * s];
                for (int i = 0; i < mv.Length; i++) mv[i] = img.Data[i] >= 128 ? 1f : 0f;
                m1 = Tensor.FromArray(mv, 1, 1, s, s);
            }
            else
            {
                var mv = new float[s * s];
                for (int y = 0; y < s; y++) for (int x = 0; x < s; x++) mv[y * s + x] = x < s / 2 ? 1f : 0f;
                m1 = Tensor.FromArray(mv, 1, 1, s, s);
            }
            var shape = new Shape(n, c, s, s);
            using var reference = ref1.Expand(shape).Clone();
            var diffusion = pipe.CreateGaussianDiffusion(p.GetValue(steps));
            var model1 = pipe.Denoiser(SampleCommand.ParseClass(p.GetValue(cls), pipe.ClassNames));
            Tensor result = null!;
            int jumpLength = Math.Max(1, Math.Min(10, diffusion.NumTimesteps / 10));
            Cli.Progress.Run("inpaint", report =>
            {
                int calls = 0, total = Inpainting.JumpSchedule(diffusion.NumTimesteps, jumpLength, p.GetValue(jumps)).Count;
                DenoiserModel counted = (x, t) => { report(Math.Min(++calls, total), total); return model1(x, t); };
                result = Inpainting.Sample(diffusion, counted, reference, m1, new NoiseSource(new Generator(p.GetValue(seed))), jumpLength, p.GetValue(jumps), clipDenoised: true);
            });
            using var masked = ref1 * m1;
            using var all = Tensor.Concat(new[] { ref1, masked, result }, 0);
            SaveRow(p.GetValue(output)!, all, n + 2);
            Console.Error.WriteLine($"wrote {p.GetValue(output)}: the image, the kept part, then {n} completions");
            return 0;
        });
        return cmd;
    }

    /// <summary><c>diffusion interpolate</c>: DDIM-invert two images and decode spherical interpolations of their latents.</summary>
    public static Command Interpolate()
    {
        var model = ModelOption(); var steps = StepsOption(50); var cls = ClassOption(); var output = OutputOption("interpolate.png"); var overwrite = OverwriteOption();
        var a = new Option<string>("--a") { Description = "First image (PNG, JPEG, BMP, GIF, TIFF or WebP)", Required = true };
        var b = new Option<string>("--b") { Description = "Second image (PNG, JPEG, BMP, GIF, TIFF or WebP)", Required = true };
        var frames = CliOptions.InRange(new Option<int>("--frames") { Description = $"Images along the path, ends included (2..{MaxFrames})", DefaultValueFactory = _ => 8 }, 2, MaxFrames);
        var cmd = new Command("interpolate", "Interpolate between two images through their DDIM latents (slerp).") { model, a, b, frames, steps, cls, output, overwrite };
        cmd.SetAction(p =>
        {
            OutputGuard.CheckFile(p.GetValue(output)!, p.GetValue(overwrite), "--output");
            var pipe = DiffusionPipeline.FromPretrained(ModelLocator.Resolve(p.GetValue(model)));
            using var _ = GradMode.NoGrad();
            using var frozen = Tensors.Kernels.Convolution.FrozenWeights();  // the weights stay fixed over the sampling loop
            int f = p.GetValue(frames);
            using var ia = pipe.LoadImage(p.GetValue(a)!);
            using var ib = pipe.LoadImage(p.GetValue(b)!);
            using var both = Tensor.Concat(new[] { ia, ib }, 0);
            var diffusion = pipe.CreateGaussianDiffusion(p.GetValue(steps));
            var model1 = pipe.Denoiser(SampleCommand.ParseClass(p.GetValue(cls), pipe.ClassNames));
            Tensor decoded = null!;
            Cli.Progress.Run("interpolate", report =>
            {
                int calls = 0, total = 2 * diffusion.NumTimesteps;
                DenoiserModel counted = (x, t) => { report(Math.Min(++calls, total), total); return model1(x, t); };
                using var z = ImageEditing.DdimInvert(diffusion, counted, both);
                using var za = z.Narrow(0, 0, 1);
                using var zb = z.Narrow(0, 1, 1);
                var path = new List<Tensor>();
                for (int k = 0; k < f; k++) path.Add(ImageEditing.Slerp(za, zb, k / (double)(f - 1)));
                using var zs = Tensor.Concat(path, 0);
                foreach (var t in path) t.Dispose();
                decoded = diffusion.DdimSampleLoop(counted, zs.Shape, new NoiseSource(new Generator(0)), eta: 0, clipDenoised: true, xT: zs);
            });
            using var all = Tensor.Concat(new[] { ia, decoded, ib }, 0);
            SaveRow(p.GetValue(output)!, all, f + 2);
            Console.Error.WriteLine($"wrote {p.GetValue(output)}: image a, {f} decoded interpolations, image b");
            return 0;
        });
        return cmd;
    }

    /// <summary><c>diffusion denoise-steps</c>: x_t and the predicted x_0 along an ancestral sampling chain, as a strip and an animated PNG.</summary>
    public static Command DenoiseSteps()
    {
        var model = ModelOption(); var steps = StepsOption(100, min: 2); var seed = SeedOption(); var cls = ClassOption(); var output = OutputOption("denoise-steps.png"); var overwrite = OverwriteOption();
        var count = CliOptions.Count("Images (chains)", 4);
        var shown = CliOptions.InRange(new Option<int>("--shown") { Description = "Steps shown in the strip", DefaultValueFactory = _ => 10 }, 2, 1000);
        var apng = new Option<string?>("--apng") { Description = "Also write an animated PNG of every step" };
        var cmd = new Command("denoise-steps", "Show x_t (top rows) and predicted x_0 (bottom rows) along the sampling chain.") { model, count, shown, steps, seed, cls, output, apng, overwrite };
        cmd.SetAction(p =>
        {
            OutputGuard.CheckFile(p.GetValue(output)!, p.GetValue(overwrite), "--output");
            if (p.GetValue(apng) is string apngPath)
            {
                OutputGuard.CheckFile(apngPath, p.GetValue(overwrite), "--apng");
                if (Path.GetFullPath(apngPath) == Path.GetFullPath(p.GetValue(output)!)) throw new ArgumentException("--apng and --output name the same file; give two names.");
            }
            var pipe = DiffusionPipeline.FromPretrained(ModelLocator.Resolve(p.GetValue(model)));
            using var _ = GradMode.NoGrad();
            using var frozen = Tensors.Kernels.Convolution.FrozenWeights();  // the weights stay fixed over the sampling loop
            int n = p.GetValue(count);
            int c = pipe.Unet.Config.InChannels, s = pipe.Unet.Config.SampleSize ?? 32;
            var diffusion = pipe.CreateGaussianDiffusion(p.GetValue(steps));
            var model1 = pipe.Denoiser(SampleCommand.ParseClass(p.GetValue(cls), pipe.ClassNames));
            int T = diffusion.NumTimesteps, show = Math.Clamp(p.GetValue(shown), 2, T);
            var keep = new HashSet<int>(Enumerable.Range(0, show).Select(k => (int)Math.Round((T - 1) * (1 - k / (double)(show - 1)))));
            var xs = new List<Tensor>(); var x0s = new List<Tensor>();
            var writer = p.GetValue(apng) is string ? new ApngWriter() : null;
            Cli.Progress.Run("denoise-steps", report =>
            {
                int done = 0;
                diffusion.PSampleLoop(model1, new Shape(n, c, s, s), new NoiseSource(new Generator(p.GetValue(seed))), clipDenoised: true,
                    guide: (pm, x, t) =>
                    {
                        report(++done, T);
                        using var xc = x.Clamp(-1f, 1f);
                        if (keep.Contains(t[0])) { xs.Add(xc.Clone()); x0s.Add(pm.PredXStart.Clone()); }
                        if (writer != null)
                        {
                            using var frame = Tensor.Concat(new[] { xc, pm.PredXStart }, 0);
                            writer.AddFrame(frame, delayMs: t[0] == 0 ? 1500 : 40, nrow: n);
                        }
                        return pm;
                    }).Dispose();
            });
            // rows: for each chain, x_t across the kept steps, then its predicted x_0
            var tiles = new List<Tensor>();
            for (int i = 0; i < n; i++)
            {
                foreach (var x in xs) tiles.Add(x.Narrow(0, i, 1));
                foreach (var x in x0s) tiles.Add(x.Narrow(0, i, 1));
            }
            using var grid = Tensor.Concat(tiles, 0);
            SaveRow(p.GetValue(output)!, grid, xs.Count);
            if (writer != null) OutputGuard.WriteAtomically(p.GetValue(apng)!, f => writer.Save(f));
            Console.Error.WriteLine($"wrote {p.GetValue(output)}: per image, a row of x_t and a row of predicted x_0 over {xs.Count} steps");
            return 0;
        });
        return cmd;
    }
}
