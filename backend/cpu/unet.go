package cpu

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/model"
	"asbm/weights"
)

// The U-Net (Arch.Kind "unet") as a gorgonia graph. The network is defined once, in model/unet.go:
// this builder walks model.UNetOps and emits each step, so the topology is never re-derived here.
// Tensors are NCHW float32 like the data rows; the time features (model.TimeFeatures) are computed
// in Go and fed as an [n, 2F] input.
//
// Two sets of ops build the same function. The default uses the fused ops of unetops.go, convops.go
// and gnops.go (an NCHW im2col convolution on tiles and OpenBLAS's sgemm (kern.Gemm), group norm +
// SiLU in one pass each way, ...). With stockOps the graph uses gorgonia's own ops only (G.Conv2d,
// group norm and average pooling from means and broadcasts, Concat, Upsample2D); the tests use it
// to cross-check the fused ops' gradients and the benchmarks to measure what the fused ops save.
//
// Gorgonia v0.9.18 bugs met on the way, each checked against plain Go (and worked around in the
// stock graph where it uses the op): G.GroupNorm's moment merge passes the mean array where the M2
// array belongs (op_group_norm.go, the last addMomentsVec loop), so any group of more than 256
// values gets a wrong variance (relative error 1.6 on 2 channels × 784 pixels); G.AveragePool2D
// divides each window's sum by the input width instead of the window size and its gradient goes
// through a max-pool mask; InverseSqrt's gradient is −g/(2y³) instead of −g·y³/2; Mean(x, 2, 3)
// over two axes in one call gave wrong values; and reshaping a large tensor that other ops still
// read led to wrong gradients (see gnSiLU).

// unetBuilder holds the state of one graph construction. Every gorgonia error is turned into a
// panic by chk and back into an error by buildGraphWith's recover, so the walk reads like the
// definition in model/unet.go.
type unetBuilder struct {
	a     weights.Arch
	g     *G.ExprGraph
	n     int
	stock bool // gorgonia's ops only
	train bool // the graph will be differentiated: the fused ops keep what their gradients need
	p     map[string]*G.Node
}

// chk returns v or panics with err (see unetBuilder).
func chk[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// buildUNetForward builds the U-Net's forward pass for n images with the parameter nodes bound to
// params (ParamShapes order); it returns the graph and the parameter nodes in that order. train says
// whether the graph will be differentiated. It panics on construction errors (see unetBuilder).
func buildUNetForward(a weights.Arch, params [][]float32, n int, train, stockOps bool) (*netGraph, G.Nodes) {
	names, shapes := model.ParamShapes(a)
	g := G.NewGraph()
	C, H, W, F := a.Channels, a.Height, a.Width, a.Fourier
	ng := &netGraph{n: n, g: g, x: make([]float32, n*a.Dim), tf: make([]float32, n*2*F)}
	x := G.NewTensor(g, G.Float32, 4, G.WithShape(n, C, H, W), G.WithName("x"),
		G.WithValue(tensor.New(tensor.WithShape(n, C, H, W), tensor.WithBacking(ng.x))))
	tf := G.NewMatrix(g, G.Float32, G.WithShape(n, 2*F), G.WithName("tf"),
		G.WithValue(tensor.New(tensor.WithShape(n, 2*F), tensor.WithBacking(ng.tf))))

	b := &unetBuilder{a: a, g: g, n: n, stock: stockOps, train: train, p: make(map[string]*G.Node, len(names))}
	pnodes := make(G.Nodes, len(names))
	for i, name := range names {
		sh := b.paramShape(name, shapes[i])
		pnodes[i] = G.NewTensor(g, G.Float32, len(sh), G.WithShape(sh...), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(sh...), tensor.WithBacking(params[i]))))
		b.p[name] = pnodes[i]
	}

	// e = SiLU(SiLU(feat·l1.w + l1.b)·l2.w + l2.b) (model/unet.go, time embedding).
	e := b.linear(tf, "temb.l1", true)
	e = b.linear(e, "temb.l2", true)

	var h *G.Node
	var skips []*G.Node
	for _, op := range model.UNetOps(a) {
		switch op.Kind {
		case model.OpConvIn:
			h = b.conv(x, "in", 3)
		case model.OpRes:
			h = b.resBlock(op, h, e)
		case model.OpPush:
			skips = append(skips, h)
		case model.OpPool:
			h = b.pool(h)
		case model.OpUp:
			h = b.upsample(h)
		case model.OpConcat:
			s := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = b.concat(h, s)
		case model.OpOut:
			h = b.conv(b.gnSiLU(h, "out.gn"), "out", 3)
		default:
			panic(fmt.Sprintf("unknown U-Net op kind %d", op.Kind))
		}
	}
	ng.pred = h
	return ng, pnodes
}

