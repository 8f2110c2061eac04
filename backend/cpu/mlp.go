// Package cpu is the CPU reference engine: the networks of package shaders — the toy MLP of asbm.md
// §6.1 (model/mlp.go) and the image U-Net (model/unet.go, built here in unet.go and unetops.go)
// — trained with gorgonia autodiff and AdamW. Its matrix products run on OpenBLAS when it loads, and
// its hot element-wise loops are vectorised C, each with a pure-Go fallback (package kern, blas.go).
// It implements asbm.Model, so the ASBM math can drive it or the GPU engine interchangeably, and it
// is the truth the GPU kernels are checked against.
package cpu

import (
	"fmt"
	"math"

	"asbm/backend/asbm"
	"asbm/model"
	"asbm/weights"
)

// Config holds the optimiser and EMA settings (asbm.md §2.5: AdamW, weight decay 0, EMA 0.999). It is
// the GPU engine's (model.AdamW), so one configuration drives both engines.
type Config = model.AdamW

// DefaultConfig returns the settings of asbm.md §2.5: AdamW lr 1e-4, betas (0.9, 0.999), eps 1e-8,
// weight decay 0, EMA decay 0.999, no gradient clipping.
func DefaultConfig() Config {
	return Config{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0, EMADecay: 0.999}
}

// maxCachedGraphs bounds how many batch sizes keep a compiled graph per kind (train, forward).
const maxCachedGraphs = 4

// Net is a network (model.Net) trained on the CPU: gorgonia computes the forward pass and the
// gradient, and plain Go applies AdamW (decoupled weight decay, bias correction, optional global-norm
// clipping) and the EMA. It implements asbm.Model.
//
// Eval and Step treat mismatched slice lengths as programmer errors and panic with a message naming
// the lengths. A Net is not safe for concurrent use.
type Net struct {
	arch   weights.Arch
	cfg    Config
	names  []string
	shapes [][]int

	p, ema [][]float32 // parameters and their EMA, in ParamShapes order (bound into the graphs)
	m, v   [][]float32 // AdamW moments
	step   int         // AdamW step count (for bias correction)
	gbuf   [][]float32 // reused headers of the gradient slices

	train, fwd *graphCache // compiled gorgonia graphs by batch size
	emaFwd     *graphCache // U-Net only: forward graphs bound to the EMA parameters

	emaIn  []float32    // MLP only: input rows of the EMA forward
	emaBuf [2][]float32 // MLP only: hidden activations of the EMA forward
}

var _ asbm.Model = (*Net)(nil)

// New returns a Net initialised like model.NewNet(arch, seed) (so the zero output layer and the
// initial weights are shared with every other engine), with its EMA equal to the parameters.
func New(arch weights.Arch, cfg Config, seed uint64) (*Net, error) {
	sm, err := model.NewNet(arch, seed)
	if err != nil {
		return nil, err
	}
	return FromNet(sm, cfg)
}

// FromNet returns a Net starting from a copy of m's parameters (for warm starts, such as a distilled
// generator initialised from its teacher); the EMA starts equal to them and the optimiser is fresh.
func FromNet(m *model.Net, cfg Config) (*Net, error) {
	if m == nil {
		return nil, fmt.Errorf("cpu: nil network")
	}
	if err := model.CheckArch(m.Arch); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names, shapes := model.ParamShapes(m.Arch)
	c := &Net{arch: m.Arch, cfg: cfg, names: names, shapes: shapes,
		train: newGraphCache(maxCachedGraphs), fwd: newGraphCache(maxCachedGraphs), emaFwd: newGraphCache(maxCachedGraphs)}
	for i, name := range names {
		src, ok := m.Params[name]
		if !ok {
			return nil, fmt.Errorf("cpu: network has no parameter %q", name)
		}
		if len(src) != size(shapes[i]) {
			return nil, fmt.Errorf("cpu: parameter %s has %d values, shape %v needs %d", name, len(src), shapes[i], size(shapes[i]))
		}
		c.p = append(c.p, append([]float32(nil), src...))
		c.ema = append(c.ema, append([]float32(nil), src...))
		c.m = append(c.m, make([]float32, len(src)))
		c.v = append(c.v, make([]float32, len(src)))
	}
	return c, nil
}

