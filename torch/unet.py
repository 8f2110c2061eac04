"""The project's U-Net (model/unet.go) in PyTorch, built from a weights file's arch.

The module tree mirrors Go's parameter names, so `state_dict()` keys are exactly the names of
model.ParamShapes ("in.w", "temb.l1.w", "down0.0.gn1.g", …, "out.b"), in its order except at the
end (PyTorch lists out.w, out.b before the child out.gn's parameters): a state dict taken from a
weights file loads by name with no mapping table to keep in step with Go.
Every operation follows model/unet.go's forwardUNet in order (see the comment at the top of that
file). Layout NCHW, float32. Linear weights are [in, out] as in Go (y = x·W + b), so the linear
layers are a matmul on a stored [in, out] parameter rather than nn.Linear (which stores [out, in]).

Used by unetref.py (the forward check and the training-step benchmark of `backend bench`); meant to
be shared by a PyTorch trainer.
"""

import math

import msgpack
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GROUP_NORM_EPS = 1e-5  # shaders.GroupNormEps

# The arch keys of weights/codec.go's encodeArch that a U-Net needs ("dim", "hidden" and "layers"
# are written too; dim is checked, the MLP fields are ignored).
ARCH_KEYS = ("channels", "height", "width", "base", "res_blocks", "groups", "time_emb", "fourier")


def _uniform_(p, fan_in):
    # PyTorch's default conv/linear initialisation, as model.NewNet draws it.
    bound = 1 / math.sqrt(fan_in)
    nn.init.uniform_(p, -bound, bound)


class Conv(nn.Module):
    """k×k convolution, stride 1, zero padding k//2, with bias: parameters w [cout, cin, k, k], b [cout]."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.w = nn.Parameter(torch.empty(cout, cin, k, k))
        self.b = nn.Parameter(torch.empty(cout))
        _uniform_(self.w, cin * k * k)
        _uniform_(self.b, cin * k * k)

    def forward(self, x):
        return F.conv2d(x, self.w, self.b, padding=self.w.shape[-1] // 2)


class Linear(nn.Module):
    """y = x·w + b with w [in, out] (Go's layout, not nn.Linear's [out, in])."""

    def __init__(self, cin, cout):
        super().__init__()
        self.w = nn.Parameter(torch.empty(cin, cout))
        self.b = nn.Parameter(torch.empty(cout))
        _uniform_(self.w, cin)
        _uniform_(self.b, cin)

    def forward(self, x):
        return torch.addmm(self.b, x, self.w)


class GroupNorm(nn.Module):
    """Group norm with per-channel affine g (γ, init 1), b (β, init 0) and eps shaders.GroupNormEps."""

    def __init__(self, groups, c):
        super().__init__()
        self.groups = groups
        self.g = nn.Parameter(torch.ones(c))
        self.b = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return F.group_norm(x, self.groups, self.g, self.b, GROUP_NORM_EPS)


class TimeEmbedding(nn.Module):
    """e = SiLU(SiLU(feat(t)·l1.w + l1.b)·l2.w + l2.b), feat the 2·F Fourier features of shaders.TimeFeatures."""

    def __init__(self, fourier, width):
        super().__init__()
        # shaders.TimeFreq(k) = π(k+1). Not persistent: it is derived from the arch, and keeping it
        # out of the state dict keeps the state dict exactly Go's parameter list.
        self.register_buffer("freqs", torch.tensor([math.pi * (k + 1) for k in range(fourier)], dtype=torch.float64),
                             persistent=False)
        self.l1 = Linear(2 * fourier, width)
        self.l2 = Linear(width, width)

    def features(self, t):
        """[sin(π(k+1)t) for k < F | cos(π(k+1)t) for k < F], in float64 then rounded to float32,
        as shaders.TimeFeatures (float64(t)·TimeFreq(k), math.Sin/Cos, float32)."""
        w = t.to(torch.float64)[:, None] * self.freqs[None, :]
        return torch.cat([torch.sin(w), torch.cos(w)], dim=1).to(torch.float32)

    def forward(self, t):
        return F.silu(self.l2(F.silu(self.l1(self.features(t)))))


class ResBlock(nn.Module):
    """r = conv1(SiLU(gn1(x))) + temb(e) over H×W; r = conv2(SiLU(gn2(r))); y = skip(x) + r, skip the
    1×1 conv when the channel count changes, else the identity (shaders resBlockCPU)."""

    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.gn1 = GroupNorm(groups, cin)
        self.conv1 = Conv(cin, cout, 3)
        self.temb = Linear(temb, cout)
        self.gn2 = GroupNorm(groups, cout)
        self.conv2 = Conv(cout, cout, 3)
        self.skip = Conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, e):
        r = self.conv1(F.silu(self.gn1(x)))
        r = r + self.temb(e)[:, :, None, None]
        r = self.conv2(F.silu(self.gn2(r)))
        return (x if self.skip is None else self.skip(x)) + r


class Out(nn.Module):
    """y = conv3×3(SiLU(gn(h)); w, b), zero at init so the network starts identically zero (asbm.md §2.1)."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.gn = GroupNorm(groups, cin)
        self.w = nn.Parameter(torch.zeros(cout, cin, 3, 3))
        self.b = nn.Parameter(torch.zeros(cout))

    def forward(self, h):
        return F.conv2d(F.silu(self.gn(h)), self.w, self.b, padding=1)


