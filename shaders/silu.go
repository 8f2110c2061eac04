package shaders

import (
	_ "embed"
	"fmt"
)

//go:embed silu.wgsl
var siluWGSL string

//go:embed silu_bwd.wgsl
var siluBwdWGSL string

// siluOp records silu.wgsl (dy == nil) or silu_bwd.wgsl over count values.
func (d *Device) siluOp(dst, dy, x *Buffer, count int) (*op, error) {
	if count < 1 || count > maxImageValues {
		return nil, fmt.Errorf("shaders: SiLU over %d values: need 1 to %d", count, maxImageValues)
	}
	g, err := grid1((count + imageWG - 1) / imageWG)
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(count).bytes()
	if dy == nil {
		if err := d.checkImageBufs(imageBuf{dst, "SiLU output", count}, imageBuf{x, "SiLU x", count}); err != nil {
			return nil, err
		}
		k, err := d.kernel("silu", siluWGSL, []bindKind{bindUniform, bindRead, bindWrite})
		if err != nil {
			return nil, err
		}
		return d.newOp(k, u, []*Buffer{x, dst}, g)
	}
	if err := d.checkImageBufs(imageBuf{dst, "SiLU dx", count}, imageBuf{dy, "SiLU dy", count},
		imageBuf{x, "SiLU x", count}); err != nil {
		return nil, err
	}
	k, err := d.kernel("silu_bwd", siluBwdWGSL, []bindKind{bindUniform, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	return d.newOp(k, u, []*Buffer{dy, x, dst}, g)
}

// SiLU runs silu.wgsl: dst[i] = x[i]·σ(x[i]) for the first count values (dst ≠ x).
func (d *Device) SiLU(dst, x *Buffer, count int) error {
	return d.scoped("SiLU", func() error {
		o, err := d.siluOp(dst, nil, x, count)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// SiLUBackward runs silu_bwd.wgsl: dx[i] = dy[i]·σ(x[i])·(1 + x[i]·(1 − σ(x[i]))), the gradient of
// SiLU at its input x, for the first count values (dx differs from dy and x).
func (d *Device) SiLUBackward(dx, dy, x *Buffer, count int) error {
	if dy == nil {
		return fmt.Errorf("shaders: SiLU backward: dy buffer is nil")
	}
	return d.scoped("SiLU backward", func() error {
		o, err := d.siluOp(dx, dy, x, count)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}