func size(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// Arch returns the network architecture.
func (c *Net) Arch() weights.Arch { return c.arch }

// Config returns the current optimiser settings.
func (c *Net) Config() Config { return c.cfg }

// SetLR changes the learning rate for the following steps. lr must be finite and ≥ 0; anything else
// is a programmer error and panics.
func (c *Net) SetLR(lr float64) {
	if math.IsNaN(lr) || math.IsInf(lr, 0) || lr < 0 {
		panic(fmt.Sprintf("cpu: SetLR(%v): the learning rate must be finite and ≥ 0", lr))
	}
	c.cfg.LR = lr
}

// Params returns a copy of the current parameters as a model.Net (for export).
func (c *Net) Params() *model.Net { return c.export(c.p) }

// EMAParams returns a copy of the EMA parameters as a model.Net (for export).
func (c *Net) EMAParams() *model.Net { return c.export(c.ema) }

func (c *Net) export(ps [][]float32) *model.Net {
	m := &model.Net{Arch: c.arch, Params: make(map[string][]float32, len(ps))}
	for i, name := range c.names {
		m.Params[name] = append([]float32(nil), ps[i]...)
	}
	return m
}

// Dim is the data dimension.
func (c *Net) Dim() int { return c.arch.Dim }

// Eval writes f(t_i, x_i) of the current parameters into out, computed by gorgonia. t has n entries,
// x and out n·Dim; other lengths panic.
func (c *Net) Eval(t, x, out []float32) {
	n := c.checkEval("Eval", t, x, out)
	if n == 0 {
		return
	}
	c.evalGraph(c.fwd, c.p, t, x, out)
}

// unetEvalChunk is the largest batch of a U-Net forward graph; Eval runs larger batches in chunks.
// Every op of a graph owns its output buffer, about 1.7 MB per image for the default MNIST U-Net, so
// a graph for a 4096-row simulation batch would hold ~7 GB; 128 images (~220 MB) already keep
// both cores busy.
const unetEvalChunk = 128

// evalGraph evaluates the network with parameters params (c.p or c.ema, which the graphs in cache
// are bound to) by gorgonia: in one graph of n rows for an MLP, in chunks of at most unetEvalChunk
// images for a U-Net.
func (c *Net) evalGraph(cache *graphCache, params [][]float32, t, x, out []float32) {
	chunk, d := len(t), c.arch.Dim
	if c.arch.Kind == "unet" {
		chunk = unetEvalChunk
	}
	for i0 := 0; i0 < len(t); i0 += chunk {
		i1 := min(len(t), i0+chunk)
		ng := cache.get(i1-i0, func(n int) (*netGraph, error) { return buildGraph(c.arch, params, n, false) })
		c.fill(ng, t[i0:i1], x[i0*d:i1*d])
		ng.run()
		copy(out[i0*d:i1*d], f32(ng.pred))
	}
}

// EMA returns a Net that evaluates the EMA parameters. It shares the Net's state: it sees later steps
// and must not be used concurrently with it.
func (c *Net) EMA() asbm.Net { return emaNet{c} }

type emaNet struct{ c *Net }

func (e emaNet) Dim() int { return e.c.arch.Dim }

// Eval evaluates the EMA parameters with the plain-Go batched forward (forward.go) rather than a
// gorgonia graph bound to the EMA slices. Both run the same sgemm and SiLU pass and measured
// the same CPU time per 4096-row batch (≈43–44 ms of CPU, BenchmarkEMAEval vs
// BenchmarkEMAEvalGorgonia); the plain one allocates 94 KB instead of 6.5 MB per call and keeps no
// second set of compiled graphs, so it is the one used.
func (e emaNet) Eval(t, x, out []float32) {
	c := e.c
	n := c.checkEval("EMA().Eval", t, x, out)
	if n == 0 {
		return
	}
	if c.arch.Kind == "unet" {
		// No plain-Go batched U-Net here: forward graphs bound to the EMA slices (unet.go).
		c.evalGraph(c.emaFwd, c.ema, t, x, out)
		return
	}
	in := model.InputWidth(c.arch)
	if len(c.emaIn) < n*in {
		c.emaIn = make([]float32, n*in)
	}
	c.fillInput(c.emaIn[:n*in], t, x)
	c.plainForward(c.ema, c.emaIn[:n*in], n, &c.emaBuf, out)
}

func (c *Net) checkEval(what string, t, x, out []float32) int {
	n, d := len(t), c.arch.Dim
	if len(x) != n*d || len(out) != n*d {
		panic(fmt.Sprintf("cpu: %s: len(t) = %d rows needs len(x) = len(out) = %d (Dim %d); got len(x) = %d, len(out) = %d",
			what, n, n*d, d, len(x), len(out)))
	}
	return n
}

// fill writes the inputs of a batch into the graph's bound buffers: the MLP's input rows (fillInput),
// or the U-Net's images and [n, 2F] time features.
func (c *Net) fill(ng *netGraph, t, x []float32) {
	if c.arch.Kind != "unet" {
		c.fillInput(ng.x, t, x)
		return
	}
	copy(ng.x, x)
	F := c.arch.Fourier
	for r := range t {
		row := ng.tf[r*2*F : (r+1)*2*F]
		if r > 0 && t[r] == t[r-1] {
			copy(row, ng.tf[(r-1)*2*F:r*2*F])
		} else {
			model.TimeFeatures(t[r], F, row)
		}
	}
}

// fillInput writes the network input rows [x_i, sin(ω_k t_i), cos(ω_k t_i)] (asbm.md §6.1) into dst.
// Consecutive rows with the same t (every row of a sampler step) reuse the features of the previous
// row instead of recomputing 2F sines and cosines.
func (c *Net) fillInput(dst, t, x []float32) {
	d, in := c.arch.Dim, model.InputWidth(c.arch)
	for r := range t {
		row := dst[r*in : (r+1)*in]
		copy(row[:d], x[r*d:(r+1)*d])
		if r > 0 && t[r] == t[r-1] {
			copy(row[d:], dst[(r-1)*in+d:r*in])
		} else {
			model.TimeFeatures(t[r], c.arch.Fourier, row[d:])
		}
	}
}

// Step takes one AdamW step on L = mean_{i,j} (w_i·f(t_i, x_i)_j − y_ij)² (w nil means all ones)
// and then updates the EMA; it returns L before the step. The gradient comes from gorgonia; when
// GradClip > 0 it is scaled by min(1, GradClip/(‖g‖ + 1e-6)) over all parameters together (as
// torch.nn.utils.clip_grad_norm_). t and w (when not nil) have n ≥ 1 entries, x and y n·Dim; other
// lengths panic.
func (c *Net) Step(t, x, w, y []float32) float32 {
	n, d := len(t), c.arch.Dim
	if n == 0 || len(x) != n*d || len(y) != n*d || (w != nil && len(w) != n) {
		panic(fmt.Sprintf("cpu: Step: len(t) = %d rows (must be ≥ 1) needs len(x) = len(y) = %d (Dim %d) and len(w) = %d or w nil; got len(x) = %d, len(y) = %d, len(w) = %d",
			n, n*d, d, n, len(x), len(y), len(w)))
	}
	ng, loss := c.lossGrad(t, x, w, y)
	c.update(ng)
	return loss
}

// lossGrad runs the training graph for the batch: it returns the graph, whose grads then hold
// ∂L/∂p, and L. The lengths have been checked by Step.
func (c *Net) lossGrad(t, x, w, y []float32) (*netGraph, float32) {
	n, d := len(t), c.arch.Dim
	ng := c.train.get(n, func(n int) (*netGraph, error) { return buildGraph(c.arch, c.p, n, true) })
	c.fill(ng, t, x)
	copy(ng.y, y)
	if w == nil {
		for i := range ng.wy {
			ng.wy[i] = 1
		}
	} else {
		for i, wi := range w {
			for j := 0; j < d; j++ {
				ng.wy[i*d+j] = wi
			}
		}
	}
	ng.run()
	return ng, scalarF32(ng.loss)
}

// update applies global-norm clipping, AdamW and the EMA to every parameter from the gradients of
// the last run of ng. The arithmetic is float64 per entry, stored as float32.
func (c *Net) update(ng *netGraph) {
	grads := c.gbuf[:0] // slice headers only; the data is gorgonia's
	for _, gn := range ng.grads {
		grads = append(grads, f32(gn))
	}
	c.gbuf = grads
	for i := range grads {
		if len(grads[i]) != len(c.p[i]) {
			panic(fmt.Sprintf("cpu: gradient of %s has %d values, want %d", c.names[i], len(grads[i]), len(c.p[i])))
		}
	}
	scale := 1.0
	if c.cfg.GradClip > 0 {
		var ss float64
		for _, g := range grads {
			for _, v := range g {
				ss += float64(v) * float64(v)
			}
		}
		if coef := c.cfg.GradClip / (math.Sqrt(ss) + 1e-6); coef < 1 {
			scale = coef
		}
	}
	c.step++
	lr, b1, b2, eps := c.cfg.LR, c.cfg.Beta1, c.cfg.Beta2, c.cfg.Eps
	decay := 1 - lr*c.cfg.WeightDecay
	bc1 := 1 - math.Pow(b1, float64(c.step))
	sbc2 := math.Sqrt(1 - math.Pow(b2, float64(c.step)))
	stepSize := lr / bc1
	d := c.cfg.EMADecay
	total := 0
	for _, g := range grads {
		total += len(g)
	}
	// Every value is updated on its own, so splitting the tensors over the cores changes nothing in
	// the result (resume stays bit-identical).
	parallelItems(len(grads), total/len(grads), func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			p, m, v, e := c.p[i], c.m[i], c.v[i], c.ema[i]
			for j, gj := range grads[i] {
				gv := float64(gj) * scale
				mj := b1*float64(m[j]) + (1-b1)*gv
				vj := b2*float64(v[j]) + (1-b2)*gv*gv
				pj := float64(p[j])*decay - stepSize*mj/(math.Sqrt(vj)/sbc2+eps)
				m[j], v[j], p[j] = float32(mj), float32(vj), float32(pj)
				e[j] = float32(d*float64(e[j]) + (1-d)*float64(p[j]))
			}
		}
	})
}

