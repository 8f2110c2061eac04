package asbm_test

import (
	"fmt"
	"math"
	"testing"

	"asbm/backend/asbm"
)

// randPairs returns n random rows each of x0, x1, a1 (width d) from seed.
func randPairs(seed uint64, n, d int) (x0, x1, a1 []float32) {
	r := asbm.NewNoise(seed)
	return r.Normal(n * d), r.Normal(n * d), r.Normal(n * d)
}

// bridgeResiduals returns (x_t − a_t x0 − b_t x1)/γ_t of the rows whose γ_t² > 1e-4; for a correct
// bridge sample they are i.i.d. N(0, 1).
func bridgeResiduals(vp asbm.VP, tp asbm.Tuple, x0, x1 []float32, d int) []float32 {
	var res []float32
	for i, ti := range tp.T {
		a, b, g2 := vp.Bridge(float64(ti))
		if g2 < 1e-4 {
			continue
		}
		for j := i * d; j < (i+1)*d; j++ {
			res = append(res, float32((float64(tp.X[j])-a*float64(x0[j])-b*float64(x1[j]))/math.Sqrt(g2)))
		}
	}
	return res
}

// checkStdNormal fails unless v has mean 0 and variance 1 within 5 standard errors.
func checkStdNormal(t *testing.T, what string, v []float32) {
	t.Helper()
	m, s := meanVar(v, 1)
	n := float64(len(v))
	near(t, what+" mean", m[0], 0, 5/math.Sqrt(n))
	near(t, what+" variance", s[0], 1, 5*math.Sqrt(2/n))
}

// checkUniform fails unless the times lie in [lo, 1] with the mean and variance of U[lo, 1].
func checkUniform(t *testing.T, what string, tv []float32, lo float64) {
	t.Helper()
	for _, x := range tv {
		if float64(x) < float64(float32(lo)) || x > 1 {
			t.Fatalf("%s: t = %v outside [%v, 1]", what, x, lo)
		}
	}
	m, v := meanVar(tv, 1)
	n, w := float64(len(tv)), 1-lo
	near(t, what+" mean", m[0], (1+lo)/2, 5*w/math.Sqrt(12*n))
	near(t, what+" variance", v[0], w*w/12, 5*w*w/math.Sqrt(80*n)) // Var of U² = w⁴/80 per sample
}

// TestAMTuple: t ~ U[0,1], x_t a bridge sample (normalised residuals are N(0,1)), target −κ_t a1
// exactly, no weight (asbm.md §2.2).
func TestAMTuple(t *testing.T) {
	vp := asbm.PaperVP()
	const n, d = 40000, 2
	x0, x1, a1 := randPairs(1, n, d)
	tp, err := asbm.AMTuple(vp, x0, x1, a1, d, asbm.NewNoise(2))
	if err != nil {
		t.Fatal(err)
	}
	if tp.W != nil || len(tp.T) != n || len(tp.X) != n*d || len(tp.Y) != n*d {
		t.Fatalf("tuple shapes T %d X %d Y %d W %v", len(tp.T), len(tp.X), len(tp.Y), tp.W != nil)
	}
	checkUniform(t, "AM t", tp.T, 0)
	for i, ti := range tp.T {
		k := vp.Kappa(float64(ti))
		for j := i * d; j < (i+1)*d; j++ {
			near(t, "AM target", float64(tp.Y[j]), -k*float64(a1[j]), 1e-6)
		}
	}
	checkStdNormal(t, "AM bridge residual", bridgeResiduals(vp, tp, x0, x1, d))
}

// TestCMTuple: t = 1, x = x1, target (α_1 x0 − x1)/(σ_v²(1−α_1²)) (asbm.md §2.3).
func TestCMTuple(t *testing.T) {
	vp := asbm.VP{Beta0: 0.2, Beta1: 3, SigmaV: 1.3}
	const n, d = 100, 3
	x0, x1, _ := randPairs(3, n, d)
	tp, err := asbm.CMTuple(vp, x0, x1, d)
	if err != nil {
		t.Fatal(err)
	}
	a1 := vp.Alpha(1)
	v := vp.SigmaV * vp.SigmaV * (1 - a1*a1)
	for i := 0; i < n; i++ {
		if tp.T[i] != 1 {
			t.Fatalf("CM t = %v, want 1", tp.T[i])
		}
		for j := i * d; j < (i+1)*d; j++ {
			if tp.X[j] != x1[j] {
				t.Fatalf("CM x = %v, want x1 = %v", tp.X[j], x1[j])
			}
			near(t, "CM target", float64(tp.Y[j]), (a1*float64(x0[j])-float64(x1[j]))/v, 1e-5)
		}
	}
	if tp.W != nil {
		t.Error("CM tuple has weights, want none")
	}
}

// linFit is the least-squares fit y ≈ p·x + q, with the standard error of p.
func linFit(x, y []float64) (p, q, seP float64) {
	n := float64(len(x))
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx, my = mx/n, my/n
	var sxx, sxy float64
	for i := range x {
		sxx += (x[i] - mx) * (x[i] - mx)
		sxy += (x[i] - mx) * (y[i] - my)
	}
	p = sxy / sxx
	q = my - p*mx
	var rss float64
	for i := range x {
		e := y[i] - p*x[i] - q
		rss += e * e
	}
	return p, q, math.Sqrt(rss / (n - 2) / sxx)
}

