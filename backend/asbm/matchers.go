package asbm

import (
	"errors"
	"fmt"
	"math"
)

// MinT is the smallest time of bridge and denoising score matching, t ~ U[MinT, 1] (the code's
// min_t0 = 1e-5, asbm.md §3.2, §7).
const MinT = 1e-5

// Tuple is one regression minibatch in the form Model.Step takes: the loss is
// L = mean_{i,j}(W_i·f(T_i, X_i)_j − Y_ij)², with one time and one weight per row (W nil means all ones)
// and X, Y of n rows. Matchers build tuples; the training loops own the networks (torchcfm style).
type Tuple struct {
	T, X, W, Y []float32
}

// Rows is the number of rows of the tuple.
func (tp Tuple) Rows() int { return len(tp.T) }

// sampleTimes draws n times uniform on [lo, hi] as the code does, lo + (hi−lo)·U (matchers.py
// Matcher.sample_t, where hi = 1), rounded to float32 once so the network and the closed forms see
// the same t.
func sampleTimes(n int, lo, hi float64, noise *Noise) []float32 {
	t := make([]float32, n)
	r := noise.Rand()
	for i := range t {
		t[i] = float32(r.Float64()*(hi-lo) + lo)
	}
	return t
}

// bridgeSample writes x_t = a_t x0 + b_t x1 + γ_t ε, a draw from the base bridge
// p^base_{t|0,1}(·|x0, x1) of asbm.md §1.2, for row times t and standard normal eps.
func bridgeSample(vp VP, t, x0, x1, eps []float32, dim int) []float32 {
	xt := make([]float32, len(x0))
	for i, ti := range t {
		a, b, g2 := vp.Bridge(float64(ti))
		g := math.Sqrt(g2)
		for j := i * dim; j < (i+1)*dim; j++ {
			xt[j] = float32(a*float64(x0[j]) + b*float64(x1[j]) + g*float64(eps[j]))
		}
	}
	return xt
}

// checkPairs validates the shapes shared by the matchers: every slice a whole batch of the same n rows.
func checkPairs(dim int, noise *Noise, needNoise bool, xs ...[]float32) (int, error) {
	n, err := rowsOf(xs[0], dim)
	if err != nil {
		return 0, err
	}
	for _, x := range xs[1:] {
		if len(x) != len(xs[0]) {
			return 0, fmt.Errorf("batches of %d and %d values do not pair up", len(xs[0]), len(x))
		}
	}
	if needNoise && noise == nil {
		return 0, errors.New("nil noise")
	}
	return n, nil
}

// TerminalAdjoint is the terminal adjoint a_1 = ∇E(x_1) + h(1, x_1) of asbm.md §2.2 for a batch x1 of
// width dim, with ∇E clipped as in §1.3. h is the current (non-EMA) corrector, evaluated without
// gradient; nil is the zero corrector (the first AM stage of init_stage=adjoint).
func TerminalAdjoint(prior Prior, h Net, x1 []float32, dim int) ([]float32, error) {
	n, err := rowsOf(x1, dim)
	if err != nil {
		return nil, fmt.Errorf("terminal adjoint: %w", err)
	}
	a1 := make([]float32, len(x1))
	if err := prior.GradE(x1, dim, a1); err != nil {
		return nil, fmt.Errorf("terminal adjoint: %w", err)
	}
	if h == nil {
		return a1, nil
	}
	if h.Dim() != dim {
		return nil, fmt.Errorf("terminal adjoint: corrector has dimension %d, data %d", h.Dim(), dim)
	}
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	hv := make([]float32, len(x1))
	h.Eval(ones, x1, hv)
	for i := range a1 {
		a1[i] += hv[i]
	}
	return a1, nil
}

// AMTuple is the adjoint-matching regression of asbm.md §2.2 on buffer rows (x0, x1, a1):
// t ~ U[0,1], X_t ~ p^base_{t|0,1}(·|x0, x1) (the reciprocal trick: resampled from the base bridge, not
// taken from the simulated path), target −κ_t·a1 (the VP lean adjoint ã_t = κ_t a_1), weight 1.
// It draws the n times first, then the n×dim bridge noise.
func AMTuple(vp VP, x0, x1, a1 []float32, dim int, noise *Noise) (Tuple, error) {
	if err := vp.Validate(); err != nil {
		return Tuple{}, err
	}
	n, err := checkPairs(dim, noise, true, x0, x1, a1)
	if err != nil {
		return Tuple{}, fmt.Errorf("AM tuple: %w", err)
	}
	t := sampleTimes(n, 0, 1, noise)
	xt := bridgeSample(vp, t, x0, x1, noise.Normal(len(x0)), dim)
	y := make([]float32, len(x0))
	for i, ti := range t {
		k := vp.Kappa(float64(ti))
		for j := i * dim; j < (i+1)*dim; j++ {
			y[j] = float32(-k * float64(a1[j]))
		}
	}
	return Tuple{T: t, X: xt, Y: y}, nil
}

