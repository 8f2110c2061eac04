"""The project's 2-D network (model/mlp.go, asbm.md §6.1) in PyTorch, and the helpers that treat both
network kinds alike: build a network from an arch, write the checkpoint `backend import` reads.

The MLP is Fourier time features, `layers` hidden layers of width `hidden` with SiLU, and a linear
output layer that starts at zero (asbm.md §2.1: u ≡ 0, h ≡ 0 at initialisation). As in unet.py the
module tree mirrors Go's parameter names, so `state_dict()` keys are model.ParamShapes' names in its
order ("l0.w", "l0.b", …, "out.w", "out.b") and linear weights are [in, out] (y = x·W + b):

    l0.w [dim + 2·fourier, hidden], l0.b [hidden]; l{i}.w [hidden, hidden], l{i}.b; out.w [hidden, dim], out.b [dim]

The first layer's input is [x | sin(π(k+1)t) for k < F | cos(π(k+1)t) for k < F] (model.TimeFeatures:
the features computed in float64 and rounded to float32).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

import unet
from unet import Linear

MLP_KEYS = ("dim", "hidden", "layers")  # integers ≥ 1; fourier ≥ 0


def check_mlp_arch(arch):
    """Raises ValueError unless arch is an MLP model.CheckArch accepts; returns a copy."""
    if not isinstance(arch, dict) or arch.get("kind") != "mlp":
        raise ValueError(f"arch {arch!r} is not an MLP (kind \"mlp\")")
    for key in MLP_KEYS:
        v = arch.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"mlp arch: {key!r} must be an integer ≥ 1; got {arch}")
    f = arch.get("fourier", 0)
    if isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise ValueError(f"mlp arch: 'fourier' must be an integer ≥ 0; got {arch}")
    return {"kind": "mlp", "dim": arch["dim"], "hidden": arch["hidden"], "layers": arch["layers"], "fourier": f}


class MLP(nn.Module):
    """model/mlp.go's forwardMLP for one arch: submodules l0 … l{layers−1}, out (zero at init)."""

    def __init__(self, arch):
        super().__init__()
        arch = check_mlp_arch(arch)
        self.arch = arch
        # Not persistent, as in unet.TimeEmbedding: the state dict is exactly Go's parameter list.
        self.register_buffer("freqs", torch.tensor([math.pi * (k + 1) for k in range(arch["fourier"])],
                                                   dtype=torch.float64), persistent=False)
        width = arch["dim"] + 2 * arch["fourier"]
        for i in range(arch["layers"]):
            self.add_module(f"l{i}", Linear(width, arch["hidden"]))
            width = arch["hidden"]
        self.out = Linear(width, arch["dim"])
        with torch.no_grad():
            self.out.w.zero_()
            self.out.b.zero_()

    def forward(self, t, x):
        """f(t, x) for times t [n] and points x [n, dim]."""
        w = t.to(torch.float64)[:, None] * self.freqs[None, :]
        h = torch.cat([x, torch.sin(w).to(x.dtype), torch.cos(w).to(x.dtype)], dim=1)
        for i in range(self.arch["layers"]):
            h = F.silu(getattr(self, f"l{i}")(h))
        return self.out(h)


def check_arch(arch):
    """The arch as model.CheckArch would accept it (kind "mlp" or "unet"), or ValueError."""
    kind = arch.get("kind") if isinstance(arch, dict) else None
    if kind == "mlp":
        return check_mlp_arch(arch)
    if kind == "unet":
        a = dict(unet.check_arch(arch), kind="unet")
        a.setdefault("dim", a["channels"] * a["height"] * a["width"])
        return a
    raise ValueError(f"arch kind {kind!r} is neither \"mlp\" nor \"unet\"")


def build_net(arch):
    """A fresh network of arch, initialised as model.NewNet does (fan-in uniform, zero output layer)."""
    arch = check_arch(arch)
    return MLP(arch) if arch["kind"] == "mlp" else unet.UNet(arch)


def data_shape(arch):
    """The shape of one data row as the network takes it: (dim,) or (C, H, W)."""
    if arch["kind"] == "mlp":
        return (arch["dim"],)
    return (arch["channels"], arch["height"], arch["width"])


def save_checkpoint(path, arch, nets, meta):
    """Writes the checkpoint `backend import` reads (backend/torchimport), for either kind:
    torch.save of {"format": "asbm-torch", "version": 1, "arch", "nets": {name: state_dict}, "meta"}.
    U-Nets go through unet.save_checkpoint; an MLP's dict is written the same way. nets maps "score"
    (required), "control", "gen", "baseline" to networks (DDP-wrapped modules are unwrapped); meta
    needs beta0, beta1 and sigma_v (baseline_beta1 with a baseline)."""
    arch = check_arch(arch)
    if arch["kind"] == "unet":
        unet.save_checkpoint(path, arch, nets, meta)
        return
    if "score" not in nets:
        raise ValueError("save_checkpoint: nets needs a \"score\" network")
    for k in ("beta0", "beta1", "sigma_v"):
        if k not in meta:
            raise ValueError(f"save_checkpoint: meta needs {k!r}")
    sds = {}
    for name, net in nets.items():
        net = getattr(net, "module", net)
        sds[name] = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save({"format": unet.CHECKPOINT_FORMAT, "version": 1, "arch": arch, "nets": sds, "meta": dict(meta)}, path)
