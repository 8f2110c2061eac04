"""The training loops of backend/asbm in PyTorch: stage 1 (stage1.go), stage 2 (stage2.go), the
memoryless baseline (baseline.go) and the one-step distillation (distill.go). Each runs one epoch per
run_epoch() and returns its statistics; state() and restore() resume at an epoch boundary. Every random
draw comes from dist.stream(seed, loop, epoch, purpose, …), so all ranks agree and a resumed run
replays exactly (dist.py).
"""

import math

import torch

from . import matchers as M
from .dist import chunks, gather_chunks, stream
from .engine import score_type


class Buffer:
    """The stage-1 replay buffer (§2.5; buffer.go): rows of k fields, FIFO, the last cap rows kept."""

    def __init__(self, cap, k):
        self.cap, self.k, self.fields = cap, k, None

    def __len__(self):
        return 0 if self.fields is None else self.fields[0].shape[0]

    def append(self, parts):
        self.fields = list(parts) if self.fields is None else [torch.cat([f, p]) for f, p in zip(self.fields, parts)]
        if len(self) > self.cap:
            self.fields = [f[-self.cap:] for f in self.fields]

    def reset(self):
        """Emptied at every stage switch (§2.5 --reset-buffer)."""
        self.fields = None

    def get(self, idx):
        return [f[idx] for f in self.fields]

    def state(self):
        return None if self.fields is None else [f.cpu() for f in self.fields]

    def restore(self, st, device):
        self.fields = None if st is None else [f.to(device) for f in st]


def _finite(ctx, what, *xs):
    """Raises FloatingPointError when a gathered tensor holds NaN or Inf (the same on every rank)."""
    for x in xs:
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"{what} is NaN or Inf (resume from the last checkpoint, perhaps with a smaller --lr)")


def regress(ctx, model, n, batch, g, tuple_fn):
    """One shuffled pass of minibatch steps over n rows (a DataLoader without drop_last, §2.5): the
    permutation, then every step's tuple from generator g. Returns (Σ over steps of the global step
    loss, steps); the sum is all-reduced, so every rank returns the same."""
    perm = torch.randperm(n, generator=g, device=g.device)
    acc, steps = torch.zeros((), dtype=torch.float64, device=ctx.device), 0
    for lo in range(0, n, batch):
        acc += model.step(*tuple_fn(perm[lo:lo + batch], g))
        steps += 1
    return float(ctx.all_sum(acc)), steps


