// Package gpu is the WebGPU training engine: the networks of model.Net (the toy MLP of asbm.md §6.1
// and the image U-Net of model/unet.go) trained through WGSL compute kernels (shaders.Trainer) on a
// native WebGPU device. It implements asbm.Model with the same
// initialisation, optimiser (AdamW with decoupled weight decay, bias correction, global-norm
// clipping), EMA and State keys as backend/cpu, so checkpoints move freely between the engines.
package gpu

import (
	"fmt"
	"math"
	"sync"

	"asbm/backend/asbm"
	"asbm/model"
	"asbm/shaders"
	"asbm/weights"
)

var (
	devOnce sync.Once
	dev     *shaders.Device
	devErr  error
)

// Device returns the process-wide WebGPU device every network of this package runs on, opening it on
// first use. The error wraps shaders.ErrNoAdapter when the host has no adapter.
func Device() (*shaders.Device, error) {
	devOnce.Do(func() { dev, devErr = shaders.NewDevice() })
	return dev, devErr
}

// Net is a network (model.Net) trained on the GPU. It implements asbm.Model. asbm.Model's Eval
// and Step cannot return errors, so a device failure there panics with the device's error, and
// mismatched slice lengths panic like backend/cpu. Not safe for concurrent use.
type Net struct {
	tm  *shaders.Trainer
	cfg model.AdamW
}

var _ asbm.Model = (*Net)(nil)

// New returns a Net initialised like model.NewNet(arch, seed) (the same start as cpu.New), with
// its EMA equal to the parameters, on the shared Device.
func New(arch weights.Arch, cfg model.AdamW, seed uint64) (*Net, error) {
	sm, err := model.NewNet(arch, seed)
	if err != nil {
		return nil, err
	}
	return FromNet(sm, cfg)
}

// FromNet returns a Net starting from a copy of m's parameters (warm starts, like cpu.FromNet); the
// EMA starts equal to them and the optimiser is fresh.
func FromNet(m *model.Net, cfg model.AdamW) (*Net, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, err := Device()
	if err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	tm, err := shaders.NewTrainer(d, m, cfg)
	if err != nil {
		return nil, err
	}
	return &Net{tm: tm, cfg: cfg}, nil
}

// Close frees the network's GPU buffers (the shared device stays open). Idempotent.
func (g *Net) Close() { g.tm.Close() }

// Arch returns the network architecture.
func (g *Net) Arch() weights.Arch { return g.tm.Arch() }

// Config returns the current optimiser settings.
func (g *Net) Config() model.AdamW { return g.cfg }

// SetLR changes the learning rate for the following steps. lr must be finite and ≥ 0; anything else
// is a programmer error and panics (as cpu.Net.SetLR).
func (g *Net) SetLR(lr float64) {
	if err := g.tm.SetLR(lr); err != nil {
		panic(fmt.Sprintf("gpu: SetLR(%v): %v", lr, err))
	}
	g.cfg.LR = lr
}

// Steps returns the AdamW step count since construction or the last ResetOptimizer.
func (g *Net) Steps() int { return g.tm.Steps() }

// Params returns a copy of the current parameters, read back from the device.
func (g *Net) Params() *model.Net { return must(g.tm.Params()) }

// EMAParams returns a copy of the EMA parameters, read back from the device.
func (g *Net) EMAParams() *model.Net { return must(g.tm.EMAParams()) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("gpu: %v", err))
	}
	return v
}

// Dim is the data dimension.
func (g *Net) Dim() int { return g.tm.Arch().Dim }

// Eval writes f(t_i, x_i) of the current parameters into out. t has n entries, x and out n·Dim.
func (g *Net) Eval(t, x, out []float32) { eval(g, "Eval", g.tm.Eval, t, x, out) }

// EMA returns a Net evaluating the EMA parameters; it shares the network's state.
func (g *Net) EMA() asbm.Net { return emaNet{g} }

type emaNet struct{ g *Net }

func (e emaNet) Dim() int { return e.g.Dim() }

func (e emaNet) Eval(t, x, out []float32) { eval(e.g, "EMA().Eval", e.g.tm.EMAEval, t, x, out) }

