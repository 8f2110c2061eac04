package asbm_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"asbm/backend/asbm"
)

// funcNet is a Net defined row by row by a plain Go function.
type funcNet struct {
	dim    int
	f      func(t float64, x, out []float64)
	calls  int         // Eval calls
	record bool        // keep rows and times of every call
	rows   []int       // rows per call
	times  [][]float32 // times per call
}

func (n *funcNet) Dim() int { return n.dim }

func (n *funcNet) Eval(t, x, out []float32) {
	n.calls++
	if n.record {
		n.rows = append(n.rows, len(t))
		n.times = append(n.times, append([]float32(nil), t...))
	}
	xi, oi := make([]float64, n.dim), make([]float64, n.dim)
	for r := range t {
		for j := range xi {
			xi[j] = float64(x[r*n.dim+j])
		}
		n.f(float64(t[r]), xi, oi)
		for j := range oi {
			out[r*n.dim+j] = float32(oi[j])
		}
	}
}

// gaussScore is the exact score of the VP marginal p_t when the data are N(m, a I):
// p_t = N(α_t m, (α_t² a + σ_t²) I).
func gaussScore(vp asbm.VP, m []float64, a float64) func(t float64, x, out []float64) {
	return func(t float64, x, out []float64) {
		al := vp.Alpha(t)
		v := al*al*a + vp.Sigma2(t)
		for j := range x {
			out[j] = -(x[j] - al*m[j]) / v
		}
	}
}

// linModel is a plain-Go trainable Model: f(t, x)_j = Σ_k φ_k(t)(Σ_l W_kjl x_l + b_kj) with the time basis
// φ = Legendre polynomials P_0…P_{K−1} of 2t−1, trained by Adam on Model.Step's loss with an EMA copy.
// It can represent any affine-in-x field with polynomial time dependence, which is what the Gaussian
// Schrödinger bridge needs, so the loops can be tested fast and without the gorgonia engine.
type linModel struct {
	dim, k               int
	lr, b1, b2, eps, ema float64
	p, e, m, v           []float64
	step                 int
	resets               int // ResetOptimizer calls
	steps                int // Step calls
	evals, emaEvals      int // Eval calls on the parameters and on the EMA
	nanStep, nanEMA      bool
}

func newLinModel(dim, k int, lr, ema float64) *linModel {
	n := k * dim * (dim + 1)
	return &linModel{dim: dim, k: k, lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, ema: ema,
		p: make([]float64, n), e: make([]float64, n), m: make([]float64, n), v: make([]float64, n)}
}

func (l *linModel) basis(t float64, phi []float64) {
	s := 2*t - 1
	phi[0] = 1
	if l.k > 1 {
		phi[1] = s
	}
	for i := 2; i < l.k; i++ { // (i)P_i = (2i−1)s P_{i−1} − (i−1)P_{i−2}
		phi[i] = (float64(2*i-1)*s*phi[i-1] - float64(i-1)*phi[i-2]) / float64(i)
	}
}

// idx of W_kjl (l < dim) or b_kj (l = dim).
func (l *linModel) idx(k, j, c int) int { return (k*l.dim+j)*(l.dim+1) + c }

func (l *linModel) eval(p []float64, t, x, out []float32) {
	d := l.dim
	phi := make([]float64, l.k)
	for r := range t {
		l.basis(float64(t[r]), phi)
		for j := 0; j < d; j++ {
			var s float64
			for k := 0; k < l.k; k++ {
				a := p[l.idx(k, j, d)]
				for c := 0; c < d; c++ {
					a += p[l.idx(k, j, c)] * float64(x[r*d+c])
				}
				s += phi[k] * a
			}
			out[r*d+j] = float32(s)
		}
	}
}

func (l *linModel) Dim() int { return l.dim }
func (l *linModel) Eval(t, x, out []float32) {
	l.evals++
	l.eval(l.p, t, x, out)
}
func (l *linModel) EMA() asbm.Net { return emaView{l} }
func (l *linModel) ResetOptimizer() {
	clear(l.m)
	clear(l.v)
	l.step = 0
	l.resets++
}

type emaView struct{ l *linModel }

func (e emaView) Dim() int { return e.l.dim }
func (e emaView) Eval(t, x, out []float32) {
	e.l.emaEvals++
	e.l.eval(e.l.e, t, x, out)
	if e.l.nanEMA {
		out[0] = float32(math.NaN())
	}
}