// TestCMMinimiserIsScore: for data N(m, a) and init-stage pairs x1 = α_1 x0 + σ_1 ε (asbm.md §2.3), the
// minimiser of the CM regression E‖h(x1) − target‖² is E[target | x1] = ∇log p^base_1(x1) =
// −(x1 − α_1 m)/(α_1² a + σ_1²), affine here, so a least-squares fit recovers its slope and intercept.
func TestCMMinimiserIsScore(t *testing.T) {
	vp := asbm.PaperVP()
	const n = 200000
	m, a := 1.5, 4.0
	noise := asbm.NewNoise(4)
	x0 := noise.Normal(n)
	for i := range x0 {
		x0[i] = float32(m + math.Sqrt(a)*float64(x0[i]))
	}
	x1, err := asbm.ReferenceCoupling(vp, x0, noise)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := asbm.CMTuple(vp, x0, x1, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, q, se := linFit(f32to64(tp.X), f32to64(tp.Y))
	a1 := vp.Alpha(1)
	v1 := a1*a1*a + vp.Sigma2(1)
	near(t, "CM minimiser slope", p, -1/v1, 5*se)
	near(t, "CM minimiser intercept", q, a1*m/v1, 5*se*math.Abs(a1*m)+5*se)
}

// TestReferenceCoupling: x1 | x0 ~ N(α_1 x0, σ_v²(1−α_1²)).
func TestReferenceCoupling(t *testing.T) {
	vp := asbm.VP{Beta0: 0.1, Beta1: 4, SigmaV: 0.8}
	const n = 50000
	x0 := make([]float32, n)
	for i := range x0 {
		x0[i] = -1.25
	}
	x1, err := asbm.ReferenceCoupling(vp, x0, asbm.NewNoise(5))
	if err != nil {
		t.Fatal(err)
	}
	mean, vr := meanVar(x1, 1)
	s2 := vp.Sigma2(1)
	near(t, "reference mean", mean[0], vp.Alpha(1)*-1.25, 5*math.Sqrt(s2/n))
	near(t, "reference variance", vr[0], s2, 5*s2*math.Sqrt(2.0/n))
}

// TestBMTuple: t ~ U[1e-5, 1], x_t a bridge sample, w = σ_t and y = (α_t x0 − x_t)/σ_t (asbm.md §3.2).
func TestBMTuple(t *testing.T) {
	vp := asbm.PaperVP()
	const n, d = 40000, 2
	x0, x1, _ := randPairs(6, n, d)
	tp, err := asbm.BMTuple(vp, x0, x1, d, asbm.NewNoise(7))
	if err != nil {
		t.Fatal(err)
	}
	checkUniform(t, "BM t", tp.T, asbm.MinT)
	for i, ti := range tp.T {
		tt := float64(ti)
		sd := vp.Sigma(tt)
		near(t, "BM weight", float64(tp.W[i]), sd, 1e-6*sd)
		for j := i * d; j < (i+1)*d; j++ {
			want := (vp.Alpha(tt)*float64(x0[j]) - float64(tp.X[j])) / sd
			near(t, "BM target", float64(tp.Y[j]), want, 1e-5*math.Abs(want)+1e-5)
		}
	}
	checkStdNormal(t, "BM bridge residual", bridgeResiduals(vp, tp, x0, x1, d))
}

// TestBMMinimiserIsScore: at a fixed t, bridge samples of the reference coupling are samples of the base
// marginal p_t = N(α_t m, α_t² a + σ_t²), and the minimiser of the weighted BM regression
// E‖σ_t s − (α_t x0 − x_t)/σ_t‖² is E[(α_t x0 − x_t)/σ_t² | x_t] = ∇log p_t(x_t) (asbm.md §3.2).
func TestBMMinimiserIsScore(t *testing.T) {
	vp := asbm.PaperVP()
	const n = 200000
	m, a := -0.8, 0.25
	noise := asbm.NewNoise(8)
	x0 := noise.Normal(n)
	for i := range x0 {
		x0[i] = float32(m + math.Sqrt(a)*float64(x0[i]))
	}
	x1, err := asbm.ReferenceCoupling(vp, x0, noise)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []float64{0.1, 0.4, 0.8} {
		tv := make([]float32, n)
		for i := range tv {
			tv[i] = float32(tt)
		}
		tt = float64(float32(tt))
		xt := asbm.BridgeSample(vp, tv, x0, x1, noise.Normal(n), 1)
		al, s2 := vp.Alpha(tt), vp.Sigma2(tt)
		vt := al*al*a + s2
		mx, vx := meanVar(xt, 1)
		near(t, fmt.Sprintf("t=%v bridge marginal mean", tt), mx[0], al*m, 5*math.Sqrt(vt/n))
		near(t, fmt.Sprintf("t=%v bridge marginal variance", tt), vx[0], vt, 5*vt*math.Sqrt(2.0/n))
		y := make([]float64, n)
		for i := range y {
			y[i] = (al*float64(x0[i]) - float64(xt[i])) / s2
		}
		p, q, se := linFit(f32to64(xt), y)
		near(t, fmt.Sprintf("t=%v BM minimiser slope", tt), p, -1/vt, 5*se)
		near(t, fmt.Sprintf("t=%v BM minimiser intercept", tt), q, al*m/vt, 5*se*(1+math.Abs(al*m)))
	}
}

// TestDSMTuple: x_t = α_t x0 + σ_t ε, w = σ_t, y = −ε with ε ~ N(0, 1).
func TestDSMTuple(t *testing.T) {
	vp := asbm.MemorylessVP()
	const n, d = 40000, 2
	x0, _, _ := randPairs(9, n, d)
	tp, err := asbm.DSMTuple(vp, x0, d, asbm.NewNoise(10))
	if err != nil {
		t.Fatal(err)
	}
	checkUniform(t, "DSM t", tp.T, asbm.MinT)
	eps := make([]float32, len(tp.Y))
	for i, ti := range tp.T {
		tt := float64(ti)
		near(t, "DSM weight", float64(tp.W[i]), vp.Sigma(tt), 1e-6)
		for j := i * d; j < (i+1)*d; j++ {
			eps[j] = -tp.Y[j]
			near(t, "DSM x_t", float64(tp.X[j]), vp.Alpha(tt)*float64(x0[j])+vp.Sigma(tt)*float64(eps[j]), 1e-5)
		}
	}
	checkStdNormal(t, "DSM ε", eps)
}

// TestGenTuple: the tuple's loss residual w·g(1, z) − y equals G(z) − x0 with G = Generate (asbm.md §4.2).
func TestGenTuple(t *testing.T) {
	vp := asbm.PaperVP()
	const n, d = 50, 2
	z, x0, _ := randPairs(11, n, d)
	g := &funcNet{dim: d, f: func(_ float64, x, out []float64) { out[0], out[1] = math.Tanh(x[1]), 0.3*x[0] }}
	tp, err := asbm.GenTuple(vp, z, x0, d)
	if err != nil {
		t.Fatal(err)
	}
	gz := make([]float32, n*d)
	g.Eval(tp.T, tp.X, gz)
	G, err := asbm.Generate(g, vp, z)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if tp.T[i] != 1 {
			t.Fatalf("gen t = %v, want 1", tp.T[i])
		}
		for j := i * d; j < (i+1)*d; j++ {
			near(t, "gen residual", float64(tp.W[i])*float64(gz[j])-float64(tp.Y[j]), float64(G[j])-float64(x0[j]), 1e-5)
		}
	}
}

