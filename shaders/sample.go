package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// NoiseIncrement is the PCG stream of the project's noise ("ASBM" in ASCII): every sampler draws from
// rand.New(rand.NewPCG(seed, NoiseIncrement)), so the browser and `backend sample` agree for a seed.
const NoiseIncrement uint64 = 0x4153424D

// MaxPoints caps SampleOptions.Points and GPUNet.Forward's batch: 2^18 rows of a width-128 hidden
// layer fill WebGPU's default 128 MiB storage binding.
const MaxPoints = 1 << 18

// MaxSteps caps SampleOptions.Steps.
const MaxSteps = 100000

// NoiseStream returns the generator of the shared noise convention for seed.
func NoiseStream(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, NoiseIncrement)) }

// FillNoise overwrites dst, in index order (row-major), with standard normal values
// float32(r.NormFloat64()).
func FillNoise(r *rand.Rand, dst []float32) {
	for i := range dst {
		dst[i] = float32(r.NormFloat64())
	}
}

// SampleOptions selects a sampler (asbm.md §3.3) and the VP base it integrates (asbm.md §1.2).
type SampleOptions struct {
	Points int    // number of points n, 1 … MaxPoints
	Steps  int    // N, 1 … MaxSteps; ignored by "gen"
	Method string // "sde" (Euler–Maruyama backward SDE), "ode" (Heun PF-ODE) or "gen" (one step)
	Seed   uint64 // noise seed (NoiseStream)

	Beta0, Beta1, SigmaV float64 // β(t) = β0 + (β1−β0)t, g(t)² = σ_v²β(t)
}

// Nets are the GPU networks a sampler may use: Score s_ψ ("sde", "ode"), Control u_θ ("ode"; nil
// means u ≡ 0, the memoryless baseline) and Gen, the distilled generator ("gen").
type Nets struct{ Score, Control, Gen *GPUNet }

// CPUNets are the same networks on the CPU.
type CPUNets struct{ Score, Control, Gen *Net }

// vp is the VP schedule of asbm.md §1.2 (backend/asbm.VP holds the same formulas; shaders may not
// import backend).
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

// validate checks o against the networks present (their Dim; 0 = absent) and returns the data dim.
func (o SampleOptions) validate(score, control, gen int) (int, error) {
	if o.Points < 1 || o.Points > MaxPoints {
		return 0, fmt.Errorf("shaders: sample: points = %d, need 1 … %d", o.Points, MaxPoints)
	}
	for _, p := range []float64{o.Beta0, o.Beta1, o.SigmaV} {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			return 0, fmt.Errorf("shaders: sample: β0 = %v, β1 = %v, σ_v = %v must be finite", o.Beta0, o.Beta1, o.SigmaV)
		}
	}
	if o.Beta0 < 0 || o.Beta1 < 0 || o.Beta0+o.Beta1 <= 0 {
		return 0, fmt.Errorf("shaders: sample: need β0, β1 ≥ 0 and β0 + β1 > 0; got %v, %v", o.Beta0, o.Beta1)
	}
	if o.SigmaV <= 0 {
		return 0, fmt.Errorf("shaders: sample: σ_v = %v, need > 0", o.SigmaV)
	}
	var dims []int
	switch o.Method {
	case "sde", "ode":
		if o.Steps < 1 || o.Steps > MaxSteps {
			return 0, fmt.Errorf("shaders: sample: steps = %d, need 1 … %d", o.Steps, MaxSteps)
		}
		if score == 0 {
			return 0, fmt.Errorf("shaders: sample: method %q needs the score network", o.Method)
		}
		dims = append(dims, score)
		if o.Method == "ode" && control != 0 {
			dims = append(dims, control)
		}
	case "gen":
		if gen == 0 {
			return 0, fmt.Errorf("shaders: sample: method \"gen\" needs the distilled generator network")
		}
		dims = append(dims, gen)
	default:
		return 0, fmt.Errorf("shaders: sample: unknown method %q: use \"sde\", \"ode\" or \"gen\"", o.Method)
	}
	for _, d := range dims[1:] {
		if d != dims[0] {
			return 0, fmt.Errorf("shaders: sample: the networks disagree on the data dimension (%d vs %d)", dims[0], d)
		}
	}
	return dims[0], nil
}

// slot names the n×dim arrays a sampler works on; engines map them to buffers or slices.
type slot int

