package shaders

import (
	_ "embed"
	"fmt"
)

//go:embed channels.wgsl
var channelsWGSL string

//go:embed chanbias.wgsl
var chanbiasWGSL string

//go:embed chanbias_bwd.wgsl
var chanbiasBwdWGSL string

// channelCopyOp records channels.wgsl: for c < cc, dst[i, d0+c, :] = src[i, s0+c, :] (or += when acc)
// over n images of hw values per channel, src holding cs channels and dst cd.
func (d *Device) channelCopyOp(dst, src *Buffer, n, hw, cc, cs, s0, cd, d0 int, acc bool) (*op, error) {
	what := "channel copy"
	if acc {
		what = "channel accumulate"
	}
	if _, err := imageShape(what, n, cc, hw); err != nil {
		return nil, err
	}
	if s0 < 0 || d0 < 0 || s0+cc > cs || d0+cc > cd {
		return nil, fmt.Errorf("shaders: %s of channels [%d, %d) into [%d, %d) does not fit %d source and %d destination channels",
			what, s0, s0+cc, d0, d0+cc, cs, cd)
	}
	ns, err := imageShape(what+" source", n, cs, hw)
	if err != nil {
		return nil, err
	}
	nd, err := imageShape(what+" destination", n, cd, hw)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dst, what + " destination", nd}, imageBuf{src, what + " source", ns}); err != nil {
		return nil, err
	}
	k, err := d.kernel("channels", channelsWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	// One workgroup per imageWG values of a channel row (channels.wgsl).
	g, err := grid1(n * cc * ((hw + imageWG - 1) / imageWG))
	if err != nil {
		return nil, err
	}
	a := 0
	if acc {
		a = 1
	}
	u := uniform{}.u32(n).u32(hw).u32(cc).u32(cs).u32(s0).u32(cd).u32(d0).u32(a).bytes()
	return d.newOp(k, u, []*Buffer{src, dst}, g)
}

// addOp records dst[i] += src[i] for i < count (channels.wgsl as one channel of count values).
func (d *Device) addOp(dst, src *Buffer, count int) (*op, error) {
	return d.channelCopyOp(dst, src, 1, count, 1, 1, 0, 1, 0, true)
}

// concatOps records dst (n×(ca+cb)×hw) = a (n×ca×hw) followed by b (n×cb×hw) on channels.
func (d *Device) concatOps(dst, a, b *Buffer, n, ca, cb, hw int) ([]*op, error) {
	oa, err := d.channelCopyOp(dst, a, n, hw, ca, ca, 0, ca+cb, 0, false)
	if err != nil {
		return nil, err
	}
	ob, err := d.channelCopyOp(dst, b, n, hw, cb, cb, 0, ca+cb, ca, false)
	if err != nil {
		oa.release()
		return nil, err
	}
	return []*op{oa, ob}, nil
}

// splitOps records the backward of concatOps: da = src[:, :ca], db = src[:, ca:].
func (d *Device) splitOps(da, db, src *Buffer, n, ca, cb, hw int) ([]*op, error) {
	oa, err := d.channelCopyOp(da, src, n, hw, ca, ca+cb, 0, ca, 0, false)
	if err != nil {
		return nil, err
	}
	ob, err := d.channelCopyOp(db, src, n, hw, cb, ca+cb, ca, cb, 0, false)
	if err != nil {
		oa.release()
		return nil, err
	}
	return []*op{oa, ob}, nil
}

// channelBiasOp records chanbias.wgsl: y[i, c, :] += tb[i·c_count + c] in place over n images of c
// channels of hw values.
func (d *Device) channelBiasOp(y, tb *Buffer, n, c, hw int) (*op, error) {
	ny, err := imageShape("channel bias", n, c, hw)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{y, "channel bias output", ny}, imageBuf{tb, "channel bias values", n * c}); err != nil {
		return nil, err
	}
	k, err := d.kernel("chanbias", chanbiasWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	// One workgroup per imageWG values of a channel row (chanbias.wgsl).
	g, err := grid1(n * c * ((hw + imageWG - 1) / imageWG))
	if err != nil {
		return nil, err
	}
	return d.newOp(k, uniform{}.u32(n*c).u32(hw).bytes(), []*Buffer{tb, y}, g)
}

// chanbiasBwdWG is the workgroup size of chanbias_bwd.wgsl.
const chanbiasBwdWG = 64

// channelBiasBackwardOp records chanbias_bwd.wgsl: dtb[i·c_count + c] = Σ_pos dy[i, c, pos].
func (d *Device) channelBiasBackwardOp(dtb, dy *Buffer, n, c, hw int) (*op, error) {
	ny, err := imageShape("channel bias backward", n, c, hw)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dtb, "channel bias gradient", n * c}, imageBuf{dy, "channel bias dy", ny}); err != nil {
		return nil, err
	}
	k, err := d.kernel("chanbias_bwd", chanbiasBwdWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	// One invocation per channel row (chanbias_bwd.wgsl, workgroups of chanbiasBwdWG).
	g, err := grid1((n*c + chanbiasBwdWG - 1) / chanbiasBwdWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, uniform{}.u32(n*c).u32(hw).bytes(), []*Buffer{dy, dtb}, g)
}

// runOps records ops in one batch, in order, submits it and frees the ops' uniforms.
func (d *Device) runOps(ops []*op, err error) error {
	if err != nil {
		return err
	}
	return d.runAll(ops)
}

// Concat runs channels.wgsl twice: dst (n×(ca+cb)×hw) holds a's ca channels then b's cb channels,
// image by image (the U-Net's skip concatenation, NCHW). dst differs from a and b.
func (d *Device) Concat(dst, a, b *Buffer, n, ca, cb, hw int) error {
	return d.scoped("concat", func() error { return d.runOps(d.concatOps(dst, a, b, n, ca, cb, hw)) })
}

// Split runs channels.wgsl twice, the gradient of Concat: da (n×ca×hw) gets src's first ca
// channels and db (n×cb×hw) the remaining cb, image by image.
func (d *Device) Split(da, db, src *Buffer, n, ca, cb, hw int) error {
	return d.scoped("split", func() error { return d.runOps(d.splitOps(da, db, src, n, ca, cb, hw)) })
}

// AddTo runs channels.wgsl as an accumulation: dst[i] += src[i] for i < count (dst differs from src;
// the residual sums and gradient accumulation of the U-Net).
func (d *Device) AddTo(dst, src *Buffer, count int) error {
	return d.scoped("add", func() error {
		o, err := d.addOp(dst, src, count)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// AddChannelBias runs chanbias.wgsl: y (n×c×hw, NCHW) gets tb[i·c + ch] added to every value of
// image i's channel ch, in place (the residual block's time-embedding projection).
func (d *Device) AddChannelBias(y, tb *Buffer, n, c, hw int) error {
	return d.scoped("channel bias", func() error {
		o, err := d.channelBiasOp(y, tb, n, c, hw)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// ChannelBiasBackward runs chanbias_bwd.wgsl, the gradient of AddChannelBias with respect to tb:
// dtb[i·c + ch] = Σ_pos dy[i, ch, pos] over the hw positions (deterministic sums). dtb is overwritten.
func (d *Device) ChannelBiasBackward(dtb, dy *Buffer, n, c, hw int) error {
	return d.scoped("channel bias backward", func() error {
		o, err := d.channelBiasBackwardOp(dtb, dy, n, c, hw)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}
