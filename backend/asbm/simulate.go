package asbm

import (
	"errors"
	"fmt"
	"math"
)

// DefaultSimBatch is the code's simulation batch samp_bs (asbm.md §2.4).
const DefaultSimBatch = 512

// Simulate integrates the controlled forward SDE dX = [f(t,X) + g(t)²u(t,X)]dt + g(t)dW from the rows
// of x0 (width dim) to t = 1 by Euler–Maruyama on the grid linspace(0, 1, nfe) — nfe points, nfe−1
// steps — with noise on every step including the last (asbm.md §2.4; sdes.py sdeint with
// zero_last_step_noise off):
//
//	X_{k+1} = X_k + [f(t_k,X_k) + g(t_k)² u(t_k,X_k)]Δ_k + g(t_k)√Δ_k ε_k.
//
// u nil is the uncontrolled base process. Rows are simulated in chunks of batch through u.Eval; noise
// is drawn chunk by chunk, step by step, row-major. The result is X_1, a new slice.
func Simulate(u Net, vp VP, x0 []float32, dim, nfe, batch int, noise *Noise) ([]float32, error) {
	if err := vp.Validate(); err != nil {
		return nil, err
	}
	n, err := rowsOf(x0, dim)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if u != nil && u.Dim() != dim {
		return nil, fmt.Errorf("simulate: control has dimension %d, data %d", u.Dim(), dim)
	}
	if nfe < 2 {
		return nil, fmt.Errorf("simulate: nfe = %d time points, need ≥ 2 (nfe−1 steps)", nfe)
	}
	if batch < 1 {
		return nil, fmt.Errorf("simulate: batch = %d must be ≥ 1", batch)
	}
	if noise == nil {
		return nil, errors.New("simulate: nil noise")
	}
	x := append([]float32(nil), x0...)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		simulateChunk(u, vp, x[lo*dim:hi*dim], hi-lo, dim, nfe, noise)
	}
	return x, nil
}

// simulateChunk runs the Euler–Maruyama loop of Simulate in place on m rows.
func simulateChunk(u Net, vp VP, x []float32, m, dim, nfe int, noise *Noise) {
	t := make([]float32, m)
	ctl := make([]float32, len(x))
	eps := make([]float32, len(x))
	steps := nfe - 1
	for k := 0; k < steps; k++ {
		// torch.linspace(0, 1, nfe): t_k = k/(nfe−1); Δ_k = t_{k+1} − t_k.
		tk := float64(k) / float64(steps)
		dt := float64(k+1)/float64(steps) - tk
		if u != nil {
			for i := range t {
				t[i] = float32(tk)
			}
			u.Eval(t, x, ctl)
		}
		noise.Fill(eps)
		beta, g2 := vp.Beta(tk), vp.G2(tk)
		sq := math.Sqrt(g2 * dt)
		for i, xi := range x {
			drift := -0.5 * beta * float64(xi)
			if u != nil {
				drift += g2 * float64(ctl[i])
			}
			x[i] = float32(float64(xi) + drift*dt + sq*float64(eps[i]))
		}
	}
}

// Encode is the forward half of the inversion test (asbm.md §6.3.3): it maps data x0 to X_1 with the
// controlled forward SDE (pass the EMA control, as §2.4 simulates with it) on linspace(0, 1, nfe).
func Encode(control Net, vp VP, x0 []float32, dim, nfe int, noise *Noise) ([]float32, error) {
	return Simulate(control, vp, x0, dim, nfe, DefaultSimBatch, noise)
}

// allFinite reports whether every entry of x is a finite number.
func allFinite(x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}
