package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"asbm/weights"
)

// The image network (Arch.Kind "unet"): a small DDPM-style U-Net, described fully by the arch so a
// weights file rebuilds it without code changes. Data rows are images C×H×W (channel-major, NCHW
// for a batch), Dim = C·H·W.
//
// Time embedding: e = SiLU(SiLU(feat(t)·l1.w + l1.b)·l2.w + l2.b), feat the 2·Fourier features of
// TimeFeatures, width TimeEmb.
//
// Levels l = 0 … L−1 (L = len(Mults)) have ch_l = Base·Mults[l] channels at resolution
// (H/2^l)×(W/2^l). The forward pass, as the op list UNetOps returns it:
//
//	h = conv3x3(x)                                          "in"      C → ch_0
//	for l = 0 … L−1: ResBlocks blocks "down{l}.{i}", push h as the level's skip, avgpool2x unless last
//	block "mid"
//	for l = L−1 … 0: h = concat(h, skip_l) on channels, ResBlocks blocks "up{l}.{i}", upsample2x unless l = 0
//	out = conv3x3(SiLU(GroupNorm(h)))                       "out"     ch_0 → C, zero at init
//
// A residual block p from cin to cout channels:
//
//	r = conv3x3(SiLU(GN(x; p.gn1)); p.conv1) + (e·p.temb.w + p.temb.b) broadcast over H×W
//	r = conv3x3(SiLU(GN(r; p.gn2)); p.conv2)
//	y = skip(x) + r,  skip = identity when cin = cout, else the 1×1 conv p.skip
//
// Parameters (conv weights [cout, cin, kh, kw], linear weights [in, out] with y = x·W + b), in
// ParamShapes order: in.w, in.b, temb.l1.w [2F, T], temb.l1.b, temb.l2.w [T, T], temb.l2.b, then each
// block in forward order with gn1.g, gn1.b [cin], conv1.w [cout, cin, 3, 3], conv1.b, temb.w [T, cout],
// temb.b, gn2.g, gn2.b, conv2.w [cout, cout, 3, 3], conv2.b, and skip.w [cout, cin, 1, 1], skip.b when
// cin ≠ cout; last out.gn.g, out.gn.b [ch_0], out.w [C, ch_0, 3, 3], out.b [C]. Every group norm has
// Groups groups and eps GroupNormEps. No attention: at the sizes shipped here (28–32 px, 7–8 px at
// the bottom level) it was left out; the arch has no field for it yet.

// GroupNormEps is the ε of every group norm in the U-Net.
const GroupNormEps = 1e-5

// UNetOpKind names one step of the U-Net's forward pass.
type UNetOpKind int

// The steps of UNetOps. Every engine walks the same list, so the topology is defined once.
const (
	OpConvIn UNetOpKind = iota // h = conv3x3(x; in.w, in.b)
	OpRes                      // h = residual block Block(h, e)
	OpPush                     // save h as the current level's skip (h is unchanged)
	OpPool                     // h = avgpool2x(h)
	OpConcat                   // h = concat(h, last pushed skip) on channels; pops it
	OpUp                       // h = upsample2x(h)
	OpOut                      // y = conv3x3(SiLU(GN(h; out.gn)); out.w, out.b)
)

// UNetOp is one step: its kind, the block's parameter prefix (OpRes), and its input and output
// channel counts and input resolution. For OpConcat, In is h's channels and Skip the skip's.
type UNetOp struct {
	Kind    UNetOpKind
	Block   string
	In, Out int
	Skip    int
	H, W    int
}

// checkUNetArch reports whether a is a U-Net this package can build.
func checkUNetArch(a weights.Arch) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("unet arch: "+format+"; got %+v", append(args, a)...)
	}
	if a.Channels < 1 || a.Height < 1 || a.Width < 1 {
		return bad("channels, height and width must be ≥ 1")
	}
	if a.Dim != a.Channels*a.Height*a.Width {
		return bad("dim must be channels·height·width = %d", a.Channels*a.Height*a.Width)
	}
	if a.Base < 1 || a.ResBlocks < 1 || a.Groups < 1 || a.TimeEmb < 1 || a.Fourier < 1 {
		return bad("base, res_blocks, groups, time_emb and fourier must be ≥ 1")
	}
	if len(a.Mults) < 1 {
		return bad("mults needs at least one level")
	}
	for _, m := range a.Mults {
		if m < 1 || (a.Base*m)%a.Groups != 0 {
			return bad("every level's channels base·mult must be ≥ 1 and divisible by groups")
		}
	}
	if f := 1 << (len(a.Mults) - 1); a.Height%f != 0 || a.Width%f != 0 {
		return bad("height and width must be divisible by 2^(levels−1) = %d", f)
	}
	return nil
}

