package shaders

import (
	_ "embed"
	"fmt"
	"regexp"
)

//go:embed conv.wgsl
var convWGSL string

//go:embed conv_bwd_data.wgsl
var convBwdDataWGSL string

//go:embed conv_bwd_weights.wgsl
var convBwdWeightsWGSL string

//go:embed conv_bwd_reduce.wgsl
var convBwdReduceWGSL string

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

// convTile is one variant of the tiled conv kernels conv.wgsl and conv_bwd_data.wgsl: a BM×BN output
// tile per workgroup (BM channels × BN pixels), BK reduction channels staged per step, SBM×SBN
// sub-blocks of 8×8 outputs per invocation.
type convTile struct {
	name       string
	bm, bn, bk int
	sbm, sbn   int
}

// maxWorkgroupBytes is WebGPU's default maxComputeWorkgroupStorageSize, the most workgroup memory a
// kernel may declare on every adapter.
const maxWorkgroupBytes = 16384

// tileConsts rewrites the `const NAME: u32 = …u;` lines of src to vals, failing when src does not
// declare each of them exactly once.
func tileConsts(what, src string, vals map[string]int) (string, error) {
	for name, v := range vals {
		re := regexp.MustCompile(`(?m)^const ` + name + `: u32 = \d+u;`)
		if c := len(re.FindAllStringIndex(src, -1)); c != 1 {
			return "", fmt.Errorf("shaders: %s: the constant %s is declared %d times, want once", what, name, c)
		}
		src = re.ReplaceAllLiteralString(src, fmt.Sprintf("const %s: u32 = %du;", name, v))
	}
	return src, nil
}

// source returns src (conv.wgsl or conv_bwd_data.wgsl) with this tile's constants, failing when the
// tile breaks the kernels' assumptions (see conv.wgsl).
func (t convTile) source(src string) (string, error) {
	wx := t.bn / (8 * t.sbn)
	nc := t.bm / (8 * t.sbm) * wx
	nt := max(nc, t.bn/4)
	wsLen, xsLen := t.bk*t.bm/4, t.bk*t.bn/4
	if t.sbm < 1 || t.sbm > 2 || t.sbn < 1 || t.sbn > 2 || t.bm%(8*t.sbm) != 0 || t.bn%(8*t.sbn) != 0 ||
		nt > 256 || nt%(t.bn/4) != 0 || t.bk%(nt/(t.bn/4)) != 0 || 16*(wsLen+xsLen) > maxWorkgroupBytes {
		return "", fmt.Errorf("shaders: conv tile %s breaks the kernels' assumptions", t.name)
	}
	return tileConsts("conv tile "+t.name, src, map[string]int{"BM": t.bm, "BN": t.bn, "BK": t.bk,
		"SBM": t.sbm, "SBN": t.sbn, "BM4": t.bm / 4, "BN4": t.bn / 4, "WX": wx, "NC": nc, "NT": nt,
		"WS_LEN": wsLen, "XS_LEN": xsLen})
}

// convGrid is the dispatch of a tiled conv kernel: mTiles along x, the nTiles folded over y and z so
// that no dimension exceeds the per-dimension limit.
func convGrid(mTiles, nTiles int, what string) ([3]uint32, error) {
	if mTiles > maxGroupsPerDim {
		return [3]uint32{}, fmt.Errorf("shaders: %s needs %d channel tiles, above the dispatch limit", what, mTiles)
	}
	ny := min(nTiles, maxGroupsPerDim)
	nz := (nTiles + ny - 1) / ny
	if nz > maxGroupsPerDim {
		return [3]uint32{}, fmt.Errorf("shaders: %s needs %d pixel tiles, above the dispatch limit", what, nTiles)
	}
	return [3]uint32{uint32(mTiles), uint32(ny), uint32(nz)}, nil
}

