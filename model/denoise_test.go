package model

import (
	"math"
	"testing"
)

// gaussScore is the exact score of the base's marginal for data N(mu, s0²I) (asbm.md §6.2):
// p_t = N(α_t mu, (α_t² s0² + σ_t²)I). With scaled it outputs σ_t·s (SampleOptions.SigmaScaled).
// calls counts its evaluations.
type gaussScore struct {
	vp     VP
	mu     []float32
	s0     float64
	scaled bool
	calls  int
}

func (g *gaussScore) Dim() int { return len(g.mu) }

func (g *gaussScore) Eval(t, x, out []float32) {
	g.calls++
	d := len(g.mu)
	for i, ti := range t {
		a := g.vp.Alpha(float64(ti))
		v := a*a*g.s0*g.s0 + g.vp.Sigma2(float64(ti))
		c := 1.0
		if g.scaled {
			c = g.vp.Sigma(float64(ti))
		}
		for j := 0; j < d; j++ {
			out[i*d+j] = float32(-c * (float64(x[i*d+j]) - a*float64(g.mu[j])) / v)
		}
	}
}

// posteriorMean is E[X_0 | X_t = x] for that data, in closed form: μ + α_t s0²(x − α_t μ)/(α_t² s0² + σ_t²).
func (g *gaussScore) posteriorMean(t float64, x []float32) []float32 {
	a := g.vp.Alpha(t)
	v := a*a*g.s0*g.s0 + g.vp.Sigma2(t)
	d := len(g.mu)
	out := make([]float32, len(x))
	for i := range x {
		m := float64(g.mu[i%d])
		out[i] = float32(m + a*g.s0*g.s0*(float64(x[i])-a*m)/v)
	}
	return out
}

