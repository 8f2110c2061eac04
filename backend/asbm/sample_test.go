package asbm_test

import (
	"fmt"
	"math"
	"testing"

	"asbm/backend/asbm"
)

// TestSampleSDEStationary: N(0, I) is stationary for the VP base with σ_v = 1, its score is s(t,x) = −x,
// and the backward SDE with that score keeps N(0, I) (the EM bias in the variance is ≈ ¼βΔ ≤ 0.005).
func TestSampleSDEStationary(t *testing.T) {
	const n, d, steps = 20000, 2, 200
	score := &funcNet{dim: d, f: func(_ float64, x, out []float64) { out[0], out[1] = -x[0], -x[1] }}
	noise := asbm.NewNoise(1)
	x0, err := asbm.SampleSDE(score, asbm.PaperVP(), asbm.SamplePrior(noise, n, d), steps, noise, nil)
	if err != nil {
		t.Fatal(err)
	}
	mean, vr := meanVar(x0, d)
	for j := 0; j < d; j++ {
		near(t, "stationary mean", mean[j], 0, 5/math.Sqrt(n))
		near(t, "stationary variance", vr[j], 1, 5*math.Sqrt(2.0/n)+0.01)
	}
}

// TestSampleSDEGaussianData: with the exact marginal score of data N(m, a I) and x1 drawn from the true
// p_1 = N(α_1 m, α_1² a + σ_1²), the backward SDE recovers mean m and variance a at t = 0.
func TestSampleSDEGaussianData(t *testing.T) {
	for _, vp := range []asbm.VP{asbm.PaperVP(), asbm.MemorylessVP()} {
		const n, d, steps = 20000, 2, 500
		m, a := []float64{1.5, -1}, 4.0
		score := &funcNet{dim: d, f: gaussScore(vp, m, a)}
		noise := asbm.NewNoise(2)
		x1 := asbm.SamplePrior(noise, n, d)
		a1 := vp.Alpha(1)
		sd1 := math.Sqrt(a1*a1*a + vp.Sigma2(1))
		for i := range x1 {
			x1[i] = float32(a1*m[i%d] + sd1*float64(x1[i]))
		}
		x0, err := asbm.SampleSDE(score, vp, x1, steps, noise, nil)
		if err != nil {
			t.Fatal(err)
		}
		mean, vr := meanVar(x0, d)
		for j := 0; j < d; j++ {
			near(t, fmt.Sprintf("β1=%v SDE mean[%d]", vp.Beta1, j), mean[j], m[j], 5*math.Sqrt(a/n)+0.02)
			near(t, fmt.Sprintf("β1=%v SDE variance[%d]", vp.Beta1, j), vr[j], a, 5*a*math.Sqrt(2.0/n)+0.02*a)
		}
	}
}

// TestSampleODEGaussianExact: for Gaussian data the PF-ODE flow is affine, x_t = α_t m + √(v_t/v_1)(x_1 −
// α_1 m) with v_t = α_t² a + σ_t², so Heun with the exact score must land on m + √(a/v_1)(x_1 − α_1 m).
func TestSampleODEGaussianExact(t *testing.T) {
	for _, vp := range []asbm.VP{asbm.PaperVP(), asbm.MemorylessVP(), {Beta0: 0.1, Beta1: 2, SigmaV: 1.4}} {
		const n, d, steps = 200, 2, 100
		m, a := []float64{1.5, -1}, 0.5
		score := &funcNet{dim: d, f: gaussScore(vp, m, a)}
		x1 := asbm.NewNoise(3).Normal(n * d)
		x0, err := asbm.SampleODE(score, nil, vp, x1, steps, nil)
		if err != nil {
			t.Fatal(err)
		}
		a1 := vp.Alpha(1)
		v1 := a1*a1*a + vp.Sigma2(1)
		for i := range x0 {
			want := m[i%d] + math.Sqrt(a/v1)*(float64(x1[i])-a1*m[i%d])
			near(t, fmt.Sprintf("%+v ODE x0[%d]", vp, i), float64(x0[i]), want, 2e-3*(1+math.Abs(want)))
		}
	}
}

