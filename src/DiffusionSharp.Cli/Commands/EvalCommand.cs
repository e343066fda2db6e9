using System.CommandLine;
using System.Text.Json;
using DiffusionSharp.Data;
using DiffusionSharp.Diffusion;
using DiffusionSharp.Tensors;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion eval</c>: negative log-likelihood bound in bits/dim over the full chain (Ho et al. 2020, Sec. 4.2), exact or stratified over t.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m") { Description = "Model folder (default: the bundled model)" };
        var data = new Option<string>("--data") { Description = "Data set (its test split is used)", DefaultValueFactory = _ => "fashion-mnist" };
        var count = new Option<int>("--count", "-n") { Description = "Test images to evaluate (from the start of the test split; 0 = all)", DefaultValueFactory = _ => 256 };
        var timesteps = new Option<int>("--timesteps") { Description = "Network calls per image for the KL terms: 0 = every t (exact full chain); K > 0 = one t per image in each of K strata (unbiased estimate)", DefaultValueFactory = _ => 0 };
        var batch = new Option<int>("--batch") { Description = "Images per network call", DefaultValueFactory = _ => 64 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the q(x_t|x_0) noise", DefaultValueFactory = _ => 0UL };
        var conditional = new Option<bool>("--conditional") { Description = "Condition on the true labels (default: the null class, i.e. p(x))" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var cmd = new Command("eval", "Bits/dim of a model on a test set (full-chain variational bound: prior + every L_t + decoder).")
        {
            model, data, count, batch, seed, conditional, json, timesteps,
        };
        cmd.SetAction(p =>
        {
            var dir = ModelLocator.Resolve(p.GetValue(model));
            var pipe = DiffusionPipeline.FromPretrained(dir);
            int s = pipe.Unet.Config.SampleSize ?? 32;
            var ds = Datasets.Open(p.GetValue(data)!, new DatasetOptions { Train = false, Size = s, Channels = pipe.Unet.Config.InChannels });
            int n = p.GetValue(count) <= 0 ? ds.Count : Math.Min(p.GetValue(count), ds.Count), bs = Math.Max(1, p.GetValue(batch));
            var diffusion = pipe.CreateGaussianDiffusion(pipe.SchedulerConfig.GetInt("num_train_timesteps", 1000));
            int strata = p.GetValue(timesteps);
            if (strata < 0 || strata > diffusion.NumTimesteps - 1)
                throw new ArgumentException($"--timesteps must be 0 (full chain) or 1..{diffusion.NumTimesteps - 1}, got {strata}.");
            var noise = new NoiseSource(new Generator(p.GetValue(seed)));
            var tRng = new Generator(p.GetValue(seed) + 1);
            int callsPerBatch = strata == 0 ? diffusion.NumTimesteps : strata + 1;
            double total = 0, totalSq = 0, prior = 0, decoder = 0;
            int done = 0;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Cli.Progress.Run($"bits/dim on {n} test images", report =>
            {
                int calls = 0, totalCalls = (n + bs - 1) / bs * callsPerBatch;
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
                    var r = strata == 0 ? diffusion.CalcBpdLoop(counted, x0, noise, clipDenoised: true)
                        : diffusion.EstimateBpd(counted, x0, noise, strata, tRng, clipDenoised: true);
                    for (int i = 0; i < b; i++)
                    {
                        total += r.TotalBpd[i];
                        totalSq += r.TotalBpd[i] * r.TotalBpd[i];
                        prior += r.PriorBpd[i];
                        decoder += r.VbTerms[i, 0];
                    }
                    done += b;
                }
            });
            double mean = total / done, stderr = done > 1 ? Math.Sqrt(Math.Max(0, totalSq / done - mean * mean) / (done - 1)) : double.NaN;
            var result = new
            {
                model = dir, data = p.GetValue(data), images = done, bits_per_dim = mean, standard_error = double.IsNaN(stderr) ? (double?)null : stderr,
                timesteps = strata == 0 ? "all" : $"{strata} strata + decoder", prior_bpd = prior / done,
                decoder_bpd = decoder / done, conditional = p.GetValue(conditional), seconds = Math.Round(sw.Elapsed.TotalSeconds, 1),
            };
            if (p.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(result));
            else Console.WriteLine($"bits/dim {result.bits_per_dim:F4} +- {stderr:F4} (standard error over images; {result.timesteps} timesteps) on {done} images (prior {result.prior_bpd:F6}, decoder {result.decoder_bpd:F4}; {(result.conditional ? "conditional" : "unconditional")}) in {result.seconds} s");
            return 0;
        });
        return cmd;
    }
}
