"""The run's configuration: `backend train`'s defaults and flag names (backend/train/config.go).

TOY and IMAGE mirror DefaultConfig and DefaultImageConfig there (the paper's math — β 0.1→4, baseline
0.1→20, AM/CM 15/5 epochs, EMA 0.999 — with sizes scaled to a workstation, asbm.md §5.1, §6.1); the Go
test TestTorchTrainer/defaults (backend/torchimport) compares them with `asbm_train.py --print-config`,
which prints this configuration in the JSON layout of Go's train.Config.
"""

import argparse
import json

from .vp import VP, Prior

# name: (default for the toys, default for images); None in the image column means "the same".
TOY = dict(seed=917, lr=1e-3, ema=0.999, batch=512, beta0=0.1, beta1=4.0, baseline_beta1=20.0, sigma_v=1.0,
           score_scale="raw",
           hidden=128, layers=3, fourier=8,
           stage1_epochs=200, am_epochs=15, cm_epochs=5, eval_start=60, eval_samples=8192, resample=4096,
           buffer=20000, forward_nfe=50, cm_nfe=100,
           stage2_epochs=200, couplings=8192, stage2_passes=4, stage2_nfe=20,
           distill_epochs=40, distill_samples=4096, distill_ode_steps=32, distill_passes=4, distill_ema=0.99,
           distill_method="regress", dmd_lr=0.0, dmd_fake_steps=0)
# Images: the score-type networks output σ_t·s (engine.SigmaScaled), as in DefaultImageConfig.
IMAGE = dict(TOY, score_scale="sigma", lr=2e-4, batch=64, hidden=0, layers=0, fourier=16, base=16, mults=[1, 2, 2],
             res_blocks=1, groups=8, time_emb=64,
             stage1_epochs=100, eval_start=40, eval_samples=1024, resample=1024, forward_nfe=20, cm_nfe=20,
             stage2_epochs=40, couplings=2048, stage2_passes=2,
             distill_epochs=20, distill_samples=1024, distill_ode_steps=16, distill_passes=2)
SIM_BATCH = 512  # backend/asbm DefaultSimBatch (the code's samp_bs, asbm.md §2.4): also the unit of sharding

# (flag, type, help) of every configuration flag; the attribute is the flag with "-" → "_".
FLAGS = [
    ("seed", int, "seed of initialisation, data and noise"),
    ("hidden", int, "MLP width (toys)"), ("layers", int, "MLP hidden layers (toys)"),
    ("fourier", int, "Fourier time frequencies"),
    ("base", int, "U-Net channels at full resolution (images)"),
    ("mults", lambda s: [int(x) for x in s.split(",")], "U-Net channel multipliers per level, e.g. 1,2,2"),
    ("res-blocks", int, "U-Net residual blocks per level"), ("groups", int, "U-Net group-norm groups"),
    ("time-emb", int, "U-Net time-embedding width"),
    ("lr", float, "AdamW learning rate"), ("ema", float, "EMA decay"),
    ("batch", int, "global regression batch (split over the processes: each takes batch/N rows)"),
    ("beta0", float, "VP β at t = 0"), ("beta1", float, "VP β at t = 1 for ASBM (the paper's non-memoryless base)"),
    ("baseline-beta1", float, "VP β at t = 1 for the memoryless baseline"), ("sigma-v", float, "VP σ_v"),
    ("score-scale", str, "score networks' output: sigma (σ_t·s, the regression target's scale: better images "
                         "from small networks) or raw (s itself, the paper's)"),
    ("stage1-epochs", int, "maximum stage-1 epochs (paper 1000)"),
    ("am-epochs", int, "adjoint-matching epochs per stage-1 cycle"),
    ("cm-epochs", int, "corrector-matching epochs per stage-1 cycle"),
    ("eval-start", int, "first epoch of the stage-1 terminal check (paper 300)"),
    ("eval-samples", int, "points simulated by the terminal check"),
    ("resample", int, "stage-1 samples simulated per epoch"), ("buffer", int, "stage-1 replay buffer size"),
    ("forward-nfe", int, "time points of the AM and terminal-check simulations"),
    ("cm-nfe", int, "time points of the CM simulations"),
    ("stage2-epochs", int, "stage-2 epochs (the baseline gets the same steps)"),
    ("couplings", int, "fresh couplings simulated per stage-2 epoch"),
    ("stage2-passes", int, "passes over each epoch's couplings (the paper: 1)"),
    ("stage2-nfe", int, "time points of the stage-2 coupling simulation"),
    ("distill-epochs", int, "distillation epochs"),
    ("distill-samples", int, "fresh (z, ODE teacher) pairs per distillation epoch"),
    ("distill-ode-steps", int, "Heun steps of the teacher PF-ODE"),
    ("distill-passes", int, "passes over each epoch's teacher pairs"),
    ("distill-ema", float, "EMA decay of the generator"),
    ("distill-method", str, "regress (on PF-ODE pairs); backend train's dmd is not implemented here"),
    ("dmd-lr", float, "backend train's --distill-method dmd only (kept so its commands parse)"),
    ("dmd-fake-steps", int, "backend train's --distill-method dmd only (kept so its commands parse)"),
    ("sim-batch", int, f"rows per simulation chunk, the unit spread over processes (default {SIM_BATCH})"),
]
KEYS = [f.replace("-", "_") for f, _, _ in FLAGS]