// convTiles are the variants of conv.wgsl and conv_bwd_data.wgsl by adapter kind, each list 64, 32,
// 16 and 8 channels wide; pickConvTile chooses among them. Software adapters (lavapipe, SwiftShader)
// run each invocation's loads lane by lane, so they get large register blocks (2×2 sub-blocks: 64 FMAs
// per vec4 load) and wide pixel tiles; measured on lavapipe at batch 16 (n·h·w = 4096 pixels, 64→64
// channels, 3×3) in CPU time: 32 ms against 51 ms for the 64×64 tile with one sub-block and 229 ms
// for the direct kernel (one invocation per pixel and 4 output channels) this replaced. GPUs get one 8×8 sub-block per invocation (64 accumulators,
// no spilling) and 64-pixel tiles, for more workgroups at the small batches of the page; their
// speed is not measured here (no GPU on the build machines).
var convTiles = map[bool][]convTile{
	true: {
		{"sw64", 64, 128, 16, 2, 2},
		{"sw32", 32, 128, 16, 2, 2},
		{"sw16", 16, 128, 16, 1, 2},
		{"sw8", 8, 128, 16, 1, 2},
	},
	false: {
		{"hw64", 64, 64, 32, 1, 1},
		{"hw32", 32, 64, 32, 1, 1},
		{"hw16", 16, 64, 32, 1, 1},
		{"hw8", 8, 64, 32, 1, 1},
	},
}

// convTileKind, when not 0, makes pickConvTile use the software (1) or GPU (2) tiles on every
// adapter: tests run both families on whatever adapter they have.
var convTileKind = 0

// softTiles reports whether d gets the software adapters' tiles (convTiles).
func (d *Device) softTiles() bool { return d.soft && convTileKind != 2 || convTileKind == 1 }

// pickConvTile returns the tile for m output channels on d: the 8-channel one for m ≤ 8, else the
// 64-, 32- or 16-channel one that pads m least (padWidth).
func (d *Device) pickConvTile(m int) convTile {
	ts := convTiles[d.softTiles()]
	switch {
	case m <= 8:
		return ts[3]
	case padWidth(m) == 64:
		return ts[0]
	case padWidth(m) == 32:
		return ts[1]
	default:
		return ts[2]
	}
}

// padWidth returns whichever of 64, 32 and 16 pads c channels least, the wider on a tie (fewer,
// larger tiles: a conv re-stages its pixels once per channel tile).
func padWidth(c int) int {
	best := 64
	for _, w := range []int{32, 16} {
		if (c+w-1)/w*w < (c+best-1)/best*best {
			best = w
		}
	}
	return best
}

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

