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
		eulerStep(u, vp, x, t, ctl, eps, tk, dt, 1, noise)
	}
}

// eulerStep takes one Euler–Maruyama step of length dt at time tk in place on the rows of x, with t,
// out and eps scratch of one entry per row, one per value and one per value:
//
//	x ← x + dir·[f(tk, x) + dir·g(tk)²·net(tk, x)]·dt + g(tk)√dt·ε,
//
// the controlled forward SDE for dir = 1 and the reverse-time SDE x ← x − [f − g²·net]dt + g√dt·ε
// for dir = −1 (asbm.md §2.4, §3.3); net nil is the base. Simulate and Evolve share it, so the two
// integrators are one formula (dir = 1 multiplies exactly, leaving Simulate's values unchanged).
func eulerStep(net Net, vp VP, x, t, out, eps []float32, tk, dt, dir float64, noise *Noise) {
	if net != nil {
		for i := range t {
			t[i] = float32(tk)
		}
		net.Eval(t, x, out)
	}
	noise.Fill(eps)
	beta, g2 := vp.Beta(tk), vp.G2(tk)
	sq := math.Sqrt(g2 * dt)
	for i, xi := range x {
		drift := -0.5 * beta * float64(xi)
		if net != nil {
			drift += dir * g2 * float64(out[i])
		}
		x[i] = float32(float64(xi) + dir*drift*dt + sq*float64(eps[i]))
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
