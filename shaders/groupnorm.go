package shaders

import (
	_ "embed"
	"fmt"
	"math"
)

//go:embed groupnorm.wgsl
var groupnormWGSL string

//go:embed groupnorm_bwd_data.wgsl
var groupnormBwdDataWGSL string

//go:embed groupnorm_bwd_params.wgsl
var groupnormBwdParamsWGSL string

// groupNormShape validates a group norm's shape and returns the size of x and the number of
// (n, group) statistics.
func groupNormShape(what string, n, c, height, width, groups int) (nx, nstat int, err error) {
	if nx, err = imageShape(what, n, c, height, width); err != nil {
		return 0, 0, err
	}
	if groups < 1 || c%groups != 0 {
		return 0, 0, fmt.Errorf("shaders: %s: %d channels do not split into %d equal groups", what, c, groups)
	}
	return nx, n * groups, nil
}

// groupNormOp records groupnorm.wgsl: y = GN(x), or SiLU(GN(x)) when silu.
func (d *Device) groupNormOp(y, mean, rstd, x, gamma, beta *Buffer, n, c, height, width, groups int, eps float32, silu bool) (*op, error) {
	nx, nstat, err := groupNormShape("group norm", n, c, height, width, groups)
	if err != nil {
		return nil, err
	}
	if !(eps > 0) || math.IsInf(float64(eps), 0) {
		return nil, fmt.Errorf("shaders: group norm eps must be positive and finite, got %g", eps)
	}
	if err := d.checkImageBufs(imageBuf{y, "group norm output", nx}, imageBuf{mean, "group norm mean", nstat},
		imageBuf{rstd, "group norm rstd", nstat}, imageBuf{x, "group norm x", nx},
		imageBuf{gamma, "group norm gamma", c}, imageBuf{beta, "group norm beta", c}); err != nil {
		return nil, err
	}
	k, err := d.kernel("groupnorm", groupnormWGSL,
		[]bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1(nstat)
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n).u32(c).u32(height * width).u32(groups).f32(eps).u32(boolInt(silu)).bytes()
	return d.newOp(k, u, []*Buffer{x, gamma, beta, y, mean, rstd}, g)
}

// boolInt is 1 for true, 0 for false (a kernel's u32 switch).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// groupNormBackwardOps records groupnorm_bwd_data.wgsl and groupnorm_bwd_params.wgsl. With silu, dy
// is the gradient of SiLU(GN(x)) (groupNormOp with silu) and the SiLU derivative is applied on the
// way (it needs beta); without, beta is not read. The per-(sample, channel) partial sums between
// the two kernels live in a scratch buffer the first op owns.
func (d *Device) groupNormBackwardOps(dx, dgamma, dbeta, dy, x, gamma, beta, mean, rstd *Buffer, n, c, height, width, groups int, silu bool) ([]*op, error) {
	nx, nstat, err := groupNormShape("group norm backward", n, c, height, width, groups)
	if err != nil {
		return nil, err
	}
	if beta == nil && !silu {
		beta = gamma // bound, never read
	}
	if err := d.checkImageBufs(imageBuf{dx, "group norm dx", nx}, imageBuf{dgamma, "group norm dgamma", c},
		imageBuf{dbeta, "group norm dbeta", c}, imageBuf{dy, "group norm dy", nx}, imageBuf{x, "group norm x", nx},
		imageBuf{gamma, "group norm gamma", c}, imageBuf{beta, "group norm beta", c},
		imageBuf{mean, "group norm mean", nstat}, imageBuf{rstd, "group norm rstd", nstat}); err != nil {
		return nil, err
	}
	if dgamma == dbeta {
		return nil, fmt.Errorf("shaders: group norm backward: dgamma and dbeta must be different buffers")
	}
	kd, err := d.kernel("groupnorm_bwd_data", groupnormBwdDataWGSL,
		[]bindKind{bindUniform, bindRead, bindRead, bindRead, bindRead, bindRead, bindRead, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	kp, err := d.kernel("groupnorm_bwd_params", groupnormBwdParamsWGSL,
		[]bindKind{bindUniform, bindRead, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	gd, err := grid1(nstat)
	if err != nil {
		return nil, err
	}
	gp, err := grid1((c + groupNormWG - 1) / groupNormWG)
	if err != nil {
		return nil, err
	}
	part, err := d.NewBuffer(2 * n * c)
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n).u32(c).u32(height * width).u32(groups).u32(boolInt(silu)).bytes()
	od, err := d.newOp(kd, u, []*Buffer{dy, x, gamma, beta, mean, rstd, dx, part}, gd)
	if err != nil {
		part.Destroy()
		return nil, err
	}
	od.owned = []*Buffer{part}
	opar, err := d.newOp(kp, uniform{}.u32(n).u32(c).bytes(), []*Buffer{part, dgamma, dbeta}, gp)
	if err != nil {
		od.release()
		return nil, err
	}
	return []*op{od, opar}, nil
}

// groupNormWG is the workgroup size of groupnorm_bwd_params.wgsl (one invocation per channel).
const groupNormWG = 64

// GroupNorm runs groupnorm.wgsl on x (n×c×height×width, NCHW): the c channels split into groups of
// c/groups consecutive channels, each (sample, group) is normalised by its mean and biased variance
// and each channel scaled and shifted, y = gamma[ch]·(x − μ)·rstd + beta[ch] with
// rstd = 1/√(var + eps). mean and rstd (n×groups each) receive μ and rstd for GroupNormBackward.
// c must be a multiple of groups and eps positive.
func (d *Device) GroupNorm(y, mean, rstd, x, gamma, beta *Buffer, n, c, height, width, groups int, eps float32) error {
	return d.scoped("group norm", func() error {
		o, err := d.groupNormOp(y, mean, rstd, x, gamma, beta, n, c, height, width, groups, eps, false)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}

// GroupNormBackward runs groupnorm_bwd_data.wgsl and groupnorm_bwd_params.wgsl: given dy (the
// gradient of GroupNorm's output), the forward input x, gamma, and the mean and rstd GroupNorm saved,
// it writes dx (n×c×height×width) and the parameter gradients dgamma = Σ_{n,h,w} dy·x̂ and
// dbeta = Σ_{n,h,w} dy (c each; overwritten, not accumulated; deterministic sums).
func (d *Device) GroupNormBackward(dx, dgamma, dbeta, dy, x, gamma, mean, rstd *Buffer, n, c, height, width, groups int) error {
	return d.scoped("group norm backward", func() error {
		ops, err := d.groupNormBackwardOps(dx, dgamma, dbeta, dy, x, gamma, nil, mean, rstd, n, c, height, width, groups, false)
		if err != nil {
			return err
		}
		return d.runAll(ops)
	})
}
