#!/usr/bin/python3
"""Reference fixtures for the optimizers and dtype conversions, made with PyTorch (Debian python3-torch 1.13).

Writes into tests/DiffusionSharp.Tests/fixtures/:
  optim.safetensors / optim.json   -- a 2-layer tanh MLP trained 10 steps with torch.optim.Adam / AdamW
                                      (with L2 decay, decoupled decay, and clip_grad_norm_)
  dtypes.safetensors / dtypes.json -- float32 values and torch's own F16 / BF16 / integer conversions of them

Usage: /usr/bin/python3 tools/make_optim_fixtures.py [output_dir]
safetensors files are written with struct/json only (no safetensors package).
"""
import json
import os
import struct
import sys

import torch

torch.set_num_threads(1)

DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
          torch.int64: ("I64", 8), torch.int32: ("I32", 4), torch.uint8: ("U8", 1)}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) in file order; 8-byte dtypes first keeps everything aligned."""
    order = sorted(tensors, key=lambda kv: -DTYPES[kv[1].dtype][1])
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, t in order:
        b = raw_bytes(t)
        assert len(b) == t.numel() * DTYPES[t.dtype][1]
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return {name: {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape)} for name, t in sorted(tensors)}


PARAM_NAMES = ["w1", "b1", "w2", "b2"]


def make_model():
    g = torch.Generator().manual_seed(2024)
    w1 = (torch.randn(8, 5, generator=g) * 0.5)
    b1 = (torch.randn(8, generator=g) * 0.1)
    w2 = (torch.randn(3, 8, generator=g) * 0.5)
    b2 = (torch.randn(3, generator=g) * 0.1)
    x = torch.randn(6, 5, generator=g)
    target = torch.randn(6, 3, generator=g)
    return [w1, b1, w2, b2], x, target


def loss_fn(params, x, target):
    w1, b1, w2, b2 = params
    h = torch.tanh(torch.nn.functional.linear(x, w1, b1))
    y = torch.nn.functional.linear(h, w2, b2)
    return torch.nn.functional.mse_loss(y, target)


RUNS = {
    "adam": {"optimizer": "Adam", "kwargs": {"lr": 0.01}, "clip": None},
    "adam_l2": {"optimizer": "Adam", "kwargs": {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.05}, "clip": None},
    "adamw": {"optimizer": "AdamW", "kwargs": {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}, "clip": None},
    "adamw_clip": {"optimizer": "AdamW", "kwargs": {"lr": 0.02, "weight_decay": 0.01}, "clip": 0.1},
}
STEPS = 10


def optim_fixture(out_dir):
    init, x, target = make_model()
    tensors = [("x", x), ("target", target)] + [("init." + n, p.clone()) for n, p in zip(PARAM_NAMES, init)]
    runs_desc = {}
    for run, cfg in RUNS.items():
        params = [p.clone().requires_grad_(True) for p in init]
        opt = getattr(torch.optim, cfg["optimizer"])(params, **cfg["kwargs"])
        losses, norms = [], []
        for k in range(1, STEPS + 1):
            opt.zero_grad()
            loss = loss_fn(params, x, target)
            loss.backward()
            losses.append(loss.item())
            for n, p in zip(PARAM_NAMES, params):
                tensors.append((f"{run}.grad{k}.{n}", p.grad.detach().clone()))
            if cfg["clip"] is not None:
                norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg["clip"])))
            opt.step()
            for n, p in zip(PARAM_NAMES, params):
                tensors.append((f"{run}.step{k}.{n}", p.detach().clone()))
        tensors.append((f"{run}.loss", torch.tensor(losses, dtype=torch.float32)))
        if norms:
            tensors.append((f"{run}.total_norm", torch.tensor(norms, dtype=torch.float32)))
        runs_desc[run] = {"optimizer": f"torch.optim.{cfg['optimizer']}", "kwargs": cfg["kwargs"],
                          "clip_grad_norm_max_norm": cfg["clip"], "steps": STEPS,
                          "defaults": {k: v for k, v in opt.defaults.items() if isinstance(v, (int, float, tuple, bool))}}
    meta = {"generator": "tools/make_optim_fixtures.py", "torch": torch.__version__}
    desc = write_safetensors(os.path.join(out_dir, "optim.safetensors"), tensors, meta)
    doc = {
        "description": "10 optimizer steps on a 2-layer tanh MLP made with real torch.optim; grads come from torch autograd.",
        "provenance": {"torch": torch.__version__, "device": "cpu", "torch_threads": 1, "generator": "tools/make_optim_fixtures.py"},
        "model": "y = linear(tanh(linear(x, w1, b1)), w2, b2); loss = mse_loss(y, target) (mean); w1 [8,5], b1 [8], w2 [3,8], b2 [3], x [6,5], target [6,3]",
        "init": "torch.Generator().manual_seed(2024): w1 = randn*0.5, b1 = randn*0.1, w2 = randn*0.5, b2 = randn*0.1, x = randn, target = randn (in that order)",
        "loop": "per step k=1..10: zero_grad; loss.backward; store grad{k} (before clipping); clip_grad_norm_ if set (store total_norm); opt.step; store step{k} (params after the step)",
        "runs": runs_desc,
        "tensor_naming": {"init.<p>": "initial parameter", "<run>.grad<k>.<p>": "gradient at step k, before clipping",
                          "<run>.step<k>.<p>": "parameter after step k", "<run>.loss": "loss at each step (before the update)",
                          "<run>.total_norm": "clip_grad_norm_ return value at each step"},
        "tensors": desc,
    }
    with open(os.path.join(out_dir, "optim.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)


def dtype_fixture(out_dir):
    g = torch.Generator().manual_seed(7)
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, 1e5, -1e5, 6.1035156e-05, 5.96e-08, 2.98e-08,
                            1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 3.4e38, -3.4e38,
                            1e-40, 3.14159265, -123.456, 1e-10], dtype=torch.float32)
    scales = torch.pow(10.0, torch.randint(-8, 8, (512,), generator=g).float())
    values = torch.cat([special, torch.randn(512, generator=g) * scales])
    ints = torch.randint(-(2 ** 40), 2 ** 40, (64,), generator=g, dtype=torch.int64)
    i32 = torch.randint(-(2 ** 24), 2 ** 24, (64,), generator=g, dtype=torch.int32)
    u8 = torch.randint(0, 256, (64,), generator=g, dtype=torch.int64).to(torch.uint8)
    tensors = [("f32", values), ("as_f16", values.to(torch.float16)), ("as_bf16", values.to(torch.bfloat16)),
               ("f16_back", values.to(torch.float16).float()), ("bf16_back", values.to(torch.bfloat16).float()),
               ("i64", ints), ("i64_as_f32", ints.float()), ("i32", i32), ("u8", u8)]
    desc = write_safetensors(os.path.join(out_dir, "dtypes.safetensors"), tensors,
                             {"generator": "tools/make_optim_fixtures.py", "torch": torch.__version__})
    doc = {
        "description": "float32 values (specials, then randn * 10^U[-8,8)) and torch's conversions of them",
        "provenance": {"torch": torch.__version__, "generator": "tools/make_optim_fixtures.py"},
        "tensor_naming": {"f32": "source values", "as_f16 / as_bf16": "values.to(float16 / bfloat16), stored as F16 / BF16",
                          "f16_back / bf16_back": "those converted back to float32 by torch", "i64 / i32 / u8": "random integers",
                          "i64_as_f32": "i64.float() by torch"},
        "tensors": desc,
    }
    with open(os.path.join(out_dir, "dtypes.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "DiffusionSharp.Tests", "fixtures")
    optim_fixture(out)
    dtype_fixture(out)
    print("wrote optim.* and dtypes.* to", os.path.abspath(out))
