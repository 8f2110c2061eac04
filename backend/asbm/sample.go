package asbm

import (
	"errors"
	"fmt"
	"math"
)

// Callback watches a sampler: after step k of N (k = 1 … N) it gets k, the time t_k = 1 − k/N the state
// now sits at, and the state x. x is the sampler's working buffer: copy it to keep it.
type Callback func(step int, t float64, x []float32)

// BackwardGrid is the sampling grid t_k = 1 − k/N, k = 0 … N (linspace(1, 0, N+1), asbm.md §3.3, §7).
func BackwardGrid(steps int) []float64 {
	g := make([]float64, steps+1)
	for k := range g {
		g[k] = 1 - float64(k)/float64(steps)
	}
	return g
}

// SamplePrior draws n prior samples x1 ~ N(0, I) of width dim from noise: the first draw of every
// sampler run (the shared noise convention: x1 first, row-major).
func SamplePrior(noise *Noise, n, dim int) []float32 { return noise.Normal(n * dim) }

// checkSampler validates a sampler's inputs and returns the number of rows.
func checkSampler(score Net, vp VP, x []float32, steps int) (int, error) {
	if score == nil {
		return 0, errors.New("nil score network")
	}
	if err := vp.Validate(); err != nil {
		return 0, err
	}
	if steps < 1 {
		return 0, fmt.Errorf("steps = %d must be ≥ 1", steps)
	}
	return rowsOf(x, score.Dim())
}

// SampleSDE integrates the backward SDE dX = [f(t,X) − g(t)² s(t,X)]dt + g(t)dW̄ from t = 1 to 0 by
// Euler–Maruyama on BackwardGrid(steps) (asbm.md §3.3), exactly the project's "sde" convention: for
// k = 0 … N−1, with Δ = 1/N, β = β(t_k), g² = σ_v²β and s = score(t_k, x),
//
//	x ← x + Δ(½βx + g²s) + √(g²Δ)·ε_k   (no noise on the last step, k = N−1),
//
// drawing ε_k (n×dim, row-major) from noise for k < N−1 only. x (the prior samples x1) is not
// modified; the result x0 is a new slice. noise may be nil when steps = 1.
func SampleSDE(score Net, vp VP, x []float32, steps int, noise *Noise, cb Callback) ([]float32, error) {
	n, err := checkSampler(score, vp, x, steps)
	if err != nil {
		return nil, fmt.Errorf("SampleSDE: %w", err)
	}
	if noise == nil && steps > 1 {
		return nil, errors.New("SampleSDE: nil noise")
	}
	x = append([]float32(nil), x...)
	tv := make([]float32, n)
	s := make([]float32, len(x))
	eps := make([]float32, len(x))
	dt := 1 / float64(steps)
	for k := 0; k < steps; k++ {
		tk := 1 - float64(k)/float64(steps)
		fill(tv, float32(tk))
		score.Eval(tv, x, s)
		beta, g2 := vp.Beta(tk), vp.G2(tk)
		last := k == steps-1
		if !last {
			noise.Fill(eps)
		}
		sq := math.Sqrt(g2 * dt)
		for i, xi := range x {
			v := float64(xi) + dt*(0.5*beta*float64(xi)+g2*float64(s[i]))
			if !last {
				v += sq * float64(eps[i])
			}
			x[i] = float32(v)
		}
		if cb != nil {
			cb(k+1, 1-float64(k+1)/float64(steps), x)
		}
	}
	return x, nil
}

// pfVelocity writes the probability-flow velocity v(t,x) = −½β(t)x + ½g(t)²(u(t,x) − s(t,x)) into out
// (asbm.md §3.3: forward drift f + g²u, backward drift f − g²s, so ∇log p_t = u + s); control nil is
// u ≡ 0, the memoryless baseline. tv, s and u are scratch space.
func pfVelocity(score, control Net, vp VP, t float64, x, out, tv, s, u []float32) {
	fill(tv, float32(t))
	score.Eval(tv, x, s)
	if control != nil {
		control.Eval(tv, x, u)
	}
	beta, g2 := vp.Beta(t), vp.G2(t)
	for i, xi := range x {
		c := 0.0
		if control != nil {
			c = float64(u[i])
		}
		out[i] = float32(-0.5*beta*float64(xi) + 0.5*g2*(c-float64(s[i])))
	}
}