func (l *linModel) Step(t, x, w, y []float32) float32 {
	d, n := l.dim, len(t)
	l.steps++
	if l.nanStep {
		return float32(math.NaN())
	}
	f := make([]float32, len(x))
	l.eval(l.p, t, x, f)
	grad := make([]float64, len(l.p))
	phi := make([]float64, l.k)
	var loss float64
	N := float64(n * d)
	for r := 0; r < n; r++ {
		wr := 1.0
		if w != nil {
			wr = float64(w[r])
		}
		l.basis(float64(t[r]), phi)
		for j := 0; j < d; j++ {
			res := wr*float64(f[r*d+j]) - float64(y[r*d+j])
			loss += res * res
			g := 2 * wr * res / N
			for k := 0; k < l.k; k++ {
				gk := g * phi[k]
				grad[l.idx(k, j, d)] += gk
				for c := 0; c < d; c++ {
					grad[l.idx(k, j, c)] += gk * float64(x[r*d+c])
				}
			}
		}
	}
	l.step++
	bc1, bc2 := 1-math.Pow(l.b1, float64(l.step)), 1-math.Pow(l.b2, float64(l.step))
	for i, g := range grad {
		l.m[i] = l.b1*l.m[i] + (1-l.b1)*g
		l.v[i] = l.b2*l.v[i] + (1-l.b2)*g*g
		l.p[i] -= l.lr * (l.m[i] / bc1) / (math.Sqrt(l.v[i]/bc2) + l.eps)
		l.e[i] = l.ema*l.e[i] + (1-l.ema)*l.p[i]
		// Round the state to float32 after every step, so a checkpoint (float32) holds it exactly and a
		// resumed run is bit-identical to an uninterrupted one.
		l.p[i], l.e[i] = float64(float32(l.p[i])), float64(float32(l.e[i]))
		l.m[i], l.v[i] = float64(float32(l.m[i])), float64(float32(l.v[i]))
	}
	return float32(loss / N)
}

func f64to32(v []float64) []float32 {
	o := make([]float32, len(v))
	for i, x := range v {
		o[i] = float32(x)
	}
	return o
}

func f32to64(v []float32) []float64 {
	o := make([]float64, len(v))
	for i, x := range v {
		o[i] = float64(x)
	}
	return o
}

func (l *linModel) State() map[string][]float32 {
	return map[string][]float32{"p": f64to32(l.p), "ema": f64to32(l.e), "m": f64to32(l.m), "v": f64to32(l.v),
		"step": {float32(l.step)}}
}

func (l *linModel) SetState(s map[string][]float32) error {
	for _, k := range []string{"p", "ema", "m", "v"} {
		if len(s[k]) != len(l.p) {
			return fmt.Errorf("linModel: %s has %d values, want %d", k, len(s[k]), len(l.p))
		}
	}
	if len(s["step"]) != 1 {
		return fmt.Errorf("linModel: no step")
	}
	l.p, l.e, l.m, l.v = f32to64(s["p"]), f32to64(s["ema"]), f32to64(s["m"]), f32to64(s["v"])
	l.step = int(s["step"][0])
	return nil
}

// gaussData returns a DataFunc of N(m, a I).
func gaussData(m []float64, a float64) asbm.DataFunc {
	sd := math.Sqrt(a)
	return func(r *rand.Rand, dst []float32) {
		d := len(m)
		for i := range dst {
			dst[i] = float32(m[i%d] + sd*r.NormFloat64())
		}
	}
}

// meanVar returns the per-coordinate mean and (unbiased) variance of rows of width d.
func meanVar(x []float32, d int) (mean, vr []float64) {
	n := len(x) / d
	mean, vr = make([]float64, d), make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mean[j] += float64(x[i*d+j])
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			dv := float64(x[i*d+j]) - mean[j]
			vr[j] += dv * dv
		}
	}
	for j := range vr {
		vr[j] /= float64(n - 1)
	}
	return mean, vr
}

// crossCov is the per-coordinate sample covariance of paired rows, averaged over coordinates.
func crossCov(x0, x1 []float32, d int) float64 {
	m0, _ := meanVar(x0, d)
	m1, _ := meanVar(x1, d)
	n := len(x0) / d
	var c float64
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			c += (float64(x0[i*d+j]) - m0[j]) * (float64(x1[i*d+j]) - m1[j])
		}
	}
	return c / float64((n-1)*d)
}

// near fails the test unless |got − want| ≤ tol.
func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tol {
		t.Errorf("%s = %.6g, want %.6g ± %.3g", what, got, want, tol)
	}
}