// UNetOps returns the forward pass of the U-Net a as a list of steps. a must pass CheckArch.
func UNetOps(a weights.Arch) []UNetOp {
	L := len(a.Mults)
	ch := func(l int) int { return a.Base * a.Mults[l] }
	h, w := a.Height, a.Width
	ops := []UNetOp{{Kind: OpConvIn, In: a.Channels, Out: ch(0), H: h, W: w}}
	c := ch(0)
	skips := make([]int, L)
	for l := 0; l < L; l++ {
		for i := 0; i < a.ResBlocks; i++ {
			ops = append(ops, UNetOp{Kind: OpRes, Block: fmt.Sprintf("down%d.%d", l, i), In: c, Out: ch(l), H: h, W: w})
			c = ch(l)
		}
		ops = append(ops, UNetOp{Kind: OpPush, In: c, Out: c, H: h, W: w})
		skips[l] = c
		if l < L-1 {
			ops = append(ops, UNetOp{Kind: OpPool, In: c, Out: c, H: h, W: w})
			h, w = h/2, w/2
		}
	}
	ops = append(ops, UNetOp{Kind: OpRes, Block: "mid", In: c, Out: c, H: h, W: w})
	for l := L - 1; l >= 0; l-- {
		ops = append(ops, UNetOp{Kind: OpConcat, In: c, Skip: skips[l], Out: c + skips[l], H: h, W: w})
		c += skips[l]
		for i := 0; i < a.ResBlocks; i++ {
			ops = append(ops, UNetOp{Kind: OpRes, Block: fmt.Sprintf("up%d.%d", l, i), In: c, Out: ch(l), H: h, W: w})
			c = ch(l)
		}
		if l > 0 {
			ops = append(ops, UNetOp{Kind: OpUp, In: c, Out: c, H: h, W: w})
			h, w = h*2, w*2
		}
	}
	return append(ops, UNetOp{Kind: OpOut, In: c, Out: a.Channels, H: h, W: w})
}

// unetParamShapes lists the U-Net's parameters (see the package comment above for the order).
func unetParamShapes(a weights.Arch) (names []string, shapes [][]int) {
	add := func(name string, sh ...int) {
		names = append(names, name)
		shapes = append(shapes, sh)
	}
	T := a.TimeEmb
	for _, op := range UNetOps(a) {
		switch op.Kind {
		case OpConvIn:
			add("in.w", op.Out, op.In, 3, 3)
			add("in.b", op.Out)
			add("temb.l1.w", 2*a.Fourier, T)
			add("temb.l1.b", T)
			add("temb.l2.w", T, T)
			add("temb.l2.b", T)
		case OpRes:
			p := op.Block + "."
			add(p+"gn1.g", op.In)
			add(p+"gn1.b", op.In)
			add(p+"conv1.w", op.Out, op.In, 3, 3)
			add(p+"conv1.b", op.Out)
			add(p+"temb.w", T, op.Out)
			add(p+"temb.b", op.Out)
			add(p+"gn2.g", op.Out)
			add(p+"gn2.b", op.Out)
			add(p+"conv2.w", op.Out, op.Out, 3, 3)
			add(p+"conv2.b", op.Out)
			if op.In != op.Out {
				add(p+"skip.w", op.Out, op.In, 1, 1)
				add(p+"skip.b", op.Out)
			}
		case OpOut:
			add("out.gn.g", op.In)
			add("out.gn.b", op.In)
			add("out.w", op.Out, op.In, 3, 3)
			add("out.b", op.Out)
		}
	}
	return names, shapes
}

// ConvShape is one convolution of a U-Net: In → Out channels, a K×K kernel, on H×W images.
type ConvShape struct{ In, Out, K, H, W int }

// UNetConvs lists every convolution of the U-Net's forward pass in order: the input conv, per
// residual block conv1, conv2 and the 1×1 skip when the channels change, and the output conv.
func UNetConvs(a weights.Arch) []ConvShape {
	var cs []ConvShape
	for _, op := range UNetOps(a) {
		switch op.Kind {
		case OpConvIn, OpOut:
			cs = append(cs, ConvShape{op.In, op.Out, 3, op.H, op.W})
		case OpRes:
			cs = append(cs, ConvShape{op.In, op.Out, 3, op.H, op.W}, ConvShape{op.Out, op.Out, 3, op.H, op.W})
			if op.In != op.Out {
				cs = append(cs, ConvShape{op.In, op.Out, 1, op.H, op.W})
			}
		}
	}
	return cs
}

// FLOPs is the number of floating-point operations (multiply and add counted apart) of the
// convolution on one image.
func (c ConvShape) FLOPs() int64 { return 2 * int64(c.In*c.Out*c.K*c.K) * int64(c.H*c.W) }