// paramShape is the shape a parameter's node gets: its ParamShapes shape, except that vectors take
// the shape their op broadcasts them in. The backing data is the same either way.
func (b *unetBuilder) paramShape(name string, sh []int) []int {
	if len(sh) != 1 {
		return sh
	}
	if hasSuffix(name, "temb.l1.b") || hasSuffix(name, "temb.l2.b") || hasSuffix(name, ".temb.b") {
		return []int{1, sh[0]} // linear biases, repeated over the rows (as the MLP's)
	}
	if b.stock {
		return []int{1, sh[0], 1, 1} // conv biases and group-norm γ, β, broadcast over N, H, W
	}
	return sh
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// linear is x·<p>.w + <p>.b, then SiLU when silu is set.
func (b *unetBuilder) linear(x *G.Node, p string, silu bool) *G.Node {
	z := chk(G.Mul(x, b.p[p+".w"]))
	if !b.stock {
		return chk(biasAct(z, b.p[p+".b"], silu))
	}
	z = chk(G.BroadcastAdd(z, b.p[p+".b"], nil, []byte{0}))
	if !silu {
		return z
	}
	return b.silu(z)
}

func (b *unetBuilder) silu(z *G.Node) *G.Node {
	return chk(G.HadamardProd(z, chk(G.Sigmoid(z))))
}

// conv is the k×k convolution (k = 1 or 3, stride 1, zero padding k/2) with weight <p>.w
// [cout, cin, k, k] and bias <p>.b, as model.ConvCPU.
func (b *unetBuilder) conv(x *G.Node, p string, k int) *G.Node {
	w, bias := b.p[p+".w"], b.p[p+".b"]
	if !b.stock {
		return chk(G.ApplyOp(chk(newConvOp(x.Shape(), w.Shape())), x, w, bias))
	}
	// G.Conv2d takes the filter as [cout, cin, kh, kw] (it reshapes it to [cout, cin·kh·kw] against
	// im2col's [.., cin·kh·kw] patches, channel-major like ours) and pads symmetrically.
	y := chk(G.Conv2d(x, w, tensor.Shape{k, k}, []int{k / 2, k / 2}, []int{1, 1}, []int{1, 1}))
	return chk(G.BroadcastAdd(y, bias, nil, []byte{0, 2, 3}))
}

// gnSiLU is SiLU(GroupNorm(x; <p>.g, <p>.b)) with a.Groups groups, biased variance and eps
// model.GroupNormEps, as model.GroupNormCPU.
func (b *unetBuilder) gnSiLU(x *G.Node, p string) *G.Node {
	gamma, beta := b.p[p+".g"], b.p[p+".b"]
	if !b.stock {
		return chk(G.ApplyOp(chk(newGNSiLUOp(x.Shape(), b.a.Groups, b.train)), x, gamma, beta))
	}
	// A group norm built on reshaping x to [n·groups, …] got wrong gradients for x in gorgonia
	// v0.9.18 (the forward was right; the same chain on a plain matrix was right too). Reshape is a
	// view that the tape machine may run in place (reshapeOp.UnsafeDo reshapes its input tensor),
	// the likely cause; it was not pinned down further. So no large tensor is reshaped here: per-channel means over H×W (Mean along 2, 3), then group means as a product
	// with the constant block matrix avg [c, c] (1/cg within a group), and only the small [n, c]
	// results are reshaped to [n, c, 1, 1] to broadcast. The broadcast operand goes on the left, where
	// an in-place op overwrites a fresh repeat rather than x. With −x̂ = (m − x)·rstd:
	// y = β − γ·(−x̂) = γ·x̂ + β.
	sh := x.Shape()
	n, c, cg := sh[0], sh[1], sh[1]/b.a.Groups
	avg := make([]float32, c*c)
	for i := 0; i < c; i++ {
		for j := 0; j < c; j++ {
			if i/cg == j/cg {
				avg[i*c+j] = 1 / float32(cg)
			}
		}
	}
	avgN := G.NewConstant(tensor.New(tensor.WithShape(c, c), tensor.WithBacking(avg)))
	toNC11 := func(v *G.Node) *G.Node { return chk(G.Reshape(v, tensor.Shape{n, c, 1, 1})) }
	// One axis at a time: gorgonia's Mean(x, 2, 3) in one call gave wrong values.
	meanHW := func(v *G.Node) *G.Node { return chk(G.Mean(chk(G.Mean(v, 3)), 2)) }
	mean := chk(G.Mul(meanHW(x), avgN))                              // [n, c]: the group mean per channel
	negXc := chk(G.BroadcastSub(toNC11(mean), x, []byte{2, 3}, nil)) // m − x
	v := chk(G.Mul(meanHW(chk(G.Square(negXc))), avgN))              // [n, c]: the group variance
	eps := G.NewConstant(float32(model.GroupNormEps))
	// Not G.InverseSqrt: its gradient is wrong in gorgonia v0.9.18.
	rstd := chk(G.Inverse(chk(G.Sqrt(chk(G.Add(v, eps))))))
	negXn := chk(G.BroadcastHadamardProd(toNC11(rstd), negXc, []byte{2, 3}, nil))
	y := chk(G.BroadcastHadamardProd(gamma, negXn, []byte{0, 2, 3}, nil))
	y = chk(G.BroadcastSub(beta, y, []byte{0, 2, 3}, nil))
	return b.silu(y)
}

// addTemb adds the per-image, per-channel values tb [n, c] to every pixel of r [n, c, h, w].
func (b *unetBuilder) addTemb(r, tb *G.Node) *G.Node {
	if !b.stock {
		return chk(G.ApplyOp(&chanAddOp{}, r, tb))
	}
	sh := tb.Shape()
	tb = chk(G.Reshape(tb, tensor.Shape{sh[0], sh[1], 1, 1}))
	return chk(G.BroadcastAdd(r, tb, nil, []byte{2, 3}))
}

// resBlock is the residual block of model/unet.go:
//
//	r = conv3x3(SiLU(GN(x; p.gn1)); p.conv1) + (e·p.temb.w + p.temb.b) broadcast over H×W
//	r = conv3x3(SiLU(GN(r; p.gn2)); p.conv2)
//	y = skip(x) + r,  skip = identity when cin = cout, else the 1×1 conv p.skip
func (b *unetBuilder) resBlock(op model.UNetOp, x, e *G.Node) *G.Node {
	p := op.Block + "."
	r := b.conv(b.gnSiLU(x, p+"gn1"), p+"conv1", 3)
	r = b.addTemb(r, b.linear(e, p+"temb", false))
	r = b.conv(b.gnSiLU(r, p+"gn2"), p+"conv2", 3)
	skip := x
	if op.In != op.Out {
		skip = b.conv(x, p+"skip", 1)
	}
	if b.stock {
		return chk(G.Add(skip, r))
	}
	return chk(G.ApplyOp(&addOp{}, skip, r))
}

// pool is the 2×2 average pool (model.AvgPool2xCPU).
func (b *unetBuilder) pool(x *G.Node) *G.Node {
	if !b.stock {
		return chk(G.ApplyOp(&resampleOp{scale: 0.25}, x))
	}
	// Not G.AveragePool2D: in gorgonia v0.9.18 it divides each window's sum by the input width
	// instead of the window size, and its gradient scatters through a max-pool mask. The mean over the
	// 2×2 windows as reshapes and means instead.
	sh := x.Shape()
	n, c, h, w := sh[0], sh[1], sh[2], sh[3]
	xr := chk(G.Reshape(x, tensor.Shape{n * c * h / 2, 2, w / 2, 2}))
	m := chk(G.Mean(chk(G.Mean(xr, 3)), 1))
	return chk(G.Reshape(m, tensor.Shape{n, c, h / 2, w / 2}))
}

// upsample is the nearest-neighbour 2× upsample (model.Upsample2xCPU).
func (b *unetBuilder) upsample(x *G.Node) *G.Node {
	if !b.stock {
		return chk(G.ApplyOp(&resampleOp{up: true, scale: 1}, x))
	}
	return chk(G.Upsample2D(x, 2))
}

// concat stacks h and the skip s on channels, h first (model.ConcatCPU).
func (b *unetBuilder) concat(h, s *G.Node) *G.Node {
	if !b.stock {
		return chk(G.ApplyOp(&concatOp{}, h, s))
	}
	return chk(G.Concat(1, h, s))
}