// TestDenoiseIsPosteriorMean checks SampleOptions.Denoise: with the exact score of Gaussian data,
// the last step of "sde" and "ode" must map the state at t = 1/N to the closed-form posterior mean
// E[X_0 | X_{1/N}] (raw and σ-scaled networks alike), must differ from the Euler step it replaces,
// and the ODE's last step must not call the control network.
func TestDenoiseIsPosteriorMean(t *testing.T) {
	vp := VP{Beta0: 0.1, Beta1: 4, SigmaV: 1}
	const steps = 6
	for _, method := range []string{"sde", "ode"} {
		for _, scaled := range []bool{false, true} {
			score := &gaussScore{vp: vp, mu: []float32{0.5, -1, 0.2}, s0: 0.3, scaled: scaled}
			control := &gaussScore{vp: vp, mu: []float32{0, 0, 0}, s0: 1}
			o := SampleOptions{Points: 50, Steps: steps, Method: method, Seed: 3, Beta0: vp.Beta0, Beta1: vp.Beta1,
				SigmaV: vp.SigmaV, SigmaScaled: scaled, Denoise: true}
			var before []float32 // the state at t = 1/N
			h := SampleHooks{PreviewEvery: 1, Progress: func(step, total int, x []float32) error {
				if step == total-1 {
					before = append([]float32(nil), x...)
				}
				return nil
			}}
			got, err := SampleCPU(Nets{Score: score, Control: control}, o, h)
			if err != nil {
				t.Fatal(err)
			}
			want := score.posteriorMean(1.0/steps, before)
			var diff, scale float64
			for i := range want {
				diff = math.Max(diff, math.Abs(float64(got[i]-want[i])))
				scale = math.Max(scale, math.Abs(float64(want[i])))
			}
			if diff > 1e-5*math.Max(1, scale) {
				t.Errorf("%s scaled=%v: last step vs closed-form posterior mean: max |Δ| = %.3g", method, scaled, diff)
			}
			if method == "ode" {
				if want := 2*steps - 2; control.calls != want {
					t.Errorf("ode: the control ran %d times, want %d (none on the denoising step)", control.calls, want)
				}
			}
			o.Denoise = false
			plain, err := SampleCPU(Nets{Score: score, Control: control}, o, SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			var moved float64
			for i := range plain {
				moved = math.Max(moved, math.Abs(float64(plain[i]-got[i])))
			}
			if moved < 1e-3 {
				t.Errorf("%s scaled=%v: Denoise moved the samples by only %.3g", method, scaled, moved)
			}
		}
	}
}

// ancestralMoments is the exact mean and variance after the ancestral chain for one coordinate of
// Gaussian data N(mu, s0²) with the exact score, from N(m1, v1) at t = 1: every step is linear in
// x (x̂_0 = mu + c(x − α_t mu), c = α_t s0²/(α_t² s0² + σ_t²)), so m ← (b + a c)m + a(1 − cα_t)mu
// and v ← (b + a c)²v + γ², with (a, b, γ²) = VP.Posterior(s, t).
func ancestralMoments(vp VP, mu, s0, m1, v1 float64, steps int) (m, v float64) {
	m, v = m1, v1
	for k := 0; k < steps; k++ {
		t, s := 1-float64(k)/float64(steps), 1-float64(k+1)/float64(steps)
		a, b, g2 := vp.Posterior(s, t)
		at := vp.Alpha(t)
		c := at * s0 * s0 / (at*at*s0*s0 + vp.Sigma2(t))
		m = (b+a*c)*m + a*(1-c*at)*mu
		v = (b+a*c)*(b+a*c)*v + g2
	}
	return m, v
}

// TestAncestralSamplesGaussian checks the ancestral sampler against closed forms (asbm.md §6.2):
// with the exact score of Gaussian data N(μ, s0²I), started from the base's own marginal at t = 1,
// the samples' mean and variance after N steps must match the chain's exact moments
// (ancestralMoments) to sampling error, on both bases of the project; and those moments must
// approach (μ, s0²) as N grows: the sampler is consistent, with an O(1/N) deficit of variance (it
// puts E[X_0 | X_t] in place of X_0 and so drops a²·Var[X_0 | X_t] a step, as DDPM's lower
// variance choice does).
func TestAncestralSamplesGaussian(t *testing.T) {
	const s0, n, steps = 0.3, 20000, 24
	for _, vp := range []VP{{Beta0: 0.1, Beta1: 4, SigmaV: 1}, {Beta0: 0.1, Beta1: 20, SigmaV: 1}} {
		score := &gaussScore{vp: vp, mu: []float32{0.5, -1}, s0: s0}
		a1 := vp.Alpha(1)
		v1 := a1*a1*s0*s0 + vp.Sigma2(1)
		x1 := NewNoise(11).Normal(n * 2)
		for i := range x1 {
			x1[i] = float32(a1*float64(score.mu[i%2]) + math.Sqrt(v1)*float64(x1[i]))
		}
		o := SampleOptions{Points: n, Steps: steps, Method: "ancestral", Seed: 4, Beta0: vp.Beta0, Beta1: vp.Beta1, SigmaV: vp.SigmaV, X1: x1}
		x, err := SampleCPU(Nets{Score: score}, o, SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2; j++ {
			mu := float64(score.mu[j])
			wm, wv := ancestralMoments(vp, mu, s0, a1*mu, v1, steps)
			var m, m2 float64
			for i := 0; i < n; i++ {
				v := float64(x[i*2+j])
				m += v / n
				m2 += v * v / n
			}
			v := m2 - m*m
			// Sampling error: SE(mean) = √(v/n) ≈ 0.002, SE(variance) = v√(2/n) ≈ 0.0008; 4 SE.
			t.Logf("β1 = %g, coordinate %d: mean %.4f (chain %.4f), variance %.5f (chain %.5f, data %.5f)", vp.Beta1, j, m, wm, v, wv, s0*s0)
			if math.Abs(m-wm) > 4*math.Sqrt(wv/n) || math.Abs(v-wv) > 4*wv*math.Sqrt(2.0/n) {
				t.Errorf("β1 = %g, coordinate %d: mean %.4f variance %.5f, the chain's exact moments are %.4f and %.5f", vp.Beta1, j, m, v, wm, wv)
			}
		}
		// Consistency: the deficit of variance shrinks like 1/N.
		_, v100 := ancestralMoments(vp, 0.5, s0, a1*0.5, v1, 100)
		_, v1000 := ancestralMoments(vp, 0.5, s0, a1*0.5, v1, 1000)
		d100, d1000 := s0*s0-v100, s0*s0-v1000
		t.Logf("β1 = %g: variance deficit %.5f at N = 100, %.6f at N = 1000", vp.Beta1, d100, d1000)
		if d1000 < 0 || d1000 > 0.2*d100 || d1000 > 0.003 {
			t.Errorf("β1 = %g: variance deficit %.5f at N = 100 and %.6f at N = 1000: not converging", vp.Beta1, d100, d1000)
		}
	}
}
