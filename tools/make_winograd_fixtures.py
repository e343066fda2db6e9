#!/usr/bin/python3
"""Writes tests/DiffusionSharp.Tests/fixtures/conv_accuracy.safetensors: float64 convolution references and PyTorch
float32's own error against them, for the float32 accuracy test of every convolution path.

Each case "{name}" stores float32 inputs x (post GroupNorm+SiLU-like: silu of a normal), w (PyTorch's default
U(+-1/sqrt(fan_in))), b, gy and the float64 results y, gx, gw of torch.nn.functional.conv2d and autograd on those
inputs. The metadata entry "{name}" holds the layer geometry and PyTorch float32's max |error| and RMS error of y, gx, gw
against the float64 results (the same inputs run through conv2d in float32 with 2 threads).
Run: /usr/bin/python3 tools/make_winograd_fixtures.py  (needs python3-torch; the file is written by tools/safetensors_file.py).
"""
import json, os

import safetensors_file
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "DiffusionSharp.Tests", "fixtures", "conv_accuracy.safetensors")

# name: (N, Cin, H, W, Cout, k, stride, padding): the layer kinds of ADM-style (6 output channels, resnet up/down) and
# ddpm-small U-Nets (1-channel conv_in, skip concatenation, stride-2 downsampler, 1x1 shortcut), kept small.
CASES = {
    "resnet_32x8": (2, 32, 8, 8, 32, 3, 1, 1),
    "skipcat_48to32x8": (1, 48, 8, 8, 32, 3, 1, 1),
    "mid_48to32x4": (2, 48, 4, 4, 32, 3, 1, 1),
    "conv_in_1to32x16": (1, 1, 16, 16, 32, 3, 1, 1),
    "conv_out_32to6x16": (1, 32, 16, 16, 6, 3, 1, 1),
    "down_s2_32x8": (2, 32, 8, 8, 32, 3, 2, 1),
    "shortcut_1x1_64to32x4": (2, 64, 4, 4, 32, 1, 1, 0),
}


def main():
    torch.manual_seed(2024)
    torch.set_num_threads(2)
    tensors, meta = {}, {"generator": "tools/make_winograd_fixtures.py", "torch": torch.__version__}
    for name, (n, cin, h, w, cout, k, s, p) in CASES.items():
        x = F.silu(torch.randn(n, cin, h, w))
        bound = 1 / (cin * k * k) ** 0.5
        wt = (torch.rand(cout, cin, k, k) * 2 - 1) * bound
        b = (torch.rand(cout) * 2 - 1) * bound
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        gy = torch.randn(n, cout, ho, wo) * 0.1
        res = {}
        for dt in (torch.float64, torch.float32):
            xx, ww, bb = (t.to(dt).clone().requires_grad_() for t in (x, wt, b))
            y = F.conv2d(xx, ww, bb, stride=s, padding=p)
            y.backward(gy.to(dt))
            res[dt] = (y.detach(), xx.grad, ww.grad)
        errs = {}
        for key, r64, r32 in zip(("y", "gx", "gw"), res[torch.float64], res[torch.float32]):
            d = r32.double() - r64
            errs[key] = {"max": d.abs().max().item(), "rms": d.pow(2).mean().sqrt().item()}
        meta[name] = json.dumps({"shape": [n, cin, h, w, cout, k, s, p], "torch_float32_error": errs})
        for key, t in (("x", x), ("w", wt), ("b", b), ("gy", gy)):
            tensors[f"{name}.{key}"] = t.float().contiguous()
        for key, t in zip(("y", "gx", "gw"), res[torch.float64]):
            tensors[f"{name}.{key}"] = t.detach().contiguous()
    safetensors_file.write(OUT, tensors, meta)
    for name in CASES:
        print(name, meta[name])


if __name__ == "__main__":
    main()
