"""ASBM training in PyTorch: `backend train` for one machine or a cluster (issue 15).

    /usr/bin/python3 torch/asbm_train.py --data toy:8gaussians --run runs/t8 --out runs/t8/model.pt
    torchrun --nproc_per_node=2 torch/asbm_train.py --data mnist --run runs/mnist --out runs/mnist/model.pt
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 --rdzv_id=asbm \
        torch/asbm_train.py --device cuda --data npy:faces.npz --run /shared/runs/faces --out /shared/faces.pt
    go run ./backend import --from runs/t8/model.pt --out weights/t8.msgpack
    python3 torch/asbm_train.py --device cuda --data npy:emoji-faces.npy --phase-seconds stage1=300,stage2=600,distill=200
    python3 torch/asbm_train.py --device cuda --data npy:emoji-faces.npy --init-from weights/emoji.msgpack --from-phase stage2

The phases are backend/train's (asbm.md): stage 1 — corrector and adjoint matching alternating over a
replay buffer (§2), stage 2 — bridge matching on fresh couplings of the frozen forward control (§3),
the memoryless DSM baseline (§3.2, β_1 = 20), and the one-step generator distilled by regression on
PF-ODE pairs (§4.3(a)). Networks are the project's MLP (toys) and U-Net (images), torch/mlp.py and
torch/unet.py, whose parameter names are Go's. Defaults and flag names are `backend train`'s.

Processes: under torchrun every process trains a DistributedDataParallel copy (gloo on CPUs, nccl
with --device cuda). --batch is the global batch: each of N processes takes batch/N rows of every
step, simulation chunks are dealt round robin, and all random draws come from seeded per-epoch
streams, so N processes compute what one process computes, up to float rounding (asbm/dist.py).

--run DIR holds state.pt (the resumable checkpoint, written by rank 0 at every phase end and every
--checkpoint-every seconds; --resume continues it, on any number of processes, flags given with it
overriding the stored ones) and train.jsonl (one JSON line per epoch). --out is the checkpoint
`backend import` reads (the EMA networks: score, control, gen, baseline, and the VP in meta; meta
score_scale "sigma" says the score, baseline and gen networks output σ_t·s, asbm/engine.py SigmaScaled).
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from asbm import config, data as datasets  # noqa: E402
from asbm.dist import setup, stream  # noqa: E402
from asbm.engine import Frozen, Trainable  # noqa: E402
from asbm.loops import Baseline, Distill, Stage1, Stage2  # noqa: E402
from mlp import build_net, save_checkpoint  # noqa: E402
from unet import load_go, read_weights  # noqa: E402

PHASES = ["stage1", "stage2", "baseline", "distill", "done"]
# The model file's network of each role (weights/: "score/…" etc.) and the phase that trains it.
FILE_ROLES = {"u": "control", "s": "score", "b": "baseline", "g": "gen"}
ROLE_PHASE = {"u": "stage1", "s": "stage2", "b": "baseline", "g": "distill"}
# Configuration a file's networks were trained under, from its metadata: --init-from takes them.
FILE_META = ("beta0", "beta1", "baseline_beta1", "sigma_v", "score_scale")
STATE = "state.pt"


class Stop(Exception):
    """Ends a run that --stop-after or --stop-after-epochs stopped; its checkpoint is complete."""


def init_seed(seed, role):
    """The initialisation seed of a role's network (model.NewNet is seeded per role too)."""
    g = stream(_CPU, seed, "init", role)
    return int(torch.randint(0, 2 ** 62, (1,), generator=g))


class _Cpu:
    device = torch.device("cpu")


_CPU = _Cpu()