// ResetOptimizer zeroes the AdamW moments and the step count (asbm.md §2.5, stage switch). The
// parameters and the EMA are kept.
func (c *Net) ResetOptimizer() {
	for i := range c.m {
		clear(c.m[i])
		clear(c.v[i])
	}
	c.step = 0
}

// State key prefixes; each is followed by a parameter name from model.ParamShapes.
const (
	statePrefixParam = "param/"
	statePrefixEMA   = "ema/"
	statePrefixM     = "adam_m/"
	statePrefixV     = "adam_v/"
	// stateStep holds the AdamW step count as a one-element array (exact up to 2²⁴ steps).
	stateStep = "adam_step"
)

// State returns copies of everything needed to resume training: "param/<name>", "ema/<name>",
// "adam_m/<name>", "adam_v/<name>" for every parameter, and "adam_step" (one value).
func (c *Net) State() map[string][]float32 {
	s := make(map[string][]float32, 4*len(c.names)+1)
	for i, name := range c.names {
		s[statePrefixParam+name] = append([]float32(nil), c.p[i]...)
		s[statePrefixEMA+name] = append([]float32(nil), c.ema[i]...)
		s[statePrefixM+name] = append([]float32(nil), c.m[i]...)
		s[statePrefixV+name] = append([]float32(nil), c.v[i]...)
	}
	s[stateStep] = []float32{float32(c.step)}
	return s
}

