"""The VP base SDE of asbm.md §1.2 and the energy prior of §1.3 (model/vp.go, backend/asbm/vp.go).

    dX_t = f(t, X_t) dt + g(t) dW_t,  f(t, x) = −½β(t)x,  g(t)² = σ_v²β(t),  β(t) = β0 + (β1−β0)t

t = 0 is the data side, t = 1 the prior side. Every closed form is a function of t alone: the
methods take Python floats or float64 tensors of per-row times and return the same; callers compute
coefficients in float64 and apply them to float32 data, as the Go code does.
"""

import math

import torch


def _exp(x):
    return torch.exp(x) if isinstance(x, torch.Tensor) else math.exp(x)


class VP:
    """β(t) = β0 + (β1−β0)t, σ_v; validate() refuses what the closed forms cannot use."""

    def __init__(self, beta0, beta1, sigma_v=1.0):
        self.beta0, self.beta1, self.sigma_v = float(beta0), float(beta1), float(sigma_v)
        self.validate()

    def __repr__(self):
        return f"VP(beta0={self.beta0:g}, beta1={self.beta1:g}, sigma_v={self.sigma_v:g})"

    def validate(self):
        for p in (self.beta0, self.beta1, self.sigma_v):
            if not math.isfinite(p):
                raise ValueError(f"{self!r}: parameters must be finite")
        if self.beta0 < 0 or self.beta1 < 0:
            raise ValueError(f"{self!r}: β0 and β1 must be ≥ 0")
        if self.beta0 + self.beta1 <= 0:
            raise ValueError(f"{self!r}: β0 + β1 must be > 0 (otherwise α_1 = 1 and the bridge is undefined)")
        if self.sigma_v <= 0:
            raise ValueError(f"{self!r}: σ_v must be > 0")

    def beta(self, t):
        """β(t), linear in t like the code's torch.lerp (§1.2)."""
        return self.beta0 + (self.beta1 - self.beta0) * t

    def g2(self, t):
        """g(t)² = σ_v²β(t)."""
        return self.sigma_v ** 2 * self.beta(t)

    def alpha(self, t):
        """α_t = exp(−½∫_0^t β) = exp(−¼t(β(t)+β0)), the mean factor of p_{t|0} (§1.2)."""
        return _exp(-0.25 * t * (self.beta(t) + self.beta0))

    def kappa(self, t):
        """κ_t = exp(−½∫_t^1 β) = exp(−¼(1−t)(β(t)+β1)), the lean adjoint's decay (§1.2, §2.2)."""
        return _exp(-0.25 * (1 - t) * (self.beta(t) + self.beta1))

    def sigma2(self, t):
        """σ_t² = σ_v²(1−α_t²), clamped at 0 like the code."""
        a = self.alpha(t)
        v = self.sigma_v ** 2 * (1 - a * a)
        return v.clamp(min=0) if isinstance(v, torch.Tensor) else max(0.0, v)

    def inv_sigma(self, t):
        """1/σ_t with σ_t² floored at 1e-12 (model.VP.InvSigma): the factor that turns a σ-scaled
        score network's output σ_t·s into the score s (engine.SigmaScaled)."""
        v = self.sigma2(t)
        if isinstance(v, torch.Tensor):
            return 1 / torch.sqrt(v.clamp(min=1e-12))
        return 1 / math.sqrt(max(v, 1e-12))

    def bridge(self, t):
        """(a, b, γ²) of p^base_{t|0,1}(x|x0, x1) = N(a x0 + b x1, γ² I) (§1.2); as the code
        (sdes.py sample_posterior) the variance's denominator gets +1e-8 and is clamped at 0."""
        al, ka, a1 = self.alpha(t), self.kappa(t), self.alpha(1.0)
        den = 1 - a1 * a1
        a = al * (1 - ka * ka) / den
        b = ka * (1 - al * al) / den
        g2 = (1 - al * al) * (1 - ka * ka) / (den + 1e-8)
        g2 = g2.clamp(min=0) if isinstance(g2, torch.Tensor) else max(0.0, g2)
        return a, b, self.sigma_v ** 2 * g2


class Prior:
    """ν = N(0, σ_p² I), E(x) = ‖x‖²/(2σ_p²) (§1.3). grad_e clips ∇E to norm max_grad_norm over each
    whole sample, as backend/train configures backend/asbm.DefaultPrior (Axis 0; the code's
    max_grad_E_norm = 100 with +1e-6 in the denominator)."""

    def __init__(self, sigma_p=1.0, max_grad_norm=100.0):
        if not (sigma_p > 0 and math.isfinite(sigma_p)) or not max_grad_norm >= 0:
            raise ValueError(f"prior σ_p = {sigma_p} must be finite and > 0, the clip ≥ 0")
        self.sigma_p, self.max_grad_norm = float(sigma_p), float(max_grad_norm)

    def grad_e(self, x):
        """∇E(x) = x/σ_p² per row of the batch x, each row clipped to norm max_grad_norm."""
        inv = 1 / self.sigma_p ** 2
        g = x.to(torch.float64) * inv
        if self.max_grad_norm > 0:
            n = g.flatten(1).norm(dim=1)
            c = torch.clamp(self.max_grad_norm / (n + 1e-6), max=1.0)
            g = g * c.view(-1, *([1] * (x.dim() - 1)))
        return g.to(x.dtype)


def rows(c, like):
    """c (a float64 tensor of per-row values) shaped to broadcast over the rows of like, as float32."""
    return c.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
