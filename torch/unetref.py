"""PyTorch reference of the project's U-Net: a forward check and a training-step benchmark.

    python3 torch/unetref.py forward --model FILE --prefix score. --t T.f32 --x X.f32 --out OUT.f32
    python3 torch/unetref.py bench --arch '{"kind": "unet", ...}' --batch 64 --warmup 3 --reps 5 --threads 2

forward reads raw little-endian float32 files (t: n values, x: n·C·H·W, NCHW) and writes f(t, x) in
the layout of x. bench times, on random data, a forward under no_grad and a training step (forward,
MSE against a random target, backward, AdamW lr 2e-4, zero_grad) with torch.set_num_threads(N); it
prints one JSON line: torch, threads, batch, params, forward_ms, step_ms (medians of --reps after
--warmup untimed calls). Bad input: a message on stderr and exit status 1.
"""

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from unet import UNet, load_weights


def median_ms(f, warmup, reps):
    # Several warm-ups: PyTorch's first calls at a shape create oneDNN primitives and grow the
    # allocator's cache (a single warm-up left forwards 3× slower than their steady state here).
    for _ in range(warmup):
        f()
    ts = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    ts.sort()
    return 1e3 * ts[len(ts) // 2]


def cmd_forward(a):
    arch, net = load_weights(a.model, a.prefix)
    t = np.fromfile(a.t, dtype="<f4")
    x = np.fromfile(a.x, dtype="<f4")
    dim = arch["channels"] * arch["height"] * arch["width"]
    n = len(t)
    if n == 0 or len(x) != n * dim:
        raise ValueError(f"x has {len(x)} values, want {n}·{dim} for {n} times")
    xt = torch.from_numpy(x.copy()).reshape(n, arch["channels"], arch["height"], arch["width"])
    with torch.no_grad():
        y = net(torch.from_numpy(t.copy()), xt)
    y.numpy().astype("<f4").tofile(a.out)


def cmd_bench(a):
    arch = json.loads(a.arch)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = UNet(arch)
    torch.nn.init.normal_(net.out.weight, std=0.01)  # a zero output conv would make the step trivial
    c, h, w = arch["channels"], arch["height"], arch["width"]
    t = torch.rand(a.batch)
    x = torch.randn(a.batch, c, h, w)
    y = torch.randn(a.batch, c, h, w)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, weight_decay=0)

    def forward():
        with torch.no_grad():
            net(t, x)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(t, x), y)
        loss.backward()
        opt.step()

    st = median_ms(step, a.warmup, a.reps)
    fwd = median_ms(forward, a.warmup, a.reps)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
                      "params": sum(p.numel() for p in net.parameters()), "forward_ms": fwd, "step_ms": st}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("forward", help="evaluate a weights file's U-Net on raw float32 inputs")
    f.add_argument("--model", required=True)
    f.add_argument("--prefix", default="")
    f.add_argument("--t", required=True)
    f.add_argument("--x", required=True)
    f.add_argument("--out", required=True)
    b = sub.add_parser("bench", help="time a forward and a training step")
    b.add_argument("--arch", required=True, help="the arch as JSON, with the weights file's keys")
    b.add_argument("--batch", type=int, default=64)
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--reps", type=int, default=5)
    b.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    try:
        if a.cmd == "forward":
            cmd_forward(a)
        else:
            if a.batch < 1 or a.reps < 1 or a.threads < 1 or a.warmup < 0:
                raise ValueError("--batch, --reps and --threads must be ≥ 1, --warmup ≥ 0")
            cmd_bench(a)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as e:
        print(f"unetref: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