def check_arch(arch):
    """Raises ValueError unless arch (a dict with the weights file's arch keys) is a U-Net
    shaders.CheckArch accepts; returns it with mults as a list."""
    if not isinstance(arch, dict):
        raise ValueError(f"arch must be a map of the weights file's arch keys, got {arch!r}")
    if arch.get("kind") != "unet":
        raise ValueError(f"arch kind {arch.get('kind')!r} is not a U-Net (\"unet\")")

    def bad(why):
        return ValueError(f"unet arch: {why}; got {arch}")

    for key in ARCH_KEYS:
        v = arch.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad(f"{key!r} must be an integer ≥ 1")
    mults = arch.get("mults")
    if not isinstance(mults, (list, tuple)) or not mults or \
            any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults):
        raise bad("'mults' must be a non-empty list of integers ≥ 1")
    c, h, w = arch["channels"], arch["height"], arch["width"]
    if "dim" in arch and arch["dim"] != c * h * w:
        raise bad(f"dim must be channels·height·width = {c * h * w}")
    for m in mults:
        if (arch["base"] * m) % arch["groups"]:
            raise bad("every level's channels base·mult must be divisible by groups")
    f = 1 << (len(mults) - 1)
    if h % f or w % f:
        raise bad(f"height and width must be divisible by 2^(levels−1) = {f}")
    return dict(arch, mults=list(mults))


class UNet(nn.Module):
    """model/unet.go's U-Net for one arch. Submodules are registered in the order of Go's
    parameter list (in, temb, down levels, mid, up levels from the deepest, out), so the state
    dict's keys are model.ParamShapes' names, in its order but for out (see the module doc)."""

    def __init__(self, arch):
        super().__init__()
        arch = check_arch(arch)
        self.arch = arch
        C, base, mults = arch["channels"], arch["base"], arch["mults"]
        nb, groups, T = arch["res_blocks"], arch["groups"], arch["time_emb"]
        L = len(mults)
        c = base * mults[0]
        self.add_module("in", Conv(C, c, 3))  # "in" is a Python keyword: registered by name
        self.temb = TimeEmbedding(arch["fourier"], T)
        skips = []
        for l in range(L):
            level = nn.ModuleList()
            for _ in range(nb):
                level.append(ResBlock(c, base * mults[l], T, groups))
                c = base * mults[l]
            self.add_module(f"down{l}", level)
            skips.append(c)
        self.mid = ResBlock(c, c, T, groups)
        for l in reversed(range(L)):
            c += skips[l]  # concat(h, skip_l) on channels
            level = nn.ModuleList()
            for _ in range(nb):
                level.append(ResBlock(c, base * mults[l], T, groups))
                c = base * mults[l]
            self.add_module(f"up{l}", level)
        self.out = Out(c, C, groups)

    def forward(self, t, x):
        """f(t, x) for times t [n] and images x [n, C, H, W]."""
        L = len(self.arch["mults"])
        e = self.temb(t)
        h = getattr(self, "in")(x)
        skips = []
        for l in range(L):
            for block in getattr(self, f"down{l}"):
                h = block(h, e)
            skips.append(h)
            if l < L - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, e)
        for l in reversed(range(L)):
            h = torch.cat([h, skips.pop()], dim=1)  # h first, the skip second (shaders.ConcatCPU)
            for block in getattr(self, f"up{l}"):
                h = block(h, e)
            if l > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.out(h)


def build_unet(arch):
    """Returns the U-Net of arch (a dict with the weights file's arch keys), initialised as
    model.NewNet does (fan-in uniform, group norms γ = 1, β = 0, output conv zero)."""
    return UNet(arch)