const (
	sNone    slot = iota
	sX            // the current x
	sNext         // the updated x (WebGPU cannot write a buffer it reads in the same dispatch)
	sTilde        // Heun's predictor x̃
	sV1           // v(t_k, x)
	sV2           // v(t_{k+1}, x̃)
	sNoise        // ε_k
	sScore        // the latest score output
	sControl      // the latest control output
	sGen          // the latest generator output
	numSlots
)

// engine executes a sampler's schedule: the GPU records into command buffers, the CPU computes now.
// runSampler is the one place where the samplers' arithmetic is written down.
type engine interface {
	setX(v []float32) error
	setTimes(t0, t1 float32) error // the two times eval's tslot picks from
	setNoise(v []float32) error
	eval(net slot, x slot, tslot int) error          // net ∈ {sScore, sControl, sGen}; output in slot net
	update(dst, x, y, z slot, a, b, c float32) error // dst = a·x + b·y + c·z; sNone drops a term
	copy(dst, src slot) error
	endStep(step, total int) error
	result() ([]float32, error) // sX
}

// runSampler integrates from x_1 ~ N(0, I) (drawn first from the seed's stream) to t = 0 with the
// samplers of asbm.md §3.3 on the grid t_k = 1 − k/N, Δ = 1/N. Coefficients are computed in float64
// and applied in float32 as a·x + b·y + c·z.
func runSampler(e engine, o SampleOptions, dim int, control bool, progress func(step, total int)) ([]float32, error) {
	n := o.Points * dim
	v := vp{o.Beta0, o.Beta1, o.SigmaV}
	rng := NoiseStream(o.Seed)
	x1 := make([]float32, n)
	FillNoise(rng, x1)
	if err := e.setX(x1); err != nil {
		return nil, err
	}
	report := func(step, total int) error {
		if err := e.endStep(step, total); err != nil {
			return err
		}
		if progress != nil {
			progress(step, total)
		}
		return nil
	}
	f32 := func(x float64) float32 { return float32(x) }
	switch o.Method {
	case "gen":
		// x_0 = (z + σ_1² G(1, z)) / α_1 with z = x_1.
		a1, s2 := v.alpha(1), v.sigma2(1)
		steps := []func() error{
			func() error { return e.setTimes(1, 1) },
			func() error { return e.eval(sGen, sX, 0) },
			func() error { return e.update(sNext, sX, sGen, sNone, f32(1/a1), f32(s2/a1), 0) },
			func() error { return e.copy(sX, sNext) },
			func() error { return report(1, 1) },
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return nil, err
			}
		}
	case "sde":
		// x ← x + Δ(½βx + g²s) + √(g²Δ)·ε_k, no noise on the last step.
		N := o.Steps
		dt := 1 / float64(N)
		eps := make([]float32, n)
		for k := 0; k < N; k++ {
			tk := 1 - float64(k)/float64(N)
			beta, g2 := v.beta(tk), v.g2(tk)
			if err := e.setTimes(f32(tk), f32(tk)); err != nil {
				return nil, err
			}
			z, c := sNone, 0.0
			if k < N-1 {
				FillNoise(rng, eps)
				if err := e.setNoise(eps); err != nil {
					return nil, err
				}
				z, c = sNoise, math.Sqrt(g2*dt)
			}
			if err := e.eval(sScore, sX, 0); err != nil {
				return nil, err
			}
			if err := e.update(sNext, sX, sScore, z, f32(1+0.5*beta*dt), f32(dt*g2), f32(c)); err != nil {
				return nil, err
			}
			if err := e.copy(sX, sNext); err != nil {
				return nil, err
			}
			if err := report(k+1, N); err != nil {
				return nil, err
			}
		}
	case "ode":
		// v(t, x) = −½β(t)x + ½g(t)²(u(t, x) − s(t, x)); Heun with a final Euler step.
		N := o.Steps
		dt := 1 / float64(N)
		ctrl := sNone
		if control {
			ctrl = sControl
		}
		velocity := func(dst, x slot, tslot int, t float64) error {
			if err := e.eval(sScore, x, tslot); err != nil {
				return err
			}
			if control {
				if err := e.eval(sControl, x, tslot); err != nil {
					return err
				}
			}
			g2 := v.g2(t)
			return e.update(dst, x, ctrl, sScore, f32(-0.5*v.beta(t)), f32(0.5*g2), f32(-0.5*g2))
		}
		for k := 0; k < N; k++ {
			tk := 1 - float64(k)/float64(N)
			tk1 := 1 - float64(k+1)/float64(N)
			if err := e.setTimes(f32(tk), f32(tk1)); err != nil {
				return nil, err
			}
			if err := velocity(sV1, sX, 0, tk); err != nil {
				return nil, err
			}
			if k < N-1 {
				// x̃ = x − Δ v(t_k, x); x ← x − ½Δ(v(t_k, x) + v(t_{k+1}, x̃)).
				if err := e.update(sTilde, sX, sV1, sNone, 1, f32(-dt), 0); err != nil {
					return nil, err
				}
				if err := velocity(sV2, sTilde, 1, tk1); err != nil {
					return nil, err
				}
				if err := e.update(sNext, sX, sV1, sV2, 1, f32(-0.5*dt), f32(-0.5*dt)); err != nil {
					return nil, err
				}
			} else if err := e.update(sNext, sX, sV1, sNone, 1, f32(-dt), 0); err != nil {
				return nil, err
			}
			if err := e.copy(sX, sNext); err != nil {
				return nil, err
			}
			if err := report(k+1, N); err != nil {
				return nil, err
			}
		}
	}
	return e.result()
}

