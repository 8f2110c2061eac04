"""PyTorch reference of the project's U-Net: a forward check and a training-step benchmark.

    /usr/bin/python3 torch/unetref.py forward --model FILE --prefix score/ --t T.f32 --x X.f32 --out OUT.f32
    /usr/bin/python3 torch/unetref.py bench --arch '{"kind": "unet", ...}' --batch 64 --reps 5 --threads 2
    /usr/bin/python3 torch/unetref.py checkpoint --arch '{...}' --seed 1 --out ckpt.pt --t T.f32 --x X.f32 --ref-dir DIR

forward reads raw little-endian float32 files (t: n values, x: n·C·H·W, NCHW) and writes f(t, x)
in the layout of x, float32 throughout. --prefix is the network's tensor-name prefix in the file
("score/", "control/", …; "" when the file holds one network without a prefix).

bench builds the U-Net of --arch (JSON with the weights file's arch keys) with random weights (the
output conv too, which starts at zero otherwise), calls torch.set_num_threads(--threads) and times
on random data (a) a forward under torch.no_grad() and (b) a training step: forward, MSE against a
random target, backward, AdamW (lr 2e-4, weight decay 0 as the Go engines) step, zero_grad. It
prints one JSON line: torch, threads, batch, forward_ms, step_ms (medians of --reps after --warmup
untimed calls each), params.

checkpoint writes a checkpoint of random U-Nets of --arch (score, control, gen, baseline; every
parameter random, so a wrong name or layout shows) with save_checkpoint, the format `backend import`
reads, and PyTorch's own f(t, x) of each network as DIR/<name>.f32: the reference of the importer's
test.

Bad input: a message on stderr and exit status 1. Needs Debian's python3-torch, python3-numpy and
python3-msgpack (/usr/bin/python3; the pyenv python3 first on PATH here has none of them).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from unet import UNet, load_weights, save_checkpoint


def median_ms(f, warmup, reps):
    # Warm-ups matter: PyTorch's first calls at a shape create oneDNN primitives and grow the
    # allocator's cache; after a single one, forwards ran 3× slower than their steady state here.
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    ts.sort()
    return 1e3 * ts[len(ts) // 2]


def read_f32(path, what):
    size = os.path.getsize(path)
    if size % 4:
        raise ValueError(f"{what} file {path} has {size} bytes, not a whole number of float32 values")
    return np.fromfile(path, dtype="<f4")


def parse_arch(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--arch is not JSON: {e}") from None


def cmd_forward(a):
    arch, net = load_weights(a.model, a.prefix)
    t = read_f32(a.t, "--t")
    x = read_f32(a.x, "--x")
    c, h, w = arch["channels"], arch["height"], arch["width"]
    n = len(t)
    if n == 0:
        raise ValueError(f"--t file {a.t} holds no times")
    if len(x) != n * c * h * w:
        raise ValueError(f"--x holds {len(x)} values, want n·C·H·W = {n}·{c}·{h}·{w} = {n * c * h * w} "
                         f"for the {n} times of --t")
    with torch.no_grad():
        y = net(torch.from_numpy(t.copy()), torch.from_numpy(x.copy()).reshape(n, c, h, w))
    y.numpy().astype("<f4").tofile(a.out)


def cmd_bench(a):
    arch = parse_arch(a.arch)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = UNet(arch)
    torch.nn.init.normal_(net.out.w, std=0.01)  # a zero output conv would make the step trivial
    c, h, w = arch["channels"], arch["height"], arch["width"]
    t = torch.rand(a.batch)
    x = torch.randn(a.batch, c, h, w)
    y = torch.randn(a.batch, c, h, w)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, weight_decay=0)

    def forward():
        with torch.no_grad():
            net(t, x)

    def step():
        loss = F.mse_loss(net(t, x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    st = median_ms(step, a.warmup, a.reps)
    fwd = median_ms(forward, a.warmup, a.reps)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
                      "forward_ms": fwd, "step_ms": st, "params": sum(p.numel() for p in net.parameters())}))


def cmd_checkpoint(a):
    arch = parse_arch(a.arch)
    torch.manual_seed(a.seed)
    nets = {}
    for name in ("score", "control", "gen", "baseline"):
        net = UNet(arch)
        with torch.no_grad():
            for p in net.parameters():
                p.uniform_(-0.5, 0.5)
        nets[name] = net
    save_checkpoint(a.out, arch, nets, {"dataset": "test", "beta0": 0.1, "beta1": 4.0, "baseline_beta1": 20.0,
                                        "sigma_v": 1.0, "steps": 7})
    t = read_f32(a.t, "--t")
    x = read_f32(a.x, "--x")
    n = len(t)
    shape = (n, arch["channels"], arch["height"], arch["width"])
    with torch.no_grad():
        for name, net in nets.items():
            net(torch.from_numpy(t.copy()), torch.from_numpy(x.copy()).reshape(shape)).numpy().astype("<f4").tofile(
                os.path.join(a.ref_dir, name + ".f32"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("forward", help="evaluate a weights file's U-Net on raw float32 inputs")
    f.add_argument("--model", required=True, help="the weights file (.msgpack)")
    f.add_argument("--prefix", default="", help='the network\'s tensor-name prefix, e.g. "score/"')
    f.add_argument("--t", required=True, help="n times, raw little-endian float32")
    f.add_argument("--x", required=True, help="n·C·H·W values (NCHW), raw little-endian float32")
    f.add_argument("--out", required=True, help="where to write f(t, x), raw little-endian float32")
    b = sub.add_parser("bench", help="time a forward and a training step")
    b.add_argument("--arch", required=True, help="the arch as JSON, with the weights file's keys")
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--warmup", type=int, default=3, help="untimed calls before the timed ones")
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("checkpoint", help="write a random checkpoint for backend import and its reference outputs")
    c.add_argument("--arch", required=True, help="the arch as JSON, with the weights file's keys")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    c.add_argument("--t", required=True, help="n times, raw little-endian float32")
    c.add_argument("--x", required=True, help="n·C·H·W values (NCHW), raw little-endian float32")
    c.add_argument("--ref-dir", required=True, help="folder for <network>.f32, PyTorch's f(t, x) of each network")
    a = p.parse_args()
    try:
        if a.cmd == "forward":
            cmd_forward(a)
        elif a.cmd == "checkpoint":
            cmd_checkpoint(a)
        else:
            if a.batch < 1 or a.reps < 1 or a.threads < 1 or a.warmup < 0:
                raise ValueError("--batch, --reps and --threads must be ≥ 1, --warmup ≥ 0")
            cmd_bench(a)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        # RuntimeError: what torch raises on inputs that got past the checks (out of memory, …).
        print(f"unetref {a.cmd}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