// SetState restores a State of a Net with the same architecture. It checks every entry before
// changing anything, so on error the Net is unchanged. The optimiser settings are not part of the
// state.
func (c *Net) SetState(s map[string][]float32) error {
	want := 4*len(c.names) + 1
	if len(s) != want {
		return fmt.Errorf("cpu: state has %d entries, this arch needs %d", len(s), want)
	}
	st, ok := s[stateStep]
	if !ok || len(st) != 1 {
		return fmt.Errorf("cpu: state needs %q with one value", stateStep)
	}
	step := float64(st[0])
	if step < 0 || step != math.Trunc(step) || step > 1<<24 {
		return fmt.Errorf("cpu: state %q = %v is not a step count", stateStep, st[0])
	}
	for _, prefix := range []string{statePrefixParam, statePrefixEMA, statePrefixM, statePrefixV} {
		for i, name := range c.names {
			v, ok := s[prefix+name]
			if !ok {
				return fmt.Errorf("cpu: state has no %q", prefix+name)
			}
			if len(v) != len(c.p[i]) {
				return fmt.Errorf("cpu: state %q has %d values, shape %v needs %d", prefix+name, len(v), c.shapes[i], len(c.p[i]))
			}
		}
	}
	// Copy into the existing slices: the compiled graphs are bound to them.
	for i, name := range c.names {
		copy(c.p[i], s[statePrefixParam+name])
		copy(c.ema[i], s[statePrefixEMA+name])
		copy(c.m[i], s[statePrefixM+name])
		copy(c.v[i], s[statePrefixV+name])
	}
	c.step = int(step)
	return nil
}

// Steps returns the AdamW step count since construction or the last ResetOptimizer.
func (c *Net) Steps() int { return c.step }