class Stage1:
    """Forward stage (§2, ASBS applied data→energy): CM for the corrector h and AM for the control u,
    alternating with CM first (§2.6), buffers filled by simulation and emptied at each switch, the
    terminal check at the end of AM stages from epoch eval_start on (stage1.go RunEpoch)."""

    def __init__(self, ctx, c, data, u, h):
        self.ctx, self.c, self.data, self.u, self.h = ctx, c, data, u, h
        self.epoch, self.done = 0, False
        self.am, self.cm = Buffer(c.buffer, 3), Buffer(c.buffer, 2)
        self.best, self.best_stats, self.best_epoch = None, None, 0

    def phase_of(self, e):
        """CM when e mod (n_a+n_c) < n_c, else AM (§2.6, init_stage = bridge)."""
        return "CM" if e % (self.c.am_epochs + self.c.cm_epochs) < self.c.cm_epochs else "AM"

    def finished(self):
        return self.done or self.epoch >= self.c.stage1_epochs

    def run_epoch(self):
        c, e = self.c, self.epoch
        phase, nxt = self.phase_of(e), self.phase_of(e + 1)
        self._fill(e, phase)
        buf = self.am if phase == "AM" else self.cm
        g = stream(self.ctx, c.seed, "stage1", e, "pass")
        if phase == "AM":
            loss, steps = regress(self.ctx, self.u, len(buf), c.batch, g, lambda i, g: M.am_tuple(c.vp, g, *buf.get(i)))
        else:
            loss, steps = regress(self.ctx, self.h, len(buf), c.batch, g, lambda i, g: M.cm_tuple(c.vp, *buf.get(i)))
        if not math.isfinite(loss):
            raise FloatingPointError(f"stage1 epoch {e} {phase}: the loss is NaN or Inf (resume from the last checkpoint)")
        st = {"phase": "stage1", "epoch": e, "kind": phase, "loss": loss / max(steps, 1), "steps": steps,
              "buffer": len(buf), "switched": phase != nxt, "terminal": None}
        if phase != nxt:
            # §2.5: both buffers emptied at every switch; both optimisers rebuilt (CIFAR-10 setting).
            self.am.reset()
            self.cm.reset()
            self.u.reset_optimizer()
            self.h.reset_optimizer()
        self.epoch += 1
        last = self.epoch == c.stage1_epochs
        if (phase != nxt or last) and e >= c.eval_start and (phase == "AM" or last):
            ts = self._terminal()
            st["terminal"] = ts
            # §2.6: a full pass stops stage 1; else keep the radially passing check of lowest λ_max.
            if ts["pass"] or (ts["radial_pass"] and (self.best is None or ts["lambda_max"] <= self.best_stats["lambda_max"])):
                self.best, self.best_stats, self.best_epoch = self.u.state(), ts, self.epoch
            self.done = ts["pass"]
        st["done"] = self.finished()
        return st

    def _fill(self, e, phase):
        """Simulates resample rows into the phase's buffer (§2.5 step 1), chunks spread over ranks."""
        c, ctx = self.c, self.ctx

        def run(k, lo, hi):
            g = stream(ctx, c.seed, "stage1", e, "fill", k)
            x0 = self.data.sample(g, hi - lo)
            if phase == "CM" and e < c.cm_epochs:
                return x0, M.reference_coupling(c.vp, g, x0)  # the init stage: exact reference pairs (§2.3)
            x1 = M.simulate(self.u.eval, c.vp, x0, c.cm_nfe if phase == "CM" else c.forward_nfe, g)
            if phase == "CM":
                return x0, x1
            # §2.2: a_1 = ∇E(x_1) + h(1, x_1) with the current (non-EMA) corrector, at fill time.
            return x0, x1, M.terminal_adjoint(c.prior, lambda t, x: self.h.eval(t, x, ema=False), x1)

        parts = gather_chunks(ctx, c.resample, c.sim_batch, self.data.shape, 3 if phase == "AM" else 2, run)
        _finite(ctx, f"stage1 epoch {e} {phase}: simulated x1 or terminal adjoint", *parts[1:])
        (self.am if phase == "AM" else self.cm).append(parts)

    def _terminal(self):
        c, ctx, e = self.c, self.ctx, self.epoch

        def run(k, lo, hi):
            g = stream(ctx, c.seed, "stage1", e, "eval", k)
            return (M.simulate(self.u.eval, c.vp, self.data.sample(g, hi - lo), c.forward_nfe, g),)

        (x1,) = gather_chunks(ctx, c.eval_samples, c.sim_batch, self.data.shape, 1, run)
        _finite(ctx, "terminal-check x1", x1)
        return M.terminal_check(x1, c.prior.sigma_p, stream(ctx, c.seed, "stage1", e, "eval-prior"))

    def use_best(self):
        """Loads the kept control (runner.py: "Load the best forward model"); False when none passed."""
        if self.best is None:
            return False
        self.u.set_state(self.best)
        return True

    def state(self):
        return {"epoch": self.epoch, "done": self.done, "u": self.u.state(), "h": self.h.state(),
                "am": self.am.state(), "cm": self.cm.state(), "best": self.best, "best_stats": self.best_stats,
                "best_epoch": self.best_epoch}

    def restore(self, st):
        self.epoch, self.done = st["epoch"], st["done"]
        self.u.set_state(st["u"])
        self.h.set_state(st["h"])
        self.am.restore(st["am"], self.ctx.device)
        self.cm.restore(st["cm"], self.ctx.device)
        self.best, self.best_stats, self.best_epoch = st["best"], st["best_stats"], st["best_epoch"]


class _OneModel:
    """A loop training one network for a fixed number of epochs."""

    name = ""

    def __init__(self, ctx, c, model, epochs):
        self.ctx, self.c, self.model, self.epochs, self.epoch = ctx, c, model, epochs, 0

    def finished(self):
        return self.epoch >= self.epochs

    def _passes(self, e, n, count, tuple_fn):
        loss, steps = 0.0, 0
        for p in range(max(count, 1)):
            g = stream(self.ctx, self.c.seed, self.name, e, "pass", p)
            l, s = regress(self.ctx, self.model, n, self.c.batch, g, tuple_fn)
            loss, steps = loss + l, steps + s
        return loss / max(steps, 1), steps

    def _done(self, e, kind, loss, steps):
        if not math.isfinite(loss):
            raise FloatingPointError(f"{self.name} epoch {e}: the loss is NaN or Inf (resume from the last checkpoint)")
        self.epoch += 1
        return {"phase": self.name, "epoch": e, "kind": kind, "loss": loss, "steps": steps, "done": self.finished()}

    def state(self):
        return {"epoch": self.epoch, "model": self.model.state()}

    def restore(self, st):
        self.epoch = st["epoch"]
        self.model.set_state(st["model"])


