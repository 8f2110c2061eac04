package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"asbm/weights"
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

// SampleHooks are a caller's ways into SampleCPU and SampleGPU beyond the samples: progress with
// previews of the state, a pause after every network call, and batches split into chunks of rows.
// The zero value adds nothing and changes nothing. None of them changes the result: rows are
// independent in both networks (group norm is per image), so a chunked run is bit-identical to an
// unchunked one on the CPU and equal up to float32 rounding on the GPU.
type SampleHooks struct {
	// Progress, if not nil, is called at step 0 (before the first network call) and after every
	// step, with step = 0 … total (total = Steps, or 1 for "gen"). x is the current state (n×dim,
	// read-only, valid during the call) when a preview is due (see PreviewEvery), else nil; on the
	// GPU x is read back only then (in the browser that read awaits a promise). A non-nil error
	// stops the run, and SampleCPU/SampleGPU return it unchanged.
	Progress func(step, total int, x []float32) error
	// PreviewEvery asks for previews at steps 0, PreviewEvery, 2·PreviewEvery, … < total; 0 never.
	PreviewEvery int
	// Pause, if not nil, is called after every network call (every chunk). The browser client
	// yields to its event loop there, so a long run never keeps the page's thread for more than
	// one call. On the GPU the call has been recorded (queued), not necessarily run.
	Pause func()
	// Chunk is the number of rows per network call; 0 (or ≥ Points) means all rows at once.
	Chunk int
}

// validate checks h against a run of n points.
func (h SampleHooks) validate() error {
	if h.Chunk < 0 || h.PreviewEvery < 0 {
		return fmt.Errorf("shaders: sample: chunk %d and preview interval %d must be ≥ 0", h.Chunk, h.PreviewEvery)
	}
	return nil
}

// chunk returns the rows per network call for n points.
func (h SampleHooks) chunk(n int) int {
	if h.Chunk == 0 || h.Chunk > n {
		return n
	}
	return h.Chunk
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
	// eval computes net on rows lo … hi−1 of x into the same rows of slot net (net ∈ {sScore,
	// sControl, sGen}).
	eval(net slot, x slot, tslot, lo, hi int) error
	update(dst, x, y, z slot, a, b, c float32) error // dst = a·x + b·y + c·z; sNone drops a term
	copy(dst, src slot) error
	endStep(step, total int) error
	state() ([]float32, error)  // sX now, read-only, valid until the next engine call
	result() ([]float32, error) // sX, the caller's to keep
}

