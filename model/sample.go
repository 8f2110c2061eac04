package model

// sample.go is the samplers: their options and hooks, the Engine interface, Run (the four samplers
// written out once, with progress, previews, pauses and chunks), the CPU engine and the chunk sizes.
// It is about 580 lines because Run is the one place all of that meets.

import (
	"fmt"
	"math"

	"asbm/weights"
)

// MaxPoints caps SampleOptions.Points and GPUNet.Forward's batch: 2^18 rows of a width-128 hidden
// layer fill WebGPU's default 128 MiB storage binding.
const MaxPoints = 1 << 18

// MaxSteps caps SampleOptions.Steps.
const MaxSteps = 100000

// SampleOptions selects a sampler (asbm.md §3.3) and the VP base it integrates (asbm.md §1.2).
type SampleOptions struct {
	Points int // number of points n, 1 … MaxPoints
	Steps  int // N, 1 … MaxSteps; ignored by "gen"
	// Method is "sde" (Euler–Maruyama backward SDE), "ode" (Heun PF-ODE), "ancestral" (the
	// base bridge's posterior at Tweedie's x̂_0, Run) or "gen" (one step).
	Method string
	Seed   uint64 // noise seed (NewNoise)

	Beta0, Beta1, SigmaV float64 // β(t) = β0 + (β1−β0)t, g(t)² = σ_v²β(t)

	// SigmaScaled says the score-type networks (Score and Gen) output σ_t·s rather than the score s
	// (the scale of asbm.md §3.2's regression, σ_t s_ψ ≈ −ε): Run multiplies their coefficients by
	// 1/σ_t (VP.InvSigma), so every engine samples such a file without touching the network.
	SigmaScaled bool

	// Denoise replaces the last step of "sde" and "ode", from t = 1/N to 0, by Tweedie's estimate
	// x̂_0 = (x + σ_t² s(t, x))/α_t at t = 1/N: the mean of X_0 given X_t = x, exactly, for the
	// minimiser s* of the score regression (asbm.md §3.2, s* = E[(α_t X_0 − x)/σ_t² | X_t = x]; the
	// DSM score of the memoryless baseline likewise). An Euler step there leaves the noise the last
	// interval should remove, which at N ≤ 8 is the grain of the samples. The ODE's last step then
	// needs no control network. "gen" is unaffected (it is this estimate at t = 1 already).
	Denoise bool

	// X1, if not nil, is the start state x_1 (Points×dim) instead of a draw from the seed's stream.
	X1 []float32
	// Noise, if not nil, is the stream the run draws from (x_1 first unless X1 is given, then each
	// step's ε) instead of NewNoise(Seed); the run advances it.
	Noise *Noise
}

// VP is the base the options integrate.
func (o SampleOptions) VP() VP { return VP{Beta0: o.Beta0, Beta1: o.Beta1, SigmaV: o.SigmaV} }

// Evaluator is a network f(t, x) evaluated on a batch: t has n entries, x and out n·Dim() values
// (row-major). *Net (the plain-Go forward) is one; the training engines' models are others.
// Implementations must not retain the slices.
type Evaluator interface {
	Dim() int
	Eval(t, x, out []float32)
}

// Nets are the networks a sampler may use: Score s_ψ ("sde", "ode"), Control u_θ ("ode"; nil means
// u ≡ 0, the memoryless baseline) and Gen, the distilled generator ("gen").
type Nets struct{ Score, Control, Gen Evaluator }

