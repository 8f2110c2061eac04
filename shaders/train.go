package shaders

// train.go is the GPU Trainer for both network kinds: buffers, the AdamW/EMA step, the loss, state
// save/restore and the MLP passes (the U-Net's passes are train_unet.go). It is a little over 500
// lines because the Trainer's methods share its buffer bookkeeping.

import (
	_ "embed"
	"fmt"
	"math"

	"github.com/cogentcore/webgpu/wgpu"

	"asbm/model"
	"asbm/weights"
)

//go:embed train_loss.wgsl
var trainLossWGSL string

//go:embed train_reduce.wgsl
var trainReduceWGSL string

// trainLossOp records the weighted MSE of train_loss.wgsl on n rows of width dim: r = w_i·f − y and
// df = ∂L/∂f = 2·w_i·r/(n·dim), L = mean r².
func (d *Device) trainLossOp(r, df, f, w, y *Buffer, n, dim int) (*op, error) {
	if n < 1 || dim < 1 {
		return nil, fmt.Errorf("shaders: loss needs n, dim ≥ 1; got %d, %d", n, dim)
	}
	for _, c := range []struct {
		b    *Buffer
		name string
		n    int
	}{{r, "loss residual", n * dim}, {df, "loss gradient", n * dim}, {f, "loss prediction", n * dim},
		{w, "loss weights", n}, {y, "loss target", n * dim}} {
		if err := d.check(c.b, c.name, c.n); err != nil {
			return nil, err
		}
	}
	if r == df {
		return nil, fmt.Errorf("shaders: loss residual and gradient must be distinct buffers")
	}
	k, err := d.kernel("train_loss", trainLossWGSL, []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1((n*dim + elementwiseWG - 1) / elementwiseWG)
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n).u32(dim).f32(float32(2 / float64(n*dim))).bytes()
	return d.newOp(k, u, []*Buffer{f, w, y, r, df}, g)
}

