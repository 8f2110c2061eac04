package shaders

import (
	"errors"

	"asbm/model"
)

// The U-Net's training passes (unet.go for the network, unet_gpu.go for the forward walk): the
// forward keeps every activation, the backward walks UNetOps in reverse and writes the gradient of
// every parameter exactly once (each is used once in the forward pass), recycling its own temporary
// gradient buffers as soon as their last reader is recorded.

var errNoBlocks = errors.New("shaders: U-Net backward: no residual block produced ∂L/∂e")

// unetPasses records the U-Net's training forward on p.x, p.t and returns its output and the
// backward pass.
func (tm *Trainer) unetPasses(b *planBuilder, p *trainPlan) (out *Buffer, backward func(dout *Buffer)) {
	d, a, n := tm.d, tm.arch, p.n
	index := paramIndex(tm.names)
	lookup := func(bs []*Buffer) func(string) *Buffer {
		return func(name string) *Buffer {
			if i, ok := index[name]; ok {
				return bs[i]
			}
			return nil
		}
	}
	w := newUNetWalk(b, a, n, lookup(tm.p))
	w.train, w.grad, w.input = true, lookup(tm.g), p.x
	feat := w.get(n * 2 * a.Fourier)
	w.add(d.timefeatOp(feat, p.t, p.t, n, 0, a.Fourier, 1, 0))
	c := w.steps[0]
	h0 := w.get(n * c.Out * c.H * c.W)
	w.add(d.convOp(h0, p.x, w.P("in.w"), w.P("in.b"), nil, nil, n, c.In, c.Out, c.H, c.W, 3))
	w.timeEmbedding(feat)
	return w.forward(h0), w.backward
}

// backward records the gradients of every parameter given dout = ∂L/∂(network output).
func (w *unetWalk) backward(dout *Buffer) {
	d, n := w.d, w.n
	var dskips []*Buffer // gradients of the pushed skips, from the concats
	dh := dout
	for i := len(w.steps) - 1; i >= 0; i-- {
		op := w.steps[i]
		hw := op.H * op.W
		sv := &w.saved[i]
		switch op.Kind {
		case model.OpOut:
			w.addAll(d.convBackwardWeightsOps(w.G("out.w"), w.G("out.b"), dh, sv.s1, n, op.In, op.Out, op.H, op.W, 3))
			ds := w.get(n * op.In * hw)
			w.add(d.convBackwardDataOp(ds, dh, w.P("out.w"), n, op.In, op.Out, op.H, op.W, 3))
			w.put(dh)
			dh = w.gnSiLUBackward(ds, sv.x, sv.m1, sv.rs1, "out.gn", op.In, op)
		case model.OpUp:
			dx := w.get(n * op.In * hw)
			w.add(d.resampleOp(resampleUpBackward, dx, dh, n, op.In, op.H, op.W))
			w.put(dh)
			dh = dx
		case model.OpConcat:
			da, ds := w.get(n*op.In*hw), w.get(n*op.Skip*hw)
			w.addAll(d.splitOps(da, ds, dh, n, op.In, op.Skip, hw))
			w.put(dh)
			dh = da
			dskips = append(dskips, ds)
		case model.OpRes:
			dh = w.resBlockBackward(i, op, dh)
		case model.OpPool:
			dx := w.get(n * op.In * hw)
			w.add(d.resampleOp(resamplePoolBackward, dx, dh, n, op.In, op.H, op.W))
			w.put(dh)
			dh = dx
		case model.OpPush:
			// The pushed h fed both the next op and a concat: its gradient is the sum.
			ds := dskips[len(dskips)-1]
			dskips = dskips[:len(dskips)-1]
			w.add(d.addOp(dh, ds, n*op.In*hw))
			w.put(ds)
		case model.OpConvIn:
			w.addAll(d.convBackwardWeightsOps(w.G("in.w"), w.G("in.b"), dh, w.input, n, op.In, op.Out, op.H, op.W, 3))
			w.put(dh)
		}
	}
	w.timeEmbeddingBackward()
}

// gnSiLUBackward records the gradient through s = SiLU(GN(x; prefix.g, prefix.b)) given ds = ∂L/∂s
// (recycled), writing the group norm's parameter gradients, and returns ∂L/∂x; the kernels recompute
// GN(x) from x and the saved statistics and apply the SiLU derivative on the way.
func (w *unetWalk) gnSiLUBackward(ds, x, mean, rstd *Buffer, prefix string, c int, op model.UNetOp) *Buffer {
	d, n := w.d, w.n
	dx := w.get(n * c * op.H * op.W)
	w.addAll(d.groupNormBackwardOps(dx, w.G(prefix+".g"), w.G(prefix+".b"), ds, x, w.P(prefix+".g"), w.P(prefix+".b"),
		mean, rstd, n, c, op.H, op.W, w.a.Groups, true))
	w.put(ds)
	return dx
}