// TestSampleODEControlSign: a rotation u = Jx (J antisymmetric) leaves the base's stationary law
// N(0, σ_v² I) stationary for the controlled forward SDE, whose marginal score is −x/σ_v², so
// s = −x/σ_v² − u. The PF-ODE velocity
// f + ½g²(u − s) = g²Jx is then a pure rotation and x0 = R(−θ)x1 with θ = σ_v²∫β = σ_v²(β0+β1)/2. A
// flipped or missing control term gives no rotation at all (or the opposite one).
func TestSampleODEControlSign(t *testing.T) {
	vp := asbm.VP{Beta0: 0.1, Beta1: 4, SigmaV: 0.9}
	const n, d, steps = 50, 2, 200
	u := &funcNet{dim: d, f: func(_ float64, x, out []float64) { out[0], out[1] = -x[1], x[0] }}
	iv := 1 / (vp.SigmaV * vp.SigmaV)
	s := &funcNet{dim: d, f: func(_ float64, x, out []float64) { out[0], out[1] = -iv*x[0]+x[1], -iv*x[1]-x[0] }}
	x1 := asbm.NewNoise(4).Normal(n * d)
	x0, err := asbm.SampleODE(s, u, vp, x1, steps, nil)
	if err != nil {
		t.Fatal(err)
	}
	th := -vp.SigmaV * vp.SigmaV * (vp.Beta0 + vp.Beta1) / 2
	c, sn := math.Cos(th), math.Sin(th)
	for i := 0; i < n; i++ {
		x, y := float64(x1[2*i]), float64(x1[2*i+1])
		near(t, "rotated x", float64(x0[2*i]), c*x-sn*y, 1e-3)
		near(t, "rotated y", float64(x0[2*i+1]), sn*x+c*y, 1e-3)
	}
}

