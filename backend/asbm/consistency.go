package asbm

import (
	"errors"
	"fmt"
	"math"
)

// Self-consistency of the learned control and score along the forward path (issue 13: why does
// ASBM's PF-ODE plateau?).
//
// The PF-ODE dx/dt = f + ½g²(u_θ − s_ψ) (asbm.md §3.3) is exact when the forward process with control
// u_θ is the Schrödinger bridge and s_ψ is its backward score. On the bridge (a mixture of base
// bridges, asbm.md §1.4, §3.2) both networks are conditional expectations of closed-form targets:
//
//	u*(t, x) = E[∇_x log p^base_{1|t}(X_1 | x) | X_t = x] = E[κ_t(X_1 − κ_t x) | X_t = x] / σ_{1|t}²,
//	s*(t, x) = E[∇_x log p^base_{t|0}(x | X_0) | X_t = x] = −E[x − α_t X_0 | X_t = x] / σ_t²,
//
// with σ_{1|t}² = σ_v²(1 − κ_t²) and σ_t² = σ_v²(1 − α_t²) (§1.2). X_1 given X_t = x is drawn by
// continuing the learned forward SDE from (t, x) to 1, and X_0 given X_t = x by the learned backward
// SDE from (t, x) to 0, so each network can be compared with the expectation its own process implies,
// by Monte Carlo, with no other network and no ground truth. A network that is right for the process
// it defines scores zero (up to the Euler error); the squared errors below are what a control or a
// score adds to the ODE's drift error, each scaled by ½g(t)² there.

// ConsistencyStats is one network's self-consistency error at one time.
type ConsistencyStats struct {
	T float64 `json:"t"`
	// Err2 is the mean over anchors and values of (net(t, x) − E[target | X_t = x])², with the Monte
	// Carlo mean's variance (sample variance / Draws) subtracted so that it estimates the squared error
	// itself; it can come out slightly negative for a network that is right.
	Err2 float64 `json:"err2"`
	SE   float64 `json:"se"` // standard error of Err2 over the anchors
	// Net2 and Target2 are the mean squares of the network's output and of the expected target (the
	// Monte Carlo mean's square less its variance): the scale Err2 is to be read against.
	Net2    float64 `json:"net2"`
	Target2 float64 `json:"target2"`
	Anchors int     `json:"anchors"`
	Draws   int     `json:"draws"`
	Steps   int     `json:"steps"` // Euler–Maruyama steps of each continuation
}

// Rel is √(Err2 / Target2): the RMS error as a fraction of the RMS target (0 when Target2 is 0).
func (c ConsistencyStats) Rel() float64 {
	if c.Target2 <= 0 {
		return 0
	}
	return math.Sqrt(math.Max(c.Err2, 0) / c.Target2)
}

// consistencyChunk is the rows one network call takes in Evolve (the memory of a U-Net's activations
// grows with it).
const consistencyChunk = 128

// Evolve integrates, in place on the rows of x (width dim), the forward SDE dX = [f + g²net]dt + g dW
// from time from to time to > from, or the reverse-time SDE dX = [f − g²net]dt + g d\bar W from
// from down to to < from (asbm.md §3.3's sampler), by Euler–Maruyama with steps uniform steps and
// noise on every step, each net evaluated at the step's start. net nil is the uncontrolled base.
func Evolve(net Net, vp VP, x []float32, dim int, from, to float64, steps int, noise *Noise) error {
	if err := vp.Validate(); err != nil {
		return err
	}
	n, err := rowsOf(x, dim)
	if err != nil {
		return fmt.Errorf("evolve: %w", err)
	}
	if net != nil && net.Dim() != dim {
		return fmt.Errorf("evolve: network has dimension %d, data %d", net.Dim(), dim)
	}
	if steps < 1 {
		return fmt.Errorf("evolve: steps = %d must be ≥ 1", steps)
	}
	if noise == nil {
		return errors.New("evolve: nil noise")
	}
	if from < 0 || from > 1 || to < 0 || to > 1 {
		return fmt.Errorf("evolve: times %g → %g must lie in [0, 1]", from, to)
	}
	// Forward: X += [f + g²·net]Δ; backward: X −= [f − g²·net]Δ (Δ > 0 both ways).
	dir := 1.0
	if to < from {
		dir = -1
	}
	h := (to - from) / float64(steps)
	dt := math.Abs(h)
	for lo := 0; lo < n; lo += consistencyChunk {
		hi := min(lo+consistencyChunk, n)
		xc := x[lo*dim : hi*dim]
		t, out, eps := make([]float32, hi-lo), make([]float32, len(xc)), make([]float32, len(xc))
		for k := 0; k < steps; k++ {
			eulerStep(net, vp, xc, t, out, eps, from+float64(k)*h, dt, dir, noise)
		}
	}
	if !allFinite(x) {
		return errors.New("evolve: the SDE diverged (non-finite values)")
	}
	return nil
}

// StepsFor is the number of Euler steps covering |to − from| at perUnit steps per unit time (≥ 1).
func StepsFor(from, to float64, perUnit int) int {
	return max(1, int(math.Round(math.Abs(to-from)*float64(perUnit))))
}