// SampleCPU draws o.Points points with plain Go (Net.ForwardCPU): the reference SampleGPU is tested
// against and the browser's CPU path. progress, if not nil, is called after every step.
func SampleCPU(nets CPUNets, o SampleOptions, progress func(step, total int)) ([]float32, error) {
	dimOf := func(m *Net, used bool) (int, error) {
		if m == nil || !used {
			return 0, nil
		}
		if err := checkParams(m); err != nil {
			return 0, err
		}
		return m.Arch.Dim, nil
	}
	ds, err := dimOf(nets.Score, o.Method != "gen")
	if err != nil {
		return nil, err
	}
	dc, err := dimOf(nets.Control, o.Method == "ode")
	if err != nil {
		return nil, err
	}
	dg, err := dimOf(nets.Gen, o.Method == "gen")
	if err != nil {
		return nil, err
	}
	dim, err := o.validate(ds, dc, dg)
	if err != nil {
		return nil, err
	}
	e := &cpuEngine{n: o.Points, dim: dim, nets: [numSlots]*Net{sScore: nets.Score, sControl: nets.Control, sGen: nets.Gen}}
	return runSampler(e, o, dim, dc != 0, progress)
}

// cpuEngine runs the schedule on slices.
type cpuEngine struct {
	n, dim int
	nets   [numSlots]*Net
	s      [numSlots][]float32
	times  [2]float32
	t      []float32
}

func (e *cpuEngine) get(s slot) []float32 {
	if e.s[s] == nil {
		e.s[s] = make([]float32, e.n*e.dim)
	}
	return e.s[s]
}

func (e *cpuEngine) setX(v []float32) error     { copy(e.get(sX), v); return nil }
func (e *cpuEngine) setNoise(v []float32) error { copy(e.get(sNoise), v); return nil }
func (e *cpuEngine) setTimes(t0, t1 float32) error {
	e.times = [2]float32{t0, t1}
	return nil
}

// eval runs ForwardCPU on row chunks in parallel; rows are independent, so the result does not depend
// on the split.
func (e *cpuEngine) eval(net, x slot, tslot int) error {
	m := e.nets[net]
	if len(e.t) != e.n {
		e.t = make([]float32, e.n)
	}
	for i := range e.t {
		e.t[i] = e.times[tslot]
	}
	xs, out := e.get(x), e.get(net)
	workers := min(runtime.GOMAXPROCS(0), (e.n+63)/64)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := e.n*w/workers, e.n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			copy(out[lo*e.dim:hi*e.dim], m.ForwardCPU(e.t[lo:hi], xs[lo*e.dim:hi*e.dim]))
		}()
	}
	wg.Wait()
	return nil
}

func (e *cpuEngine) update(dst, x, y, z slot, a, b, c float32) error {
	if y == sNone {
		y, b = x, 0
	}
	if z == sNone {
		z, c = x, 0
	}
	d, xs, ys, zs := e.get(dst), e.get(x), e.get(y), e.get(z)
	for i := range d {
		d[i] = a*xs[i] + b*ys[i] + c*zs[i]
	}
	return nil
}

func (e *cpuEngine) copy(dst, src slot) error { copy(e.get(dst), e.get(src)); return nil }
func (e *cpuEngine) endStep(int, int) error   { return nil }
func (e *cpuEngine) result() ([]float32, error) {
	return append([]float32(nil), e.get(sX)...), nil
}
