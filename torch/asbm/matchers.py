"""The regressions, the simulation and the samplers of ASBM (backend/asbm/matchers.go, simulate.go,
stage1.go's terminal check, model/sample.go's PF-ODE), on whole global batches.

A regression is a tuple (t, x, w, y) with loss mean_{i,j}(w_i·f(t_i, x_i)_j − y_ij)² (Trainable.step).
Times are drawn in float64, rounded to float32 once, and every coefficient is computed in float64 from
the rounded time, so the network and the closed forms see the same t (as the Go matchers do). Each
tuple draws its n times first, then its bridge noise.
"""

import math

import torch

from .vp import rows

MIN_T = 1e-5  # t ~ U[1e-5, 1] for bridge and score matching (the code's min_t0, asbm.md §3.2, §7)


def sample_times(g, n, lo):
    """n times lo + (1−lo)·U as float32 (matchers.py Matcher.sample_t)."""
    u = torch.rand(n, generator=g, device=g.device, dtype=torch.float64)
    return (u * (1 - lo) + lo).to(torch.float32)


def bridge_sample(vp, t, x0, x1, eps):
    """x_t = a_t x0 + b_t x1 + γ_t ε, a draw from the base bridge p^base_{t|0,1}(·|x0, x1) (§1.2)."""
    a, b, g2 = vp.bridge(t.to(torch.float64))
    return rows(a, x0) * x0 + rows(b, x0) * x1 + rows(torch.sqrt(g2), x0) * eps


def am_tuple(vp, g, x0, x1, a1):
    """Adjoint matching (§2.2): t ~ U[0, 1], X_t from the base bridge (the reciprocal trick: resampled,
    not taken from the simulated path), target −κ_t·a_1 (the VP lean adjoint), weight 1."""
    t = sample_times(g, x0.shape[0], 0.0)
    xt = bridge_sample(vp, t, x0, x1, torch.randn(x0.shape, generator=g, device=g.device))
    return t, xt, None, -rows(vp.kappa(t.to(torch.float64)), a1) * a1


def cm_tuple(vp, x0, x1):
    """Corrector matching (§2.3): t = 1, x = x1, target ∇_{x1} log p^base_{1|0}(x1|x0) =
    (α_1 x0 − x1)/(σ_v²(1−α_1²)) (variance clamped at 1e-12 like the code), weight 1."""
    a1, v = vp.alpha(1.0), max(vp.sigma2(1.0), 1e-12)
    t = torch.ones(x0.shape[0], device=x0.device)
    return t, x1, None, (a1 * x0 - x1) / v


def bm_tuple(vp, g, x0, x1):
    """Stage-2 bridge matching (§3.2): t ~ U[1e-5, 1], X_t from the bridge, weight σ_t, target
    (α_t x0 − X_t)/σ_t, i.e. the loss ‖σ_t s(t, X_t) − (α_t x0 − X_t)/σ_t‖²."""
    t = sample_times(g, x0.shape[0], MIN_T)
    xt = bridge_sample(vp, t, x0, x1, torch.randn(x0.shape, generator=g, device=g.device))
    td = t.to(torch.float64)
    sd = torch.sqrt(vp.sigma2(td).clamp(min=1e-12))
    return t, xt, sd.to(torch.float32), (rows(vp.alpha(td), x0) * x0 - xt) / rows(sd, xt)


def dsm_tuple(vp, g, x0):
    """The memoryless baseline's denoising score matching (§3.2, train_score_matching): t ~ U[1e-5, 1],
    X_t = α_t x0 + σ_t ε, weight σ_t, target −ε: the loss ‖σ_t s(t, X_t) + ε‖²."""
    t = sample_times(g, x0.shape[0], MIN_T)
    eps = torch.randn(x0.shape, generator=g, device=g.device)
    td = t.to(torch.float64)
    sd = torch.sqrt(vp.sigma2(td))
    return t, rows(vp.alpha(td), x0) * x0 + rows(sd, x0) * eps, sd.to(torch.float32), -eps


def gen_tuple(vp, z, x0):
    """The one-step generator's regression on a PF-ODE pair (z, x0) (§4.3(a)): with G(z) =
    (z + σ_1² g(1, z))/α_1 (§4.2), ‖G(z) − x0‖² = ‖(σ_1²/α_1)·g(1, z) − (x0 − z/α_1)‖²."""
    a1, s2 = vp.alpha(1.0), vp.sigma2(1.0)
    n = z.shape[0]
    return (torch.ones(n, device=z.device), z, torch.full((n,), s2 / a1, device=z.device), x0 - z / a1)


