package shaders

import (
	"errors"
	"fmt"

	"asbm/model"
)

// syncEvery is how many sampler steps may be queued before SampleGPU waits for the GPU: it bounds the
// queue, keeps progress honest and, in the browser, lets the event loop paint.
const syncEvery = 8

// Nets are the GPU networks a sampler may use: Score s_ψ ("sde", "ode"), Control u_θ ("ode"; nil
// means u ≡ 0, the memoryless baseline) and Gen, the distilled generator ("gen").
type Nets struct{ Score, Control, Gen *GPUNet }

// SampleGPU draws o.Points points like model.SampleCPU (same schedule, same noise, same float32
// coefficients) with the WGSL kernels: x stays on the GPU for the whole loop, each step is one
// submission, the step's noise is drawn on the CPU from the seed's stream and uploaded, and the points
// are read back at the end, and at the steps where h asks for a preview. h.Progress is called after
// each step is submitted; h.Pause after each network call is recorded. With h.Chunk < o.Points
// each network call copies its rows into a chunk-sized input, runs a plan recorded for h.Chunk rows
// and copies the rows out, so no activation grows with o.Points (the last, shorter chunk runs the
// same plan on a partly stale input and keeps only its own rows).
//
// In the browser SampleGPU awaits promises: call it from a goroutine, never inside js.FuncOf.
func SampleGPU(d *Device, nets Nets, o model.SampleOptions, h model.SampleHooks) (pts []float32, err error) {
	if err := d.usable(); err != nil {
		return nil, err
	}
	dimOf := func(g *GPUNet, used bool) (int, error) {
		if g == nil || !used {
			return 0, nil
		}
		if err := g.usable(); err != nil {
			return 0, err
		}
		if g.d != d {
			return 0, errors.New("shaders: sample: a network was uploaded to another device")
		}
		return g.arch.Dim, nil
	}
	gnets := [model.NumSlots]*GPUNet{model.SlotScore: nets.Score, model.SlotControl: nets.Control, model.SlotGen: nets.Gen}
	dim, control, err := o.ValidateRun(h, func(net model.Slot, used bool) (int, error) { return dimOf(gnets[net], used) })
	if err != nil {
		return nil, err
	}
	err = d.scoped("sampling", func() error {
		e := &gpuEngine{d: d, n: o.Points, dim: dim, chunk: h.RowsPerCall(o.Points)}
		defer e.release()
		e.nets[model.SlotScore], e.nets[model.SlotControl], e.nets[model.SlotGen] = nets.Score, nets.Control, nets.Gen
		var err error
		pts, err = model.Run(e, o, dim, control, h)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pts, nil
}

// gpuEngine records the schedule into one command buffer per step.
type gpuEngine struct {
	d       *Device
	n, dim  int
	chunk   int     // rows per network call; < n: the networks read chunkIn and write into bufs
	chunkIn *Buffer // chunk×dim: a chunk's rows, the plans' input when chunked
	nets    [model.NumSlots]*GPUNet
	plans   [model.NumSlots]netPlan
	bufs    [model.NumSlots]*Buffer
	times   *Buffer
	ups     map[[4]model.Slot]*op
	b       *batch
	used    map[[4]model.Slot]bool // update ops recorded in the open batch
}

func (e *gpuEngine) buf(s model.Slot) (*Buffer, error) {
	if (s == model.SlotScore || s == model.SlotControl || s == model.SlotGen) && !e.chunked() {
		// Unchunked, a network's output model.Slot is its plan's output buffer: no copies.
		p, err := e.plan(s)
		if err != nil {
			return nil, err
		}
		return p.output(), nil
	}
	if e.bufs[s] == nil {
		b, err := e.d.NewBuffer(e.n * e.dim)
		if err != nil {
			return nil, err
		}
		e.bufs[s] = b
	}
	return e.bufs[s], nil
}

func (e *gpuEngine) plan(net model.Slot) (netPlan, error) {
	if e.plans[net] == nil {
		g := e.nets[net]
		if g == nil {
			return nil, fmt.Errorf("shaders: sample: network %d missing", net)
		}
		p, err := g.newPlan(e.chunk)
		if err != nil {
			return nil, err
		}
		e.plans[net] = p
	}
	return e.plans[net], nil
}

// open returns the step's batch, starting one if needed.
func (e *gpuEngine) open() (*batch, error) {
	if e.b == nil {
		b, err := e.d.begin()
		if err != nil {
			return nil, err
		}
		e.b, e.used = b, map[[4]model.Slot]bool{}
	}
	return e.b, nil
}

// flush submits the open batch. Writes (uploads, uniforms) land before the next submit, so a write to
// something the open batch already uses must flush first.
func (e *gpuEngine) flush() error {
	if e.b == nil {
		return nil
	}
	b := e.b
	e.b, e.used = nil, nil
	return b.submit()
}

func (e *gpuEngine) upload(s model.Slot, v []float32) error {
	if err := e.flush(); err != nil {
		return err
	}
	b, err := e.buf(s)
	if err != nil {
		return err
	}
	return e.d.Upload(b, v)
}

func (e *gpuEngine) SetX(v []float32) error     { return e.upload(model.SlotX, v) }
func (e *gpuEngine) SetNoise(v []float32) error { return e.upload(model.SlotNoise, v) }

func (e *gpuEngine) SetTimes(t0, t1 float32) error {
	if err := e.flush(); err != nil {
		return err
	}
	if e.times == nil {
		b, err := e.d.NewBuffer(2)
		if err != nil {
			return err
		}
		e.times = b
	}
	return e.d.Upload(e.times, []float32{t0, t1})
}

func (e *gpuEngine) chunked() bool { return e.chunk < e.n }

func (e *gpuEngine) Eval(net, x model.Slot, tslot, lo, hi int) error {
	p, err := e.plan(net)
	if err != nil {
		return err
	}
	xb, err := e.buf(x)
	if err != nil {
		return err
	}
	b, err := e.open()
	if err != nil {
		return err
	}
	if !e.chunked() {
		return p.encode(b, xb, e.times, 0, tslot)
	}
	if e.chunkIn == nil {
		if e.chunkIn, err = e.d.NewBuffer(e.chunk * e.dim); err != nil {
			return err
		}
	}
	out, err := e.buf(net)
	if err != nil {
		return err
	}
	// Commands in one command buffer run in order, so reusing chunkIn and the plan's buffers for
	// the next chunk is safe.
	rows := (hi - lo) * e.dim
	if err := copyRange(b, xb, lo*e.dim, e.chunkIn, 0, rows); err != nil {
		return err
	}
	if err := p.encode(b, e.chunkIn, e.times, 0, tslot); err != nil {
		return err
	}
	return copyRange(b, p.output(), 0, out, lo*e.dim, rows)
}

// copyRange records a copy of n values from src[srcOff:] to dst[dstOff:] (outside any compute
// pass); batch.copy copies from the starts only.
func copyRange(b *batch, src *Buffer, srcOff int, dst *Buffer, dstOff, n int) error {
	b.endPass()
	return wrapf(b.enc.CopyBufferToBuffer(src.buf, uint64(srcOff)*4, dst.buf, uint64(dstOff)*4, uint64(n)*4), "shaders: buffer copy")
}

func (e *gpuEngine) Update(dst, x, y, z model.Slot, a, b, c float32) error {
	key := [4]model.Slot{dst, x, y, z}
	if e.used[key] {
		// Its uniform is already read by the open batch.
		if err := e.flush(); err != nil {
			return err
		}
	}
	if y == model.SlotNone {
		b = 0
	}
	if z == model.SlotNone {
		c = 0
	}
	o := e.ups[key]
	if o == nil {
		var bs [4]*Buffer
		for i, s := range key {
			if s == model.SlotNone {
				continue
			}
			var err error
			if bs[i], err = e.buf(s); err != nil {
				return err
			}
		}
		var err error
		if o, err = e.d.updateOp(bs[0], bs[1], bs[2], bs[3], e.n*e.dim); err != nil {
			return err
		}
		if e.ups == nil {
			e.ups = map[[4]model.Slot]*op{}
		}
		e.ups[key] = o
	}
	if err := o.setUniform(updateUniform(e.n*e.dim, a, b, c)); err != nil {
		return err
	}
	bt, err := e.open()
	if err != nil {
		return err
	}
	bt.run(o)
	e.used[key] = true
	return nil
}

func (e *gpuEngine) Copy(dst, src model.Slot) error {
	db, err := e.buf(dst)
	if err != nil {
		return err
	}
	sb, err := e.buf(src)
	if err != nil {
		return err
	}
	b, err := e.open()
	if err != nil {
		return err
	}
	return b.copy(sb, db, e.n*e.dim)
}

func (e *gpuEngine) EndStep(step, total int) error {
	if err := e.flush(); err != nil {
		return err
	}
	if step%syncEvery == 0 && step < total {
		return e.d.wait()
	}
	return nil
}

// state reads x back after everything recorded so far (a preview).
func (e *gpuEngine) State() ([]float32, error) { return e.Result() }

func (e *gpuEngine) Result() ([]float32, error) {
	if err := e.flush(); err != nil {
		return nil, err
	}
	b, err := e.buf(model.SlotX)
	if err != nil {
		return nil, err
	}
	return e.d.Read(b)
}

func (e *gpuEngine) release() {
	if e.b != nil {
		e.b.discard()
		e.b = nil
	}
	for _, o := range e.ups {
		o.release()
	}
	for _, p := range e.plans {
		if p != nil {
			p.release()
		}
	}
	for _, b := range e.bufs {
		b.Destroy()
	}
	e.times.Destroy()
	e.chunkIn.Destroy()
}
