package shaders

import (
	"fmt"

	"asbm/model"
	"asbm/weights"
)

// The U-Net (unet.go) on WGSL: one walk of UNetOps records the forward pass for a batch, either for
// inference (unetPlan: intermediate buffers are recycled as soon as their last reader is recorded)
// or for training (Trainer: every activation the backward pass needs is kept, then the backward walk
// records the gradients of every parameter; train_unet.go).

// planBuilder collects the ops and buffers of a recorded pass. Errors are sticky: after the first,
// every call is a no-op and err holds it, so the walks read as straight-line code.
type planBuilder struct {
	d    *Device
	ops  []*op
	bufs []*Buffer         // every buffer the plan owns
	free map[int][]*Buffer // buffers whose last reader is recorded, by size
	keep bool              // put is a no-op (a training forward keeps its activations)
	err  error
}

func newPlanBuilder(d *Device) *planBuilder {
	return &planBuilder{d: d, free: map[int][]*Buffer{}}
}

// get returns a buffer of size values: a recycled one when there is one (its old contents are dead:
// ops run in recording order), else a new one.
func (b *planBuilder) get(size int) *Buffer {
	if b.err != nil {
		return nil
	}
	if l := b.free[size]; len(l) > 0 {
		buf := l[len(l)-1]
		b.free[size] = l[:len(l)-1]
		return buf
	}
	buf, err := b.d.NewBuffer(size)
	if err != nil {
		b.err = err
		return nil
	}
	b.bufs = append(b.bufs, buf)
	return buf
}

// put hands buffers back for reuse once every op reading them has been recorded. Only buffers from
// get may be put, each once.
func (b *planBuilder) put(bufs ...*Buffer) {
	if b.keep || b.err != nil {
		return
	}
	for _, buf := range bufs {
		b.free[buf.n] = append(b.free[buf.n], buf)
	}
}

// add appends an op (the result of an *Op constructor).
func (b *planBuilder) add(o *op, err error) {
	b.addAll([]*op{o}, err)
}

func (b *planBuilder) addAll(os []*op, err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
	if b.err != nil {
		for _, o := range os {
			o.release()
		}
		return
	}
	b.ops = append(b.ops, os...)
}

// release frees every op and buffer of the plan.
func (b *planBuilder) release() {
	for _, o := range b.ops {
		o.release()
	}
	for _, buf := range b.bufs {
		buf.Destroy()
	}
	b.ops, b.bufs, b.free = nil, nil, nil
}

// unetWalk records the U-Net's passes for n images. In training mode it keeps what the backward pass
// needs (saved, feat, z1, h1, z2) and grad names each parameter's gradient buffer.
type unetWalk struct {
	*planBuilder
	a     weights.Arch
	n     int
	steps []model.UNetOp
	param func(name string) *Buffer
	grad  func(name string) *Buffer // training only
	train bool

	e                *Buffer // the time embedding, n×TimeEmb
	feat, z1, h1, z2 *Buffer // training: the time MLP's input and pre-activations
	saved            []unetSaved
	input            *Buffer // training: the network input x (model.OpConvIn's)
	de               *Buffer // training: ∂L/∂e, summed over the blocks
}

// unetSaved is what a training forward keeps of one op (model.OpRes; model.OpOut uses x, s1, m1, rs1):
// the block input x, the GN → SiLU outputs s, conv1 + time bias output r1, GN statistics (the GN
// outputs before SiLU are recomputed by the backward, groupnorm_bwd_data.wgsl).
type unetSaved struct {
	x, s1, r1, s2    *Buffer
	m1, rs1, m2, rs2 *Buffer
}

func newUNetWalk(b *planBuilder, a weights.Arch, n int, param func(string) *Buffer) *unetWalk {
	steps := model.UNetOps(a)
	return &unetWalk{planBuilder: b, a: a, n: n, steps: steps, param: param, saved: make([]unetSaved, len(steps))}
}

// P is the parameter called name; a missing one is a bug in the walk and becomes an error.
func (w *unetWalk) P(name string) *Buffer {
	b := w.param(name)
	if b == nil && w.err == nil {
		w.err = fmt.Errorf("shaders: U-Net walk: no parameter %q", name)
	}
	return b
}

// G is the gradient buffer of the parameter called name.
func (w *unetWalk) G(name string) *Buffer {
	b := w.grad(name)
	if b == nil && w.err == nil {
		w.err = fmt.Errorf("shaders: U-Net walk: no gradient for %q", name)
	}
	return b
}

