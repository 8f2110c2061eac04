// Package stepper runs the project's samplers (asbm.md §3.3 and the shared sampling conventions)
// one network call at a time, so that the browser client can show previews of the current state,
// hand the event loop back between calls, and split a batch into chunks that fit an adapter's
// limits — none of which shaders.SampleCPU or shaders.SampleGPU offer (they run the whole loop and
// report only step numbers).
//
// The arithmetic is that of shaders.runSampler, written out again: the same noise stream (x1 first,
// then n×d values per noisy SDE step), the same float64 coefficients rounded to float32 and applied
// as a·x + b·y + c·z (a missing term is c·x with c = 0, as there). TestMatchesSampleCPU holds the
// two to bit-identical results on the CPU, for every method. Rows are independent in every network
// (group norm is per image), so the chunking does not change the result either.
package stepper

import (
	"errors"
	"fmt"
	"math"

	"asbm/shaders"
	"asbm/weights"
)

// Net is one network: Forward returns f(t, x) for n = len(t) rows of x (n×Dim), n×Dim values.
// *shaders.GPUNet is one; CPU wraps a *shaders.Net.
type Net interface {
	Forward(t, x []float32) ([]float32, error)
}

// CPU evaluates a plain-Go network (shaders.Net.ForwardCPU). The network must match its arch, as
// shaders.NetFromFile guarantees.
type CPU struct{ Net *shaders.Net }

// Forward implements Net.
func (c CPU) Forward(t, x []float32) ([]float32, error) {
	if c.Net == nil {
		return nil, errors.New("stepper: nil network")
	}
	if len(x) != len(t)*c.Net.Arch.Dim {
		return nil, fmt.Errorf("stepper: forward: x has %d values, %d rows of dim %d need %d", len(x), len(t), c.Net.Arch.Dim, len(t)*c.Net.Arch.Dim)
	}
	return c.Net.ForwardCPU(t, x), nil
}

// Nets are the networks a sampler may use, as in shaders.Nets: Score ("sde", "ode"), Control
// ("ode"; nil means u ≡ 0, the memoryless baseline), Gen ("gen").
type Nets struct{ Score, Control, Gen Net }

// Options select the sampler (the embedded shaders.SampleOptions, whose Points is n), the data
// dimension, the rows per network call and how often Hooks.Progress receives the state.
type Options struct {
	shaders.SampleOptions
	Dim          int // values per row (an image's C·H·W)
	Chunk        int // rows per network call; 0 or ≥ Points: all rows at once
	PreviewEvery int // hand x to Progress at steps 0, PreviewEvery, 2·PreviewEvery, … < total; 0: never
}

// Hooks are the caller's ways in; nil members are skipped.
type Hooks struct {
	// Progress is called at step 0 (before the first network call) and after every step, with
	// step = 0 … total. x is the current state (n×Dim, read-only, valid during the call) when a
	// preview is due, else nil. A non-nil error stops the run and is returned.
	Progress func(step, total int, x []float32) error
	// Pause is called after every network call: the browser client yields to its event loop there
	// when a frame is due, so a long run never freezes the page for more than one call.
	Pause func()
}

// vp is the VP schedule of asbm.md §1.2 (the same formulas as shaders' and backend/asbm's).
type vp struct{ beta0, beta1, sigmaV float64 }

func (v vp) beta(t float64) float64 { return v.beta0 + (v.beta1-v.beta0)*t }
func (v vp) g2(t float64) float64   { return v.sigmaV * v.sigmaV * v.beta(t) }
func (v vp) alpha(t float64) float64 {
	return math.Exp(-0.25 * t * (v.beta(t) + v.beta0))
}
func (v vp) sigma2(t float64) float64 {
	a := v.alpha(t)
	return math.Max(0, v.sigmaV*v.sigmaV*(1-a*a))
}