def add_flags(p):
    """Adds the configuration flags to an argparse parser, all defaulting to None ("not given")."""
    for flag, typ, text in FLAGS:
        p.add_argument("--" + flag, type=typ, default=None, help=text)


class Config:
    """A run's configuration: the flag values, the data spec and the arch."""

    def __init__(self, values):
        self.__dict__.update(values)

    @property
    def vp(self):
        return VP(self.beta0, self.beta1, self.sigma_v)

    @property
    def base_vp(self):
        return VP(self.beta0, self.baseline_beta1, self.sigma_v)

    @property
    def prior(self):
        return Prior()

    def values(self):
        return {k: v for k, v in self.__dict__.items()}


def build(args, data, stored=None):
    """The configuration: the stored one of a resumed run, or the toy/image defaults, with every flag
    given in args overriding it; then the arch for data (Toy or Images) and validation."""
    image = data.shape != (2,)
    v = dict(stored) if stored else dict(IMAGE if image else TOY, sim_batch=SIM_BATCH)
    v.setdefault("score_scale", "raw")  # a run stored before --score-scale existed is raw (Config.ScoreScale "")
    v.setdefault("distill_method", "regress")  # likewise before --distill-method
    v.setdefault("dmd_lr", 0.0)
    v.setdefault("dmd_fake_steps", 0)
    for k in KEYS:
        if getattr(args, k) is not None:
            v[k] = getattr(args, k)
    if image:
        v["arch"] = {"kind": "unet", "channels": data.channels, "height": data.size, "width": data.size,
                     "dim": data.channels * data.size * data.size, "base": v["base"], "mults": list(v["mults"]),
                     "res_blocks": v["res_blocks"], "groups": v["groups"], "time_emb": v["time_emb"],
                     "fourier": v["fourier"]}
    else:
        v["arch"] = {"kind": "mlp", "dim": 2, "hidden": v["hidden"], "layers": v["layers"], "fourier": v["fourier"]}
    c = Config(v)
    validate(c)
    return c


