package model

import (
	"fmt"
	"math"
)

// VP is the variance-preserving base (reference) SDE of asbm.md §1.2,
//
//	dX_t = f(t, X_t) dt + g(t) dW_t,  f(t, x) = −½β(t)x,  g(t)² = σ_v²β(t),  β(t) = β0 + (β1−β0)t,
//
// with t = 0 the data side and t = 1 the prior side. Every closed form below is a function of t alone;
// callers apply it to data row by row.
type VP struct {
	Beta0  float64 // β at t = 0 (data side)
	Beta1  float64 // β at t = 1 (prior side); asbm.md calls it β_max
	SigmaV float64 // σ_v, the diffusion scale
}

// Validate reports a schedule the closed forms cannot use: non-finite values, a negative β, a zero
// integral ∫β (then α_1 = 1 and the bridge is undefined), or σ_v ≤ 0.
func (v VP) Validate() error {
	for _, p := range []float64{v.Beta0, v.Beta1, v.SigmaV} {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			return fmt.Errorf("vp %+v: parameters must be finite", v)
		}
	}
	if v.Beta0 < 0 || v.Beta1 < 0 {
		return fmt.Errorf("vp %+v: β0 and β1 must be ≥ 0", v)
	}
	if v.Beta0+v.Beta1 <= 0 {
		return fmt.Errorf("vp %+v: β0 + β1 must be > 0 (otherwise α_1 = 1 and the bridge is undefined)", v)
	}
	if v.SigmaV <= 0 {
		return fmt.Errorf("vp %+v: σ_v must be > 0", v)
	}
	return nil
}

// Beta is β(t) = β0 + (β1−β0)t, linear in t like the code's torch.lerp (asbm.md §1.2).
func (v VP) Beta(t float64) float64 { return v.Beta0 + (v.Beta1-v.Beta0)*t }

// G2 is the squared diffusion g(t)² = σ_v²β(t) (asbm.md §1.2).
func (v VP) G2(t float64) float64 { return v.SigmaV * v.SigmaV * v.Beta(t) }

// Drift writes the base drift f(t, x) = −½β(t)x of every entry of x into dst (which may alias x) and
// returns dst (asbm.md §1.2).
func (v VP) Drift(t float64, x, dst []float32) []float32 {
	c := -0.5 * v.Beta(t)
	for i, xi := range x {
		dst[i] = float32(c * float64(xi))
	}
	return dst
}

// Alpha is α_t = exp(−½∫_0^t β) = exp(−¼ t(β(t)+β0)), the mean factor of p_{t|0} (the code's
// "kappa_bar_t", asbm.md §1.2).
func (v VP) Alpha(t float64) float64 { return math.Exp(-0.25 * t * (v.Beta(t) + v.Beta0)) }

// Kappa is κ_t = exp(−½∫_t^1 β) = exp(−¼(1−t)(β(t)+β1)), the mean factor of p_{1|t} and the lean
// adjoint's decay (asbm.md §1.2, §2.2). α_1 = α_t κ_t.
func (v VP) Kappa(t float64) float64 { return math.Exp(-0.25 * (1 - t) * (v.Beta(t) + v.Beta1)) }

// Sigma2 is σ_t² = σ_v²(1−α_t²), the variance of p_{t|0} (asbm.md §1.2), clamped at 0 like the code.
func (v VP) Sigma2(t float64) float64 {
	a := v.Alpha(t)
	return math.Max(0, v.SigmaV*v.SigmaV*(1-a*a))
}

// Sigma is σ_t = √(σ_t²).
func (v VP) Sigma(t float64) float64 { return math.Sqrt(v.Sigma2(t)) }

// InvSigma is 1/σ_t, with σ_t² floored at 1e-12 so that t = 0 gives a large finite number: the factor
// that turns a σ-scaled network's output σ_t·s into the score s (SigmaScaled).
func (v VP) InvSigma(t float64) float64 { return 1 / math.Sqrt(math.Max(v.Sigma2(t), 1e-12)) }

// Bridge returns the coefficients of the base bridge p^base_{t|0,1}(x | x0, x1) = N(a x0 + b x1, γ² I)
// (asbm.md §1.2):
//
//	a = α_t(1−κ_t²)/(1−α_1²),  b = κ_t(1−α_t²)/(1−α_1²),  γ² = σ_v²(1−α_t²)(1−κ_t²)/(1−α_1²).
//
// As in the official code (components/sdes.py VPSDE.sample_posterior) the variance's denominator gets
// +1e-8 and a negative variance is clamped to 0; a and b are exact.
func (v VP) Bridge(t float64) (a, b, gamma2 float64) {
	al, ka, a1 := v.Alpha(t), v.Kappa(t), v.Alpha(1)
	den := 1 - a1*a1
	a = al * (1 - ka*ka) / den
	b = ka * (1 - al*al) / den
	gamma2 = (1 - al*al) * (1 - ka*ka) / (den + 1e-8)
	if gamma2 < 0 {
		gamma2 = 0
	}
	return a, b, v.SigmaV * v.SigmaV * gamma2
}

// Posterior is the base bridge from 0 to t at s (0 ≤ s < t): X_s given X_0 = x0 and X_t = x is
// N(a·x0 + b·x, γ²I), with κ = α_t/α_s the transition factor from s to t (asbm.md §1.2's bridge
// with 1 replaced by t):
//
//	a = α_s(1−κ²)/(1−α_t²),  b = κ(1−α_s²)/(1−α_t²),  γ² = σ_v²(1−α_s²)(1−κ²)/(1−α_t²).
func (v VP) Posterior(s, t float64) (a, b, gamma2 float64) {
	as, at := v.Alpha(s), v.Alpha(t)
	k := at / as
	den := 1 - at*at
	a = as * (1 - k*k) / den
	b = k * (1 - as*as) / den
	gamma2 = v.SigmaV * v.SigmaV * math.Max(0, (1-as*as)*(1-k*k)/den)
	return a, b, gamma2
}
