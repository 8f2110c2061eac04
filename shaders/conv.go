package shaders

import (
	_ "embed"
	"fmt"
)

//go:embed conv.wgsl
var convWGSL string

//go:embed conv_bwd_data.wgsl
var convBwdDataWGSL string

//go:embed conv_bwd_weights.wgsl
var convBwdWeightsWGSL string

// imageWG is the workgroup size of the image kernels (conv*, groupnorm*, silu*, resample, channels;
// not conv_bwd_weights.wgsl, which uses 64): one value per invocation for the elementwise ones, the
// width of the reduction tree for the others.
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

// convBlock is the number of channels one invocation of conv.wgsl (output channels) or
// conv_bwd_data.wgsl (input channels) computes: CB in those files.
const convBlock = 4

// convUniform is the Params struct of the conv*.wgsl kernels.
func convUniform(n, cin, cout, height, width, k int) []byte {
	return uniform{}.u32(n).u32(cin).u32(cout).u32(height).u32(width).u32(k).bytes()
}

// convShapes validates a k×k convolution's shape (k is 1 or 3, the sizes the U-Net uses) and returns
// the sizes of x, y and W.
func convShapes(what string, n, cin, cout, height, width, k int) (nx, ny, nw int, err error) {
	if k != 1 && k != 3 {
		return 0, 0, 0, fmt.Errorf("shaders: %s: kernel size %d, need 1 or 3", what, k)
	}
	if nx, err = imageShape(what+" input", n, cin, height, width); err != nil {
		return
	}
	if ny, err = imageShape(what+" output", n, cout, height, width); err != nil {
		return
	}
	nw, err = imageShape(what+" weight", cout, cin, k*k)
	return
}

// convOp records dst = conv(x, w) + b (conv.wgsl); w may hold f16 values (the f16-weight variant
// runs, weightf16.go).
func (d *Device) convOp(dst, x, w, b *Buffer, n, cin, cout, height, width, k int) (*op, error) {
	nx, ny, nw, err := convShapes("conv", n, cin, cout, height, width, k)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dst, "conv output", ny}, imageBuf{x, "conv x", nx},
		imageBuf{b, "conv bias", cout}); err != nil {
		return nil, err
	}
	if err := d.checkWeight(w, "conv weight", nw); err != nil {
		return nil, err
	}
	kern, err := d.weightKernel("conv", convWGSL, w, []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	// One invocation per pixel and block of convBlock output channels.
	g, err := grid1((n*(cout+convBlock-1)/convBlock*height*width + imageWG - 1) / imageWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(kern, convUniform(n, cin, cout, height, width, k), []*Buffer{x, w, b, dst}, g)
}

// convBackwardDataOp records dx = conv_transpose(dy, w) (conv_bwd_data.wgsl).
func (d *Device) convBackwardDataOp(dx, dy, w *Buffer, n, cin, cout, height, width, k int) (*op, error) {
	nx, ny, nw, err := convShapes("conv backward-data", n, cin, cout, height, width, k)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dx, "conv dx", nx}, imageBuf{dy, "conv dy", ny},
		imageBuf{w, "conv weight", nw}); err != nil {
		return nil, err
	}
	kern, err := d.kernel("conv_bwd_data", convBwdDataWGSL, []bindKind{bindUniform, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	// One invocation per pixel and block of convBlock input channels.
	g, err := grid1((n*(cin+convBlock-1)/convBlock*height*width + imageWG - 1) / imageWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(kern, convUniform(n, cin, cout, height, width, k), []*Buffer{dy, w, dx}, g)
}

// convBackwardWeightsOp records dw and db (conv_bwd_weights.wgsl).
func (d *Device) convBackwardWeightsOp(dw, db, dy, x *Buffer, n, cin, cout, height, width, k int) (*op, error) {
	nx, ny, nw, err := convShapes("conv backward-weights", n, cin, cout, height, width, k)
	if err != nil {
		return nil, err
	}
	if err := d.checkImageBufs(imageBuf{dw, "conv dW", nw}, imageBuf{db, "conv db", cout},
		imageBuf{dy, "conv dy", ny}, imageBuf{x, "conv x", nx}); err != nil {
		return nil, err
	}
	if dw == db {
		return nil, fmt.Errorf("shaders: conv backward-weights: dW and db must be different buffers")
	}
	kern, err := d.kernel("conv_bwd_weights", convBwdWeightsWGSL,
		[]bindKind{bindUniform, bindRead, bindRead, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1(cout*cin + cout)
	if err != nil {
		return nil, err
	}
	return d.newOp(kern, convUniform(n, cin, cout, height, width, k), []*Buffer{dy, x, dw, db}, g)
}

// Conv runs conv.wgsl: dst (n×cout×height×width) = b + k×k convolution (k = 1 or 3, stride 1, zero
// padding k/2) of x (n×cin×height×width) with w (cout×cin×k×k), all NCHW float32:
// dst[n,co,h,w] = b[co] + Σ_{ci,kh,kw} w[co,ci,kh,kw]·x[n,ci,h+kh−k/2,w+kw−k/2].
func (d *Device) Conv(dst, x, w, b *Buffer, n, cin, cout, height, width, k int) error {
	return d.scoped("conv", func() error {
		o, err := d.convOp(dst, x, w, b, n, cin, cout, height, width, k)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// ConvBackwardData runs conv_bwd_data.wgsl: dx (n×cin×height×width) = the gradient of Conv's output
// with respect to x given dy (n×cout×height×width) and w (cout×cin×k×k), i.e. the transposed
// convolution dx[n,ci,h,w] = Σ_{co,kh,kw} w[co,ci,kh,kw]·dy[n,co,h−kh+k/2,w−kw+k/2]. dx is overwritten.
func (d *Device) ConvBackwardData(dx, dy, w *Buffer, n, cin, cout, height, width, k int) error {
	return d.scoped("conv backward-data", func() error {
		o, err := d.convBackwardDataOp(dx, dy, w, n, cin, cout, height, width, k)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// ConvBackwardWeights runs conv_bwd_weights.wgsl: dw (cout×cin×k×k) and db (cout) get the gradients
// of Conv's output with respect to its weight and bias given dy (n×cout×height×width) and the
// forward input x (n×cin×height×width):
// dw[co,ci,kh,kw] = Σ_{n,h,w} dy[n,co,h,w]·x[n,ci,h+kh−k/2,w+kw−k/2], db[co] = Σ_{n,h,w} dy[n,co,h,w].
// dw and db are overwritten (not accumulated); the sums are deterministic.
func (d *Device) ConvBackwardWeights(dw, db, dy, x *Buffer, n, cin, cout, height, width, k int) error {
	return d.scoped("conv backward-weights", func() error {
		o, err := d.convBackwardWeightsOp(dw, db, dy, x, n, cin, cout, height, width, k)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}