// TestSamplerConventions re-implements the shared sampling conventions (common notes: "sde" and "ode")
// literally in float64 for nonlinear networks and compares, including how much noise is consumed:
// x1 first, then n×d values per noisy step, none on the last step.
func TestSamplerConventions(t *testing.T) {
	vp := asbm.PaperVP()
	const n, d, N = 5, 2, 7
	sf := func(tt float64, x, out []float64) {
		out[0], out[1] = math.Tanh(x[1])-tt*x[0], math.Sin(x[0]*tt)-0.5*x[1]
	}
	uf := func(tt float64, x, out []float64) { out[0], out[1] = 0.3*x[0]*x[1], tt-x[0] }
	score, control := &funcNet{dim: d, f: sf}, &funcNet{dim: d, f: uf}

	noise := asbm.NewNoise(5)
	x1 := asbm.SamplePrior(noise, n, d)
	got, err := asbm.SampleSDE(score, vp, x1, N, noise, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := asbm.NewNoise(5)
	x := f32to64(ref.Normal(n * d))
	dt := 1.0 / N
	s := make([]float64, d)
	for k := 0; k < N; k++ {
		tk := 1 - float64(k)/N
		beta := vp.Beta0 + (vp.Beta1-vp.Beta0)*tk
		g2 := vp.SigmaV * vp.SigmaV * beta
		var eps []float32
		if k < N-1 {
			eps = ref.Normal(n * d)
		}
		for i := 0; i < n; i++ {
			sf(float64(float32(tk)), x[i*d:(i+1)*d], s)
			for j := 0; j < d; j++ {
				xi := x[i*d+j]
				x[i*d+j] = xi + dt*(0.5*beta*xi+g2*s[j])
				if k < N-1 {
					x[i*d+j] += math.Sqrt(g2*dt) * float64(eps[i*d+j])
				}
			}
		}
	}
	for i := range x {
		near(t, "SDE convention", float64(got[i]), x[i], 1e-5*(1+math.Abs(x[i])))
	}
	if a, b := noise.Normal(1)[0], ref.Normal(1)[0]; a != b {
		t.Errorf("SampleSDE consumed a different amount of noise: next %v, want %v", a, b)
	}

	// "ode": v(t,x) = −½β(t)x + ½g(t)²(u − s); Heun with a final Euler step.
	v := func(tt float64, x []float64) []float64 {
		out := make([]float64, len(x))
		u, s := make([]float64, d), make([]float64, d)
		beta := vp.Beta0 + (vp.Beta1-vp.Beta0)*tt
		g2 := vp.SigmaV * vp.SigmaV * beta
		for i := 0; i < n; i++ {
			tf := float64(float32(tt))
			sf(tf, x[i*d:(i+1)*d], s)
			uf(tf, x[i*d:(i+1)*d], u)
			for j := 0; j < d; j++ {
				out[i*d+j] = -0.5*beta*x[i*d+j] + 0.5*g2*(u[j]-s[j])
			}
		}
		return out
	}
	gotODE, err := asbm.SampleODE(score, control, vp, x1, N, nil)
	if err != nil {
		t.Fatal(err)
	}
	x = f32to64(x1)
	for k := 0; k < N; k++ {
		tk, tn := 1-float64(k)/N, 1-float64(k+1)/N
		v1 := v(tk, x)
		xp := make([]float64, len(x))
		for i := range x {
			xp[i] = x[i] - dt*v1[i]
		}
		if k < N-1 {
			v2 := v(tn, xp)
			for i := range x {
				x[i] -= 0.5 * dt * (v1[i] + v2[i])
			}
		} else {
			x = xp
		}
	}
	for i := range x {
		near(t, "ODE convention", float64(gotODE[i]), x[i], 1e-5*(1+math.Abs(x[i])))
	}
}

// TestGenerateTweedie: with g(1, z) the exact score of p_1 for data N(m, a), the one-step generator
// (z + σ_1² g)/α_1 is the Tweedie posterior mean E[x0 | x1 = z] = m + (α_1 a/v_1)(z − α_1 m).
func TestGenerateTweedie(t *testing.T) {
	vp := asbm.PaperVP()
	m, a := []float64{0.5, -2}, 3.0
	gen := &funcNet{dim: 2, f: gaussScore(vp, m, a)}
	z := asbm.NewNoise(6).Normal(40)
	x0, err := asbm.Generate(gen, vp, z)
	if err != nil {
		t.Fatal(err)
	}
	a1 := vp.Alpha(1)
	v1 := a1*a1*a + vp.Sigma2(1)
	for i := range z {
		want := m[i%2] + a1*a/v1*(float64(z[i])-a1*m[i%2])
		near(t, "Tweedie", float64(x0[i]), want, 1e-5*(1+math.Abs(want)))
	}
}

// TestCallbackAndTrajectory: the callback sees steps 1…N at t_k = 1 − k/N, and the trajectory holds the
// N+1 states from x1 to the sampler's output.
func TestCallbackAndTrajectory(t *testing.T) {
	vp := asbm.PaperVP()
	const N = 6
	score := &funcNet{dim: 2, f: func(_ float64, x, out []float64) { out[0], out[1] = -x[0], -2*x[1] }}
	x1 := asbm.NewNoise(7).Normal(8)
	var steps []int
	var times []float64
	x0, err := asbm.SampleODE(score, nil, vp, x1, N, func(k int, tt float64, _ []float32) {
		steps = append(steps, k)
		times = append(times, tt)
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range steps {
		if steps[k] != k+1 || math.Abs(times[k]-(1-float64(k+1)/N)) > 1e-15 {
			t.Errorf("callback %d: step %d t %v", k, steps[k], times[k])
		}
	}
	if len(steps) != N {
		t.Errorf("%d callbacks, want %d", len(steps), N)
	}
	traj, err := asbm.SampleODETrajectory(score, nil, vp, x1, N)
	if err != nil {
		t.Fatal(err)
	}
	if len(traj) != N+1 {
		t.Fatalf("trajectory has %d states, want %d", len(traj), N+1)
	}
	for i := range x1 {
		if traj[0][i] != x1[i] || traj[N][i] != x0[i] {
			t.Fatalf("trajectory ends %v…%v, want %v…%v", traj[0][i], traj[N][i], x1[i], x0[i])
		}
	}
	g := asbm.BackwardGrid(4)
	for k, want := range []float64{1, 0.75, 0.5, 0.25, 0} {
		if g[k] != want {
			t.Errorf("BackwardGrid(4)[%d] = %v, want %v", k, g[k], want)
		}
	}
}

func TestSamplerErrors(t *testing.T) {
	vp := asbm.PaperVP()
	s := &funcNet{dim: 2, f: func(float64, []float64, []float64) {}}
	x := make([]float32, 4)
	for name, err := range map[string]error{
		"SDE steps 0":      second(asbm.SampleSDE(s, vp, x, 0, asbm.NewNoise(1), nil)),
		"SDE nil noise":    second(asbm.SampleSDE(s, vp, x, 3, nil, nil)),
		"SDE ragged":       second(asbm.SampleSDE(s, vp, x[:3], 3, asbm.NewNoise(1), nil)),
		"SDE nil score":    second(asbm.SampleSDE(nil, vp, x, 3, asbm.NewNoise(1), nil)),
		"ODE bad vp":       second(asbm.SampleODE(s, nil, asbm.VP{Beta1: 1}, x, 3, nil)),
		"ODE control dim":  second(asbm.SampleODE(s, &funcNet{dim: 1}, vp, x, 3, nil)),
		"Generate ragged":  second(asbm.Generate(s, vp, x[:3])),
		"trajectory steps": second(asbm.SampleODETrajectory(s, nil, vp, x, -1)),
	} {
		if err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if _, err := asbm.SampleSDE(s, vp, x, 1, nil, nil); err != nil {
		t.Errorf("SampleSDE with 1 step needs no noise: %v", err)
	}
}
