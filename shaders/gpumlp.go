package shaders

import (
	"errors"
	"fmt"

	"asbm/model"
	"asbm/weights"
)

// GPUNet is a network (Net) whose parameters live on a Device. Its forward pass is a recorded
// plan of WGSL dispatches: for an MLP (asbm.md §6.1) timefeat.wgsl followed by Layers fused
// linear+SiLU dispatches and the output linear (mlpPlan); for a U-Net the walk of UNetOps
// (unetPlan, unet_gpu.go). It matches model.Net.ForwardCPU up to float32 rounding; one built by
// NewGPUNetF16 matches it on the network with its weight matrices rounded to f16.
type GPUNet struct {
	d      *Device
	arch   weights.Arch
	half   bool           // weight matrices stored as f16 (NewGPUNetF16)
	params []*Buffer      // model.ParamShapes order
	index  map[string]int // parameter name → position in params
	fwd    netPlan        // the plan Forward reuses while the batch size stays the same
	fwdN   int
	fwdX   *Buffer
	fwdT   *Buffer
	closed bool
}

// netPlan is a GPUNet's forward pass recorded for a fixed batch of rows.
type netPlan interface {
	// encode records the forward pass on x (n×Dim) with times t[offset + row·stride] into b; the
	// result is in output() once the batch runs.
	encode(b *batch, x, t *Buffer, stride, offset int) error
	output() *Buffer
	release()
}

// NewGPUNet uploads the parameters of m (an MLP or a U-Net) to d as float32.
func NewGPUNet(d *Device, m *model.Net) (*GPUNet, error) {
	return newGPUNet(d, m, false)
}

// NewGPUNetF16 uploads m to d with its weight matrices (conv weights, linear weights) rounded to
// IEEE half precision (weights.F32ToF16, round to nearest even) and stored as halves, which halves
// their memory and reads; biases and group-norm parameters stay f32 and every kernel computes in
// f32 (weightf16.go). For a model file whose tensors are f16 the rounding changes nothing: the
// values were halves before they were widened on load. Any WebGPU device can run it (no shader-f16
// needed); it fails on a device opened with DeviceOptions.F32Only, and on a weight whose magnitude
// rounds past weights.F16Max.
func NewGPUNetF16(d *Device, m *model.Net) (*GPUNet, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if !d.F16Weights() {
		return nil, errors.New("shaders: NewGPUNetF16: the device was opened with DeviceOptions.F32Only (or ASBM_F32_ONLY=1), which keeps every network in f32: use NewGPUNet")
	}
	return newGPUNet(d, m, true)
}

