#!/usr/bin/python3
"""Writes tests/DiffusionSharp.Tests/fixtures/conv_ref.safetensors: PyTorch conv2d forward and backward references.

For each case "k{K}_s{S}_p{P}_{name}" it stores x, w, b, gy (float32 inputs) and y, gx, gw, gb computed by
torch.nn.functional.conv2d and autograd in float64 from those float32 inputs, then rounded to float32.
Run: /usr/bin/python3 tools/make_conv_fixtures.py  (needs python3-torch; the safetensors file is written by tools/safetensors_file.py).
"""
import os

import safetensors_file
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "DiffusionSharp.Tests", "fixtures", "conv_ref.safetensors")

# (N, Cin, H, W, Cout, k, stride, padding)
CASES = [(2, 3, 7, 6, 4, k, s, p) for k in (1, 3) for s in (1, 2) for p in (0, 1)]
CASES += [(2, 16, 9, 9, 8, 3, 1, 1), (3, 5, 8, 8, 7, 3, 2, 1), (2, 40, 5, 5, 66, 1, 1, 0)]


def main():
    torch.manual_seed(1234)
    tensors = {}
    for (n, cin, h, w, cout, k, s, p) in CASES:
        name = f"k{k}_s{s}_p{p}_n{n}c{cin}h{h}w{w}o{cout}"
        x = torch.randn(n, cin, h, w)
        wt = torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5
        b = torch.randn(cout)
        x64, w64, b64 = (t.double().requires_grad_() for t in (x, wt, b))
        y = F.conv2d(x64, w64, b64, stride=s, padding=p)
        gy = torch.randn(y.shape)
        y.backward(gy.double())
        for key, t in (("x", x), ("w", wt), ("b", b), ("gy", gy), ("y", y.detach()), ("gx", x64.grad), ("gw", w64.grad), ("gb", b64.grad)):
            tensors[f"{name}.{key}"] = t.detach().float().contiguous()
    safetensors_file.write(OUT, tensors, {"generator": "tools/make_conv_fixtures.py", "torch": torch.__version__})


if __name__ == "__main__":
    main()
