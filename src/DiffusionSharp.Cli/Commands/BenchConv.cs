using System.CommandLine;
using DiffusionSharp.Runtime;
using DiffusionSharp.Tensors;
using DiffusionSharp.Tensors.Kernels;

namespace DiffusionSharp.Cli.Commands;

/// <summary><c>diffusion bench conv</c>: forward and backward throughput of the ddpm-small U-Net convolutions.</summary>
public static class BenchConv
{
    // Distinct convolutions of the ddpm-small preset (1x32x32, channels 64/128/128): (label, Cin, Cout, size, kernel, stride).
    private static readonly (string Label, int Cin, int Cout, int Size, int K, int Stride)[] Layers =
    {
        ("conv_in", 1, 64, 32, 3, 1),
        ("down0.resnet", 64, 64, 32, 3, 1),
        ("down0.downsample", 64, 64, 32, 3, 2),
        ("down1.resnet0.conv1", 64, 128, 16, 3, 1),
        ("down1.resnet0.shortcut", 64, 128, 16, 1, 1),
        ("down1.resnet", 128, 128, 16, 3, 1),
        ("down1.downsample", 128, 128, 16, 3, 2),
        ("mid.resnet", 128, 128, 8, 3, 1),
        ("up0.resnet.conv1", 256, 128, 8, 3, 1),
        ("up0.resnet.shortcut", 256, 128, 8, 1, 1),
        ("up1.resnet.conv1", 256, 128, 16, 3, 1),
        ("up2.resnet0.conv1", 192, 64, 32, 3, 1),
        ("up2.resnet.conv1", 128, 64, 32, 3, 1),
        ("up2.resnet.shortcut", 128, 64, 32, 1, 1),
        ("conv_out", 64, 1, 32, 3, 1),
    };

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line" };
        var batch = CliOptions.InRange(new Option<int>("--batch") { Description = "Images per batch", DefaultValueFactory = _ => 64 }, 1, 4096);
        var cmd = new Command("conv", "Conv2d forward and backward (input, weight and bias grads) GFLOP/s on the ddpm-small U-Net shapes.");
        cmd.Options.Add(json);
        cmd.Options.Add(batch);
        cmd.SetAction(parse => Run(parse.GetValue(json), parse.GetValue(batch)));
        return cmd;
    }

    private static int Run(bool json, int batch)
    {
        if (batch < 1) { Console.Error.WriteLine("--batch must be at least 1."); return 2; }
        if (!json) Console.WriteLine($"batch {batch}, threads {Threading.Threads}, GEMM kernel {Gemm.Kernel}");
        var g = new Generator(3);
        double totF = 0, totB = 0, flF = 0, flB = 0;
        foreach (var (label, cin, cout, size, k, stride) in Layers)
        {
            int pad = k / 2;
            var s = new ConvShape(batch, cin, size, size, cout, k, k, stride, pad);
            var x = new float[(long)batch * cin * size * size];
            var w = new float[(long)cout * s.K];
            var b = new float[cout];
            var y = new float[(long)batch * cout * s.P];
            var gx = new float[x.Length];
            var gw = new float[w.Length];
            var gb = new float[cout];
            g.Normal(x); g.Normal(w); g.Normal(b); g.Normal(y);
            double flops = s.ForwardFlops;
            var fwd = BenchTiming.MeasureWithCpu(() => Convolution.Forward(s, x, w, b, y), minReps: 3, minSeconds: 0.3);
            var bwd = BenchTiming.MeasureWithCpu(() => Convolution.Backward(s, x, w, y, gx, gw, gb), minReps: 3, minSeconds: 0.3);
            totF += fwd.Median; totB += bwd.Median; flF += flops; flB += 2 * flops;
            if (json)
                Console.WriteLine(BenchTiming.Json(("layer", label), ("batch", batch), ("cin", cin), ("cout", cout), ("size", size), ("kernel", k), ("stride", stride),
                    ("fwd_ms", fwd.Median * 1e3), ("fwd_gflops", flops / fwd.Best / 1e9), ("fwd_gflops_median", flops / fwd.Median / 1e9), ("fwd_gflops_cpu", flops * Threading.Threads / fwd.BestCpu / 1e9),
                    ("bwd_ms", bwd.Median * 1e3), ("bwd_gflops", 2 * flops / bwd.Best / 1e9), ("bwd_gflops_median", 2 * flops / bwd.Median / 1e9), ("bwd_gflops_cpu", 2 * flops * Threading.Threads / bwd.BestCpu / 1e9), ("threads", Threading.Threads)));
            else
                Console.WriteLine($"{label,-24} {cin,4}->{cout,-4} {size,2}x{size,-2} k{k} s{stride}  fwd {fwd.Median * 1e3,8:F2} ms {flops / fwd.Best / 1e9,7:F1} GFLOP/s   bwd {bwd.Median * 1e3,8:F2} ms {2 * flops / bwd.Best / 1e9,7:F1} GFLOP/s   | per CPU-second: fwd {flops * Threading.Threads / fwd.BestCpu / 1e9,6:F1} bwd {2 * flops * Threading.Threads / bwd.BestCpu / 1e9,6:F1}");
        }
        if (json)
            Console.WriteLine(BenchTiming.Json(("layer", "all (one of each)"), ("batch", batch), ("fwd_ms", totF * 1e3), ("fwd_gflops_median", flF / totF / 1e9), ("bwd_ms", totB * 1e3), ("bwd_gflops_median", flB / totB / 1e9), ("threads", Threading.Threads)));
        else
            Console.WriteLine($"all (one of each): fwd {totF * 1e3:F1} ms ({flF / totF / 1e9:F1} GFLOP/s median), bwd {totB * 1e3:F1} ms ({flB / totB / 1e9:F1} GFLOP/s median)");
        return 0;
    }
}