class Stage2(_OneModel):
    """Backward stage (§3): with the EMA control frozen, each epoch simulates couplings fresh pairs
    (x0 ~ data, x1 = forward SDE, §3.1) and takes stage2_passes shuffled passes of bridge matching.
    Under --score-scale sigma the score network outputs σ_t·s on the ASBM base (engine.SigmaScaled)."""

    name = "stage2"

    def __init__(self, ctx, c, data, control, score):
        super().__init__(ctx, c, score_type(score, c.vp, c.score_scale), c.stage2_epochs)
        self.data, self.control = data, control

    def run_epoch(self):
        c, ctx, e = self.c, self.ctx, self.epoch

        def run(k, lo, hi):
            g = stream(ctx, c.seed, self.name, e, "sim", k)
            x0 = self.data.sample(g, hi - lo)
            return x0, M.simulate(self.control.eval, c.vp, x0, c.stage2_nfe, g)

        x0, x1 = gather_chunks(ctx, c.couplings, c.sim_batch, self.data.shape, 2, run)
        _finite(ctx, f"stage2 epoch {e}: simulated x1", x1)
        loss, steps = self._passes(e, c.couplings, c.stage2_passes, lambda i, g: M.bm_tuple(c.vp, g, x0[i], x1[i]))
        return self._done(e, "BM", loss, steps)


class Baseline(_OneModel):
    """The memoryless score-matching baseline (runner.py train_score_matching): DSM on the β_1 = 20 base,
    with stage 2's batch, steps and examples (couplings × passes fresh data rows per epoch, one pass).
    Under --score-scale sigma the network outputs σ_t·s with σ_t of the baseline's own base."""

    name = "baseline"

    def __init__(self, ctx, c, data, score):
        super().__init__(ctx, c, score_type(score, c.base_vp, c.score_scale), c.stage2_epochs)
        self.data = data

    def run_epoch(self):
        c, e = self.c, self.epoch
        n = c.couplings * max(c.stage2_passes, 1)
        # Drawing data is cheap: every rank draws every chunk (no communication).
        x0 = torch.cat([self.data.sample(stream(self.ctx, c.seed, self.name, e, "data", k), hi - lo)
                        for k, lo, hi in chunks(n, c.sim_batch)])
        loss, steps = self._passes(e, n, 1, lambda i, g: M.dsm_tuple(c.base_vp, g, x0[i]))
        return self._done(e, "DSM", loss, steps)


class Distill(_OneModel):
    """One-step distillation by regression on PF-ODE pairs (§4.3(a); distill.go): each epoch draws
    distill_samples z ~ N(0, I), runs the teacher's Heun PF-ODE (EMA score and control,
    distill_ode_steps) and takes distill_passes passes of generator steps on g, which starts from the
    teacher score (the code initialises s_ω from s_ψ, §4.2). Under --score-scale sigma the teacher's
    score and the generator's s_ω both output σ_t·s on the ASBM base (so the warm start keeps its
    meaning): the teacher's is divided by σ_t, and the generator's weight σ_1²/α_1 becomes σ_1/α_1."""

    name = "distill"

    def __init__(self, ctx, c, shape, score, control, gen):
        super().__init__(ctx, c, score_type(gen, c.vp, c.score_scale), c.distill_epochs)
        self.shape, self.score, self.control = shape, score_type(score, c.vp, c.score_scale), control

    def run_epoch(self):
        c, ctx, e = self.c, self.ctx, self.epoch

        def run(k, lo, hi):
            g = stream(ctx, c.seed, self.name, e, "z", k)
            z = torch.randn((hi - lo,) + tuple(self.shape), generator=g, device=g.device)
            return z, M.sample_ode(self.score.eval, self.control.eval, c.vp, z, c.distill_ode_steps)

        z, x0 = gather_chunks(ctx, c.distill_samples, c.sim_batch, self.shape, 2, run)
        _finite(ctx, f"distill epoch {e}: teacher sample", x0)
        loss, steps = self._passes(e, c.distill_samples, c.distill_passes, lambda i, g: M.gen_tuple(c.vp, z[i], x0[i]))
        return self._done(e, "distill", loss, steps)