// SampleODE integrates the probability-flow ODE dx/dt = v(t,x) = −½β(t)x + ½g(t)²(u(t,x) − s(t,x)) from
// t = 1 to 0 by Heun's method with a final Euler step on BackwardGrid(steps) (asbm.md §3.3), exactly
// the project's "ode" convention: for k = 0 … N−1, x̃ = x − Δ·v(t_k, x); if k < N−1,
// x ← x − ½Δ(v(t_k, x) + v(t_{k+1}, x̃)), else x ← x̃. control nil means u ≡ 0 (the memoryless
// baseline). It draws no noise; x is not modified and the result is a new slice.
func SampleODE(score, control Net, vp VP, x []float32, steps int, cb Callback) ([]float32, error) {
	n, err := checkSampler(score, vp, x, steps)
	if err != nil {
		return nil, fmt.Errorf("SampleODE: %w", err)
	}
	if control != nil && control.Dim() != score.Dim() {
		return nil, fmt.Errorf("SampleODE: control has dimension %d, score %d", control.Dim(), score.Dim())
	}
	x = append([]float32(nil), x...)
	tv := make([]float32, n)
	s, u := make([]float32, len(x)), make([]float32, len(x))
	v1, v2, xp := make([]float32, len(x)), make([]float32, len(x)), make([]float32, len(x))
	dt := 1 / float64(steps)
	for k := 0; k < steps; k++ {
		tk := 1 - float64(k)/float64(steps)
		tn := 1 - float64(k+1)/float64(steps)
		pfVelocity(score, control, vp, tk, x, v1, tv, s, u)
		for i, xi := range x {
			xp[i] = float32(float64(xi) - dt*float64(v1[i]))
		}
		if k < steps-1 {
			pfVelocity(score, control, vp, tn, xp, v2, tv, s, u)
			for i, xi := range x {
				x[i] = float32(float64(xi) - 0.5*dt*(float64(v1[i])+float64(v2[i])))
			}
		} else {
			copy(x, xp)
		}
		if cb != nil {
			cb(k+1, tn, x)
		}
	}
	return x, nil
}

// SampleODETrajectory runs SampleODE and returns the whole path: steps+1 states, the first the input x
// at t = 1 and the last x0 at t = 0 (for straightness and path length, asbm.md §6.3.5).
func SampleODETrajectory(score, control Net, vp VP, x []float32, steps int) ([][]float32, error) {
	traj := [][]float32{append([]float32(nil), x...)}
	_, err := SampleODE(score, control, vp, x, steps, func(_ int, _ float64, xs []float32) {
		traj = append(traj, append([]float32(nil), xs...))
	})
	if err != nil {
		return nil, err
	}
	return traj, nil
}

// Generate is the distilled one-step generator, the project's "gen" convention (asbm.md §4.2):
// x0 = (z + σ_1²·gen(1, z))/α_1, a Tweedie-style x0-prediction through p^base_{1|0}. z is not modified.
func Generate(gen Net, vp VP, z []float32) ([]float32, error) {
	n, err := checkSampler(gen, vp, z, 1)
	if err != nil {
		return nil, fmt.Errorf("Generate: %w", err)
	}
	tv := make([]float32, n)
	fill(tv, 1)
	g := make([]float32, len(z))
	gen.Eval(tv, z, g)
	a1, s2 := vp.Alpha(1), vp.Sigma2(1)
	out := make([]float32, len(z))
	for i, zi := range z {
		out[i] = float32((float64(zi) + s2*float64(g[i])) / a1)
	}
	return out, nil
}

func fill(v []float32, c float32) {
	for i := range v {
		v[i] = c
	}
}