// convOp records dst = conv(x, w) + b (conv.wgsl), plus tb[i·cout + co] over every position of image
// i's channel co when tb is not nil (the residual block's time bias) and plus res elementwise when res
// is not nil (a residual, n×cout×height×width); w may hold f16 values (the f16-weight variant runs,
// weightf16.go).
func (d *Device) convOp(dst, x, w, b, tb, res *Buffer, n, cin, cout, height, width, k int) (*op, error) {
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
	// An absent term binds the bias in its place (never read: its flag is 0).
	tadd, radd := tb != nil, res != nil
	if !tadd {
		tb = b
	} else if err := d.check(tb, "conv time bias", n*cout); err != nil {
		return nil, err
	}
	if !radd {
		res = b
	} else if err := d.check(res, "conv residual", ny); err != nil {
		return nil, err
	}
	t := d.pickConvTile(cout)
	src, err := t.source(convWGSL)
	if err != nil {
		return nil, err
	}
	kern, err := d.weightKernel("conv"+t.name, src, w,
		[]bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite, bindRead, bindRead})
	if err != nil {
		return nil, err
	}
	g, err := convGrid((cout+t.bm-1)/t.bm, (n*height*width+t.bn-1)/t.bn, "conv")
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n).u32(cin).u32(cout).u32(height).u32(width).u32(k).u32(boolInt(tadd)).u32(boolInt(radd)).bytes()
	return d.newOp(kern, u, []*Buffer{x, w, b, dst, tb, res}, g)
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
	t := d.pickConvTile(cin)
	src, err := t.source(convBwdDataWGSL)
	if err != nil {
		return nil, err
	}
	kern, err := d.kernel("conv_bwd_data"+t.name, src, []bindKind{bindUniform, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := convGrid((cin+t.bm-1)/t.bm, (n*height*width+t.bn-1)/t.bn, "conv backward-data")
	if err != nil {
		return nil, err
	}
	return d.newOp(kern, convUniform(n, cin, cout, height, width, k), []*Buffer{dy, w, dx}, g)
}

// convWeightTile is a variant of conv_bwd_weights.wgsl: BM output channels × BN columns (tap, input
// channel) per workgroup, BK pixels staged per step, SBM×SBN sub-blocks of 8×8 outputs per
// invocation; cpad is the column stride of a tap (packed: a power of two below BN, 2^lg).
type convWeightTile struct {
	bm, bn, bk, sbm, sbn int
	cpad, lg             int
	packed               bool
}

// weightColumns returns the tap stride of cin input channels in a column tile bn wide: the next power
// of two (at least 4) when it is below bn (packed, with its log), else cin rounded up to bn.
func weightColumns(cin, bn int) (cpad, lg int, packed bool) {
	cpad, lg = 4, 2
	for cpad < cin {
		cpad, lg = 2*cpad, lg+1
	}
	if cpad < bn {
		return cpad, lg, true
	}
	return (cin + bn - 1) / bn * bn, 0, false
}

// pickWeightTile returns the variant for a k×k conv of cin → cout channels on d: BM of 64, 32 or 16
// output channels, whichever pads cout least (padWidth), and BN of 64 or 32 columns, whichever pads
// the k² taps' columns less (64 on a tie); narrow layers pack several taps into a column tile.
// Software adapters get two sub-blocks along each side of 64, GPUs one (see convTiles).
func (d *Device) pickWeightTile(cout, cin, k int) convWeightTile {
	t := convWeightTile{bm: padWidth(cout), bn: 64, bk: 16, sbm: 1, sbn: 1}
	t.cpad, t.lg, t.packed = weightColumns(cin, 64)
	if c32, lg32, p32 := weightColumns(cin, 32); (k*k*c32+31)/32*32 < (k*k*t.cpad+63)/64*64 {
		t.bn, t.cpad, t.lg, t.packed = 32, c32, lg32, p32
	}
	if d.softTiles() {
		t.sbm, t.sbn = max(1, t.bm/32), t.bn/32
	}
	return t
}

// source returns conv_bwd_weights.wgsl with the tile's constants.
func (t convWeightTile) source() (string, error) {
	wx := t.bn / (8 * t.sbn)
	nc := t.bm / (8 * t.sbm) * wx
	nt := max(nc, t.bk)
	dsLen, xsLen := t.bk*t.bm/4, t.bk*t.bn/4
	if t.sbm < 1 || t.sbm > 2 || t.sbn < 1 || t.sbn > 2 || t.bm%(8*t.sbm) != 0 || t.bn%(8*t.sbn) != 0 ||
		nt > 256 || nt%t.bk != 0 || 16*(dsLen+xsLen) > maxWorkgroupBytes {
		return "", fmt.Errorf("shaders: conv backward-weights tile %v breaks the kernel's assumptions", t)
	}
	return tileConsts("conv backward-weights", convBwdWeightsWGSL, map[string]int{"BM": t.bm, "BN": t.bn,
		"BK": t.bk, "SBM": t.sbm, "SBN": t.sbn, "BM4": t.bm / 4, "BN4": t.bn / 4, "WX": wx, "NC": nc,
		"NT": nt, "DS_LEN": dsLen, "XS_LEN": xsLen})
}

// convWeightWorkgroups is the number of workgroups conv_bwd_weights.wgsl is given at least (by
// splitting the pixels) when its tiles alone give fewer: enough to keep a few cores busy on a
// software adapter, or some of a GPU's.
const convWeightWorkgroups = 16

// convWeightSplits returns how many pixel ranges conv_bwd_weights.wgsl splits total pixels into when
// its tiles give tiles workgroups, and the pixels per range (a multiple of bk): at most what brings
// the workgroups to convWeightWorkgroups, each range keeping at least 4 chunks of bk pixels.
func convWeightSplits(total, tiles, bk int) (splits, chunk int) {
	splits = max(1, min((convWeightWorkgroups+tiles-1)/tiles, total/(4*bk)))
	chunk = (total + splits - 1) / splits
	chunk = (chunk + bk - 1) / bk * bk
	return (total + chunk - 1) / chunk, chunk
}

// convBackwardWeightsOps records dw and db (conv_bwd_weights.wgsl, then conv_bwd_reduce.wgsl for each
// when the pixels are split; the partial sums live in scratch buffers the ops own).
func (d *Device) convBackwardWeightsOps(dw, db, dy, x *Buffer, n, cin, cout, height, width, k int) ([]*op, error) {
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
	t := d.pickWeightTile(cout, cin, k)
	src, err := t.source()
	if err != nil {
		return nil, err
	}
	kern, err := d.kernel(fmt.Sprintf("conv_bwd_weights%dx%d_%dx%d", t.bm, t.bn, t.sbm, t.sbn), src,
		[]bindKind{bindUniform, bindRead, bindRead, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	mTiles, nTiles := (cout+t.bm-1)/t.bm, (k*k*t.cpad+t.bn-1)/t.bn
	if mTiles > maxGroupsPerDim || nTiles > maxGroupsPerDim {
		return nil, fmt.Errorf("shaders: conv backward-weights: %d×%d tiles exceed the dispatch limit", mTiles, nTiles)
	}
	splits, chunk := convWeightSplits(n*height*width, mTiles*nTiles, t.bk)
	u := uniform{}.u32(n).u32(cin).u32(cout).u32(height).u32(width).u32(k).u32(splits).u32(chunk).
		u32(t.cpad).u32(boolInt(t.packed)).u32(t.lg).bytes()
	g := [3]uint32{uint32(mTiles), uint32(nTiles), uint32(splits)}
	if splits == 1 {
		o, err := d.newOp(kern, u, []*Buffer{dy, x, dw, db}, g)
		if err != nil {
			return nil, err
		}
		return []*op{o}, nil
	}
	// Partial sums, one slot per split, added by conv_bwd_reduce.wgsl.
	pw, err := d.NewBuffer(splits * nw)
	if err != nil {
		return nil, err
	}
	pb, err := d.NewBuffer(splits * cout)
	if err != nil {
		pw.Destroy()
		return nil, err
	}
	gemm, err := d.newOp(kern, u, []*Buffer{dy, x, pw, pb}, g)
	if err != nil {
		pw.Destroy()
		pb.Destroy()
		return nil, err
	}
	gemm.owned = []*Buffer{pw, pb}
	ops := []*op{gemm}
	red, err := d.kernel("conv_bwd_reduce", convBwdReduceWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	for _, c := range []struct {
		dst, src *Buffer
		n        int
	}{{dw, pw, nw}, {db, pb, cout}} {
		var gr [3]uint32
		if err == nil {
			gr, err = grid1((c.n + imageWG - 1) / imageWG)
		}
		var o *op
		if err == nil {
			o, err = d.newOp(red, uniform{}.u32(c.n).u32(splits).bytes(), []*Buffer{c.src, c.dst}, gr)
		}
		if err != nil {
			for _, o := range ops {
				o.release()
			}
			return nil, err
		}
		ops = append(ops, o)
	}
	return ops, nil
}

// Conv runs conv.wgsl: dst (n×cout×height×width) = b + k×k convolution (k = 1 or 3, stride 1, zero
// padding k/2) of x (n×cin×height×width) with w (cout×cin×k×k), all NCHW float32:
// dst[n,co,h,w] = b[co] + Σ_{ci,kh,kw} w[co,ci,kh,kw]·x[n,ci,h+kh−k/2,w+kw−k/2].
func (d *Device) Conv(dst, x, w, b *Buffer, n, cin, cout, height, width, k int) error {
	return d.scoped("conv", func() error {
		o, err := d.convOp(dst, x, w, b, nil, nil, n, cin, cout, height, width, k)
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
		ops, err := d.convBackwardWeightsOps(dw, db, dy, x, n, cin, cout, height, width, k)
		if err != nil {
			return err
		}
		return d.runAll(ops)
	})
}