// Validate checks o against the networks present (their Dim; 0 = absent) and returns the data dim.
func (o SampleOptions) Validate(score, control, gen int) (int, error) {
	if o.Points < 1 || o.Points > MaxPoints {
		return 0, fmt.Errorf("sample: points = %d, need 1 … %d", o.Points, MaxPoints)
	}
	for _, p := range []float64{o.Beta0, o.Beta1, o.SigmaV} {
		if math.IsNaN(p) || math.IsInf(p, 0) {
			return 0, fmt.Errorf("sample: β0 = %v, β1 = %v, σ_v = %v must be finite", o.Beta0, o.Beta1, o.SigmaV)
		}
	}
	if o.Beta0 < 0 || o.Beta1 < 0 || o.Beta0+o.Beta1 <= 0 {
		return 0, fmt.Errorf("sample: need β0, β1 ≥ 0 and β0 + β1 > 0; got %v, %v", o.Beta0, o.Beta1)
	}
	if o.SigmaV <= 0 {
		return 0, fmt.Errorf("sample: σ_v = %v, need > 0", o.SigmaV)
	}
	var dims []int
	switch o.Method {
	case "sde", "ode", "ancestral":
		if o.Steps < 1 || o.Steps > MaxSteps {
			return 0, fmt.Errorf("sample: steps = %d, need 1 … %d", o.Steps, MaxSteps)
		}
		if score == 0 {
			return 0, fmt.Errorf("sample: method %q needs the score network", o.Method)
		}
		dims = append(dims, score)
		if o.Method == "ode" && control != 0 {
			dims = append(dims, control)
		}
	case "gen":
		if gen == 0 {
			return 0, fmt.Errorf("sample: method \"gen\" needs the distilled generator network")
		}
		dims = append(dims, gen)
	default:
		return 0, fmt.Errorf("sample: unknown method %q: use \"sde\", \"ode\", \"ancestral\" or \"gen\"", o.Method)
	}
	for _, d := range dims[1:] {
		if d != dims[0] {
			return 0, fmt.Errorf("sample: the networks disagree on the data dimension (%d vs %d)", dims[0], d)
		}
	}
	if o.X1 != nil && len(o.X1) != o.Points*dims[0] {
		return 0, fmt.Errorf("sample: x_1 has %d values, %d points of dimension %d need %d", len(o.X1), o.Points, dims[0], o.Points*dims[0])
	}
	return dims[0], nil
}