// validate checks o against the networks it needs, with shaders' limits.
func (o Options) validate(nets Nets) error {
	if o.Points < 1 || o.Points > shaders.MaxPoints {
		return fmt.Errorf("stepper: points = %d, need 1 … %d", o.Points, shaders.MaxPoints)
	}
	if o.Dim < 1 {
		return fmt.Errorf("stepper: dim = %d, need ≥ 1", o.Dim)
	}
	if o.Chunk < 0 || o.PreviewEvery < 0 {
		return fmt.Errorf("stepper: chunk %d and preview interval %d must be ≥ 0", o.Chunk, o.PreviewEvery)
	}
	for _, p := range []float64{o.Beta0, o.Beta1, o.SigmaV} {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			return fmt.Errorf("stepper: β0 = %v, β1 = %v, σ_v = %v must be finite", o.Beta0, o.Beta1, o.SigmaV)
		}
	}
	if o.Beta0 < 0 || o.Beta1 < 0 || o.Beta0+o.Beta1 <= 0 {
		return fmt.Errorf("stepper: need β0, β1 ≥ 0 and β0 + β1 > 0; got %v, %v", o.Beta0, o.Beta1)
	}
	if o.SigmaV <= 0 {
		return fmt.Errorf("stepper: σ_v = %v, need > 0", o.SigmaV)
	}
	switch o.Method {
	case "sde", "ode":
		if o.Steps < 1 || o.Steps > shaders.MaxSteps {
			return fmt.Errorf("stepper: steps = %d, need 1 … %d", o.Steps, shaders.MaxSteps)
		}
		if nets.Score == nil {
			return fmt.Errorf("stepper: method %q needs the score network", o.Method)
		}
	case "gen":
		if nets.Gen == nil {
			return errors.New(`stepper: method "gen" needs the distilled generator network`)
		}
	default:
		return fmt.Errorf(`stepper: unknown method %q: use "sde", "ode" or "gen"`, o.Method)
	}
	return nil
}

// run is one sampling call's state.
type run struct {
	o     Options
	h     Hooks
	n, d  int
	chunk int
	t     []float32 // the time of every row of a chunk
}

// Run draws o.Points rows from x1 ~ N(0, I) (the seed's stream) to t = 0 on the grid t_k = 1 − k/N,
// Δ = 1/N, exactly like shaders.SampleCPU, and returns them (n×Dim).
func Run(nets Nets, o Options, h Hooks) ([]float32, error) {
	if err := o.validate(nets); err != nil {
		return nil, err
	}
	r := &run{o: o, h: h, n: o.Points, d: o.Dim, chunk: o.Chunk}
	if r.chunk == 0 || r.chunk > r.n {
		r.chunk = r.n
	}
	r.t = make([]float32, r.chunk)
	v := vp{o.Beta0, o.Beta1, o.SigmaV}
	rng := shaders.NoiseStream(o.Seed)
	x := make([]float32, r.n*r.d)
	shaders.FillNoise(rng, x)
	next := make([]float32, len(x))
	f32 := func(x float64) float32 { return float32(x) }
	total := o.Steps
	if o.Method == "gen" {
		total = 1
	}
	if err := r.progress(0, total, x); err != nil {
		return nil, err
	}
	switch o.Method {
	case "gen":
		// x_0 = (z + σ_1² G(1, z)) / α_1 with z = x_1.
		a1, s2 := v.alpha(1), v.sigma2(1)
		g := make([]float32, len(x))
		if err := r.eval(nets.Gen, 1, x, g); err != nil {
			return nil, err
		}
		update(next, x, g, nil, f32(1/a1), f32(s2/a1), 0)
		x, next = next, x
		if err := r.progress(1, 1, x); err != nil {
			return nil, err
		}
	case "sde":
		// x ← x + Δ(½βx + g²s) + √(g²Δ)·ε_k, no noise on the last step.
		N := o.Steps
		dt := 1 / float64(N)
		eps := make([]float32, len(x))
		s := make([]float32, len(x))
		for k := 0; k < N; k++ {
			tk := 1 - float64(k)/float64(N)
			beta, g2 := v.beta(tk), v.g2(tk)
			var z []float32
			c := 0.0
			if k < N-1 {
				shaders.FillNoise(rng, eps)
				z, c = eps, math.Sqrt(g2*dt)
			}
			if err := r.eval(nets.Score, f32(tk), x, s); err != nil {
				return nil, err
			}
			update(next, x, s, z, f32(1+0.5*beta*dt), f32(dt*g2), f32(c))
			x, next = next, x
			if err := r.progress(k+1, N, x); err != nil {
				return nil, err
			}
		}
	case "ode":
		// v(t, x) = −½β(t)x + ½g(t)²(u(t, x) − s(t, x)); Heun with a final Euler step.
		N := o.Steps
		dt := 1 / float64(N)
		s := make([]float32, len(x))
		var u []float32
		if nets.Control != nil {
			u = make([]float32, len(x))
		}
		v1, v2, tilde := make([]float32, len(x)), make([]float32, len(x)), make([]float32, len(x))
		velocity := func(dst, x []float32, t float64) error {
			if err := r.eval(nets.Score, f32(t), x, s); err != nil {
				return err
			}
			if u != nil {
				if err := r.eval(nets.Control, f32(t), x, u); err != nil {
					return err
				}
			}
			g2 := v.g2(t)
			update(dst, x, u, s, f32(-0.5*v.beta(t)), f32(0.5*g2), f32(-0.5*g2))
			return nil
		}
		for k := 0; k < N; k++ {
			tk := 1 - float64(k)/float64(N)
			tk1 := 1 - float64(k+1)/float64(N)
			if err := velocity(v1, x, tk); err != nil {
				return nil, err
			}
			if k < N-1 {
				// x̃ = x − Δ v(t_k, x); x ← x − ½Δ(v(t_k, x) + v(t_{k+1}, x̃)).
				update(tilde, x, v1, nil, 1, f32(-dt), 0)
				if err := velocity(v2, tilde, tk1); err != nil {
					return nil, err
				}
				update(next, x, v1, v2, 1, f32(-0.5*dt), f32(-0.5*dt))
			} else {
				update(next, x, v1, nil, 1, f32(-dt), 0)
			}
			x, next = next, x
			if err := r.progress(k+1, N, x); err != nil {
				return nil, err
			}
		}
	}
	return x, nil
}