func newGPUNet(d *Device, m *model.Net, half bool) (*GPUNet, error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	if err := m.Check(); err != nil {
		return nil, err
	}
	names, shapes := model.ParamShapes(m.Arch)
	g := &GPUNet{d: d, arch: m.Arch, half: half, index: paramIndex(names)}
	err := d.scoped("uploading a network", func() error {
		for i, name := range names {
			var buf *Buffer
			var err error
			if half && storedAsHalf(shapes[i]) {
				buf, err = d.newHalfBufferFrom(m.Params[name], name)
			} else {
				buf, err = d.newBufferFrom(m.Params[name])
			}
			if err != nil {
				return err
			}
			g.params = append(g.params, buf)
		}
		return nil
	})
	if err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// paramIndex maps each name to its position.
func paramIndex(names []string) map[string]int {
	idx := make(map[string]int, len(names))
	for i, n := range names {
		idx[n] = i
	}
	return idx
}

// param returns the buffer of the parameter called name (nil when the arch has none).
func (g *GPUNet) param(name string) *Buffer {
	i, ok := g.index[name]
	if !ok {
		return nil
	}
	return g.params[i]
}

// Arch returns the network's sizes.
func (g *GPUNet) Arch() weights.Arch { return g.arch }

// Precision is how the network stores its weight matrices: "f16" (NewGPUNetF16) or "f32". Every
// kernel computes in f32 either way.
func (g *GPUNet) Precision() string {
	if g.half {
		return "f16"
	}
	return "f32"
}

// dropForward frees the cached forward plan and its input buffers.
func (g *GPUNet) dropForward() {
	if g.fwd != nil {
		g.fwd.release()
	}
	g.fwdX.Destroy()
	g.fwdT.Destroy()
	g.fwd, g.fwdN, g.fwdX, g.fwdT = nil, 0, nil, nil
}

// Close frees the parameters and any cached buffers. Idempotent.
func (g *GPUNet) Close() {
	if g == nil || g.closed {
		return
	}
	g.closed = true
	for _, b := range g.params {
		b.Destroy()
	}
	g.dropForward()
	g.params = nil
}

func (g *GPUNet) usable() error {
	if g == nil || g.closed {
		return fmt.Errorf("shaders: GPUNet is nil or closed")
	}
	return g.d.usable()
}

// newPlan records the forward pass for n rows.
func (g *GPUNet) newPlan(n int) (netPlan, error) {
	// Typed nils must not escape as non-nil interfaces.
	if g.arch.Kind == "unet" {
		p, err := g.newUNetPlan(n)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	p, err := g.newMLPPlan(n)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Forward evaluates the network on n = len(t) rows of x (n×Dim) and returns n×Dim values, like
// model.Net.ForwardCPU. It uploads, runs and reads back (in the browser it awaits: call it from a
// goroutine); the samplers use the device-resident path instead.
func (g *GPUNet) Forward(t, x []float32) ([]float32, error) {
	if err := g.usable(); err != nil {
		return nil, err
	}
	n := len(t)
	if n < 1 || n > model.MaxPoints {
		return nil, fmt.Errorf("shaders: forward of %d rows: need 1 … %d", n, model.MaxPoints)
	}
	if len(x) != n*g.arch.Dim {
		return nil, fmt.Errorf("shaders: forward: x has %d values, %d rows of dim %d need %d", len(x), n, g.arch.Dim, n*g.arch.Dim)
	}
	var out []float32
	err := g.d.scoped(g.arch.Kind+" forward", func() error {
		if g.fwd == nil || g.fwdN != n {
			g.dropForward()
			p, err := g.newPlan(n)
			if err != nil {
				return err
			}
			xb, err := g.d.NewBuffer(n * g.arch.Dim)
			if err != nil {
				p.release()
				return err
			}
			tb, err := g.d.NewBuffer(n)
			if err != nil {
				p.release()
				xb.Destroy()
				return err
			}
			g.fwd, g.fwdN, g.fwdX, g.fwdT = p, n, xb, tb
		}
		if err := g.d.Upload(g.fwdX, x); err != nil {
			return err
		}
		if err := g.d.Upload(g.fwdT, t); err != nil {
			return err
		}
		b, err := g.d.begin()
		if err != nil {
			return err
		}
		if err := g.fwd.encode(b, g.fwdX, g.fwdT, 1, 0); err != nil {
			b.discard()
			return err
		}
		if err := b.submit(); err != nil {
			return err
		}
		out, err = g.d.Read(g.fwd.output())
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// mlpPlan is a GPUNet's forward pass recorded for a batch of n rows: the activation buffers and one
// op per layer, plus one timefeat op per (input, time) source it has been asked for.
type mlpPlan struct {
	g          *GPUNet
	n          int
	in, ha, hb *Buffer
	out        *Buffer
	layers     []*op
	feats      map[featKey]*op
}

type featKey struct {
	x, t           *Buffer
	stride, offset int
}

func (g *GPUNet) newMLPPlan(n int) (p *mlpPlan, err error) {
	a := g.arch
	d := g.d
	p = &mlpPlan{g: g, n: n, feats: map[featKey]*op{}}
	defer func() {
		if err != nil {
			p.release()
			p = nil
		}
	}()
	in := a.Dim + 2*a.Fourier
	if p.in, err = d.NewBuffer(n * in); err != nil {
		return
	}
	if p.ha, err = d.NewBuffer(n * a.Hidden); err != nil {
		return
	}
	if a.Layers > 1 {
		if p.hb, err = d.NewBuffer(n * a.Hidden); err != nil {
			return
		}
	}
	if p.out, err = d.NewBuffer(n * a.Dim); err != nil {
		return
	}
	src, dst := p.in, p.ha
	for i := 0; i <= a.Layers; i++ {
		width, silu := a.Hidden, true
		if i == a.Layers {
			width, silu, dst = a.Dim, false, p.out
		}
		o, e := d.linearOp(pickTile(n, width), dst, src, g.params[2*i], g.params[2*i+1], n, in, width, silu)
		if e != nil {
			return nil, e
		}
		p.layers = append(p.layers, o)
		in = width
		src = dst
		if dst == p.ha {
			dst = p.hb
		} else {
			dst = p.ha
		}
	}
	return p, nil
}

func (p *mlpPlan) output() *Buffer { return p.out }

func (p *mlpPlan) encode(b *batch, x, t *Buffer, stride, offset int) error {
	k := featKey{x, t, stride, offset}
	f := p.feats[k]
	if f == nil {
		a := p.g.arch
		var err error
		if f, err = p.g.d.timefeatOp(p.in, x, t, p.n, a.Dim, a.Fourier, stride, offset); err != nil {
			return err
		}
		p.feats[k] = f
	}
	b.run(f)
	for _, o := range p.layers {
		b.run(o)
	}
	return nil
}

func (p *mlpPlan) release() {
	if p == nil {
		return
	}
	for _, o := range p.feats {
		o.release()
	}
	for _, o := range p.layers {
		o.release()
	}
	for _, b := range []*Buffer{p.in, p.ha, p.hb, p.out} {
		b.Destroy()
	}
	p.feats, p.layers = nil, nil
}