func eval(g *Net, what string, f func(t, x []float32) ([]float32, error), t, x, out []float32) {
	n, d := len(t), g.Dim()
	if len(x) != n*d || len(out) != n*d {
		panic(fmt.Sprintf("gpu: %s: len(t) = %d rows needs len(x) = len(out) = %d (Dim %d); got len(x) = %d, len(out) = %d",
			what, n, n*d, d, len(x), len(out)))
	}
	if n == 0 {
		return
	}
	copy(out, must(f(t, x)))
}

// Step takes one AdamW step on L = mean_{i,j} (w_i·f(t_i, x_i)_j − y_ij)² (w nil means all ones),
// with global-norm clipping when GradClip > 0, then updates the EMA; it returns L before the step.
// t and w (when not nil) have n ≥ 1 entries, x and y n·Dim; other lengths panic.
func (g *Net) Step(t, x, w, y []float32) float32 {
	n, d := len(t), g.Dim()
	if n == 0 || len(x) != n*d || len(y) != n*d || (w != nil && len(w) != n) {
		panic(fmt.Sprintf("gpu: Step: len(t) = %d rows (must be ≥ 1) needs len(x) = len(y) = %d (Dim %d) and len(w) = %d or w nil; got len(x) = %d, len(y) = %d, len(w) = %d",
			n, n*d, d, n, len(x), len(y), len(w)))
	}
	return must(g.tm.Step(t, x, w, y))
}

// ResetOptimizer zeroes the AdamW moments and the step count (asbm.md §2.5); parameters and EMA stay.
func (g *Net) ResetOptimizer() {
	if err := g.tm.ResetOptimizer(); err != nil {
		panic(fmt.Sprintf("gpu: %v", err))
	}
}

// State keys, the same as backend/cpu's: each prefix is followed by a parameter name from
// model.ParamShapes.
const (
	statePrefixParam = "param/"
	statePrefixEMA   = "ema/"
	statePrefixM     = "adam_m/"
	statePrefixV     = "adam_v/"
	stateStep        = "adam_step" // one value, exact up to 2²⁴ steps
)

// State returns copies of everything needed to resume training under backend/cpu's keys:
// "param/<name>", "ema/<name>", "adam_m/<name>", "adam_v/<name>" and "adam_step" (one value). It
// panics if the device fails (asbm.Model.State returns no error).
func (g *Net) State() map[string][]float32 {
	st := must(g.tm.State())
	names := g.tm.Names()
	s := make(map[string][]float32, 4*len(names)+1)
	for i, name := range names {
		s[statePrefixParam+name] = st.Params[i]
		s[statePrefixEMA+name] = st.EMA[i]
		s[statePrefixM+name] = st.M[i]
		s[statePrefixV+name] = st.V[i]
	}
	s[stateStep] = []float32{float32(st.Step)}
	return s
}

// SetState restores a State (from this engine or backend/cpu) of the same architecture. It checks
// every entry before changing anything, so on error the network is unchanged.
func (g *Net) SetState(s map[string][]float32) error {
	names := g.tm.Names()
	_, shapes := model.ParamShapes(g.tm.Arch())
	want := 4*len(names) + 1
	if len(s) != want {
		return fmt.Errorf("gpu: state has %d entries, this arch needs %d", len(s), want)
	}
	stv, ok := s[stateStep]
	if !ok || len(stv) != 1 {
		return fmt.Errorf("gpu: state needs %q with one value", stateStep)
	}
	step := float64(stv[0])
	if step < 0 || step != math.Trunc(step) || step > 1<<24 {
		return fmt.Errorf("gpu: state %q = %v is not a step count", stateStep, stv[0])
	}
	st := &shaders.TrainState{Step: int(step)}
	for _, c := range []struct {
		prefix string
		dst    *[][]float32
	}{{statePrefixParam, &st.Params}, {statePrefixEMA, &st.EMA}, {statePrefixM, &st.M}, {statePrefixV, &st.V}} {
		for i, name := range names {
			v, ok := s[c.prefix+name]
			if !ok {
				return fmt.Errorf("gpu: state has no %q", c.prefix+name)
			}
			n := 1
			for _, d := range shapes[i] {
				n *= d
			}
			if len(v) != n {
				return fmt.Errorf("gpu: state %q has %d values, shape %v needs %d", c.prefix+name, len(v), shapes[i], n)
			}
			*c.dst = append(*c.dst, v)
		}
	}
	return g.tm.SetState(st)
}