def validate(c):
    """Raises ValueError for what backend/train's Config.validate refuses."""
    for k in ("batch", "stage1_epochs", "am_epochs", "cm_epochs", "resample", "buffer", "eval_samples",
              "stage2_epochs", "couplings", "distill_epochs", "distill_samples", "distill_ode_steps",
              "stage2_passes", "distill_passes", "sim_batch"):
        if getattr(c, k) < 1:
            raise ValueError(f"--{k.replace('_', '-')} must be ≥ 1, got {getattr(c, k)}")
    if c.eval_samples < 2:
        raise ValueError("--eval-samples must be ≥ 2")
    if min(c.forward_nfe, c.cm_nfe, c.stage2_nfe) < 2:
        raise ValueError("--forward-nfe, --cm-nfe and --stage2-nfe count time points and must be ≥ 2")
    if not (0 < c.lr < 1) or not (0 <= c.ema < 1) or not (0 <= c.distill_ema < 1):
        raise ValueError("--lr must be in (0, 1), --ema and --distill-ema in [0, 1)")
    if c.distill_method != "regress":
        raise ValueError(f"--distill-method {c.distill_method!r}: this trainer distils by regression only "
                         "(backend train --distill-method dmd has distribution matching)")
    if c.score_scale not in ("sigma", "raw"):
        raise ValueError(f"--score-scale is sigma or raw, got {c.score_scale!r}")
    c.vp, c.base_vp  # VP validates itself
    a = c.arch
    if a["kind"] == "unet":
        for l, m in enumerate(a["mults"]):
            if a["base"] * m // a["groups"] < 2:
                raise ValueError(f"--base {a['base']} --mults {a['mults']} --groups {a['groups']} leaves fewer than two "
                                 f"channels per group-norm group at level {l} (see backend/train checkGroupWidth)")


def go_json(c, spec):
    """c in the JSON layout of Go's train.Config (backend/train/config.go), for TestTorchTrainer/defaults."""
    a = c.arch
    arch = {"Kind": a["kind"], "Dim": a["dim"], "Hidden": c.hidden,
            "Layers": c.layers, "Fourier": c.fourier, "Channels": a.get("channels", 0),
            "Height": a.get("height", 0), "Width": a.get("width", 0), "Base": a.get("base", 0),
            "Mults": a.get("mults"), "ResBlocks": a.get("res_blocks", 0), "Groups": a.get("groups", 0),
            "TimeEmb": a.get("time_emb", 0)}
    return json.dumps({
        "data": spec, "seed": c.seed, "arch": arch, "lr": c.lr, "ema": c.ema, "batch": c.batch,
        "beta0": c.beta0, "beta1": c.beta1, "baseline_beta1": c.baseline_beta1, "sigma_v": c.sigma_v,
        "score_scale": c.score_scale,
        "stage1": {"MaxEpochs": c.stage1_epochs, "AMEpochs": c.am_epochs, "CMEpochs": c.cm_epochs,
                   "EvalStart": c.eval_start, "EvalSamples": c.eval_samples, "Resample": c.resample,
                   "Buffer": c.buffer, "ForwardNFE": c.forward_nfe, "CMNFE": c.cm_nfe},
        "stage2": {"Epochs": c.stage2_epochs, "Couplings": c.couplings, "Passes": c.stage2_passes,
                   "ForwardNFE": c.stage2_nfe},
        "distill": {"Epochs": c.distill_epochs, "Samples": c.distill_samples, "ODESteps": c.distill_ode_steps,
                    "Passes": c.distill_passes, "EMA": c.distill_ema,
                    "Method": c.distill_method, "DMDLR": c.dmd_lr, "FakeSteps": c.dmd_fake_steps}})


def flags_of(c):
    """The flags that reproduce c (the model file's "command" meta)."""
    skip = {"base", "mults", "res_blocks", "groups", "time_emb"} if c.arch["kind"] == "mlp" else {"hidden", "layers"}
    out = []
    for k in KEYS:
        if k in skip:
            continue
        v = getattr(c, k)
        out.append(f"--{k.replace('_', '-')} " + (",".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)))
    return " ".join(out)


def parser(description):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="data set: toy:8gaussians, toy:moons, toy:checkerboard, mnist, fashion, idx:DIR, "
                                  "npy:PATH (.npy/.npz) or dir:PATH (a folder of PNG images)")
    p.add_argument("--size", type=int, default=0, help="image side in pixels (default the set's own: 28 for the digits)")
    add_flags(p)
    return p
