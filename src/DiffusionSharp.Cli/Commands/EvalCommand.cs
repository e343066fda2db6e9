using System.CommandLine;
using System.Text.Json;
using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion eval</c>: negative log-likelihood bound in bits/dim over the full chain (Ho et al. 2020, Sec. 4.2).</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model folder (default: the bundled model)" };
        var data = new Option<string>("--data") { Description = "Data set (its test split is used)", DefaultValueFactory = _ => "fashion-mnist" };
        var count = new Option<int>("--count", "-n") { Description = "Test images to evaluate (from the start of the test split)", DefaultValueFactory = _ => 256 };
        var batch = new Option<int>("--batch") { Description = "Images per network call", DefaultValueFactory = _ => 64 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the q(x_t|x_0) noise", DefaultValueFactory = _ => 0UL };
        var conditional = new Option<bool>("--conditional") { Description = "Condition on the true labels (default: the null class, i.e. p(x))" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var cmd = new Command("eval", "Bits/dim of a model on a test set (full-chain variational bound: prior + every L_t + decoder).")
        {
            model, data, count, batch, seed, conditional, json,
        };
        cmd.SetAction(p =>
        {
            var dir = ModelLocator.Resolve(p.GetValue(model));
            var pipe = DiffusionPipeline.FromPretrained(dir);
            int s = pipe.Unet.Config.SampleSize ?? 32;
            var ds = Datasets.Open(p.GetValue(data)!, new DatasetOptions { Train = false, Size = s, Channels = pipe.Unet.Config.InChannels });
            int n = Math.Min(p.GetValue(count), ds.Count), bs = Math.Max(1, p.GetValue(batch));
            var diffusion = pipe.CreateGaussianDiffusion(pipe.SchedulerConfig.GetInt("num_train_timesteps", 1000));
            var noise = new NoiseSource(new Generator(p.GetValue(seed)));
            double total = 0, prior = 0, decoder = 0;
            int done = 0;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Cli.Progress.Run($"bits/dim on {n} test images", report =>
            {
                int calls = 0, totalCalls = (n + bs - 1) / bs * diffusion.NumTimesteps;
                for (int start = 0; start < n; start += bs)
                {
                    int b = Math.Min(bs, n - start);
                    using var x0 = Tensor.Empty(b, ds.Channels, s, s);
                    var labels = new int[b];
                    int per = ds.Channels * s * s;
                    for (int i = 0; i < b; i++) labels[i] = ds.Load(start + i, x0.Span.Slice(i * per, per));
                    int? label = null;
                    DenoiserModel net;
                    if (pipe.Unet.Config.NumClassEmbeds is int && p.GetValue(conditional))
                    {
                        var lv = labels.Select(l => (float)l).ToArray();
                        net = (x, t) => pipe.Unet.Forward(x, t, Tensor.FromArray(lv, lv.Length));
                    }
                    else net = pipe.Denoiser(label);
                    DenoiserModel counted = (x, t) => { report(++calls, totalCalls); return net(x, t); };
                    var r = diffusion.CalcBpdLoop(counted, x0, noise, clipDenoised: true);
                    for (int i = 0; i < b; i++)
                    {
                        total += r.TotalBpd[i];
                        prior += r.PriorBpd[i];
                        decoder += r.VbTerms[i, 0];
                    }
                    done += b;
                }
            });
            var result = new
            {
                model = dir, data = p.GetValue(data), images = done, bits_per_dim = total / done, prior_bpd = prior / done,
                decoder_bpd = decoder / done, conditional = p.GetValue(conditional), seconds = Math.Round(sw.Elapsed.TotalSeconds, 1),
            };
            if (p.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(result));
            else Console.WriteLine($"bits/dim {result.bits_per_dim:F4} on {done} images (prior {result.prior_bpd:F6}, decoder {result.decoder_bpd:F4}; {(result.conditional ? "conditional" : "unconditional")}) in {result.seconds} s");
            return 0;
        });
        return cmd;
    }
}