// TestTerminalAdjoint: a_1 = ∇E(x1) + h(1, x1), h evaluated at t = 1 (asbm.md §2.2).
func TestTerminalAdjoint(t *testing.T) {
	const n, d = 20, 2
	x1 := asbm.NewNoise(12).Normal(n * d)
	h := &funcNet{dim: d, record: true, f: func(_ float64, x, out []float64) { out[0], out[1] = x[0]*x[1], -2*x[1] }}
	p := asbm.Prior{SigmaP: 0.5, MaxGradNorm: 100}
	a1, err := asbm.TerminalAdjoint(p, h, x1, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, tv := range h.times[0] {
		if tv != 1 {
			t.Fatalf("corrector evaluated at t = %v, want 1", tv)
		}
	}
	for i := 0; i < n; i++ {
		x := f32to64(x1[i*d : (i+1)*d])
		want := []float64{x[0]/0.25 + x[0]*x[1], x[1]/0.25 - 2*x[1]}
		for j := 0; j < d; j++ {
			near(t, "a_1", float64(a1[i*d+j]), want[j], 1e-5)
		}
	}
	a0, err := asbm.TerminalAdjoint(p, nil, x1, d)
	if err != nil {
		t.Fatal(err)
	}
	for j := range a0 {
		near(t, "a_1 without corrector", float64(a0[j]), float64(x1[j])/0.25, 1e-5)
	}
}

func TestMatcherErrors(t *testing.T) {
	vp := asbm.PaperVP()
	a, b := make([]float32, 4), make([]float32, 6)
	noise := asbm.NewNoise(1)
	for name, err := range map[string]error{
		"AM mismatched":  second(asbm.AMTuple(vp, a, b, a, 2, noise)),
		"AM nil noise":   second(asbm.AMTuple(vp, a, a, a, 2, nil)),
		"CM ragged":      second(asbm.CMTuple(vp, b[:5], b[:5], 2)),
		"BM mismatched":  second(asbm.BMTuple(vp, a, b, 2, noise)),
		"DSM bad vp":     second(asbm.DSMTuple(asbm.VP{}, a, 2, noise)),
		"gen mismatched": second(asbm.GenTuple(vp, a, b, 2)),
		"ref nil noise":  second(asbm.ReferenceCoupling(vp, a, nil)),
		"adjoint dim":    second(asbm.TerminalAdjoint(asbm.DefaultPrior(), &funcNet{dim: 3}, a, 2)),
	} {
		if err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func second[T any](_ T, err error) error { return err }