// trainReduceOp records out[slot] = scale·Σ x_i² (square) or scale·Σ x_i over n values of x; with clip
// set (clipMode) it writes the clip factor min(1, clip/(√Σ + 1e-6)) instead (1 when clip ≤ 0).
func (d *Device) trainReduceOp(out, x *Buffer, slot, n int, square bool, scale float32, clipMode bool, clip float32) (*op, error) {
	if n < 1 || slot < 0 {
		return nil, fmt.Errorf("shaders: reduction of %d values into slot %d", n, slot)
	}
	if err := d.check(x, "reduction input", n); err != nil {
		return nil, err
	}
	if err := d.check(out, "reduction output", slot+1); err != nil {
		return nil, err
	}
	k, err := d.kernel("train_reduce", trainReduceWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	sq, post := 0, 0
	if square {
		sq = 1
	}
	if clipMode {
		post = 1
	}
	u := uniform{}.u32(n).u32(slot).u32(sq).u32(post).f32(scale).f32(clip).bytes()
	return d.newOp(k, u, []*Buffer{x, out}, [3]uint32{1, 1, 1})
}

// maxTrainPlans bounds how many batch sizes keep a recorded training pass.
const maxTrainPlans = 4

// Trainer trains a network (Net: the toy MLP of asbm.md §6.1 or the image U-Net of unet.go)
// entirely on a Device: parameters, gradients, AdamW moments and the EMA stay in GPU buffers, and a step is one submitted command buffer (forward, weighted MSE,
// backward, gradient-norm reduction, AdamW + EMA) followed by a one-value readback of the loss. Its
// arithmetic follows backend/cpu.Net (the gorgonia reference) up to float32 rounding and summation
// order; every reduction has a fixed order, so runs are deterministic. Not safe for concurrent use.
type Trainer struct {
	d      *Device
	arch   weights.Arch
	cfg    AdamW
	names  []string
	sizes  []int
	p, g   []*Buffer // parameters and gradients, model.ParamShapes order
	m, v   []*Buffer // AdamW moments
	ema    []*Buffer
	adam   []*op // one AdamW + EMA op per parameter
	norms  *Buffer
	scale  *Buffer // the clip factor of the current step
	loss   *Buffer
	lossSt *wgpu.Buffer // the loss's readback staging buffer, reused every step
	step   int
	plans  map[int]*trainPlan
	cur    *GPUNet // forward views over p and ema (they do not own the buffers)
	avg    *GPUNet
	closed bool
}

// NewTrainer uploads a copy of m's parameters to d as the starting point; the EMA starts equal to
// them and the optimiser is fresh.
func NewTrainer(d *Device, m *model.Net, cfg AdamW) (*Trainer, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names, shapes := model.ParamShapes(m.Arch)
	tm := &Trainer{d: d, arch: m.Arch, cfg: cfg, names: names, plans: map[int]*trainPlan{}}
	err := d.scoped("creating a Trainer", func() error {
		for i, name := range names {
			n := 1
			for _, s := range shapes[i] {
				n *= s
			}
			tm.sizes = append(tm.sizes, n)
			for _, dst := range []*[]*Buffer{&tm.p, &tm.g, &tm.m, &tm.v, &tm.ema} {
				b, err := d.NewBuffer(n)
				if err != nil {
					return err
				}
				*dst = append(*dst, b)
			}
			if err := d.Upload(tm.p[i], m.Params[name]); err != nil {
				return err
			}
			if err := d.Upload(tm.ema[i], m.Params[name]); err != nil {
				return err
			}
		}
		var err error
		if tm.norms, err = d.NewBuffer(len(names)); err != nil {
			return err
		}
		if tm.scale, err = d.NewBuffer(1); err != nil {
			return err
		}
		if tm.loss, err = d.NewBuffer(1); err != nil {
			return err
		}
		if tm.lossSt, err = d.newStaging(tm.loss.bytes()); err != nil {
			return err
		}
		for i := range names {
			o, err := d.adamwOp(tm.g[i], tm.scale, tm.p[i], tm.m[i], tm.v[i], tm.ema[i], tm.sizes[i], cfg)
			if err != nil {
				return err
			}
			tm.adam = append(tm.adam, o)
		}
		return nil
	})
	if err != nil {
		tm.Close()
		return nil, err
	}
	tm.cur = tm.view(tm.p)
	tm.avg = tm.view(tm.ema)
	return tm, nil
}

// view is a GPUNet reading the given parameter buffers (ParamShapes order) without owning them.
func (tm *Trainer) view(ps []*Buffer) *GPUNet {
	return &GPUNet{d: tm.d, arch: tm.arch, params: ps, index: paramIndex(tm.names)}
}

// releaseView frees a view's cached forward plan but not the parameter buffers it reads.
func releaseView(g *GPUNet) {
	if g == nil {
		return
	}
	g.dropForward()
	g.params = nil
	g.closed = true
}

// Close frees every buffer and recorded op. Idempotent.
func (tm *Trainer) Close() {
	if tm == nil || tm.closed {
		return
	}
	tm.closed = true
	releaseView(tm.cur)
	releaseView(tm.avg)
	for _, p := range tm.plans {
		p.release()
	}
	for _, o := range tm.adam {
		o.release()
	}
	if tm.lossSt != nil && !tm.d.closed {
		tm.lossSt.Destroy()
		tm.lossSt.Release()
	}
	tm.lossSt = nil
	for _, bs := range [][]*Buffer{tm.p, tm.g, tm.m, tm.v, tm.ema, {tm.norms, tm.scale, tm.loss}} {
		for _, b := range bs {
			b.Destroy()
		}
	}
	tm.plans, tm.adam, tm.p, tm.g, tm.m, tm.v, tm.ema = nil, nil, nil, nil, nil, nil, nil
}

func (tm *Trainer) usable() error {
	if tm == nil || tm.closed {
		return fmt.Errorf("shaders: Trainer is nil or closed")
	}
	return tm.d.usable()
}

// Arch returns the network's sizes.
func (tm *Trainer) Arch() weights.Arch { return tm.arch }

// Config returns the optimiser settings.
func (tm *Trainer) Config() AdamW { return tm.cfg }

// SetLR changes the learning rate for the following steps; lr must be finite and ≥ 0.
func (tm *Trainer) SetLR(lr float64) error {
	if math.IsNaN(lr) || math.IsInf(lr, 0) || lr < 0 {
		return fmt.Errorf("shaders: learning rate %v must be finite and ≥ 0", lr)
	}
	tm.cfg.LR = lr
	return nil
}

// Steps returns the AdamW step count since construction, the last ResetOptimizer or SetState.
func (tm *Trainer) Steps() int { return tm.step }

// Names returns the parameter names in ParamShapes order (the order of State's slices).
func (tm *Trainer) Names() []string { return append([]string(nil), tm.names...) }

// Eval evaluates the current parameters on n = len(t) rows of x (n×Dim), like model.Net.ForwardCPU.
func (tm *Trainer) Eval(t, x []float32) ([]float32, error) {
	if err := tm.usable(); err != nil {
		return nil, err
	}
	return tm.cur.Forward(t, x)
}

// EMAEval evaluates the EMA parameters on n = len(t) rows of x (n×Dim).
func (tm *Trainer) EMAEval(t, x []float32) ([]float32, error) {
	if err := tm.usable(); err != nil {
		return nil, err
	}
	return tm.avg.Forward(t, x)
}

// trainPlan is the recorded training pass for a batch of n rows: its input, activation and gradient
// buffers and the ops from the time features to the clip factor.
type trainPlan struct {
	n          int
	x, t, w, y *Buffer
	wOnes      bool // w holds all ones (a nil weight vector) since the last upload
	bufs       []*Buffer
	ops        []*op
}

func (p *trainPlan) release() {
	if p == nil {
		return
	}
	for _, o := range p.ops {
		o.release()
	}
	for _, b := range p.bufs {
		b.Destroy()
	}
	p.ops, p.bufs = nil, nil
}

func (tm *Trainer) newPlan(n int) (*trainPlan, error) {
	d, a := tm.d, tm.arch
	D := a.Dim
	b := newPlanBuilder(d)
	b.keep = true // the forward activations live until the backward pass has read them
	p := &trainPlan{n: n}
	p.x, p.t, p.w, p.y = b.get(n*D), b.get(n), b.get(n), b.get(n*D)
	var out *Buffer
	var backward func(dout *Buffer)
	if a.Kind == "unet" {
		out, backward = tm.unetPasses(b, p)
	} else {
		out, backward = tm.mlpPasses(b, p)
	}
	// L = mean (w_i f − y)² and ∂L/∂f.
	r, dout := b.get(n*D), b.get(n*D)
	b.add(d.trainLossOp(r, dout, out, p.w, p.y, n, D))
	b.add(d.trainReduceOp(tm.loss, r, 0, n*D, true, float32(1/float64(n*D)), false, 0))
	b.keep = false
	if b.err == nil {
		backward(dout)
	}
	// Global gradient norm → clip factor (written as 1 when clipping is off).
	if tm.cfg.GradClip > 0 {
		for i := range tm.names {
			b.add(d.trainReduceOp(tm.norms, tm.g[i], i, tm.sizes[i], true, 1, false, 0))
		}
	}
	b.add(d.trainReduceOp(tm.scale, tm.norms, 0, len(tm.names), false, 1, true, float32(tm.cfg.GradClip)))
	if b.err != nil {
		b.release()
		return nil, b.err
	}
	p.ops, p.bufs = b.ops, b.bufs
	return p, nil
}

// mlpPasses records the MLP's training forward (asbm.md §6.1) on p.x, p.t, keeping each
// pre-activation z_i for the SiLU derivative, and returns its output and the backward pass.
func (tm *Trainer) mlpPasses(b *planBuilder, p *trainPlan) (out *Buffer, backward func(dout *Buffer)) {
	d, a, n := tm.d, tm.arch, p.n
	L, H, D := a.Layers, a.Hidden, a.Dim
	in0 := model.InputWidth(a)
	feat := b.get(n * in0)
	z := make([]*Buffer, L)
	h := make([]*Buffer, L)
	b.add(d.timefeatOp(feat, p.x, p.t, n, D, a.Fourier, 1, 0))
	src, width := feat, in0
	for i := range L {
		z[i], h[i] = b.get(n*H), b.get(n*H)
		b.add(d.linearOp(pickTile(n, H), z[i], src, tm.p[2*i], tm.p[2*i+1], n, width, H, false))
		b.add(d.siluOp(h[i], nil, z[i], n*H)) // the training forward keeps z for linear_bwd's fused silu'
		src, width = h[i], H
	}
	out = b.get(n * D)
	b.add(d.linearOp(pickTile(n, D), out, src, tm.p[2*L], tm.p[2*L+1], n, H, D, false))
	backward = func(dout *Buffer) {
		// Output layer first; dz alternates between two buffers.
		dz := [2]*Buffer{b.get(n * H), b.get(n * H)}
		dy := dout
		for i := L; i >= 0; i-- {
			inW, outW, input := H, H, feat
			if i == L {
				outW = D
			}
			if i == 0 {
				inW = in0
			} else {
				input = h[i-1]
			}
			b.add(d.linearDWOp(tm.g[2*i], input, dy, n, inW, outW))
			b.add(d.linearDBOp(tm.g[2*i+1], dy, n, outW))
			if i > 0 {
				next := dz[i%2]
				b.add(d.linearDXOp(next, dy, tm.p[2*i], z[i-1], n, inW, outW))
				dy = next
			}
		}
	}
	return out, backward
}

// Step takes one AdamW step on L = mean_{i,j} (w_i·f(t_i, x_i)_j − y_ij)² (w nil means all ones),
// clipping the gradient to global norm GradClip when > 0, then updates the EMA; it returns L at the
// parameters before the step (asbm.Model.Step). t and w have n ≥ 1 entries, x and y n·Dim.
func (tm *Trainer) Step(t, x, w, y []float32) (float32, error) {
	if err := tm.usable(); err != nil {
		return 0, err
	}
	n, D := len(t), tm.arch.Dim
	if n < 1 || len(x) != n*D || len(y) != n*D || (w != nil && len(w) != n) {
		return 0, fmt.Errorf("shaders: Step: len(t) = %d rows (must be ≥ 1) needs len(x) = len(y) = %d (Dim %d) and len(w) = %d or w nil; got len(x) = %d, len(y) = %d, len(w) = %d",
			n, n*D, D, n, len(x), len(y), len(w))
	}
	var loss float32
	err := tm.d.scoped("training step", func() error {
		p := tm.plans[n]
		if p == nil {
			if len(tm.plans) >= maxTrainPlans {
				for k, old := range tm.plans {
					old.release()
					delete(tm.plans, k)
					break
				}
			}
			var err error
			if p, err = tm.newPlan(n); err != nil {
				return err
			}
			tm.plans[n] = p
		}
		for _, u := range []struct {
			b *Buffer
			v []float32
		}{{p.x, x}, {p.t, t}, {p.y, y}} {
			if err := tm.d.Upload(u.b, u.v); err != nil {
				return err
			}
		}
		switch {
		case w != nil:
			if err := tm.d.Upload(p.w, w); err != nil {
				return err
			}
			p.wOnes = false
		case !p.wOnes:
			ones := make([]float32, n)
			for i := range ones {
				ones[i] = 1
			}
			if err := tm.d.Upload(p.w, ones); err != nil {
				return err
			}
			p.wOnes = true
		}
		step := tm.step + 1
		for i, o := range tm.adam {
			if err := o.setUniform(adamwUniform(tm.sizes[i], tm.cfg, step)); err != nil {
				return err
			}
		}
		b, err := tm.d.begin()
		if err != nil {
			return err
		}
		for _, o := range p.ops {
			b.run(o)
		}
		for _, o := range tm.adam {
			b.run(o)
		}
		if err := b.submit(); err != nil {
			return err
		}
		tm.step = step
		v, err := tm.d.readVia(tm.loss, tm.lossSt)
		if err != nil {
			return err
		}
		loss = v[0]
		return nil
	})
	return loss, err
}

// ResetOptimizer zeroes the AdamW moments and the step count (asbm.md §2.5, stage switch); the
// parameters and the EMA are kept.
func (tm *Trainer) ResetOptimizer() error {
	if err := tm.usable(); err != nil {
		return err
	}
	return tm.d.scoped("resetting the optimiser", func() error {
		for i, n := range tm.sizes {
			zero := make([]float32, n)
			if err := tm.d.Upload(tm.m[i], zero); err != nil {
				return err
			}
			if err := tm.d.Upload(tm.v[i], zero); err != nil {
				return err
			}
		}
		tm.step = 0
		return nil
	})
}

// TrainState is a Trainer's complete training state, each slice in Names order.
type TrainState struct {
	Params, EMA, M, V [][]float32
	Step              int
}

// State reads back the parameters, EMA and AdamW moments and the step count.
func (tm *Trainer) State() (*TrainState, error) {
	if err := tm.usable(); err != nil {
		return nil, err
	}
	s := &TrainState{Step: tm.step}
	err := tm.d.scoped("reading the training state", func() error {
		for _, c := range []struct {
			src []*Buffer
			dst *[][]float32
		}{{tm.p, &s.Params}, {tm.ema, &s.EMA}, {tm.m, &s.M}, {tm.v, &s.V}} {
			for _, b := range c.src {
				v, err := tm.d.Read(b)
				if err != nil {
					return err
				}
				*c.dst = append(*c.dst, v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// SetState uploads a TrainState of the same architecture. It checks every slice's length before
// changing anything.
func (tm *Trainer) SetState(s *TrainState) error {
	if err := tm.usable(); err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("shaders: nil training state")
	}
	if s.Step < 0 {
		return fmt.Errorf("shaders: training state step %d < 0", s.Step)
	}
	groups := []struct {
		name string
		src  [][]float32
		dst  []*Buffer
	}{{"parameters", s.Params, tm.p}, {"EMA", s.EMA, tm.ema}, {"first moments", s.M, tm.m}, {"second moments", s.V, tm.v}}
	for _, g := range groups {
		if len(g.src) != len(tm.names) {
			return fmt.Errorf("shaders: training state has %d %s, this arch needs %d", len(g.src), g.name, len(tm.names))
		}
		for i, v := range g.src {
			if len(v) != tm.sizes[i] {
				return fmt.Errorf("shaders: training state %s of %s has %d values, need %d", g.name, tm.names[i], len(v), tm.sizes[i])
			}
		}
	}
	err := tm.d.scoped("uploading the training state", func() error {
		for _, g := range groups {
			for i, v := range g.src {
				if err := tm.d.Upload(g.dst[i], v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	tm.step = s.Step
	return nil
}

// Params reads back the current parameters as a model.Net.
func (tm *Trainer) Params() (*model.Net, error) { return tm.export(tm.p) }

// EMAParams reads back the EMA parameters as a model.Net.
func (tm *Trainer) EMAParams() (*model.Net, error) { return tm.export(tm.ema) }

func (tm *Trainer) export(bs []*Buffer) (*model.Net, error) {
	if err := tm.usable(); err != nil {
		return nil, err
	}
	m := &model.Net{Arch: tm.arch, Params: make(map[string][]float32, len(bs))}
	for i, b := range bs {
		v, err := tm.d.Read(b)
		if err != nil {
			return nil, err
		}
		m.Params[tm.names[i]] = v
	}
	return m, nil
}

// grads reads back the gradients of the last Step (before clipping), in Names order (for tests).
func (tm *Trainer) grads() ([][]float32, error) {
	var out [][]float32
	for _, b := range tm.g {
		v, err := tm.d.Read(b)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
