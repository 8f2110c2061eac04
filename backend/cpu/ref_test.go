package cpu

import (
	"math"
	"math/rand/v2"

	"asbm/model"
	"asbm/weights"
)

// Plain-Go float64 references for the tests: the network of model/mlp.go (asbm.md §6.1) and the
// weighted loss of asbm.Model.Step, written independently of gorgonia.

// params64 holds every parameter tensor in ParamShapes order as float64.
type params64 [][]float64

func toParams64(a weights.Arch, m *model.Net) params64 {
	names, _ := model.ParamShapes(a)
	p := make(params64, len(names))
	for i, name := range names {
		p[i] = make([]float64, len(m.Params[name]))
		for j, v := range m.Params[name] {
			p[i][j] = float64(v)
		}
	}
	return p
}

func (p params64) clone() params64 {
	q := make(params64, len(p))
	for i := range p {
		q[i] = append([]float64(nil), p[i]...)
	}
	return q
}

// forward64 evaluates one row: [x, sin(ω_k t), cos(ω_k t)] → (x·W + b, SiLU)^Layers → x·W + b.
func forward64(a weights.Arch, p params64, t float32, x []float32) []float64 {
	h := make([]float64, 0, model.InputWidth(a))
	for _, v := range x {
		h = append(h, float64(v))
	}
	for k := 0; k < a.Fourier; k++ {
		h = append(h, math.Sin(model.TimeFreq(k)*float64(t)))
	}
	for k := 0; k < a.Fourier; k++ {
		h = append(h, math.Cos(model.TimeFreq(k)*float64(t)))
	}
	for l := 0; l <= a.Layers; l++ {
		w, b := p[2*l], p[2*l+1]
		out := len(b)
		z := append([]float64(nil), b...)
		for i, hi := range h {
			for j := 0; j < out; j++ {
				z[j] += hi * w[i*out+j]
			}
		}
		if l < a.Layers {
			for j, u := range z {
				z[j] = u / (1 + math.Exp(-u))
			}
		}
		h = z
	}
	return h
}

// loss64 is mean_{i,j} (w_i·f(t_i, x_i)_j − y_ij)² in float64 (w nil means ones).
func loss64(a weights.Arch, p params64, t, x, w, y []float32) float64 {
	d := a.Dim
	var s float64
	for i := range t {
		f := forward64(a, p, t[i], x[i*d:(i+1)*d])
		wi := 1.0
		if w != nil {
			wi = float64(w[i])
		}
		for j := 0; j < d; j++ {
			e := wi*f[j] - float64(y[i*d+j])
			s += e * e
		}
	}
	return s / float64(len(t)*d)
}

// fdGrad is the central finite difference of loss64 with respect to parameter entry (k, j).
func fdGrad(a weights.Arch, p params64, k, j int, t, x, w, y []float32) float64 {
	v := p[k][j]
	h := 1e-6 * math.Max(1, math.Abs(v))
	p[k][j] = v + h
	lp := loss64(a, p, t, x, w, y)
	p[k][j] = v - h
	lm := loss64(a, p, t, x, w, y)
	p[k][j] = v
	return (lp - lm) / (2 * h)
}

// randomMLP returns model.NewNet(a, seed) with its output layer replaced by random values, so that
// every parameter gets a non-zero gradient.
func randomMLP(a weights.Arch, seed uint64) *model.Net {
	m, err := model.NewNet(a, seed)
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewPCG(seed, 77))
	bound := 1 / math.Sqrt(float64(a.Hidden))
	for _, name := range []string{"out.w", "out.b"} {
		for j := range m.Params[name] {
			m.Params[name][j] = float32((2*r.Float64() - 1) * bound)
		}
	}
	return m
}

// adamW64 is the reference optimiser in float64: torch.optim.AdamW with bias correction, after
// torch.nn.utils.clip_grad_norm_ when clip > 0.
type adamW64 struct {
	cfg  Config
	m, v params64
	step int
}

func newAdamW64(cfg Config, p params64) *adamW64 {
	o := &adamW64{cfg: cfg, m: make(params64, len(p)), v: make(params64, len(p))}
	for i := range p {
		o.m[i] = make([]float64, len(p[i]))
		o.v[i] = make([]float64, len(p[i]))
	}
	return o
}

// update applies one step to p with gradient g; it reports whether clipping fired.
func (o *adamW64) update(p, g params64) (clipped bool) {
	c := o.cfg
	scale := 1.0
	if c.GradClip > 0 {
		var ss float64
		for _, gi := range g {
			for _, v := range gi {
				ss += v * v
			}
		}
		if coef := c.GradClip / (math.Sqrt(ss) + 1e-6); coef < 1 {
			scale, clipped = coef, true
		}
	}
	o.step++
	bc1 := 1 - math.Pow(c.Beta1, float64(o.step))
	bc2 := 1 - math.Pow(c.Beta2, float64(o.step))
	for i := range p {
		for j := range p[i] {
			gv := g[i][j] * scale
			p[i][j] *= 1 - c.LR*c.WeightDecay
			o.m[i][j] = c.Beta1*o.m[i][j] + (1-c.Beta1)*gv
			o.v[i][j] = c.Beta2*o.v[i][j] + (1-c.Beta2)*gv*gv
			mh := o.m[i][j] / bc1
			vh := o.v[i][j] / bc2
			p[i][j] -= c.LR * mh / (math.Sqrt(vh) + c.Eps)
		}
	}
	return clipped
}