def reference_coupling(vp, g, x0):
    """X_1 = α_1 x0 + σ_v√(1−α_1²) ε: the init-stage corrector-matching pairs (§2.3)."""
    eps = torch.randn(x0.shape, generator=g, device=g.device)
    return vp.alpha(1.0) * x0 + math.sqrt(vp.sigma2(1.0)) * eps


@torch.no_grad()
def simulate(u, vp, x0, nfe, g):
    """X_1 of the controlled forward SDE dX = [f + g²u]dt + g dW from x0 by Euler–Maruyama on
    linspace(0, 1, nfe) — nfe points, nfe−1 steps — with noise on every step including the last
    (§2.4, sdes.py sdeint). u is a network's eval (the EMA control) or None for the base process."""
    x = x0.clone()
    steps = nfe - 1
    tv = torch.empty(x.shape[0], device=x.device)
    for k in range(steps):
        tk = k / steps
        dt = (k + 1) / steps - tk
        beta, g2 = vp.beta(tk), vp.g2(tk)
        drift = -0.5 * beta * x
        if u is not None:
            drift = drift + g2 * u(tv.fill_(tk), x)
        x = x + drift * dt + math.sqrt(g2 * dt) * torch.randn(x.shape, generator=g, device=g.device)
    return x


@torch.no_grad()
def terminal_adjoint(prior, h, x1):
    """a_1 = ∇E(x_1) + h(1, x_1) (§2.2) with the current, non-EMA corrector h, without gradient."""
    return prior.grad_e(x1) + h(torch.ones(x1.shape[0], device=x1.device), x1)


@torch.no_grad()
def sample_ode(score, control, vp, x, steps):
    """The PF-ODE dx/dt = −½β(t)x + ½g(t)²(u − s) from t = 1 to 0 by Heun with a final Euler step on
    t_k = 1 − k/N (§3.3; model/sample.go Run "ode"). control None means u ≡ 0 (the baseline)."""
    tv = torch.empty(x.shape[0], device=x.device)

    def v(t, y):
        g2 = vp.g2(t)
        out = -0.5 * vp.beta(t) * y - 0.5 * g2 * score(tv.fill_(t), y)
        if control is not None:
            out = out + 0.5 * g2 * control(tv.fill_(t), y)
        return out

    dt = 1.0 / steps
    for k in range(steps):
        tk, tk1 = 1 - k / steps, 1 - (k + 1) / steps
        v1 = v(tk, x)
        if k < steps - 1:
            xt = x - dt * v1
            x = x - 0.5 * dt * (v1 + v(tk1, xt))
        else:
            x = x - dt * v1
    return x


def lambda_max(x):
    """λ_max of the sample covariance X_cᵀX_c/(n−1) of the rows of x (runner.py cov_eigenspectrum_test;
    backend/asbm LambdaMax), from the smaller of the covariance and the Gram matrix, in float64."""
    x = x.flatten(1).to(torch.float64)
    n, d = x.shape
    xc = x - x.mean(dim=0, keepdim=True)
    m = xc.T @ xc if d <= n else xc @ xc.T
    return float(torch.linalg.eigvalsh(m / (n - 1))[-1])


RADIAL_TOLERANCE = 0.08


def terminal_check(x1, sigma_p, g):
    """The terminal-marginal check of §2.6 on simulated X_1 (stage1.go TerminalCheck): λ_max of their
    sample covariance against that of as many prior samples, and the radial statistics of ‖X_1‖²
    against dσ_p² and 2dσ_p⁴. Returns a dict (pass = both)."""
    n, d = x1.shape[0], x1[0].numel()
    lam = lambda_max(x1)
    lam_prior = lambda_max(sigma_p * torch.randn(x1.shape, generator=g, device=g.device))
    s = x1.flatten(1).to(torch.float64).pow(2).sum(dim=1)
    m, var = float(s.mean()), float((s * s).mean() - s.mean() ** 2)
    s2 = sigma_p ** 2
    me, ve = abs(m - d * s2) / (d * s2), abs(var - 2 * d * s2 * s2) / (2 * d * s2 * s2)
    eig, radial = lam <= lam_prior, me < RADIAL_TOLERANCE and ve < RADIAL_TOLERANCE
    return {"n": n, "lambda_max": lam, "lambda_prior": lam_prior, "mean_sqnorm": m, "var_sqnorm": var,
            "mean_err": me, "var_err": ve, "eigen_pass": eig, "radial_pass": radial, "pass": eig and radial}
