"""Checks of the PyTorch trainer: its DDP runs against one process, its networks' forward for the Go
parity test (backend/torchimport TestTorchTrainerParity).

    torchrun --nproc_per_node=2 torch/asbm_check.py jobs JOBS.json
    /usr/bin/python3 torch/asbm_check.py compare RUN_A RUN_B
    /usr/bin/python3 torch/asbm_check.py forward --ckpt model.pt --t t.f32 --x x.f32 --out-dir DIR

jobs runs a JSON list of jobs in one process (one import of torch, one process group under torchrun:
starting torch costs seconds a process on a small machine): {"train": [asbm_train.py arguments]},
{"compare": [run_a, run_b, out.json]}, {"forward": {"ckpt", "t", "x", "out_dir"}} and {"config":
[asbm_train.py arguments, out.json]} (its --print-config into a file), {"png": [dir, out_dir]} (every
file of dir decoded by asbm/png.py into out_dir/<name>.rgba, raw RGBA bytes); all but train run on
rank 0 only.

compare reads two runs' train.jsonl and model.pt — typically the same flags on N processes and on one
— and prints (or writes) the largest relative difference of their epoch losses and the largest absolute
difference of their networks' parameters: asbm/dist.py's design makes both float rounding only.

forward evaluates every network of a checkpoint written by asbm_train.py on n times (t.f32) and n
rows (x.f32; NCHW for a U-Net), raw little-endian float32, and writes DIR/<net>.f32.
"""

import argparse
import contextlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import asbm_train  # noqa: E402
from asbm import png  # noqa: E402
from mlp import build_net, data_shape  # noqa: E402


def compare(a, b):
    """The loss and parameter agreement of runs a and b (folders with train.jsonl and model.pt)."""
    read = lambda r: [json.loads(line) for line in open(os.path.join(r, "train.jsonl"))]
    la, lb = read(a), read(b)
    if [(x["phase"], x["epoch"]) for x in la] != [(x["phase"], x["epoch"]) for x in lb]:
        raise ValueError(f"{a} and {b} ran different epochs: not the same flags?")
    rel = [abs(x["loss"] - y["loss"]) / max(abs(y["loss"]), 1e-30) for x, y in zip(la, lb)]
    ca = torch.load(os.path.join(a, "model.pt"), map_location="cpu")
    cb = torch.load(os.path.join(b, "model.pt"), map_location="cpu")
    params = {}
    for net, sd in ca["nets"].items():
        params[net] = max(float((v - cb["nets"][net][k]).abs().max()) for k, v in sd.items())
    return {"runs": [a, b], "world": [la[0]["world"], lb[0]["world"]], "epochs": len(la),
            "max_rel_loss_diff": max(rel), "median_rel_loss_diff": sorted(rel)[len(rel) // 2],
            "losses": [[x["phase"], x["epoch"], x["kind"], x["loss"], y["loss"]] for x, y in zip(la, lb)],
            "max_abs_param_diff": params, "commands": [ca["meta"].get("command"), cb["meta"].get("command")]}


def forward(ckpt, t, x, out_dir):
    c = torch.load(ckpt, map_location="cpu")
    tv = torch.from_numpy(np.fromfile(t, dtype="<f4"))
    xv = torch.from_numpy(np.fromfile(x, dtype="<f4")).reshape((len(tv),) + data_shape(c["arch"]))
    for name, sd in c["nets"].items():
        net = build_net(c["arch"])
        net.load_state_dict(sd)
        with torch.no_grad():
            net(tv, xv).numpy().astype("<f4").tofile(os.path.join(out_dir, name + ".f32"))


def jobs(path):
    with open(path) as f:
        todo = json.load(f)
    main = int(os.environ.get("RANK", "0")) == 0
    for job in todo:
        if "train" in job:
            if asbm_train.main(job["train"]) != 0:
                raise SystemExit(f"asbm_check: training job {job['train']} failed")
        elif "compare" in job and main:
            a, b, out = job["compare"]
            with open(out, "w") as f:
                json.dump(compare(a, b), f, indent=1)
        elif "forward" in job and main:
            forward(**job["forward"])
        elif "png" in job and main:
            src, dst = job["png"]
            for name in sorted(os.listdir(src)):
                with open(os.path.join(src, name), "rb") as f:
                    png.decode(f.read()).tofile(os.path.join(dst, name + ".rgba"))
        elif "config" in job and main:
            argv, out = job["config"]
            with open(out, "w") as f, contextlib.redirect_stdout(f):
                if asbm_train.main(argv + ["--print-config"]) != 0:
                    raise SystemExit(f"asbm_check: --print-config {argv} failed")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def run():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("jobs").add_argument("file")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    f = sub.add_parser("forward")
    for k in ("ckpt", "t", "x", "out-dir"):
        f.add_argument("--" + k, required=True)
    a = p.parse_args()
    try:
        if a.cmd == "jobs":
            jobs(a.file)
        elif a.cmd == "compare":
            r = compare(a.a, a.b)
            for row in r.pop("losses"):
                print("%-8s %4d %-7s %.9g %.9g" % tuple(row))
            print(json.dumps(r, indent=1))
        else:
            forward(a.ckpt, a.t, a.x, a.out_dir)
    except (ValueError, OSError, KeyError) as e:
        print(f"asbm_check {a.cmd}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