// UNetFLOPs is the number of floating-point operations (multiply and add counted apart) of one
// forward pass for one image, counting convolutions and linear layers.
func UNetFLOPs(a weights.Arch) int64 {
	f := 2 * int64(2*a.Fourier*a.TimeEmb+a.TimeEmb*a.TimeEmb)
	for _, c := range UNetConvs(a) {
		f += c.FLOPs()
	}
	for _, op := range UNetOps(a) {
		if op.Kind == OpRes {
			f += 2 * int64(a.TimeEmb*op.Out) // the block's time-embedding linear
		}
	}
	return f
}

// initUNet fills m with PyTorch's default initialisation: U(−1/√fan_in, 1/√fan_in) for the weights
// and biases of every conv and linear layer (fan_in = cin·kh·kw or in), group norms γ = 1, β = 0, and
// the output conv zero so the network starts identically zero (asbm.md §2.1).
func initUNet(m *Net, r *rand.Rand) {
	names, shapes := ParamShapes(m.Arch)
	fan := 0
	for i, name := range names {
		sh := shapes[i]
		p := make([]float32, numel(sh))
		switch {
		case name == "out.w" || name == "out.b":
		case hasSuffix(name, ".g"):
			for j := range p {
				p[j] = 1
			}
		case hasSuffix(name, ".gn.b") || hasSuffix(name, "gn1.b") || hasSuffix(name, "gn2.b"):
		default:
			if len(sh) > 1 { // a weight; the bias that follows uses the same fan-in
				fan = numel(sh) / sh[0]
				if len(sh) == 2 {
					fan = sh[0]
				}
			}
			bound := 1 / math.Sqrt(float64(fan))
			for j := range p {
				p[j] = float32((2*r.Float64() - 1) * bound)
			}
		}
		m.Params[name] = p
	}
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// forwardUNet evaluates the U-Net with plain Go, float32 arithmetic (UNetOps order).
func (m *Net) forwardUNet(t, x []float32) []float32 {
	a := m.Arch
	n := len(t)
	P := m.Params
	e := m.unetTimeEmbedding(t)
	h := append([]float32(nil), x...)
	var skips [][]float32
	var y []float32
	for _, op := range UNetOps(a) {
		hw := op.H * op.W
		switch op.Kind {
		case OpConvIn:
			h = ConvCPU(h, P["in.w"], P["in.b"], n, op.In, op.Out, op.H, op.W, 3)
		case OpRes:
			h = m.resBlockCPU(op, h, e, n)
		case OpPush:
			skips = append(skips, h)
		case OpPool:
			h = AvgPool2xCPU(h, n*op.In, op.H, op.W)
		case OpUp:
			h = Upsample2xCPU(h, n*op.In, op.H, op.W)
		case OpConcat:
			s := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = ConcatCPU(h, s, n, op.In, op.Skip, hw)
		case OpOut:
			g := GroupNormCPU(h, P["out.gn.g"], P["out.gn.b"], n, op.In, hw, a.Groups)
			siluInPlace(g)
			y = ConvCPU(g, P["out.w"], P["out.b"], n, op.In, op.Out, op.H, op.W, 3)
		}
	}
	return y
}

// unetTimeEmbedding returns e (n×TimeEmb) for the times t.
func (m *Net) unetTimeEmbedding(t []float32) []float32 {
	a := m.Arch
	P := m.Params
	F, T := a.Fourier, a.TimeEmb
	feat := make([]float32, 2*F)
	e := make([]float32, 0, len(t)*T)
	for _, ti := range t {
		TimeFeatures(ti, F, feat)
		h := linear(feat, P["temb.l1.w"], P["temb.l1.b"], T)
		siluInPlace(h)
		h = linear(h, P["temb.l2.w"], P["temb.l2.b"], T)
		siluInPlace(h)
		e = append(e, h...)
	}
	return e
}

// resBlockCPU is one residual block (see the U-Net comment above).
func (m *Net) resBlockCPU(op UNetOp, x, e []float32, n int) []float32 {
	P := m.Params
	p := op.Block + "."
	hw := op.H * op.W
	G := m.Arch.Groups
	r := GroupNormCPU(x, P[p+"gn1.g"], P[p+"gn1.b"], n, op.In, hw, G)
	siluInPlace(r)
	r = ConvCPU(r, P[p+"conv1.w"], P[p+"conv1.b"], n, op.In, op.Out, op.H, op.W, 3)
	for i := 0; i < n; i++ {
		tb := linear(e[i*m.Arch.TimeEmb:(i+1)*m.Arch.TimeEmb], P[p+"temb.w"], P[p+"temb.b"], op.Out)
		for c, v := range tb {
			plane := r[(i*op.Out+c)*hw : (i*op.Out+c+1)*hw]
			for j := range plane {
				plane[j] += v
			}
		}
	}
	r = GroupNormCPU(r, P[p+"gn2.g"], P[p+"gn2.b"], n, op.Out, hw, G)
	siluInPlace(r)
	r = ConvCPU(r, P[p+"conv2.w"], P[p+"conv2.b"], n, op.Out, op.Out, op.H, op.W, 3)
	skip := x
	if op.In != op.Out {
		skip = ConvCPU(x, P[p+"skip.w"], P[p+"skip.b"], n, op.In, op.Out, op.H, op.W, 1)
	}
	for i := range r {
		r[i] += skip[i]
	}
	return r
}

func siluInPlace(v []float32) {
	for i := range v {
		v[i] = SiLU(v[i])
	}
}

// ConvCPU is a k×k convolution (k odd), stride 1, zero padding k/2, with bias, NCHW float32:
// y[n,co,h,w] = b[co] + Σ W[co,ci,kh,kw]·x[n,ci,h+kh−k/2,w+kw−k/2]. The plain-Go reference of the
// conv kernels and the browser's CPU path.
func ConvCPU(x, w, b []float32, n, cin, cout, height, width, k int) []float32 {
	hw := height * width
	y := make([]float32, n*cout*hw)
	pad := k / 2
	for i := 0; i < n; i++ {
		for co := 0; co < cout; co++ {
			out := y[(i*cout+co)*hw : (i*cout+co+1)*hw]
			for j := range out {
				out[j] = b[co]
			}
			for ci := 0; ci < cin; ci++ {
				in := x[(i*cin+ci)*hw : (i*cin+ci+1)*hw]
				for kh := 0; kh < k; kh++ {
					dy := kh - pad
					y0, y1 := max(0, -dy), min(height, height-dy)
					for kw := 0; kw < k; kw++ {
						wv := w[((co*cin+ci)*k+kh)*k+kw]
						dx := kw - pad
						x0, x1 := max(0, -dx), min(width, width-dx)
						for yy := y0; yy < y1; yy++ {
							orow := out[yy*width : (yy+1)*width]
							irow := in[(yy+dy)*width : (yy+dy+1)*width]
							for xx := x0; xx < x1; xx++ {
								orow[xx] += wv * irow[xx+dx]
							}
						}
					}
				}
			}
		}
	}
	return y
}

// GroupNormCPU normalises x (n×c×hw) over each of groups channel groups per image and applies the
// per-channel affine γ, β; statistics are accumulated in float64, eps GroupNormEps.
func GroupNormCPU(x, gamma, beta []float32, n, c, hw, groups int) []float32 {
	y := make([]float32, len(x))
	cg := c / groups
	for i := 0; i < n; i++ {
		for g := 0; g < groups; g++ {
			seg := x[(i*c+g*cg)*hw : (i*c+(g+1)*cg)*hw]
			var s, s2 float64
			for _, v := range seg {
				s += float64(v)
			}
			mean := s / float64(len(seg))
			for _, v := range seg {
				d := float64(v) - mean
				s2 += d * d
			}
			rstd := 1 / math.Sqrt(s2/float64(len(seg))+GroupNormEps)
			for k := 0; k < cg; k++ {
				ch := g*cg + k
				off := (i*c + ch) * hw
				for j := 0; j < hw; j++ {
					y[off+j] = float32((float64(x[off+j])-mean)*rstd)*gamma[ch] + beta[ch]
				}
			}
		}
	}
	return y
}

// AvgPool2xCPU averages 2×2 blocks of each of planes h×w planes.
func AvgPool2xCPU(x []float32, planes, h, w int) []float32 {
	oh, ow := h/2, w/2
	y := make([]float32, planes*oh*ow)
	for p := 0; p < planes; p++ {
		in := x[p*h*w:]
		for i := 0; i < oh; i++ {
			for j := 0; j < ow; j++ {
				s := in[2*i*w+2*j] + in[2*i*w+2*j+1] + in[(2*i+1)*w+2*j] + in[(2*i+1)*w+2*j+1]
				y[(p*oh+i)*ow+j] = 0.25 * s
			}
		}
	}
	return y
}

// Upsample2xCPU repeats each value of planes h×w planes into a 2×2 block (nearest neighbour).
func Upsample2xCPU(x []float32, planes, h, w int) []float32 {
	y := make([]float32, planes*4*h*w)
	for p := 0; p < planes; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				y[(p*2*h+i)*2*w+j] = x[(p*h+i/2)*w+j/2]
			}
		}
	}
	return y
}

// ConcatCPU stacks a (n×ca×hw) and b (n×cb×hw) along channels, a first.
func ConcatCPU(a, b []float32, n, ca, cb, hw int) []float32 {
	y := make([]float32, 0, n*(ca+cb)*hw)
	for i := 0; i < n; i++ {
		y = append(y, a[i*ca*hw:(i+1)*ca*hw]...)
		y = append(y, b[i*cb*hw:(i+1)*cb*hw]...)
	}
	return y
}
