#!/usr/bin/python3
"""Writes tests/DiffusionSharp.Tests/fixtures/ops_ref.safetensors: inputs, PyTorch outputs and PyTorch gradients
for every tensor op (except MatMul/Linear/Conv2d). Run with Debian's python3-torch: /usr/bin/python3 tools/make_ops_fixtures.py

For each case NAME the file holds NAME/x (inputs: x, x2, w, b, ... as the case needs), NAME/y (output),
NAME/gy (upstream gradient, standard normal) and NAME/g_<input> (PyTorch's gradient of sum(y * gy)).
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_num_threads(1)
tensors = {}


def put(name, t):
    t = t.detach().contiguous()
    if t.dtype not in (torch.float32, torch.int64):
        t = t.float()
    tensors[name] = t


def case(name, fn, **inputs):
    """Runs fn(**inputs) with grads on every float input, stores inputs, output, upstream grad and input grads."""
    leaves = {}
    for k, v in inputs.items():
        put(f"{name}/{k}", v)
        if v.dtype == torch.float32:
            v = v.clone().requires_grad_(True)
        leaves[k] = v
    y = fn(**leaves)
    put(f"{name}/y", y)
    gy = torch.randn(y.shape)
    put(f"{name}/gy", gy)
    (y * gy).sum().backward()
    for k, v in leaves.items():
        if v.dtype == torch.float32 and v.grad is not None:
            put(f"{name}/g_{k}", v.grad)


def randn(*s):
    return torch.randn(*s)


def positive(*s):
    return torch.rand(*s) * 3 + 0.2


# Elementwise: 2 x 37 (odd length exercises vector tails).
case("exp", lambda x: torch.exp(x), x=randn(2, 37) * 2)
case("log", lambda x: torch.log(x), x=positive(2, 37))
case("sqrt", lambda x: torch.sqrt(x), x=positive(2, 37))
case("pow3", lambda x: torch.pow(x, 3.0), x=randn(2, 37))
case("pow0_5", lambda x: torch.pow(x, 0.5), x=positive(2, 37))
case("abs", lambda x: torch.abs(x), x=randn(2, 37))
case("clamp", lambda x: torch.clamp(x, -0.5, 0.7), x=randn(2, 37))
case("tanh", lambda x: torch.tanh(x), x=randn(2, 37) * 3)
case("sigmoid", lambda x: torch.sigmoid(x), x=randn(2, 37) * 4)
case("silu", lambda x: F.silu(x), x=randn(2, 37) * 4)
case("gelu", lambda x: F.gelu(x), x=randn(2, 37) * 3)
case("add_scalar", lambda x: x + 1.5, x=randn(2, 37))
case("mul_scalar", lambda x: x * -2.5, x=randn(2, 37))
case("rsub_scalar", lambda x: 1.5 - x, x=randn(2, 37))
case("rdiv_scalar", lambda x: 3.0 / x, x=positive(2, 37))
case("div_scalar", lambda x: x / 4.0, x=randn(2, 37))

# Softmax rows like attention (256) and a middle axis.
case("softmax_last", lambda x: torch.softmax(x, -1), x=randn(3, 256) * 3)
case("softmax_mid", lambda x: torch.softmax(x, 1), x=randn(2, 5, 4) * 3)
case("log_softmax_last", lambda x: torch.log_softmax(x, -1), x=randn(3, 256) * 3)
case("log_softmax_mid", lambda x: torch.log_softmax(x, 1), x=randn(2, 5, 4) * 3)

# Reductions.
case("sum_023", lambda x: x.sum(dim=(0, 2, 3)), x=randn(2, 3, 4, 5))
case("sum_1_keep", lambda x: x.sum(dim=1, keepdim=True), x=randn(2, 3, 4, 5))
case("mean_23_keep", lambda x: x.mean(dim=(2, 3), keepdim=True), x=randn(2, 3, 4, 5))
case("mean_0", lambda x: x.mean(dim=0), x=randn(2, 3, 4, 5))
case("var_123", lambda x: x.var(dim=(1, 2, 3), unbiased=False), x=randn(2, 3, 4, 5) + 3)
case("var_1_unbiased_keep", lambda x: x.var(dim=1, unbiased=True, keepdim=True), x=randn(2, 3, 4, 5))
case("sum_all", lambda x: x.sum(), x=randn(3, 41))
case("mean_all", lambda x: x.mean(), x=randn(3, 41))

# Shape ops.
case("permute_2031", lambda x: x.permute(2, 0, 3, 1), x=randn(2, 3, 4, 5))
case("transpose_last", lambda x: x.transpose(-1, -2), x=randn(2, 3, 40, 33))
case("concat_1", lambda x, x2, x3: torch.cat([x, x2, x3], 1), x=randn(2, 3, 4), x2=randn(2, 1, 4), x3=randn(2, 2, 4))
case("narrow_2", lambda x: x.narrow(2, 1, 3), x=randn(2, 3, 5, 2))

# Normalisation.
case("group_norm", lambda x, w, b: F.group_norm(x, 32, w, b, 1e-5), x=randn(2, 64, 8, 8) * 2 + 1, w=randn(64), b=randn(64))
case("group_norm_plain", lambda x: F.group_norm(x, 3, None, None, 1e-6), x=randn(2, 6, 5, 5))
case("layer_norm", lambda x, w, b: F.layer_norm(x, (37,), w, b, 1e-5), x=randn(3, 4, 37) + 0.5, w=randn(37), b=randn(37))

# Pooling.
case("upsample", lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest"), x=randn(2, 3, 4, 5))
case("avg_pool", lambda x: F.avg_pool2d(x, 2), x=randn(2, 3, 6, 7))

# Embedding and loss.
case("embedding", lambda w, idx: F.embedding(idx, w), w=randn(10, 6), idx=torch.tensor([3, 0, 9, 3, 7, 3, 1], dtype=torch.int64))
case("mse", lambda x, x2: F.mse_loss(x, x2), x=randn(4, 9), x2=randn(4, 9))


def write(path):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        dtype = "F32" if t.dtype == torch.float32 else "I64"
        raw = t.numpy().tobytes()  # little-endian on this machine
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"generator": "tools/make_ops_fixtures.py", "torch": torch.__version__}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


assert sys.byteorder == "little"
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "DiffusionSharp.Tests", "fixtures", "ops_ref.safetensors")
write(out)
print(f"wrote {len(tensors)} tensors, {os.path.getsize(out)} bytes to {os.path.normpath(out)}")
