package shaders

import (
	_ "embed"
	"fmt"
)

//go:embed resample.wgsl
var resampleWGSL string

// Modes of resample.wgsl.
const (
	resampleUp = iota
	resampleUpBackward
	resamplePool
	resamplePoolBackward
)

// resampleOp records one mode of resample.wgsl; height and width are always those of the forward
// input (the coarse grid for the upsample, the fine one for the pool).
func (d *Device) resampleOp(mode int, dst, src *Buffer, n, c, height, width int) (*op, error) {
	names := [...]string{"upsample 2×", "upsample 2× backward", "average pool 2×", "average pool 2× backward"}
	what := names[mode]
	xs, err := imageShape(what, n, c, height, width) // the forward input's size
	if err != nil {
		return nil, err
	}
	ys := xs / 4 // the forward output's size
	if mode < resamplePool {
		if ys, err = imageShape(what, n, c, height, width, 4); err != nil {
			return nil, err
		}
	} else if height%2 != 0 || width%2 != 0 {
		return nil, fmt.Errorf("shaders: %s needs an even height and width, got %d×%d", what, height, width)
	}
	in, out := xs, ys
	if mode == resampleUpBackward || mode == resamplePoolBackward {
		in, out = ys, xs
	}
	if err := d.checkImageBufs(imageBuf{dst, what + " output", out}, imageBuf{src, what + " input", in}); err != nil {
		return nil, err
	}
	k, err := d.kernel("resample", resampleWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1((out + imageWG - 1) / imageWG)
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n * c).u32(height).u32(width).u32(mode).bytes()
	return d.newOp(k, u, []*Buffer{src, dst}, g)
}

func (d *Device) runResample(mode int, dst, src *Buffer, n, c, height, width int) error {
	return d.scoped("resample", func() error {
		o, err := d.resampleOp(mode, dst, src, n, c, height, width)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// Upsample2x runs resample.wgsl: dst (n×c×2h×2w) is x (n×c×h×w, NCHW) upsampled 2× by nearest
// neighbour, dst[n,c,2i+a,2j+b] = x[n,c,i,j].
func (d *Device) Upsample2x(dst, x *Buffer, n, c, h, w int) error {
	return d.runResample(resampleUp, dst, x, n, c, h, w)
}

// Upsample2xBackward runs resample.wgsl: dx (n×c×h×w) is the gradient of Upsample2x given dy
// (n×c×2h×2w), dx[n,c,i,j] = Σ_{a,b∈{0,1}} dy[n,c,2i+a,2j+b]. h and w are x's size, as in Upsample2x.
func (d *Device) Upsample2xBackward(dx, dy *Buffer, n, c, h, w int) error {
	return d.runResample(resampleUpBackward, dx, dy, n, c, h, w)
}

// AvgPool2x runs resample.wgsl: dst (n×c×h/2×w/2) is the 2×2 average pool (stride 2) of x
// (n×c×h×w, NCHW; h and w even), dst[n,c,i,j] = ¼ Σ_{a,b∈{0,1}} x[n,c,2i+a,2j+b].
func (d *Device) AvgPool2x(dst, x *Buffer, n, c, h, w int) error {
	return d.runResample(resamplePool, dst, x, n, c, h, w)
}

// AvgPool2xBackward runs resample.wgsl: dx (n×c×h×w) is the gradient of AvgPool2x given dy
// (n×c×h/2×w/2), dx[n,c,i,j] = ¼ dy[n,c,i/2,j/2]. h and w are x's size, as in AvgPool2x.
func (d *Device) AvgPool2xBackward(dx, dy *Buffer, n, c, h, w int) error {
	return d.runResample(resamplePoolBackward, dx, dy, n, c, h, w)
}
