"""A trainable network: the PyTorch counterpart of backend/asbm.Model (backend/cpu, backend/gpu).

It holds the network, its EMA copy (asbm.md §2.1: EMA 0.999, updated after every step), AdamW with the
Go engines' settings (model.AdamW via backend/cpu.DefaultConfig: betas 0.9/0.999, eps 1e-8, weight decay
0 — asbm.md §2.5 `--l2-norm 0`), and under torchrun a DistributedDataParallel wrapper. `step` takes one
regression minibatch in the form of backend/asbm.Tuple — L = mean_{i,j}(w_i·f(t_i, x_i)_j − y_ij)² —
given whole on every rank, computes this rank's shard and lets DDP average the gradients (dist.py).
"""

import copy

import torch
from torch.nn.parallel import DistributedDataParallel

from mlp import build_net


class Trainable:
    """Network, EMA and optimiser of one role (control u, corrector h, score s, baseline, generator)."""

    def __init__(self, ctx, arch, lr, ema_decay, init_seed, start=None):
        """A fresh network initialised from init_seed (model.NewNet's scheme: fan-in uniform, zero
        output layer), or a copy of the state dict start (the distilled generator starts from the
        teacher, asbm.md §4.2)."""
        self.ctx, self.lr, self.ema_decay = ctx, lr, ema_decay
        torch.manual_seed(init_seed)
        net = build_net(arch)
        if start is not None:
            net.load_state_dict(start)
        self.net = net.to(ctx.device)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        # DDP broadcasts rank 0's parameters here (they are equal anyway: same seed). The only buffer
        # is the time frequencies, constant: no broadcast before every forward.
        self.ddp = (DistributedDataParallel(self.net, broadcast_buffers=False,
                                            device_ids=[ctx.device] if ctx.device.type == "cuda" else None)
                    if ctx.distributed else self.net)
        self.reset_optimizer()

    def reset_optimizer(self):
        """A fresh AdamW: moments and step count cleared (asbm.md §2.5, stage switch)."""
        # On a GPU the fused kernel: one launch for all parameters instead of several per tensor
        # (the same update up to rounding); the CPU keeps the loop the Go engines are checked against.
        fused = {"fused": True} if self.ctx.device.type == "cuda" else {}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.0, **fused)

    @torch.no_grad()
    def eval(self, t, x, ema=True):
        """f(t, x) without gradient, with the EMA parameters (simulation, asbm.md §2.4) or the current
        ones (the AM terminal adjoint uses the non-EMA corrector, §2.2)."""
        return (self.ema if ema else self.net)(t, x)

    def step(self, t, x, w, y):
        """One AdamW step on the global minibatch (t [n], x [n, …], w [n] or None, y like x), then the
        EMA update. Returns this rank's share of the global loss as a 0-d float64 tensor on the device
        (their sum over ranks is L at the parameters before the step; reading it is left to the
        caller, once an epoch, so a GPU is not synchronised every step)."""
        ctx = self.ctx
        n = t.shape[0]
        lo, hi = ctx.shard(n)
        d = y[0].numel()
        if hi > lo:
            f = self.ddp(t[lo:hi], x[lo:hi])
            if w is not None:
                f = f * w[lo:hi].view(-1, *([1] * (f.dim() - 1)))
            s = ((f - y[lo:hi]) ** 2).sum()
            loss = s * (ctx.world / (n * d))
            part = s.detach().to(torch.float64) / (n * d)
        else:
            # A rank whose shard of a short last batch is empty still joins DDP's gradient all-reduce.
            loss = self.ddp(t[:1], x[:1]).sum() * 0.0
            part = torch.zeros((), dtype=torch.float64, device=ctx.device)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            # e ← dcy·e + (1 − dcy)·p, the per-tensor mul_/add_ batched over all tensors (same arithmetic).
            dcy, ema = self.ema_decay, list(self.ema.parameters())
            torch._foreach_mul_(ema, dcy)
            torch._foreach_add_(ema, list(self.net.parameters()), alpha=1 - dcy)
        return part

    def state(self):
        """Everything needed to resume: parameters, EMA, optimiser (on the CPU)."""
        cpu = lambda sd: {k: v.detach().cpu().clone() for k, v in sd.items()}
        return {"net": cpu(self.net.state_dict()), "ema": cpu(self.ema.state_dict()),
                "opt": _to(self.opt.state_dict(), torch.device("cpu"))}

    def set_state(self, st):
        self.net.load_state_dict(st["net"])
        self.ema.load_state_dict(st["ema"])
        self.reset_optimizer()
        self.opt.load_state_dict(st["opt"])  # moves the moments to the parameters' device
        for group in self.opt.param_groups:
            group["lr"] = self.lr  # a resumed run's --lr overrides the stored one

    def ema_state(self):
        """The EMA parameters as a CPU state dict: what a finished phase keeps and the model file gets
        (the released checkpoints are EMA models, asbm.md §3.2)."""
        return {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}


class Frozen:
    """A finished network evaluated without gradient (the frozen EMA control of stage 2, the teacher)."""

    def __init__(self, ctx, arch, state_dict):
        self.net = build_net(arch)
        self.net.load_state_dict(state_dict)
        self.net = self.net.to(ctx.device).requires_grad_(False)

    @torch.no_grad()
    def eval(self, t, x, ema=True):
        return self.net(t, x)


class SigmaScaled:
    """A score-type network (score s_ψ, the baseline's score, the generator's s_ω) whose network outputs
    σ_t·s, seen by the loops as the score s (backend/asbm/scaled.go; `--score-scale sigma`). The
    bridge-matching and DSM losses are ‖σ_t s(t, x) − y‖² with y of size 1 at every t (asbm.md §3.2):
    the network regresses y itself instead of learning outputs of size 1/σ_t near t = 0. eval divides
    row i by σ_{t_i} of vp, the network's own base (model.SigmaScaled); step multiplies the regression
    weight w_i by 1/σ_{t_i}, so the loss, its minimiser as a score and the reported values are those of
    the raw parametrisation. Everything else (state, ema_state, …) is the wrapped model's: its weights
    are the network's own, which the model file stores with meta score_scale "sigma"."""

    def __init__(self, model, vp):
        self.model, self.vp = model, vp

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _inv(self, t):
        """1/σ_t per row as float32 (model.VP.InvSigma in float64 from the float32 time, then rounded)."""
        return self.vp.inv_sigma(t.to(torch.float64)).to(torch.float32)

    @torch.no_grad()
    def eval(self, t, x, ema=True):
        f = self.model.eval(t, x, ema)
        return f * self._inv(t).view(-1, *([1] * (f.dim() - 1)))

    def step(self, t, x, w, y):
        inv = self._inv(t)
        return self.model.step(t, x, inv if w is None else w * inv, y)


def score_type(model, vp, scale):
    """model as the score it stands for under the run's --score-scale (backend/train Config.scoreModel
    and scoreNet): SigmaScaled on vp for "sigma", model itself for "raw"."""
    return SigmaScaled(model, vp) if scale == "sigma" else model


def _to(obj, device):
    """A copy of a nested optimiser state with its tensors moved to device."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device).clone()
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj
