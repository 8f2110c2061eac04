package cpu

import (
	"math"
	"math/rand/v2"

	"asbm/model"
	"asbm/weights"
)

// A float64 plain-Go U-Net for the gradient tests: a direct port of the definition in model/unet.go
// (UNetOps walk, residual blocks, group norm with biased variance and eps model.GroupNormEps),
// written independently of gorgonia and of the fused ops, on one image at a time.

// unet64 evaluates the U-Net on one image x (C×H×W) at time t with the float64 parameters p
// (ParamShapes order).
func unet64(a weights.Arch, p params64, t float32, x []float32) []float64 {
	names, _ := model.ParamShapes(a)
	P := make(map[string][]float64, len(names))
	for i, name := range names {
		P[name] = p[i]
	}
	F, T := a.Fourier, a.TimeEmb
	feat := make([]float64, 2*F)
	for k := 0; k < F; k++ {
		feat[k] = math.Sin(model.TimeFreq(k) * float64(t))
		feat[F+k] = math.Cos(model.TimeFreq(k) * float64(t))
	}
	e := silu64(lin64(feat, P["temb.l1.w"], P["temb.l1.b"], T))
	e = silu64(lin64(e, P["temb.l2.w"], P["temb.l2.b"], T))

	h := make([]float64, len(x))
	for i, v := range x {
		h[i] = float64(v)
	}
	var skips [][]float64
	for _, op := range model.UNetOps(a) {
		switch op.Kind {
		case model.OpConvIn:
			h = conv64(h, P["in.w"], P["in.b"], op.In, op.Out, op.H, op.W, 3)
		case model.OpRes:
			q := op.Block + "."
			r := silu64(gn64(h, P[q+"gn1.g"], P[q+"gn1.b"], op.In, op.H*op.W, a.Groups))
			r = conv64(r, P[q+"conv1.w"], P[q+"conv1.b"], op.In, op.Out, op.H, op.W, 3)
			tb := lin64(e, P[q+"temb.w"], P[q+"temb.b"], op.Out)
			for c, v := range tb {
				for j := 0; j < op.H*op.W; j++ {
					r[c*op.H*op.W+j] += v
				}
			}
			r = silu64(gn64(r, P[q+"gn2.g"], P[q+"gn2.b"], op.Out, op.H*op.W, a.Groups))
			r = conv64(r, P[q+"conv2.w"], P[q+"conv2.b"], op.Out, op.Out, op.H, op.W, 3)
			skip := h
			if op.In != op.Out {
				skip = conv64(h, P[q+"skip.w"], P[q+"skip.b"], op.In, op.Out, op.H, op.W, 1)
			}
			for i := range r {
				r[i] += skip[i]
			}
			h = r
		case model.OpPush:
			skips = append(skips, h)
		case model.OpPool:
			h = pool64(h, op.In, op.H, op.W)
		case model.OpUp:
			h = up64(h, op.In, op.H, op.W)
		case model.OpConcat:
			h = append(append([]float64(nil), h...), skips[len(skips)-1]...)
			skips = skips[:len(skips)-1]
		case model.OpOut:
			g := silu64(gn64(h, P["out.gn.g"], P["out.gn.b"], op.In, op.H*op.W, a.Groups))
			h = conv64(g, P["out.w"], P["out.b"], op.In, op.Out, op.H, op.W, 3)
		}
	}
	return h
}

// lin64 is x·W + b with W [len(x), out].
func lin64(x, w, b []float64, out int) []float64 {
	y := append([]float64(nil), b...)
	for i, xi := range x {
		for j := 0; j < out; j++ {
			y[j] += xi * w[i*out+j]
		}
	}
	return y
}

func silu64(v []float64) []float64 {
	for i, u := range v {
		v[i] = u / (1 + math.Exp(-u))
	}
	return v
}