// update sets dst = a·x + b·y + c·z in float32, where a nil y or z is x with coefficient 0: the
// expression and its order are shaders' CPU engine's, so the results agree to the bit.
func update(dst, x, y, z []float32, a, b, c float32) {
	if y == nil {
		y, b = x, 0
	}
	if z == nil {
		z, c = x, 0
	}
	for i := range dst {
		dst[i] = a*x[i] + b*y[i] + c*z[i]
	}
}

// eval writes net(t, x) into out, r.chunk rows per call.
func (r *run) eval(net Net, t float32, x, out []float32) error {
	for lo := 0; lo < r.n; lo += r.chunk {
		hi := min(r.n, lo+r.chunk)
		ts := r.t[:hi-lo]
		for i := range ts {
			ts[i] = t
		}
		y, err := net.Forward(ts, x[lo*r.d:hi*r.d])
		if err != nil {
			return err
		}
		if len(y) != (hi-lo)*r.d {
			return fmt.Errorf("stepper: a network returned %d values for %d rows of dim %d", len(y), hi-lo, r.d)
		}
		copy(out[lo*r.d:hi*r.d], y)
		if r.h.Pause != nil {
			r.h.Pause()
		}
	}
	return nil
}

// progress reports a step, with x when a preview is due.
func (r *run) progress(step, total int, x []float32) error {
	if r.h.Progress == nil {
		return nil
	}
	var pv []float32
	if e := r.o.PreviewEvery; e > 0 && step < total && step%e == 0 {
		pv = x
	}
	return r.h.Progress(step, total, pv)
}

// RowValues is the number of float32 values of one row's widest activation in a network of arch
// a: the widest op of shaders.UNetOps (channels × H × W, a concat's output being the widest) for a
// U-Net, max(Dim + 2·Fourier, Hidden) for an MLP.
func RowValues(a weights.Arch) int {
	w := a.Dim
	if a.Kind == "unet" {
		if shaders.CheckArch(a) != nil {
			return w
		}
		for _, op := range shaders.UNetOps(a) {
			w = max(w, max(op.In, op.Out)*op.H*op.W)
		}
		return w
	}
	return max(w, a.Dim+2*a.Fourier, a.Hidden)
}

// GPUChunk returns how many rows of a network of arch a one GPU call may take so that its widest
// activation (RowValues) stays within half of limitBytes, the device's maxStorageBufferBindingSize:
// the other half is headroom for whatever an engine lays out differently. At least 1, at most
// shaders.MaxPoints.
func GPUChunk(a weights.Arch, limitBytes int64) int {
	per := int64(RowValues(a)) * 4
	return int(max(1, min(limitBytes/2/per, shaders.MaxPoints)))
}

// FLOPs is the cost of one row's forward pass (multiply and add counted apart).
func FLOPs(a weights.Arch) int64 {
	if a.Kind == "unet" {
		if shaders.CheckArch(a) != nil {
			return 1
		}
		return shaders.UNetFLOPs(a)
	}
	in, h := int64(a.Dim+2*a.Fourier), int64(a.Hidden)
	return 2 * (in*h + int64(max(0, a.Layers-1))*h*h + h*int64(a.Dim))
}

// CPUChunk returns how many rows one CPU call may take to cost about budget FLOPs, at least 1: the
// browser's Go code runs on the page's thread, so a call is as long as the page may go unpainted.
func CPUChunk(a weights.Arch, budget int64) int {
	return int(max(1, min(budget/max(1, FLOPs(a)), shaders.MaxPoints)))
}
