package shaders

import (
	_ "embed"
	"fmt"
)

//go:embed conv3x3.wgsl
var conv3x3WGSL string

//go:embed conv3x3_bwd_data.wgsl
var conv3x3BwdDataWGSL string

//go:embed conv3x3_bwd_weights.wgsl
var conv3x3BwdWeightsWGSL string

// imageWG is the workgroup size of the image kernels (conv3x3*, groupnorm*, silu*, resample.wgsl):
// one value per invocation for the elementwise ones, the width of the reduction tree for the others.
const imageWG = 256

// maxImageValues bounds every tensor an image kernel indexes, so that the kernels' u32 index
// arithmetic cannot wrap.
const maxImageValues = 1<<31 - 1

// imageShape checks that every dimension is at least 1 and returns their product, failing when it
// exceeds maxImageValues.
func imageShape(what string, dims ...int) (int, error) {
	total := 1
	for _, v := range dims {
		if v < 1 {
			return 0, fmt.Errorf("shaders: %s needs every dimension ≥ 1; got %v", what, dims)
		}
		if total > maxImageValues/v {
			return 0, fmt.Errorf("shaders: %s shape %v holds more than %d values", what, dims, maxImageValues)
		}
		total *= v
	}
	return total, nil
}

// imageBuf is one buffer an image kernel binds, with the values it must hold.
type imageBuf struct {
	b    *Buffer
	name string
	n    int
}

// checkImageBufs runs d.check on each buffer.
func (d *Device) checkImageBufs(bufs ...imageBuf) error {
	for _, c := range bufs {
		if err := d.check(c.b, c.name, c.n); err != nil {
			return err
		}
	}
	return nil
}

// convUniform is the Params struct of the conv3x3*.wgsl kernels.
func convUniform(n, cin, cout, height, width int) []byte {
	return uniform{}.u32(n).u32(cin).u32(cout).u32(height).u32(width).bytes()
}

// convShapes validates a 3×3 convolution's shape and returns the sizes of x, y and W.
func convShapes(what string, n, cin, cout, height, width int) (nx, ny, nw int, err error) {
	if nx, err = imageShape(what+" input", n, cin, height, width); err != nil {
		return
	}
	if ny, err = imageShape(what+" output", n, cout, height, width); err != nil {
		return
	}
	nw, err = imageShape(what+" weight", cout, cin, 9)
	return
}

// conv3x3Op records dst = conv3x3(x, w) + b (conv3x3.wgsl).
func (d *Device) conv3x3Op(dst, x, w, b *Buffer, n, cin, cout, height, width int) (*op, error) {
	nx, ny, nw, err := convShapes("conv3x3", n, cin, cout, height, width)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dst, "conv3x3 output", ny}, imageBuf{x, "conv3x3 x", nx},
		imageBuf{w, "conv3x3 weight", nw}, imageBuf{b, "conv3x3 bias", cout}); err != nil {
		return nil, err
	}
	k, err := d.kernel("conv3x3", conv3x3WGSL, []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1((ny + imageWG - 1) / imageWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, convUniform(n, cin, cout, height, width), []*Buffer{x, w, b, dst}, g)
}

// conv3x3BackwardDataOp records dx = conv_transpose(dy, w) (conv3x3_bwd_data.wgsl).
func (d *Device) conv3x3BackwardDataOp(dx, dy, w *Buffer, n, cin, cout, height, width int) (*op, error) {
	nx, ny, nw, err := convShapes("conv3x3 backward-data", n, cin, cout, height, width)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dx, "conv3x3 dx", nx}, imageBuf{dy, "conv3x3 dy", ny},
		imageBuf{w, "conv3x3 weight", nw}); err != nil {
		return nil, err
	}
	k, err := d.kernel("conv3x3_bwd_data", conv3x3BwdDataWGSL, []bindKind{bindUniform, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1((nx + imageWG - 1) / imageWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, convUniform(n, cin, cout, height, width), []*Buffer{dy, w, dx}, g)
}

// conv3x3BackwardWeightsOp records dw and db (conv3x3_bwd_weights.wgsl).
func (d *Device) conv3x3BackwardWeightsOp(dw, db, dy, x *Buffer, n, cin, cout, height, width int) (*op, error) {
	nx, ny, nw, err := convShapes("conv3x3 backward-weights", n, cin, cout, height, width)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dw, "conv3x3 dW", nw}, imageBuf{db, "conv3x3 db", cout},
		imageBuf{dy, "conv3x3 dy", ny}, imageBuf{x, "conv3x3 x", nx}); err != nil {
		return nil, err
	}
	if dw == db {
		return nil, fmt.Errorf("shaders: conv3x3 backward-weights: dW and db must be different buffers")
	}
	k, err := d.kernel("conv3x3_bwd_weights", conv3x3BwdWeightsWGSL,
		[]bindKind{bindUniform, bindRead, bindRead, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1(nw + cout)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, convUniform(n, cin, cout, height, width), []*Buffer{dy, x, dw, db}, g)
}

// Conv3x3 runs conv3x3.wgsl: dst (n×cout×height×width) = b + 3×3 convolution (stride 1, zero
// padding 1) of x (n×cin×height×width) with w (cout×cin×3×3), all NCHW float32:
// dst[n,co,h,w] = b[co] + Σ_{ci,kh,kw} w[co,ci,kh,kw]·x[n,ci,h+kh−1,w+kw−1].
func (d *Device) Conv3x3(dst, x, w, b *Buffer, n, cin, cout, height, width int) error {
	return d.scoped("conv3x3", func() error {
		o, err := d.conv3x3Op(dst, x, w, b, n, cin, cout, height, width)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// Conv3x3BackwardData runs conv3x3_bwd_data.wgsl: dx (n×cin×height×width) = the gradient of Conv3x3's
// output with respect to x given dy (n×cout×height×width) and w (cout×cin×3×3), i.e. the transposed
// convolution dx[n,ci,h,w] = Σ_{co,kh,kw} w[co,ci,kh,kw]·dy[n,co,h−kh+1,w−kw+1]. dx is overwritten.
func (d *Device) Conv3x3BackwardData(dx, dy, w *Buffer, n, cin, cout, height, width int) error {
	return d.scoped("conv3x3 backward-data", func() error {
		o, err := d.conv3x3BackwardDataOp(dx, dy, w, n, cin, cout, height, width)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// Conv3x3BackwardWeights runs conv3x3_bwd_weights.wgsl: dw (cout×cin×3×3) and db (cout) get the
// gradients of Conv3x3's output with respect to its weight and bias given dy (n×cout×height×width)
// and the forward input x (n×cin×height×width):
// dw[co,ci,kh,kw] = Σ_{n,h,w} dy[n,co,h,w]·x[n,ci,h+kh−1,w+kw−1], db[co] = Σ_{n,h,w} dy[n,co,h,w].
// dw and db are overwritten (not accumulated); the sums are deterministic.
func (d *Device) Conv3x3BackwardWeights(dw, db, dy, x *Buffer, n, cin, cout, height, width int) error {
	return d.scoped("conv3x3 backward-weights", func() error {
		o, err := d.conv3x3BackwardWeightsOp(dw, db, dy, x, n, cin, cout, height, width)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}
