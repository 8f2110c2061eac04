package asbm

import (
	"errors"
	"fmt"

	"asbm/model"
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

// SampleConfig selects one of the project's samplers (model.Run, asbm.md §3.3) for Sample.
type SampleConfig struct {
	Method string // "sde", "ode", "ancestral" or "gen" (model.SampleOptions.Method)
	Steps  int    // N; 1 for "gen"
	// Denoise ends "sde" and "ode" with Tweedie's x̂_0 at t = 1/N instead of an Euler step
	// (model.SampleOptions.Denoise).
	Denoise bool
	Noise   *Noise   // the stream of "sde" and "ancestral" (x_1 comes from the caller); may be nil for "ode", "gen" and N = 1
	Cb      Callback // optional
}

// Sample runs model.SampleCPU, the project's one sampler (asbm.md §3.3), on nets from the given x_1
// (not modified) with the settings of c, and returns x_0 as a new slice. SampleSDE, SampleODE and
// Generate are its paper-convention forms (Denoise false).
func Sample(nets model.Nets, vp VP, x []float32, c SampleConfig) ([]float32, error) {
	first := nets.Score
	if c.Method == "gen" {
		first = nets.Gen
	}
	n, err := checkSampler(first, vp, x, c.Steps)
	if err != nil {
		return nil, err
	}
	noise := c.Noise
	if noise == nil {
		if (c.Method == "sde" || c.Method == "ancestral") && c.Steps > 1 {
			return nil, fmt.Errorf("method %q needs a noise stream", c.Method)
		}
		noise = NewNoise(0) // "ode" and "gen" draw nothing, nor does a one-step SDE
	}
	if nets.Control != nil && first != nil && nets.Control.Dim() != first.Dim() {
		return nil, fmt.Errorf("control has dimension %d, score %d", nets.Control.Dim(), first.Dim())
	}
	o := model.SampleOptions{Points: n, Steps: c.Steps, Method: c.Method, Beta0: vp.Beta0, Beta1: vp.Beta1,
		SigmaV: vp.SigmaV, Denoise: c.Denoise, X1: x, Noise: noise}
	var h model.SampleHooks
	cb := c.Cb
	if cb != nil {
		h = model.SampleHooks{PreviewEvery: 1, Progress: func(step, total int, xs []float32) error {
			if step > 0 && xs != nil {
				cb(step, 1-float64(step)/float64(total), xs)
			}
			return nil
		}}
	}
	out, err := model.SampleCPU(nets, o, h)
	if err != nil {
		return nil, err
	}
	if cb != nil {
		cb(c.Steps, 0, out) // previews stop before the last step
	}
	return out, nil
}

// SampleSDE integrates the backward SDE dX = [f(t,X) − g(t)² s(t,X)]dt + g(t)dW̄ from t = 1 to 0 by
// Euler–Maruyama on BackwardGrid(steps) (asbm.md §3.3), the project's "sde" convention (model.Run):
// for k = 0 … N−1, with Δ = 1/N, β = β(t_k), g² = σ_v²β and s = score(t_k, x),
//
//	x ← x + Δ(½βx + g²s) + √(g²Δ)·ε_k   (no noise on the last step, k = N−1),
//
// drawing ε_k (n×dim, row-major) from noise for k < N−1 only. x (the prior samples x1) is not
// modified; the result x0 is a new slice. noise may be nil when steps = 1.
func SampleSDE(score Net, vp VP, x []float32, steps int, noise *Noise, cb Callback) ([]float32, error) {
	out, err := Sample(model.Nets{Score: score}, vp, x, SampleConfig{Method: "sde", Steps: steps, Noise: noise, Cb: cb})
	if err != nil {
		return nil, fmt.Errorf("SampleSDE: %w", err)
	}
	return out, nil
}

// SampleODE integrates the probability-flow ODE dx/dt = v(t,x) = −½β(t)x + ½g(t)²(u(t,x) − s(t,x)) from
// t = 1 to 0 by Heun's method with a final Euler step on BackwardGrid(steps) (asbm.md §3.3), the
// project's "ode" convention (model.Run): for k = 0 … N−1, x̃ = x − Δ·v(t_k, x); if k < N−1,
// x ← x − ½Δ(v(t_k, x) + v(t_{k+1}, x̃)), else x ← x̃. control nil means u ≡ 0 (the memoryless
// baseline). It draws no noise; x is not modified and the result is a new slice.
func SampleODE(score, control Net, vp VP, x []float32, steps int, cb Callback) ([]float32, error) {
	out, err := Sample(model.Nets{Score: score, Control: control}, vp, x, SampleConfig{Method: "ode", Steps: steps, Cb: cb})
	if err != nil {
		return nil, fmt.Errorf("SampleODE: %w", err)
	}
	return out, nil
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

// Generate is the distilled one-step generator, the project's "gen" convention (asbm.md §4.2,
// model.Run): x0 = (z + σ_1²·gen(1, z))/α_1, a Tweedie-style x0-prediction through p^base_{1|0}. z is
// not modified.
func Generate(gen Net, vp VP, z []float32) ([]float32, error) {
	out, err := Sample(model.Nets{Gen: gen}, vp, z, SampleConfig{Method: "gen", Steps: 1})
	if err != nil {
		return nil, fmt.Errorf("Generate: %w", err)
	}
	return out, nil
}

func fill(v []float32, c float32) {
	for i := range v {
		v[i] = c
	}
}