// ControlConsistency measures the control u against the expectation of its target under its own
// forward process at time t ∈ (0, 1) (see the comment above): for each anchor row of xt it continues
// the forward SDE with u from t to 1, draws times, and compares u(t, x) with the mean of
// κ_t(X_1 − κ_t x)/σ_{1|t}². perUnit is the Euler steps per unit time.
func ControlConsistency(u Net, vp VP, xt []float32, dim int, t float64, draws, perUnit int, noise *Noise) (ConsistencyStats, error) {
	if u == nil {
		return ConsistencyStats{}, errors.New("control consistency: nil control")
	}
	if !(t > 0 && t < 1) {
		return ConsistencyStats{}, fmt.Errorf("control consistency: t = %g must lie in (0, 1)", t)
	}
	k := vp.Kappa(t)
	s2 := vp.SigmaV * vp.SigmaV * (1 - k*k)
	// target(X_1) = a·X_1 + b·x: ∇_x log N(X_1; κx, σ_{1|t}²).
	return consistency(u, vp, xt, dim, t, 1, draws, perUnit, k/s2, -k*k/s2, noise)
}

// ScoreConsistency measures the score s against the expectation of its target under its own backward
// process at time t ∈ (0, 1]: for each anchor row of xt it runs the reverse-time SDE with s from t to
// 0, draws times, and compares s(t, x) with the mean of −(x − α_t X_0)/σ_t².
func ScoreConsistency(s Net, vp VP, xt []float32, dim int, t float64, draws, perUnit int, noise *Noise) (ConsistencyStats, error) {
	if s == nil {
		return ConsistencyStats{}, errors.New("score consistency: nil score")
	}
	if !(t > 0 && t <= 1) {
		return ConsistencyStats{}, fmt.Errorf("score consistency: t = %g must lie in (0, 1]", t)
	}
	al, s2 := vp.Alpha(t), vp.Sigma2(t)
	// target(X_0) = a·X_0 + b·x: ∇_x log N(x; α_t X_0, σ_t²).
	return consistency(s, vp, xt, dim, t, 0, draws, perUnit, al/s2, -1/s2, noise)
}

// consistency continues every anchor draws times from t to end with net, and scores net(t, x) against
// the Monte Carlo mean of the linear target a·X_end + b·x.
func consistency(net Net, vp VP, xt []float32, dim int, t, end float64, draws, perUnit int, a, b float64, noise *Noise) (ConsistencyStats, error) {
	p, err := rowsOf(xt, dim)
	if err != nil {
		return ConsistencyStats{}, fmt.Errorf("consistency: %w", err)
	}
	if draws < 2 {
		return ConsistencyStats{}, fmt.Errorf("consistency: draws = %d, need ≥ 2 for the variance correction", draws)
	}
	if perUnit < 1 {
		return ConsistencyStats{}, fmt.Errorf("consistency: %d steps per unit time must be ≥ 1", perUnit)
	}
	steps := StepsFor(t, end, perUnit)
	rep := make([]float32, p*draws*dim)
	for i := 0; i < p; i++ {
		for m := 0; m < draws; m++ {
			copy(rep[(i*draws+m)*dim:(i*draws+m+1)*dim], xt[i*dim:(i+1)*dim])
		}
	}
	if err := Evolve(net, vp, rep, dim, t, end, steps, noise); err != nil {
		return ConsistencyStats{}, err
	}
	ts := make([]float32, p)
	for i := range ts {
		ts[i] = float32(t)
	}
	pred := make([]float32, len(xt))
	for lo := 0; lo < p; lo += consistencyChunk {
		hi := min(lo+consistencyChunk, p)
		net.Eval(ts[lo:hi], xt[lo*dim:hi*dim], pred[lo*dim:hi*dim])
	}
	st := ConsistencyStats{T: t, Anchors: p, Draws: draws, Steps: steps}
	per := make([]float64, p) // each anchor's corrected squared error per value
	y := make([]float64, draws)
	for i := 0; i < p; i++ {
		var e2, n2, t2 float64
		for j := 0; j < dim; j++ {
			x := float64(xt[i*dim+j])
			var mean float64
			for m := 0; m < draws; m++ {
				y[m] = a*float64(rep[(i*draws+m)*dim+j]) + b*x
				mean += y[m]
			}
			mean /= float64(draws)
			var v float64
			for _, ym := range y {
				v += (ym - mean) * (ym - mean)
			}
			v /= float64(draws - 1)
			d := float64(pred[i*dim+j]) - mean
			// E[(pred − ȳ)²] = (pred − E y)² + Var(y)/M: subtract the Monte Carlo part.
			e2 += d*d - v/float64(draws)
			n2 += float64(pred[i*dim+j]) * float64(pred[i*dim+j])
			t2 += mean*mean - v/float64(draws) // likewise: estimates (E y)²
		}
		per[i] = e2 / float64(dim)
		st.Net2 += n2 / float64(dim) / float64(p)
		st.Target2 += t2 / float64(dim) / float64(p)
	}
	var mean, ss float64
	for _, e := range per {
		mean += e
	}
	mean /= float64(p)
	for _, e := range per {
		ss += (e - mean) * (e - mean)
	}
	st.Err2 = mean
	if p > 1 {
		st.SE = math.Sqrt(ss / float64(p-1) / float64(p))
	}
	return st, nil
}