// conv64 is the k×k convolution, zero padding k/2, of one image x [cin, h, w]:
// y[co, i, j] = b[co] + Σ w[co, ci, kh, kw]·x[ci, i+kh−k/2, j+kw−k/2] over the taps inside the image.
func conv64(x, w, b []float64, cin, cout, h, wd, k int) []float64 {
	y := make([]float64, cout*h*wd)
	pad := k / 2
	for co := 0; co < cout; co++ {
		out := y[co*h*wd : (co+1)*h*wd]
		for j := range out {
			out[j] = b[co]
		}
		for ci := 0; ci < cin; ci++ {
			in := x[ci*h*wd : (ci+1)*h*wd]
			for kh := 0; kh < k; kh++ {
				for kw := 0; kw < k; kw++ {
					wv := w[((co*cin+ci)*k+kh)*k+kw]
					dy, dx := kh-pad, kw-pad
					for i := max(0, -dy); i < min(h, h-dy); i++ {
						for j := max(0, -dx); j < min(wd, wd-dx); j++ {
							out[i*wd+j] += wv * in[(i+dy)*wd+j+dx]
						}
					}
				}
			}
		}
	}
	return y
}

// gn64 is the group norm of one image x [c, hw]: biased variance, eps model.GroupNormEps.
func gn64(x, gamma, beta []float64, c, hw, groups int) []float64 {
	y := make([]float64, len(x))
	cg := c / groups
	for g := 0; g < groups; g++ {
		seg := x[g*cg*hw : (g+1)*cg*hw]
		var s, s2 float64
		for _, v := range seg {
			s += v
		}
		mean := s / float64(len(seg))
		for _, v := range seg {
			s2 += (v - mean) * (v - mean)
		}
		rstd := 1 / math.Sqrt(s2/float64(len(seg))+model.GroupNormEps)
		for k := 0; k < cg; k++ {
			ch := g*cg + k
			for j := 0; j < hw; j++ {
				y[ch*hw+j] = (x[ch*hw+j]-mean)*rstd*gamma[ch] + beta[ch]
			}
		}
	}
	return y
}

func pool64(x []float64, c, h, w int) []float64 {
	y := make([]float64, c*h*w/4)
	for p := 0; p < c; p++ {
		for i := 0; i < h/2; i++ {
			for j := 0; j < w/2; j++ {
				o := p*h*w + 2*i*w + 2*j
				y[(p*h/2+i)*(w/2)+j] = 0.25 * (x[o] + x[o+1] + x[o+w] + x[o+w+1])
			}
		}
	}
	return y
}

func up64(x []float64, c, h, w int) []float64 {
	y := make([]float64, 4*c*h*w)
	for p := 0; p < c; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				y[(p*2*h+i)*2*w+j] = x[(p*h+i/2)*w+j/2]
			}
		}
	}
	return y
}

// unetLoss64 is mean_{i,j} (w_i·f(t_i, x_i)_j − y_ij)² with the float64 U-Net.
func unetLoss64(a weights.Arch, p params64, t, x, w, y []float32) float64 {
	d := a.Dim
	var s float64
	for i := range t {
		f := unet64(a, p, t[i], x[i*d:(i+1)*d])
		for j := 0; j < d; j++ {
			e := float64(w[i])*f[j] - float64(y[i*d+j])
			s += e * e
		}
	}
	return s / float64(len(t)*d)
}

// randomUNet returns model.NewNet(a, seed) with every parameter perturbed — γ around 1, β, the
// zero-initialised output conv and every weight and bias — so that no gradient is trivially zero
// and no group norm is the identity map of its init.
func randomUNet(a weights.Arch, seed uint64) *model.Net {
	m, err := model.NewNet(a, seed)
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewPCG(seed, 99))
	names, shapes := model.ParamShapes(a)
	for i, name := range names {
		bound := 0.3
		if sh := shapes[i]; len(sh) == 4 {
			bound = 1 / math.Sqrt(float64(sh[1]*sh[2]*sh[3]))
		}
		for j := range m.Params[name] {
			m.Params[name][j] += float32((2*r.Float64() - 1) * bound)
		}
	}
	return m
}