// runSampler integrates from x_1 ~ N(0, I) (drawn first from the seed's stream) to t = 0 with the
// samplers of asbm.md §3.3 on the grid t_k = 1 − k/N, Δ = 1/N. Coefficients are computed in float64
// and applied in float32 as a·x + b·y + c·z. h adds progress, previews, pauses and chunks.
func runSampler(e engine, o SampleOptions, dim int, control bool, h SampleHooks) ([]float32, error) {
	n := o.Points * dim
	v := vp{o.Beta0, o.Beta1, o.SigmaV}
	rng := NoiseStream(o.Seed)
	x1 := make([]float32, n)
	FillNoise(rng, x1)
	if err := e.setX(x1); err != nil {
		return nil, err
	}
	total := o.Steps
	if o.Method == "gen" {
		total = 1
	}
	previewDue := func(step int) bool {
		return h.PreviewEvery > 0 && step < total && step%h.PreviewEvery == 0
	}
	// Step 0's state is x1, still on the host: no read-back.
	if h.Progress != nil {
		var pv []float32
		if previewDue(0) {
			pv = x1
		}
		if err := h.Progress(0, total, pv); err != nil {
			return nil, err
		}
	}
	report := func(step, total int) error {
		if err := e.endStep(step, total); err != nil {
			return err
		}
		if h.Progress == nil {
			return nil
		}
		var pv []float32
		if previewDue(step) {
			var err error
			if pv, err = e.state(); err != nil {
				return err
			}
		}
		return h.Progress(step, total, pv)
	}
	// evalNet runs a network on every row, chunk rows per call, pausing after each call.
	chunk := h.chunk(o.Points)
	evalNet := func(net, x slot, tslot int) error {
		for lo := 0; lo < o.Points; lo += chunk {
			if err := e.eval(net, x, tslot, lo, min(o.Points, lo+chunk)); err != nil {
				return err
			}
			if h.Pause != nil {
				h.Pause()
			}
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
			func() error { return evalNet(sGen, sX, 0) },
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
			if err := evalNet(sScore, sX, 0); err != nil {
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
			if err := evalNet(sScore, x, tslot); err != nil {
				return err
			}
			if control {
				if err := evalNet(sControl, x, tslot); err != nil {
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
// against and the browser's CPU path. h adds progress, previews, pauses and chunks (SampleHooks; its
// zero value adds nothing).
func SampleCPU(nets CPUNets, o SampleOptions, h SampleHooks) ([]float32, error) {
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
	if err := h.validate(); err != nil {
		return nil, err
	}
	e := &cpuEngine{n: o.Points, dim: dim, nets: [numSlots]*Net{sScore: nets.Score, sControl: nets.Control, sGen: nets.Gen}}
	return runSampler(e, o, dim, dc != 0, h)
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

// eval runs ForwardCPU on rows lo … hi−1, split among goroutines; rows are independent, so the
// result does not depend on the split.
func (e *cpuEngine) eval(net, x slot, tslot, lo0, hi0 int) error {
	m := e.nets[net]
	if len(e.t) != e.n {
		e.t = make([]float32, e.n)
	}
	for i := lo0; i < hi0; i++ {
		e.t[i] = e.times[tslot]
	}
	xs, out := e.get(x), e.get(net)
	rows := hi0 - lo0
	workers := min(runtime.GOMAXPROCS(0), (rows+63)/64)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := lo0+rows*w/workers, lo0+rows*(w+1)/workers
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

func (e *cpuEngine) copy(dst, src slot) error  { copy(e.get(dst), e.get(src)); return nil }
func (e *cpuEngine) endStep(int, int) error    { return nil }
func (e *cpuEngine) state() ([]float32, error) { return e.get(sX), nil }
func (e *cpuEngine) result() ([]float32, error) {
	return append([]float32(nil), e.get(sX)...), nil
}

// rowValues is the number of float32 values of one row's widest activation in a network of arch a:
// the widest op of UNetOps (channels × H × W, a concat's output being the widest) for a U-Net,
// max(Dim + 2·Fourier, Hidden) for an MLP.
func rowValues(a weights.Arch) int {
	w := a.Dim
	if a.Kind == "unet" {
		if CheckArch(a) != nil {
			return w
		}
		for _, op := range UNetOps(a) {
			w = max(w, max(op.In, op.Out)*op.H*op.W)
		}
		return w
	}
	return max(w, a.Dim+2*a.Fourier, a.Hidden)
}

// rowFLOPs is the cost of one row's forward pass (multiply and add counted apart).
func rowFLOPs(a weights.Arch) int64 {
	if a.Kind == "unet" {
		if CheckArch(a) != nil {
			return 1
		}
		return UNetFLOPs(a)
	}
	in, h := int64(a.Dim+2*a.Fourier), int64(a.Hidden)
	return 2 * (in*h + int64(max(0, a.Layers-1))*h*h + h*int64(a.Dim))
}

// GPUChunk returns how many rows of a network of arch a one GPU call may take (SampleHooks.Chunk)
// so that its widest activation stays within half of limitBytes, the device's
// maxStorageBufferBindingSize: the other half is headroom for whatever a plan lays out
// differently. At least 1, at most MaxPoints.
func GPUChunk(a weights.Arch, limitBytes int64) int {
	per := int64(rowValues(a)) * 4
	return int(max(1, min(limitBytes/2/per, MaxPoints)))
}

// CPUChunk returns how many rows one CPU call may take (SampleHooks.Chunk) to cost about budget
// FLOPs, at least 1, at most MaxPoints: in the browser Go runs on the page's thread, so one call is
// as long as the page may go unpainted.
func CPUChunk(a weights.Arch, budget int64) int {
	return int(max(1, min(budget/max(1, rowFLOPs(a)), MaxPoints)))
}