// ValidateRun checks o and h for a run whose networks dimOf reports (their Dim, 0 when absent,
// with used saying whether the method needs that network: the score for "sde" and "ode", the
// control for "ode", the generator for "gen") and returns the data dimension and whether the ODE
// has a control network. Every engine's entry point calls it before Run.
func (o SampleOptions) ValidateRun(h SampleHooks, dimOf func(net Slot, used bool) (int, error)) (dim int, control bool, err error) {
	var dims [NumSlots]int
	for _, c := range []struct {
		net  Slot
		used bool
	}{{SlotScore, o.Method != "gen"}, {SlotControl, o.Method == "ode"}, {SlotGen, o.Method == "gen"}} {
		if dims[c.net], err = dimOf(c.net, c.used); err != nil {
			return 0, false, err
		}
	}
	if dim, err = o.Validate(dims[SlotScore], dims[SlotControl], dims[SlotGen]); err != nil {
		return 0, false, err
	}
	if err := h.Validate(); err != nil {
		return 0, false, err
	}
	return dim, dims[SlotControl] != 0, nil
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

// Validate checks h.
func (h SampleHooks) Validate() error {
	if h.Chunk < 0 || h.PreviewEvery < 0 {
		return fmt.Errorf("sample: chunk %d and preview interval %d must be ≥ 0", h.Chunk, h.PreviewEvery)
	}
	return nil
}

// RowsPerCall returns the rows per network call for n points.
func (h SampleHooks) RowsPerCall(n int) int {
	if h.Chunk == 0 || h.Chunk > n {
		return n
	}
	return h.Chunk
}

// Slot names the n×dim arrays a sampler works on; engines map them to buffers or slices.
type Slot int

// The slots of Run's schedule.
const (
	SlotNone    Slot = iota
	SlotX            // the current x
	SlotNext         // the updated x (WebGPU cannot write a buffer it reads in the same dispatch)
	SlotTilde        // Heun's predictor x̃
	SlotV1           // v(t_k, x)
	SlotV2           // v(t_{k+1}, x̃)
	SlotNoise        // ε_k
	SlotScore        // the latest score output
	SlotControl      // the latest control output
	SlotGen          // the latest generator output
	NumSlots
)

// Engine executes a sampler's schedule: the GPU (shaders) records into command buffers, the CPU
// computes now. Run is the one place where the samplers' arithmetic is written down.
type Engine interface {
	SetX(v []float32) error
	SetTimes(t0, t1 float32) error // the two times Eval's tslot picks from
	SetNoise(v []float32) error
	// Eval computes net on rows lo … hi−1 of x into the same rows of slot net (net ∈ {SlotScore,
	// SlotControl, SlotGen}).
	Eval(net Slot, x Slot, tslot, lo, hi int) error
	Update(dst, x, y, z Slot, a, b, c float32) error // dst = a·x + b·y + c·z; SlotNone drops a term
	Copy(dst, src Slot) error
	EndStep(step, total int) error
	State() ([]float32, error)  // SlotX now, read-only, valid until the next engine call
	Result() ([]float32, error) // SlotX, the caller's to keep
}

// Run integrates from x_1 ~ N(0, I) (drawn first from the seed's stream, or o.X1) to t = 0 with the
// samplers of asbm.md §3.3 on the grid t_k = 1 − k/N, Δ = 1/N, on e, for o already validated
// (SampleOptions.Validate gives dim; control says whether the ODE has a control network):
//
//	"sde": x ← x + Δ(½βx + g²s) + √(g²Δ)·ε_k, no noise on the last step (Euler–Maruyama);
//	"ode": v(t, x) = −½β(t)x + ½g(t)²(u(t, x) − s(t, x)), Heun with a final Euler step;
//	"ancestral": x ← a·x̂_0 + b·x + γ·ε_k with x̂_0 = (x + σ_t² s)/α_t and (a, b, γ²) = VP.Posterior(t_{k+1}, t_k);
//	"gen": x_0 = (z + σ_1² G(1, z))/α_1 (asbm.md §4.2);
//
// with o.Denoise the last step of "sde" and "ode" is x_0 = (x + σ_t² s(t, x))/α_t at t = 1/N instead.
//
// "ancestral" is DDPM's sampler carried to the bridge: the SB's path measure is a mixture of base
// bridges (asbm.md §1.4), so given X_t = x and X_0 the state X_s (s < t) is the base bridge's
// N(a X_0 + b x, γ²) whatever the coupling; the step puts Tweedie's E[X_0 | X_t = x] (exact for the
// regression's minimiser, asbm.md §3.2) in place of X_0. Its last step (s = 0: a = 1, b = γ = 0) is
// x̂_0 itself. Like "sde" it costs one score call a step and draws ε_k for k < N−1.
//
// s and G are the score and generator networks' outputs, divided by σ_t when o.SigmaScaled (folded
// into the coefficients). Coefficients are computed in float64 and applied in float32 as
// a·x + b·y + c·z. h adds progress, previews, pauses and chunks.
func Run(e Engine, o SampleOptions, dim int, control bool, h SampleHooks) ([]float32, error) {
	n := o.Points * dim
	v := o.VP()
	rng := o.Noise
	if rng == nil {
		rng = NewNoise(o.Seed)
	}
	x1 := o.X1
	if x1 == nil {
		x1 = rng.Normal(n)
	}
	if err := e.SetX(x1); err != nil {
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
		if err := e.EndStep(step, total); err != nil {
			return err
		}
		if h.Progress == nil {
			return nil
		}
		var pv []float32
		if previewDue(step) {
			var err error
			if pv, err = e.State(); err != nil {
				return err
			}
		}
		return h.Progress(step, total, pv)
	}
	// evalNet runs a network on every row, chunk rows per call, pausing after each call.
	chunk := h.RowsPerCall(o.Points)
	evalNet := func(net, x Slot, tslot int) error {
		for lo := 0; lo < o.Points; lo += chunk {
			if err := e.Eval(net, x, tslot, lo, min(o.Points, lo+chunk)); err != nil {
				return err
			}
			if h.Pause != nil {
				h.Pause()
			}
		}
		return nil
	}
	f32 := func(x float64) float32 { return float32(x) }
	// sc(t) turns a score-type network's output into s (SigmaScaled): 1/σ_t, or 1.
	sc := func(t float64) float64 {
		if o.SigmaScaled {
			return v.InvSigma(t)
		}
		return 1
	}
	// tweedie(t) gives x̂_0 = a·x + b·(network output) = (x + σ_t² s(t, x))/α_t (SampleOptions.Denoise).
	tweedie := func(t float64) (a, b float64) {
		at := v.Alpha(t)
		return 1 / at, v.Sigma2(t) / at * sc(t)
	}
	switch o.Method {
	case "gen":
		// x_0 = (z + σ_1² G(1, z)) / α_1 with z = x_1.
		a, b := tweedie(1)
		steps := []func() error{
			func() error { return e.SetTimes(1, 1) },
			func() error { return evalNet(SlotGen, SlotX, 0) },
			func() error { return e.Update(SlotNext, SlotX, SlotGen, SlotNone, f32(a), f32(b), 0) },
			func() error { return e.Copy(SlotX, SlotNext) },
			func() error { return report(1, 1) },
		}
		for _, s := range steps {
			if err := s(); err != nil {
				return nil, err
			}
		}
	case "sde", "ancestral":
		// One score call a step, x ← a·x + b·s + c·ε_k, no noise on the last step:
		//   sde:       a = 1 + ½βΔ, b = Δg², c = √(g²Δ);
		//   ancestral: a·x̂_0 + b·x + γ·ε_k with x̂_0 = (x + σ_t² s)/α_t, i.e. a = b_p + a_p/α_t,
		//              b = a_p σ_t²/α_t, c = γ for (a_p, b_p, γ²) = VP.Posterior(t_{k+1}, t_k).
		N := o.Steps
		dt := 1 / float64(N)
		eps := make([]float32, n)
		for k := 0; k < N; k++ {
			tk := 1 - float64(k)/float64(N)
			var a, b, c float64
			if o.Method == "sde" {
				g2 := v.G2(tk)
				a, b, c = 1+0.5*v.Beta(tk)*dt, dt*g2*sc(tk), math.Sqrt(g2*dt)
				if k == N-1 && o.Denoise {
					a, b = tweedie(tk)
				}
			} else {
				pa, pb, pg2 := v.Posterior(1-float64(k+1)/float64(N), tk)
				at := v.Alpha(tk)
				a, b, c = pb+pa/at, pa*v.Sigma2(tk)/at*sc(tk), math.Sqrt(pg2)
			}
			if err := e.SetTimes(f32(tk), f32(tk)); err != nil {
				return nil, err
			}
			z := SlotNone
			if k < N-1 {
				rng.Fill(eps)
				if err := e.SetNoise(eps); err != nil {
					return nil, err
				}
				z = SlotNoise
			} else {
				c = 0 // no noise on the last step
			}
			if err := evalNet(SlotScore, SlotX, 0); err != nil {
				return nil, err
			}
			if err := e.Update(SlotNext, SlotX, SlotScore, z, f32(a), f32(b), f32(c)); err != nil {
				return nil, err
			}
			if err := e.Copy(SlotX, SlotNext); err != nil {
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
		ctrl := SlotNone
		if control {
			ctrl = SlotControl
		}
		velocity := func(dst, x Slot, tslot int, t float64) error {
			if err := evalNet(SlotScore, x, tslot); err != nil {
				return err
			}
			if control {
				if err := evalNet(SlotControl, x, tslot); err != nil {
					return err
				}
			}
			g2 := v.G2(t)
			return e.Update(dst, x, ctrl, SlotScore, f32(-0.5*v.Beta(t)), f32(0.5*g2), f32(-0.5*g2*sc(t)))
		}
		// odeStep writes step k's result, from t_k to t_{k+1}, to SlotNext.
		odeStep := func(k int, tk, tk1 float64) error {
			if k == N-1 && o.Denoise {
				a, b := tweedie(tk)
				if err := evalNet(SlotScore, SlotX, 0); err != nil {
					return err
				}
				return e.Update(SlotNext, SlotX, SlotScore, SlotNone, f32(a), f32(b), 0)
			}
			if err := velocity(SlotV1, SlotX, 0, tk); err != nil {
				return err
			}
			if k == N-1 {
				return e.Update(SlotNext, SlotX, SlotV1, SlotNone, 1, f32(-dt), 0)
			}
			// x̃ = x − Δ v(t_k, x); x ← x − ½Δ(v(t_k, x) + v(t_{k+1}, x̃)).
			if err := e.Update(SlotTilde, SlotX, SlotV1, SlotNone, 1, f32(-dt), 0); err != nil {
				return err
			}
			if err := velocity(SlotV2, SlotTilde, 1, tk1); err != nil {
				return err
			}
			return e.Update(SlotNext, SlotX, SlotV1, SlotV2, 1, f32(-0.5*dt), f32(-0.5*dt))
		}
		for k := 0; k < N; k++ {
			tk := 1 - float64(k)/float64(N)
			tk1 := 1 - float64(k+1)/float64(N)
			if err := e.SetTimes(f32(tk), f32(tk1)); err != nil {
				return nil, err
			}
			if err := odeStep(k, tk, tk1); err != nil {
				return nil, err
			}
			if err := e.Copy(SlotX, SlotNext); err != nil {
				return nil, err
			}
			if err := report(k+1, N); err != nil {
				return nil, err
			}
		}
	}
	return e.Result()
}

// SampleCPU draws o.Points points on the CPU with any Evaluator: *Net (the plain-Go forward) makes
// it the reference SampleGPU is tested against and the browser's CPU path; the training engines'
// models make it their sampler (`backend sample`, `backend eval`, distillation's teacher). h adds
// progress, previews, pauses and chunks (SampleHooks; its zero value adds nothing).
func SampleCPU(nets Nets, o SampleOptions, h SampleHooks) ([]float32, error) {
	dimOf := func(m Evaluator, used bool) (int, Evaluator, error) {
		if absent(m) || !used {
			return 0, nil, nil
		}
		if net, ok := m.(*Net); ok {
			if err := net.Check(); err != nil {
				return 0, nil, err
			}
		}
		return m.Dim(), m, nil
	}
	var e cpuEngine
	nets3 := [NumSlots]Evaluator{SlotScore: nets.Score, SlotControl: nets.Control, SlotGen: nets.Gen}
	dim, control, err := o.ValidateRun(h, func(net Slot, used bool) (int, error) {
		d, m, err := dimOf(nets3[net], used)
		e.nets[net] = m
		return d, err
	})
	if err != nil {
		return nil, err
	}
	e.n, e.dim = o.Points, dim
	return Run(&e, o, dim, control, h)
}

// absent reports a missing network: a nil interface or a nil *Net inside one.
func absent(m Evaluator) bool {
	if m == nil {
		return true
	}
	net, ok := m.(*Net)
	return ok && net == nil
}

// cpuEngine runs the schedule on slices.
type cpuEngine struct {
	n, dim int
	nets   [NumSlots]Evaluator
	s      [NumSlots][]float32
	times  [2]float32
	t      []float32
}

func (e *cpuEngine) get(s Slot) []float32 {
	if e.s[s] == nil {
		e.s[s] = make([]float32, e.n*e.dim)
	}
	return e.s[s]
}

func (e *cpuEngine) SetX(v []float32) error     { copy(e.get(SlotX), v); return nil }
func (e *cpuEngine) SetNoise(v []float32) error { copy(e.get(SlotNoise), v); return nil }
func (e *cpuEngine) SetTimes(t0, t1 float32) error {
	e.times = [2]float32{t0, t1}
	return nil
}

// Eval evaluates the network on rows lo … hi−1.
func (e *cpuEngine) Eval(net, x Slot, tslot, lo, hi int) error {
	if len(e.t) != e.n {
		e.t = make([]float32, e.n)
	}
	for i := lo; i < hi; i++ {
		e.t[i] = e.times[tslot]
	}
	xs, out := e.get(x), e.get(net)
	e.nets[net].Eval(e.t[lo:hi], xs[lo*e.dim:hi*e.dim], out[lo*e.dim:hi*e.dim])
	return nil
}

func (e *cpuEngine) Update(dst, x, y, z Slot, a, b, c float32) error {
	if y == SlotNone {
		y, b = x, 0
	}
	if z == SlotNone {
		z, c = x, 0
	}
	d, xs, ys, zs := e.get(dst), e.get(x), e.get(y), e.get(z)
	for i := range d {
		d[i] = a*xs[i] + b*ys[i] + c*zs[i]
	}
	return nil
}

func (e *cpuEngine) Copy(dst, src Slot) error  { copy(e.get(dst), e.get(src)); return nil }
func (e *cpuEngine) EndStep(int, int) error    { return nil }
func (e *cpuEngine) State() ([]float32, error) { return e.get(SlotX), nil }
func (e *cpuEngine) Result() ([]float32, error) {
	return append([]float32(nil), e.get(SlotX)...), nil
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

// RowFLOPs is the cost of one row's forward pass (multiply and add counted apart).
func RowFLOPs(a weights.Arch) int64 {
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
	return int(max(1, min(budget/max(1, RowFLOPs(a)), MaxPoints)))
}

// CPUNets are Nets held as plain-Go networks (nil: absent).
type CPUNets struct{ Score, Control, Gen *Net }

// Nets returns c as Nets, a nil *Net as a nil Evaluator.
func (c CPUNets) Nets() Nets {
	var n Nets
	for _, p := range []struct {
		src *Net
		dst *Evaluator
	}{{c.Score, &n.Score}, {c.Control, &n.Control}, {c.Gen, &n.Gen}} {
		if p.src != nil {
			*p.dst = p.src
		}
	}
	return n
}
