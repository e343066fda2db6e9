"""Counts the parameters of the peer benchmark's U-Net presets (shared/peer/torch_unet.py) without PyTorch.

The peer script's own module classes are built against a stub `torch` whose layers only record parameter
shapes, so the count follows the peer's construction code exactly.
Usage: python3 tools/count_peer_unet_params.py ../shared/peer/torch_unet.py
"""
import math, sys, types


class Module:
    def __init__(self, *a, **k):
        object.__setattr__(self, "_params", [])
        object.__setattr__(self, "_children", [])

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._children.append(value)
        object.__setattr__(self, name, value)

    def count(self):
        return sum(math.prod(s) for s in self._params) + sum(c.count() for c in self._children)


class Conv2d(Module):
    def __init__(self, cin, cout, k, stride=1, padding=0, bias=True):
        super().__init__()
        self._params += [(cout, cin, k, k)] + ([(cout,)] if bias else [])


class Linear(Module):
    def __init__(self, cin, cout, bias=True):
        super().__init__()
        self._params += [(cout, cin)] + ([(cout,)] if bias else [])


class GroupNorm(Module):
    def __init__(self, groups, c, eps=1e-5):
        super().__init__()
        self._params += [(c,), (c,)]


class Dropout(Module):
    pass


class ModuleList(Module):
    def __init__(self, items=()):
        super().__init__()
        for m in items:
            self.append(m)

    def append(self, m):
        self._children.append(m)

    def __getitem__(self, i):
        return self._children[i]


nn = types.ModuleType("torch.nn")
for cls in (Module, Conv2d, Linear, GroupNorm, Dropout, ModuleList):
    setattr(nn, cls.__name__, cls)
nn.functional = types.ModuleType("torch.nn.functional")
torch = types.ModuleType("torch")
torch.nn = nn
sys.modules["torch"] = torch
sys.modules["torch.nn"] = nn
sys.modules["torch.nn.functional"] = nn.functional

src = open(sys.argv[1]).read()
ns = {"__name__": "peer"}
exec(compile(src, sys.argv[1], "exec"), ns)
for name, cfg in ns["PRESETS"].items():
    print(name, ns["UNet2DModel"](**cfg).count())
