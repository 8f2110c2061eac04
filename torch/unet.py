"""The project's U-Net (shaders/unet.go) in PyTorch, built from a weights file's arch.

Parameter names, shapes and the order of every operation follow shaders/unet.go exactly, so a
state dict taken from a weights file (`load_weights`) loads by name and gives the Go engines'
outputs to float32 rounding. Layout: NCHW float32. Linear weights are stored [in, out] as in Go
(y = x·W + b), so the linear layers here are plain parameters used with a matmul, not nn.Linear.

Used by unetref.py (the forward check and the training-step benchmark of `backend bench`) and
meant to be shared by a PyTorch trainer.
"""

import math

import msgpack
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GROUP_NORM_EPS = 1e-5  # shaders.GroupNormEps


class ResBlock(nn.Module):
    """GN → SiLU → conv3×3 (+ time bias) → GN → SiLU → conv3×3, plus a 1×1 skip when channels change."""

    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.groups = groups
        self.gn1 = nn.GroupNorm(groups, cin, eps=GROUP_NORM_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_w = nn.Parameter(torch.empty(temb, cout))
        self.temb_b = nn.Parameter(torch.empty(cout))
        self.gn2 = nn.GroupNorm(groups, cout, eps=GROUP_NORM_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
        bound = 1 / math.sqrt(temb)
        nn.init.uniform_(self.temb_w, -bound, bound)
        nn.init.uniform_(self.temb_b, -bound, bound)

    def forward(self, x, e):
        r = self.conv1(F.silu(self.gn1(x)))
        r = r + (e @ self.temb_w + self.temb_b)[:, :, None, None]
        r = self.conv2(F.silu(self.gn2(r)))
        return (x if self.skip is None else self.skip(x)) + r


class UNet(nn.Module):
    """shaders/unet.go's U-Net for one arch (a dict with the weights file's arch keys)."""

    def __init__(self, arch):
        super().__init__()
        if arch.get("kind") != "unet":
            raise ValueError(f"arch kind {arch.get('kind')!r} is not a U-Net")
        for key in ("channels", "height", "width", "base", "mults", "res_blocks", "groups", "time_emb", "fourier"):
            if not arch.get(key):
                raise ValueError(f"arch has no {key!r}: {arch}")
        self.arch = dict(arch)
        c_in, base, mults = arch["channels"], arch["base"], list(arch["mults"])
        nb, groups, T, nf = arch["res_blocks"], arch["groups"], arch["time_emb"], arch["fourier"]
        self.nf = nf
        self.register_buffer("freqs", torch.tensor([math.pi * (k + 1) for k in range(nf)], dtype=torch.float64))
        self.l1_w = nn.Parameter(torch.empty(2 * nf, T))
        self.l1_b = nn.Parameter(torch.empty(T))
        self.l2_w = nn.Parameter(torch.empty(T, T))
        self.l2_b = nn.Parameter(torch.empty(T))
        for w, b, fan in ((self.l1_w, self.l1_b, 2 * nf), (self.l2_w, self.l2_b, T)):
            nn.init.uniform_(w, -1 / math.sqrt(fan), 1 / math.sqrt(fan))
            nn.init.uniform_(b, -1 / math.sqrt(fan), 1 / math.sqrt(fan))
        self.conv_in = nn.Conv2d(c_in, base * mults[0], 3, padding=1)
        # The walk of shaders.UNetOps: blocks per level down, a push per level, a pool between levels,
        # the mid block, then per level up: concat with that level's skip, blocks, an upsample.
        c = base * mults[0]
        self.down = nn.ModuleList()
        skips = []
        for m in mults:
            level = nn.ModuleList()
            for _ in range(nb):
                level.append(ResBlock(c, base * m, T, groups))
                c = base * m
            self.down.append(level)
            skips.append(c)
        self.mid = ResBlock(c, c, T, groups)
        self.up = nn.ModuleList()
        for l in reversed(range(len(mults))):
            c += skips[l]
            level = nn.ModuleList()
            for _ in range(nb):
                level.append(ResBlock(c, base * mults[l], T, groups))
                c = base * mults[l]
            self.up.append(level)
        self.out_gn = nn.GroupNorm(groups, c, eps=GROUP_NORM_EPS)
        self.out = nn.Conv2d(c, c_in, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # the network starts identically zero (asbm.md §2.1)
        nn.init.zeros_(self.out.bias)

    def time_features(self, t):
        """[sin(π(k+1)t) | cos(π(k+1)t)] for k < F, computed in float64 and rounded (shaders.TimeFeatures)."""
        w = t.to(torch.float64)[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(w), torch.cos(w)], dim=1).to(torch.float32)

    def forward(self, t, x):
        e = F.silu(self.time_features(t) @ self.l1_w + self.l1_b)
        e = F.silu(e @ self.l2_w + self.l2_b)
        h = self.conv_in(x)
        skips = []
        for l, level in enumerate(self.down):
            for block in level:
                h = block(h, e)
            skips.append(h)
            if l < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, e)
        for i, level in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in level:
                h = block(h, e)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.out(F.silu(self.out_gn(h)))

    def go_names(self):
        """Maps each Go parameter name (shaders/unet.go's unetParamShapes) to this module's tensor."""
        m = {"in.w": self.conv_in.weight, "in.b": self.conv_in.bias,
             "temb.l1.w": self.l1_w, "temb.l1.b": self.l1_b, "temb.l2.w": self.l2_w, "temb.l2.b": self.l2_b}

        def block(prefix, b):
            m.update({prefix + "gn1.g": b.gn1.weight, prefix + "gn1.b": b.gn1.bias,
                      prefix + "conv1.w": b.conv1.weight, prefix + "conv1.b": b.conv1.bias,
                      prefix + "temb.w": b.temb_w, prefix + "temb.b": b.temb_b,
                      prefix + "gn2.g": b.gn2.weight, prefix + "gn2.b": b.gn2.bias,
                      prefix + "conv2.w": b.conv2.weight, prefix + "conv2.b": b.conv2.bias})
            if b.skip is not None:
                m.update({prefix + "skip.w": b.skip.weight, prefix + "skip.b": b.skip.bias})

        for l, level in enumerate(self.down):
            for i, b in enumerate(level):
                block(f"down{l}.{i}.", b)
        block("mid.", self.mid)
        L = len(self.up)
        for j, level in enumerate(self.up):
            for i, b in enumerate(level):
                block(f"up{L - 1 - j}.{i}.", b)
        m.update({"out.gn.g": self.out_gn.weight, "out.gn.b": self.out_gn.bias,
                  "out.w": self.out.weight, "out.b": self.out.bias})
        return m

    def load_go(self, tensors, prefix=""):
        """Copies the Go-named tensors (name → numpy array) under prefix into the module. Every
        missing or mis-shaped tensor is named in one ValueError."""
        problems = []
        names = self.go_names()
        for name, p in names.items():
            a = tensors.get(prefix + name)
            if a is None:
                problems.append(f"missing tensor {prefix + name} (shape {list(p.shape)})")
            elif tuple(a.shape) != tuple(p.shape):
                problems.append(f"tensor {prefix + name} has shape {list(a.shape)}, the arch needs {list(p.shape)}")
        if problems:
            raise ValueError("; ".join(problems))
        with torch.no_grad():
            for name, p in names.items():
                p.copy_(torch.from_numpy(np.ascontiguousarray(tensors[prefix + name], dtype=np.float32)))


def read_weights(path):
    """Reads a project weights file (weights/codec.go): returns (arch dict, {name: float32 array})."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several types for garbage
        raise ValueError(f"{path}: not a weights file: {e}") from None
    if not isinstance(doc, dict) or doc.get("magic") != "ASBM":
        raise ValueError(f"{path}: not a weights file (no ASBM magic)")
    tensors = {}
    for t in doc.get("tensors", []):
        dtype = {"f32": "<f4", "f16": "<f2"}.get(t["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {t['name']} has dtype {t['dtype']!r}, want f32 or f16")
        a = np.frombuffer(t["data"], dtype=dtype).astype(np.float32)
        tensors[t["name"]] = a.reshape(t["shape"])
    return doc["arch"], tensors


def load_weights(path, prefix=""):
    """Builds the U-Net of a weights file and loads its parameters under prefix ("score." etc.)."""
    arch, tensors = read_weights(path)
    net = UNet(arch)
    net.load_go(tensors, prefix)
    return arch, net