// resBlockBackward records the gradients of residual block i given dy = ∂L/∂y (recycled) and
// returns ∂L/∂x; ∂L/∂e is accumulated into w.de.
func (w *unetWalk) resBlockBackward(i int, op model.UNetOp, dy *Buffer) *Buffer {
	d, n, hw := w.d, w.n, op.H*op.W
	p := op.Block + "."
	sv := &w.saved[i]
	nIn, nOut := n*op.In*hw, n*op.Out*hw
	// y = r2 + skip(x): the skip's gradients.
	var dxs *Buffer
	if op.In != op.Out {
		w.addAll(d.convBackwardWeightsOps(w.G(p+"skip.w"), w.G(p+"skip.b"), dy, sv.x, n, op.In, op.Out, op.H, op.W, 1))
		dxs = w.get(nIn)
		w.add(d.convBackwardDataOp(dxs, dy, w.P(p+"skip.w"), n, op.In, op.Out, op.H, op.W, 1))
	}
	// r2 = conv2(SiLU(GN2(r1))).
	w.addAll(d.convBackwardWeightsOps(w.G(p+"conv2.w"), w.G(p+"conv2.b"), dy, sv.s2, n, op.Out, op.Out, op.H, op.W, 3))
	ds2 := w.get(nOut)
	w.add(d.convBackwardDataOp(ds2, dy, w.P(p+"conv2.w"), n, op.Out, op.Out, op.H, op.W, 3))
	dr1 := w.gnSiLUBackward(ds2, sv.r1, sv.m2, sv.rs2, p+"gn2", op.Out, op)
	// r1 = conv1(SiLU(GN1(x))) + tb, tb = e·temb.w + temb.b broadcast over H×W.
	dtb := w.get(n * op.Out)
	w.add(d.channelBiasBackwardOp(dtb, dr1, n, op.Out, hw))
	w.add(d.linearDWOp(w.G(p+"temb.w"), w.e, dtb, n, w.a.TimeEmb, op.Out))
	w.add(d.linearDBOp(w.G(p+"temb.b"), dtb, n, op.Out))
	w.accumulateDE(dtb, w.P(p+"temb.w"), op.Out)
	w.put(dtb)
	w.addAll(d.convBackwardWeightsOps(w.G(p+"conv1.w"), w.G(p+"conv1.b"), dr1, sv.s1, n, op.In, op.Out, op.H, op.W, 3))
	ds1 := w.get(nIn)
	w.add(d.convBackwardDataOp(ds1, dr1, w.P(p+"conv1.w"), n, op.In, op.Out, op.H, op.W, 3))
	w.put(dr1)
	dx := w.gnSiLUBackward(ds1, sv.x, sv.m1, sv.rs1, p+"gn1", op.In, op)
	if dxs != nil {
		w.add(d.addOp(dx, dxs, nIn))
		w.put(dxs)
	} else {
		w.add(d.addOp(dx, dy, nIn))
	}
	w.put(dy)
	return dx
}

// accumulateDE records ∂L/∂e += dtb·Wᵀ for one block's time projection W (TimeEmb×out).
func (w *unetWalk) accumulateDE(dtb, wt *Buffer, out int) {
	d, n, T := w.d, w.n, w.a.TimeEmb
	if w.de == nil {
		w.de = w.get(n * T)
		w.add(d.linearDXOp(w.de, dtb, wt, nil, n, T, out))
		return
	}
	tmp := w.get(n * T)
	w.add(d.linearDXOp(tmp, dtb, wt, nil, n, T, out))
	w.add(d.addOp(w.de, tmp, n*T))
	w.put(tmp)
}

// timeEmbeddingBackward records the time MLP's gradients from ∂L/∂e.
func (w *unetWalk) timeEmbeddingBackward() {
	d, n, T, F2 := w.d, w.n, w.a.TimeEmb, 2*w.a.Fourier
	if w.de == nil {
		if w.err == nil {
			w.err = errNoBlocks
		}
		return
	}
	dz2 := w.get(n * T)
	w.add(d.siluOp(dz2, w.de, w.z2, n*T))
	w.put(w.de)
	w.add(d.linearDWOp(w.G("temb.l2.w"), w.h1, dz2, n, T, T))
	w.add(d.linearDBOp(w.G("temb.l2.b"), dz2, n, T))
	dz1 := w.get(n * T)
	w.add(d.linearDXOp(dz1, dz2, w.P("temb.l2.w"), w.z1, n, T, T)) // fused silu'(z1)
	w.put(dz2)
	w.add(d.linearDWOp(w.G("temb.l1.w"), w.feat, dz1, n, F2, T))
	w.add(d.linearDBOp(w.G("temb.l1.b"), dz1, n, T))
	w.put(dz1)
}