// timeEmbedding records e = SiLU(SiLU(feat·l1.w + l1.b)·l2.w + l2.b) (unet.go) from the 2·Fourier
// features in feat. Inference fuses each SiLU into its linear; training keeps the pre-activations.
func (w *unetWalk) timeEmbedding(feat *Buffer) {
	d, n, F2, T := w.d, w.n, 2*w.a.Fourier, w.a.TimeEmb
	if !w.train {
		h1 := w.get(n * T)
		w.add(d.linearOp(pickTile(n, T), h1, feat, w.P("temb.l1.w"), w.P("temb.l1.b"), n, F2, T, true))
		w.e = w.get(n * T)
		w.add(d.linearOp(pickTile(n, T), w.e, h1, w.P("temb.l2.w"), w.P("temb.l2.b"), n, T, T, true))
		w.put(feat, h1)
		return
	}
	w.feat, w.z1, w.h1, w.z2, w.e = feat, w.get(n*T), w.get(n*T), w.get(n*T), w.get(n*T)
	w.add(d.linearOp(pickTile(n, T), w.z1, feat, w.P("temb.l1.w"), w.P("temb.l1.b"), n, F2, T, false))
	w.add(d.siluOp(w.h1, nil, w.z1, n*T))
	w.add(d.linearOp(pickTile(n, T), w.z2, w.h1, w.P("temb.l2.w"), w.P("temb.l2.b"), n, T, T, false))
	w.add(d.siluOp(w.e, nil, w.z2, n*T))
}

// gnSiLU records s = SiLU(GN(x; prefix.g, prefix.b)) over c channels of hw values in one kernel; s and
// the statistics are returned for the training backward (and recycled by the caller otherwise).
func (w *unetWalk) gnSiLU(x *Buffer, prefix string, c int, op model.UNetOp) (s, mean, rstd *Buffer) {
	d, n := w.d, w.n
	s, mean, rstd = w.get(n*c*op.H*op.W), w.get(n*w.a.Groups), w.get(n*w.a.Groups)
	w.add(d.groupNormOp(s, mean, rstd, x, w.P(prefix+".g"), w.P(prefix+".b"), n, c, op.H, op.W, w.a.Groups,
		model.GroupNormEps, true))
	return s, mean, rstd
}

// resBlock records one residual block (unet.go) on x and returns its output; x is left to the
// caller.
func (w *unetWalk) resBlock(i int, op model.UNetOp, x *Buffer) *Buffer {
	d, n, hw := w.d, w.n, op.H*op.W
	p := op.Block + "."
	nOut := n * op.Out * hw
	sv := &w.saved[i]
	sv.x = x
	// r1 = conv3x3(SiLU(GN1(x))) + tb, tb = e·temb.w + temb.b broadcast over H×W (added by the conv).
	sv.s1, sv.m1, sv.rs1 = w.gnSiLU(x, p+"gn1", op.In, op)
	tb := w.get(n * op.Out)
	w.add(d.linearOp(pickTile(n, op.Out), tb, w.e, w.P(p+"temb.w"), w.P(p+"temb.b"), n, w.a.TimeEmb, op.Out, false))
	sv.r1 = w.get(nOut)
	w.add(d.convOp(sv.r1, sv.s1, w.P(p+"conv1.w"), w.P(p+"conv1.b"), tb, nil, n, op.In, op.Out, op.H, op.W, 3))
	w.put(sv.s1, sv.m1, sv.rs1, tb)
	// y = conv3x3(SiLU(GN2(r1))) + skip(x), the skip added by the conv.
	sv.s2, sv.m2, sv.rs2 = w.gnSiLU(sv.r1, p+"gn2", op.Out, op)
	w.put(sv.r1)
	skip := x
	if op.In != op.Out {
		skip = w.get(nOut)
		w.add(d.convOp(skip, x, w.P(p+"skip.w"), w.P(p+"skip.b"), nil, nil, n, op.In, op.Out, op.H, op.W, 1))
	}
	y := w.get(nOut)
	w.add(d.convOp(y, sv.s2, w.P(p+"conv2.w"), w.P(p+"conv2.b"), nil, skip, n, op.Out, op.Out, op.H, op.W, 3))
	w.put(sv.s2, sv.m2, sv.rs2)
	if skip != x {
		w.put(skip)
	}
	return y
}