class Run:
    """One training run: configuration, phase, finished networks and the loop in progress."""

    def __init__(self, ctx, args, stored, init=None):
        """init: a model file's networks (init_from), for a new run that starts at args.from_phase."""
        self.ctx, self.args = ctx, args
        self.spec = stored["data"] if stored else args.data
        self.data = datasets.load(self.spec, stored["size"] if stored else args.size)
        self.c = config.build(args, self.data, stored["config"] if stored else None)
        self.phase = stored["phase"] if stored else PHASES[0]
        self.final = stored["final"] if stored else {}
        self.log = stored["log"] if stored else []
        # The file's networks that the current and later phases start from (kept for a resume).
        self.init = stored.get("init", {}) if stored else {}
        self.init_flags = stored.get("init_flags", "") if stored else ""
        if init is not None:
            self.start_from_file(init)
        self.loop_state = stored["loop"] if stored else None
        self.epochs_run = 0
        self.last_save = time.time()

    def start_from_file(self, init):
        """Starts at --from-phase with a model file's networks (asbm.md's phases, trained further): the
        networks of the phases before it are taken as finished, and that phase and the later ones
        train the file's network of their role further (the generator too, instead of starting it
        from the teacher score); a role the file lacks starts as a fresh run's would."""
        path, arch, nets, training = init
        if any(arch.get(k) != v for k, v in self.c.arch.items()):
            raise ValueError(f"{path} holds networks of arch {arch}; this run's is {self.c.arch} (another --data or --size?)")
        first = PHASES.index(self.args.from_phase)
        for role, phase in ROLE_PHASE.items():
            if PHASES.index(phase) < first:
                if role not in nets:
                    raise ValueError(f"{path} has no {FILE_ROLES[role]} network, which --from-phase "
                                     f"{self.args.from_phase} needs finished")
                self.final[role] = nets[role]
            elif role in nets:
                self.init[role] = nets[role]
        self.phase = self.args.from_phase
        self.init_flags = f"--init-from {path} --from-phase {self.args.from_phase} "
        self.log.append(f"init: {', '.join(FILE_ROLES[r] for r in nets)} from {path}, trained from "
                        f"{self.args.from_phase} on; its training:" + "".join(f"\n  {l}" for l in training.splitlines()))

    def say(self, line):
        if self.ctx.main:
            print(line, flush=True)

    def save(self, loop=None):
        """Writes the resumable state (rank 0; no collective, so ranks need not agree on when)."""
        if not self.ctx.main:
            return
        st = {"data": self.spec, "size": self.data.size, "config": {k: v for k, v in self.c.values().items() if k != "arch"},
              "phase": self.phase, "final": self.final, "log": self.log, "init": self.init,
              "init_flags": self.init_flags,
              "loop": loop.state() if loop is not None else None, "world": self.ctx.world}
        path = os.path.join(self.args.run, STATE)
        torch.save(st, path + ".tmp")
        os.replace(path + ".tmp", path)
        self.last_save = time.time()

    def trainable(self, role, ema=None, start=None):
        c = self.c
        return Trainable(self.ctx, c.arch, c.lr, c.ema if ema is None else ema, init_seed(c.seed, role), start)

    def frozen(self, key):
        if key not in self.final:
            raise ValueError(f"the checkpoint lacks the finished network {key!r}")
        return Frozen(self.ctx, self.c.arch, self.final[key])

    def loop(self):
        """The loop of the current phase and what to do when it finishes."""
        c, ctx = self.c, self.ctx
        if self.phase == "stage1":
            u, h = self.trainable("u"), self.trainable("h")
            l = Stage1(ctx, c, self.data, u, h)

            def finish():
                note = "no terminal check passed: keeping the last control"
                if l.use_best():
                    note = f"kept the control of epoch {l.best_epoch}{terminal_note(l.best_stats)}"
                self.final["u"] = u.ema_state()
                self.log.append(f"stage1: {l.epoch} epochs; {note}")
            return l, finish
        if self.phase == "stage2":
            s = self.trainable("s", start=self.init.get("s"))
            l = Stage2(ctx, c, self.data, self.frozen("u"), s)

            def finish():
                self.final["s"] = s.ema_state()
                self.log.append(f"stage2: {c.stage2_epochs} epochs × {c.couplings} couplings × {c.stage2_passes} passes, "
                                f"forward NFE {c.stage2_nfe}")
            return l, finish
        if self.phase == "baseline":
            b = self.trainable("b", start=self.init.get("b"))
            l = Baseline(ctx, c, self.data, b)

            def finish():
                self.final["b"] = b.ema_state()
                self.log.append(f"baseline: {c.stage2_epochs} epochs × {c.couplings * c.stage2_passes} examples "
                                f"(DSM, β1 = {c.baseline_beta1:g})")
            return l, finish
        if self.phase == "distill":
            # The generator starts from the teacher score's EMA weights (asbm.md §4.2: s_ω ← s_ψ), or
            # from --init-from's generator.
            g = self.trainable("g", ema=c.distill_ema, start=self.init.get("g", self.final["s"]))
            l = Distill(ctx, c, self.data.shape, self.frozen("s"), self.frozen("u"), g)

            def finish():
                self.final["g"] = g.ema_state()
                self.log.append(f"distill: {c.distill_epochs} epochs × {c.distill_samples} pairs × {c.distill_passes} "
                                f"passes, {c.distill_ode_steps}-step Heun teacher, EMA {c.distill_ema:g}")
            return l, finish
        raise ValueError(f"unknown phase {self.phase!r}")

    def run_phase(self):
        l, finish = self.loop()
        if self.loop_state is not None:
            l.restore(self.loop_state)
            self.loop_state = None
        start, times = time.time(), []
        cap = self.args.phase_seconds.get(self.phase)
        jsonl = open(os.path.join(self.args.run, "train.jsonl"), "a") if self.ctx.main else None
        try:
            while not l.finished():
                if cap is not None and times:
                    # The slowest recent epoch, leaving out the first once there are others (warm-up:
                    # cuDNN's autotuning, first allocations).
                    slowest = max(times[1:][-16:] or times)
                    last = self.last_epoch_by_time(l, cap, time.time() - start, slowest)
                    if last is not None:
                        self.say(f"{self.phase}: {last} epochs fit --phase-seconds {self.phase}={cap:g} (the model "
                                 f"file's command records that count)")
                    if l.finished():
                        break
                t0 = time.time()
                st = l.run_epoch()
                st["seconds"] = round(time.time() - t0, 3)
                times.append(time.time() - t0)
                st["world"] = self.ctx.world
                if jsonl:
                    jsonl.write(json.dumps(st) + "\n")
                    jsonl.flush()
                if st.get("terminal") or st.get("switched") or st["epoch"] % 10 == 0 or st["done"] or st["seconds"] > 5:
                    extra = f" buffer {st['buffer']}" if "buffer" in st else ""
                    self.say(f"{self.phase} epoch {st['epoch']} {st['kind']} loss {st['loss']:.5g} steps {st['steps']}"
                             f"{extra} time {st['seconds']:.1f}s{terminal_note(st.get('terminal'))}")
                self.epochs_run += 1
                stop = self.args.stop_after_epochs and self.epochs_run % self.args.stop_after_epochs == 0
                if not l.finished() and (stop or time.time() - self.last_save > self.args.checkpoint_every):
                    self.save(l)
                if stop and not l.finished():
                    raise Stop(f"stopped after {self.epochs_run} epochs as --stop-after-epochs asked")
        finally:
            if jsonl:
                jsonl.close()
        finish()
        self.say(f"{self.phase} finished in {time.time() - start:.0f}s: {self.log[-1]}")
        done = self.phase
        self.phase = PHASES[PHASES.index(self.phase) + 1]
        self.save()
        if done == self.args.stop_after:
            raise Stop(f"stopped after {done} as --stop-after asked")

    def last_epoch_by_time(self, l, cap, elapsed, slowest):
        """Applies --phase-seconds before an epoch, judging by the slowest recent epoch (on rank 0, so
        every rank agrees): when one more epoch would end past cap seconds the phase ends now; when
        two more would, the coming epoch becomes its last, so it does what a last epoch does (stage 1's
        terminal check). Either way it lowers the phase's epoch count in the configuration itself, so
        the command the model file records (config.flags_of) reproduces the run without the cap; the
        baseline follows stage 2's count and so keeps stage 2's steps. Returns the new count, or None."""
        more = 0
        if self.ctx.main:
            more = 0 if elapsed + slowest > cap else 1 if elapsed + 2 * slowest > cap else 2
        n = int(self.ctx.all_sum(torch.tensor(float(more), device=self.ctx.device)))
        if n == 2:
            return None
        key = {"stage1": "stage1_epochs", "stage2": "stage2_epochs", "distill": "distill_epochs"}[self.phase]
        setattr(self.c, key, l.epoch + n)
        if hasattr(l, "epochs"):
            l.epochs = l.epoch + n
        return l.epoch + n

    def write_model(self, path):
        """The checkpoint `backend import` reads: the EMA networks and the metadata to sample them."""
        c = self.c
        nets = {}
        for key, name in (("s", "score"), ("u", "control"), ("g", "gen"), ("b", "baseline")):
            if key in self.final:
                n = build_net(c.arch)
                n.load_state_dict(self.final[key])
                nets[name] = n
        meta = {"dataset": datasets.name_of(self.spec), "beta0": c.beta0, "beta1": c.beta1,
                "baseline_beta1": c.baseline_beta1, "sigma_v": c.sigma_v, "score_scale": c.score_scale,
                "seed": c.seed, "stage": self.phase,
                "training": "\n".join(self.log), "trainer": "torch/asbm_train.py", "world_size": self.ctx.world,
                "torch": str(torch.__version__), "device": self.ctx.device.type,
                "command": f"torch/asbm_train.py --data {self.spec} " + self.init_flags + config.flags_of(c)}
        try:
            meta["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                            cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        save_checkpoint(path + ".tmp", c.arch, nets, meta)
        os.replace(path + ".tmp", path)


def init_from(args):
    """Reads --init-from's model file (weights/: backend train's, backend import's). Sets the arch
    and the FILE_META flags not given on the command line to the file's, refuses given ones that
    differ (the networks were trained under them), and returns (path, the file's arch, {role: state
    dict}, the file's training metadata)."""
    path = args.init_from
    arch, tensors, meta = read_weights(path)
    # The arch keys are the flags' names (config.FLAGS).
    vals = {k: arch.get(k) for k in ("hidden", "layers", "fourier", "base", "mults", "res_blocks", "groups", "time_emb")}
    vals.update({k: meta.get(k) for k in FILE_META})
    if meta.get("score_scale") is None:
        vals["score_scale"] = "raw"  # files from before --score-scale hold raw score networks
    for k, v in vals.items():
        if v is None or k in (("base", "mults", "res_blocks", "groups", "time_emb") if arch["kind"] == "mlp"
                              else ("hidden", "layers")):
            continue
        given = getattr(args, k)
        if given is None:
            setattr(args, k, list(v) if isinstance(v, list) else v)
        elif (list(given) if isinstance(given, list) else given) != v:
            raise ValueError(f"--{k.replace('_', '-')} {given} differs from the {v} that {path}'s networks were "
                             "trained with")
    nets = {}
    for role, name in FILE_ROLES.items():
        if any(n.startswith(name + "/") for n in tensors):
            net = build_net(arch)
            try:
                load_go(net, tensors, name + "/")
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
            nets[role] = {k: v.clone() for k, v in net.state_dict().items()}
    return path, arch, nets, str(meta.get("training", ""))


def phase_seconds(text):
    """Parses --phase-seconds: comma-separated PHASE=SECONDS for stage1, stage2 and distill."""
    caps = {}
    for part in filter(None, text.split(",")):
        name, eq, val = part.partition("=")
        if name not in ("stage1", "stage2", "distill") or not eq:
            raise argparse.ArgumentTypeError(f"{part!r}: want PHASE=SECONDS with PHASE stage1, stage2 or distill "
                                             "(the baseline runs stage 2's epochs)")
        try:
            caps[name] = float(val)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: {val!r} is not a number of seconds") from None
        if not caps[name] > 0:
            raise argparse.ArgumentTypeError(f"{part!r}: the cap must be > 0 seconds")
    return caps


def terminal_note(t):
    if not t:
        return ""
    return (f"; terminal check: λmax {t['lambda_max']:.3f} vs prior {t['lambda_prior']:.3f}, radial errors "
            f"{100 * t['mean_err']:.1f}% / {100 * t['var_err']:.1f}%, pass {t['pass']}")


def main(argv=None):
    p = config.parser(__doc__)
    p.add_argument("--run", help="folder for state.pt and train.jsonl (default runs/<data set>)")
    p.add_argument("--out", help="checkpoint for `backend import` to write at the end (default RUN/model.pt)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run; flags given override the stored ones")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (a GPU when torch sees one)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's choice; torchrun sets 1)")
    p.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds between checkpoints inside a phase")
    p.add_argument("--stop-after", choices=PHASES[:3], help="stop after this phase, checkpoint kept; --resume continues")
    p.add_argument("--stop-after-epochs", type=int, default=0, help="stop after this many epochs of this process (tests)")
    p.add_argument("--phase-seconds", type=phase_seconds, default={},
                   help="wall-clock caps, e.g. stage1=600,stage2=1200,distill=300: a capped phase ends after its "
                        "last epoch expected to finish within the cap (its epoch count lowered to the epochs run, "
                        "which the model file's command records; the baseline runs stage 2's count, so it has no "
                        "cap of its own); the time counts from the phase's start in this process")
    p.add_argument("--init-from", metavar="FILE",
                   help="a new run starting at --from-phase with a model file's networks: those of earlier "
                        "phases taken as finished, that phase's and later ones' trained further (arch, β and "
                        "--score-scale come from the file)")
    p.add_argument("--from-phase", choices=PHASES[1:4], default="stage2",
                   help="with --init-from: the first phase to train (default stage2; stage 1 needs the corrector, "
                        "which model files do not hold)")
    p.add_argument("--print-config", action="store_true", help="print the configuration as Go's train.Config JSON and exit")
    args = p.parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.print_config:
            if not args.data:
                raise ValueError("--data is required")
            print(config.go_json(config.build(args, datasets.load(args.data, args.size)), args.data))
            return 0
        ctx = setup(args.device)
        init = None
        if args.init_from:
            if args.resume:
                raise ValueError("--init-from starts a new run; --resume continues one (its networks are in the run)")
            init = init_from(args)
        if not args.data and not args.resume:
            raise ValueError("--data is required (or --resume --run DIR)")
        if args.run is None:
            if not args.data:
                raise ValueError("--resume needs --run")
            args.run = os.path.join("runs", datasets.name_of(args.data))
        path = os.path.join(args.run, STATE)
        stored = None
        if args.resume:
            stored = torch.load(path, map_location="cpu")
            if args.data and args.data != stored["data"]:
                raise ValueError(f"{path} is a run on {stored['data']}, not {args.data}")
        elif os.path.exists(path):
            raise ValueError(f"{path} exists: pass --resume to continue it, or a new --run folder")
        if ctx.main:
            os.makedirs(args.run, exist_ok=True)
        ctx.barrier()
        run = Run(ctx, args, stored, init)
        run.say(f"{'resuming ' + path + ' at ' + run.phase if stored else 'run ' + args.run}: data {run.spec}, "
                f"arch {run.c.arch}, {ctx.world} process(es) on {ctx.device.type}"
                f"{' (' + ctx.backend + ')' if ctx.backend else ''}, global batch {run.c.batch}")
        try:
            while run.phase != "done":
                run.run_phase()
        except Stop as e:
            run.say(f"{e}; continue with: --resume --run {args.run}")
            ctx.barrier()
            return 0
        out = args.out or os.path.join(args.run, "model.pt")
        if ctx.main:
            run.write_model(out)
            run.say(f"wrote {out}")
        ctx.barrier()
        return 0
    except (ValueError, OSError, FloatingPointError) as e:
        print(f"asbm_train: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