// CMTuple is the corrector-matching regression of asbm.md §2.3: t = 1, x = x1, target
// ∇_{x1} log p^base_{1|0}(x1|x0) = (α_1 x0 − x1)/(σ_v²(1−α_1²)), weight 1 (the code clamps the variance
// at 1e-12).
func CMTuple(vp VP, x0, x1 []float32, dim int) (Tuple, error) {
	if err := vp.Validate(); err != nil {
		return Tuple{}, err
	}
	n, err := checkPairs(dim, nil, false, x0, x1)
	if err != nil {
		return Tuple{}, fmt.Errorf("CM tuple: %w", err)
	}
	a1 := vp.Alpha(1)
	v := math.Max(vp.Sigma2(1), 1e-12)
	t := make([]float32, n)
	for i := range t {
		t[i] = 1
	}
	y := make([]float32, len(x0))
	for j := range y {
		y[j] = float32((a1*float64(x0[j]) - float64(x1[j])) / v)
	}
	return Tuple{T: t, X: append([]float32(nil), x1...), Y: y}, nil
}

// ReferenceCoupling draws X_1 from the base transition, X_1 = α_1 x0 + σ_v√(1−α_1²) ε: the init-stage
// corrector-matching pairs of asbm.md §2.3.
func ReferenceCoupling(vp VP, x0 []float32, noise *Noise) ([]float32, error) {
	if err := vp.Validate(); err != nil {
		return nil, err
	}
	if noise == nil {
		return nil, errors.New("reference coupling: nil noise")
	}
	a1, s1 := vp.Alpha(1), vp.Sigma(1)
	x1 := noise.Normal(len(x0))
	for j := range x1 {
		x1[j] = float32(a1*float64(x0[j]) + s1*float64(x1[j]))
	}
	return x1, nil
}

// BMTuple is the stage-2 bridge-matching regression of asbm.md §3.2: t ~ U[1e-5, 1],
// X_t ~ p^base_{t|0,1}(·|x0, x1), weight w = σ_t, target (α_t x0 − X_t)/σ_t, so the loss is
// ‖σ_t s(t, X_t) − (α_t x0 − X_t)/σ_t‖² = σ_t²‖s − ∇log p^base_{t|0}(X_t|x0)‖². It draws the n times
// first, then the n×dim bridge noise.
func BMTuple(vp VP, x0, x1 []float32, dim int, noise *Noise) (Tuple, error) {
	if err := vp.Validate(); err != nil {
		return Tuple{}, err
	}
	n, err := checkPairs(dim, noise, true, x0, x1)
	if err != nil {
		return Tuple{}, fmt.Errorf("BM tuple: %w", err)
	}
	t := sampleTimes(n, MinT, 1, noise)
	xt := bridgeSample(vp, t, x0, x1, noise.Normal(len(x0)), dim)
	w := make([]float32, n)
	y := make([]float32, len(x0))
	for i, ti := range t {
		tt := float64(ti)
		al, sd := vp.Alpha(tt), math.Sqrt(math.Max(vp.Sigma2(tt), 1e-12))
		w[i] = float32(sd)
		for j := i * dim; j < (i+1)*dim; j++ {
			y[j] = float32((al*float64(x0[j]) - float64(xt[j])) / sd)
		}
	}
	return Tuple{T: t, X: xt, W: w, Y: y}, nil
}

// DSMTuple is the memoryless baseline's denoising score matching (asbm.md §3.2, runner.py
// train_score_matching): t ~ U[1e-5, 1], X_t = α_t x0 + σ_t ε, weight σ_t, target −ε, i.e. the loss
// ‖σ_t s(t, X_t) + ε‖². Use it with MemorylessVP. It draws the n times first, then the n×dim ε.
func DSMTuple(vp VP, x0 []float32, dim int, noise *Noise) (Tuple, error) {
	if err := vp.Validate(); err != nil {
		return Tuple{}, err
	}
	n, err := checkPairs(dim, noise, true, x0)
	if err != nil {
		return Tuple{}, fmt.Errorf("DSM tuple: %w", err)
	}
	t := sampleTimes(n, MinT, 1, noise)
	eps := noise.Normal(len(x0))
	xt := make([]float32, len(x0))
	w := make([]float32, n)
	for i, ti := range t {
		tt := float64(ti)
		al, sd := vp.Alpha(tt), vp.Sigma(tt)
		w[i] = float32(sd)
		for j := i * dim; j < (i+1)*dim; j++ {
			xt[j] = float32(al*float64(x0[j]) + sd*float64(eps[j]))
			eps[j] = -eps[j]
		}
	}
	return Tuple{T: t, X: xt, W: w, Y: eps}, nil
}

// GenTuple is the one-step generator's regression on a PF-ODE pair (z, x0) (asbm.md §4.3(a)): with
// G(z) = (z + σ_1² g(1, z))/α_1 (§4.2), ‖G(z) − x0‖² = ‖(σ_1²/α_1)·g(1, z) − (x0 − z/α_1)‖², so t = 1,
// x = z, w = σ_1²/α_1, y = x0 − z/α_1.
func GenTuple(vp VP, z, x0 []float32, dim int) (Tuple, error) {
	if err := vp.Validate(); err != nil {
		return Tuple{}, err
	}
	n, err := checkPairs(dim, nil, false, z, x0)
	if err != nil {
		return Tuple{}, fmt.Errorf("generator tuple: %w", err)
	}
	a1, s2 := vp.Alpha(1), vp.Sigma2(1)
	t := make([]float32, n)
	w := make([]float32, n)
	for i := range t {
		t[i], w[i] = 1, float32(s2/a1)
	}
	y := make([]float32, len(z))
	for j := range y {
		y[j] = float32(float64(x0[j]) - float64(z[j])/a1)
	}
	return Tuple{T: t, X: append([]float32(nil), z...), W: w, Y: y}, nil
}