// forward records the walk of UNetOps after model.OpConvIn, whose output is h0, and returns the network's
// output buffer (n×Dim). timeEmbedding must have run.
func (w *unetWalk) forward(h0 *Buffer) *Buffer {
	d, n := w.d, w.n
	var skips []*Buffer
	pinned := map[*Buffer]bool{} // pushed skips stay alive until their concat
	done := func(b *Buffer) {
		if !pinned[b] {
			w.put(b)
		}
	}
	h := h0
	var out *Buffer
	for i, op := range w.steps {
		hw := op.H * op.W
		switch op.Kind {
		case model.OpConvIn:
			// Recorded by the caller (its input differs between plans).
		case model.OpRes:
			y := w.resBlock(i, op, h)
			done(h)
			h = y
		case model.OpPush:
			skips = append(skips, h)
			pinned[h] = true
		case model.OpPool:
			y := w.get(n * op.In * hw / 4)
			w.add(d.resampleOp(resamplePool, y, h, n, op.In, op.H, op.W))
			done(h)
			h = y
		case model.OpUp:
			y := w.get(n * op.In * hw * 4)
			w.add(d.resampleOp(resampleUp, y, h, n, op.In, op.H, op.W))
			done(h)
			h = y
		case model.OpConcat:
			s := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			y := w.get(n * op.Out * hw)
			w.addAll(d.concatOps(y, h, s, n, op.In, op.Skip, hw))
			done(h)
			delete(pinned, s)
			done(s)
			h = y
		case model.OpOut:
			// out = conv3x3(SiLU(GN(h; out.gn))).
			sv := &w.saved[i]
			sv.x = h
			sv.s1, sv.m1, sv.rs1 = w.gnSiLU(h, "out.gn", op.In, op)
			out = w.get(n * op.Out * hw)
			w.add(d.convOp(out, sv.s1, w.P("out.w"), w.P("out.b"), nil, nil, n, op.In, op.Out, op.H, op.W, 3))
			w.put(sv.s1, sv.m1, sv.rs1)
			done(h)
		}
	}
	return out
}

// unetPlan is a GPUNet U-Net's forward pass recorded for a batch of n images: the body (time MLP,
// blocks, output) and, per (input, time) source it has been asked for, the two entry ops that read
// the source: the time features into feat and the input conv into h0.
type unetPlan struct {
	g        *GPUNet
	n        int
	b        *planBuilder
	feat, h0 *Buffer
	out      *Buffer
	body     []*op
	entries  map[featKey][2]*op
	convIn   model.UNetOp
}

func (g *GPUNet) newUNetPlan(n int) (*unetPlan, error) {
	a := g.arch
	w := newUNetWalk(newPlanBuilder(g.d), a, n, g.param)
	c := w.steps[0]
	p := &unetPlan{g: g, n: n, b: w.planBuilder, entries: map[featKey][2]*op{}, convIn: c}
	p.feat = w.get(n * 2 * a.Fourier)
	p.h0 = w.get(n * c.Out * c.H * c.W)
	w.timeEmbedding(p.feat)
	p.out = w.forward(p.h0)
	if w.err != nil {
		w.release()
		return nil, w.err
	}
	p.body = w.planBuilder.ops
	return p, nil
}

func (p *unetPlan) output() *Buffer { return p.out }

func (p *unetPlan) encode(b *batch, x, t *Buffer, stride, offset int) error {
	k := featKey{x, t, stride, offset}
	e, ok := p.entries[k]
	if !ok {
		a, d, c := p.g.arch, p.g.d, p.convIn
		tf, err := d.timefeatOp(p.feat, t, t, p.n, 0, a.Fourier, stride, offset)
		if err != nil {
			return err
		}
		ci, err := d.convOp(p.h0, x, p.g.param("in.w"), p.g.param("in.b"), nil, nil, p.n, c.In, c.Out, c.H, c.W, 3)
		if err != nil {
			tf.release()
			return err
		}
		e = [2]*op{tf, ci}
		p.entries[k] = e
	}
	b.run(e[0])
	b.run(e[1])
	for _, o := range p.body {
		b.run(o)
	}
	return nil
}

func (p *unetPlan) release() {
	if p == nil {
		return
	}
	for _, e := range p.entries {
		e[0].release()
		e[1].release()
	}
	p.entries = nil
	p.b.release()
	p.body = nil
}