def param_shapes(arch):
    """{Go name: shape} of the U-Net of arch (state-dict order, see the module doc)."""
    return {k: list(v.shape) for k, v in UNet(arch).state_dict().items()}


def load_go(net, tensors, prefix=""):
    """Loads the tensors named prefix + Go name (name → float32 array) into net by name. Every
    missing or mis-shaped tensor is named in one ValueError, which also lists the file's prefixes
    when none of the names is there (a wrong --prefix)."""
    want = net.state_dict()
    problems = []
    for name, p in want.items():
        a = tensors.get(prefix + name)
        if a is None:
            problems.append(f"missing tensor {prefix + name} (shape {list(p.shape)})")
        elif tuple(a.shape) != tuple(p.shape):
            problems.append(f"tensor {prefix + name} has shape {list(a.shape)}, the arch needs {list(p.shape)}")
    if problems:
        if all(prefix + name not in tensors for name in want):
            have = sorted({n[:n.rfind("/") + 1] for n in tensors})
            problems.insert(0, f"no tensor of the network under prefix {prefix!r}; the file's prefixes: "
                               + ", ".join(repr(p) for p in have))
        raise ValueError("; ".join(problems))
    net.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(tensors[prefix + name], dtype=np.float32))
                         for name in want}, strict=True)


def read_weights(path):
    """Reads a project weights file (weights/codec.go: a msgpack map magic, version, arch, tensors
    [{name, dtype, shape, data}], meta, data raw little-endian f32 or f16). Returns (arch dict,
    {name: float32 array}, meta dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several types for garbage
        raise ValueError(f"{path}: not a weights file: {e}") from None
    if not isinstance(doc, dict) or doc.get("magic") != "ASBM":
        raise ValueError(f"{path}: not a weights file (no ASBM magic)")
    if not isinstance(doc.get("arch"), dict) or not isinstance(doc.get("tensors"), list):
        raise ValueError(f"{path}: not a weights file (no arch map or tensor list)")
    tensors = {}
    for i, t in enumerate(doc["tensors"]):
        if not isinstance(t, dict) or not {"name", "dtype", "shape", "data"} <= t.keys():
            raise ValueError(f"{path}: tensor {i} lacks one of name, dtype, shape, data")
        name = t["name"]
        dtype = {"f32": "<f4", "f16": "<f2"}.get(t["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {t['dtype']!r}, want f32 or f16")
        n = math.prod(t["shape"])
        if len(t["data"]) != n * np.dtype(dtype).itemsize:
            raise ValueError(f"{path}: tensor {name}: shape {t['shape']} of {t['dtype']} needs "
                             f"{n * np.dtype(dtype).itemsize} bytes, data has {len(t['data'])}")
        tensors[name] = np.frombuffer(t["data"], dtype=dtype).astype(np.float32).reshape(t["shape"])
    return doc["arch"], tensors, doc.get("meta") or {}


def load_weights(path, prefix=""):
    """Builds the U-Net of the weights file at path and loads the network stored under prefix
    ("score/", "control/", …; "" for a file holding one network). Returns (arch, module)."""
    arch, tensors, _ = read_weights(path)
    try:
        net = UNet(arch)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    try:
        load_go(net, tensors, prefix)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return arch, net


CHECKPOINT_FORMAT = "asbm-torch"  # backend/torchimport.Format


def save_checkpoint(path, arch, nets, meta):
    """Writes the checkpoint `backend import` reads: torch.save of {"format", "version", "arch",
    "nets": {name: state_dict}, "meta"}. arch has the weights file's arch keys; nets maps "score"
    (required), "control", "gen", "baseline" to U-Nets of arch (DDP-wrapped modules are unwrapped);
    meta holds at least beta0, beta1 and sigma_v (and baseline_beta1 with a baseline), plus
    anything else worth keeping (dataset, steps, the command)."""
    arch = dict(check_arch(arch), kind="unet")
    arch.setdefault("dim", arch["channels"] * arch["height"] * arch["width"])
    if "score" not in nets:
        raise ValueError("save_checkpoint: nets needs a \"score\" network")
    for k in ("beta0", "beta1", "sigma_v"):
        if k not in meta:
            raise ValueError(f"save_checkpoint: meta needs {k!r}")
    sds = {}
    for name, net in nets.items():
        net = getattr(net, "module", net)  # DistributedDataParallel keeps the model in .module
        sds[name] = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "arch": arch, "nets": sds, "meta": dict(meta)}, path)
