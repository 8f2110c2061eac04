package asbm_test

import (
	"fmt"
	"math"
	"testing"

	"asbm/backend/asbm"
)

// coupledScore is the exact bridge-matching score (asbm.md §3.2) of the deterministic coupling
// x0 = m + √a·x1, x1 ~ N(0, 1), in one dimension: X_t = A x0 + B x1 + Γε is Gaussian, so
// E[x0 | X_t = x] = m + √a(A√a + B)/V·(x − A m) with V = (A√a + B)² + Γ², and
// s(t, x) = (α_t E[x0 | x] − x)/σ_t².
func coupledScore(vp asbm.VP, m, a float64) func(t float64, x, out []float64) {
	return func(t float64, x, out []float64) {
		A, B, G2 := vp.Bridge(t)
		c := A*math.Sqrt(a) + B
		v := c*c + G2
		for j := range x {
			e := m + math.Sqrt(a)*c/v*(x[j]-A*m)
			out[j] = (vp.Alpha(t)*e - x[j]) / vp.Sigma2(t)
		}
	}
}

// TestDMDGaussian: with the exact score of the coupling x0 = m + √a·z as teacher, distribution
// matching must carry a generator started at g = 0 (G(z) = z/α_1, about 2.8 z) to G(z) = m + √a z:
// the only affine map whose bridge marginals are the teacher's at every t. The fake score starts at
// zero and learns the generator's coupling as it goes. Seeds 8–11 pass; with the sign of v flipped
// the generator runs away (‖v‖² grows).
func TestDMDGaussian(t *testing.T) {
	vp := asbm.PaperVP()
	m, a := 0.7, 0.5
	teacher := &funcNet{dim: 1, f: coupledScore(vp, m, a)}
	gen := newLinModel(1, 1, 3e-3, 0.99)
	fake := newLinModel(1, 6, 1e-2, 0.99)
	cfg := asbm.DMDConfig{VP: vp, Batch: 256, GenSteps: 20, FakeSteps: 5, Epochs: 60, TMin: 0.02, TMax: 0.98, Seed: 8}
	d, err := asbm.NewDMD(cfg, teacher, fake, gen)
	if err != nil {
		t.Fatal(err)
	}
	st := runAll(t, d)
	if st[0].Phase != asbm.PhaseDMD || st[0].Steps != 20 || st[0].Examples != 20*256 || fake.steps != 60*20*5 {
		t.Fatalf("epoch stats %+v, fake steps %d", st[0], fake.steps)
	}
	z := []float32{-2, -1, 0, 1, 2}
	x0, err := asbm.Generate(gen.EMA(), vp, z)
	if err != nil {
		t.Fatal(err)
	}
	for i, zi := range z {
		want := m + math.Sqrt(a)*float64(zi)
		near(t, fmt.Sprintf("G(%v)", zi), float64(x0[i]), want, 0.05*(1+math.Abs(want)))
	}
	t.Logf("first epoch ‖v‖² %.4g fake %.4g; last %.4g fake %.4g", st[0].Loss, st[0].FakeLoss, st[len(st)-1].Loss, st[len(st)-1].FakeLoss)
}

// TestDMDTupleZero: when the fake score equals the teacher the generator's target is G(z) itself
// (no gradient), and a fake score that overestimates the density gradient moves the target against it.
func TestDMDTupleZero(t *testing.T) {
	vp := asbm.PaperVP()
	teacher := &funcNet{dim: 2, f: gaussScore(vp, []float64{1, -1}, 2)}
	gen := &funcNet{dim: 2, f: func(_ float64, x, out []float64) { out[0], out[1] = 0.3*x[0], -0.2*x[1]+0.1 }}
	z := asbm.SamplePrior(asbm.NewNoise(2), 64, 2)
	tp, err := asbm.DMDTuple(vp, gen, teacher, teacher, z, 2, 0.02, 0.98, asbm.NewNoise(3))
	if err != nil {
		t.Fatal(err)
	}
	g, s2, a1 := make([]float32, len(z)), vp.Sigma2(1), vp.Alpha(1)
	gen.Eval(tp.T, tp.X, g)
	for j := range z {
		// The tuple's residual w·g − y is G(z) − target = v.
		if r := float64(tp.W[j/2]*g[j] - tp.Y[j]); math.Abs(r) > 1e-5 {
			t.Fatalf("row %d: residual %g with fake = teacher, want 0", j/2, r)
		}
		if math.Abs(float64(tp.X[j]-z[j])) > 0 || tp.T[j/2] != 1 || math.Abs(float64(tp.W[j/2])-s2/a1) > 1e-6 {
			t.Fatalf("row %d: the tuple is not GenTuple's at t = 1", j/2)
		}
	}
	shift := &funcNet{dim: 2, f: func(tt float64, x, out []float64) {
		gaussScore(vp, []float64{1, -1}, 2)(tt, x, out)
		out[0] += 1 / vp.Sigma2(tt)
	}}
	tp, err = asbm.DMDTuple(vp, gen, teacher, shift, z, 2, 0.02, 0.98, asbm.NewNoise(3))
	if err != nil {
		t.Fatal(err)
	}
	gen.Eval(tp.T, tp.X, g)
	for i := range tp.T {
		// v_0 = (σ_t²/α_t)(1/σ_t²)/norm > 0: the target lies below G(z) in the first coordinate only.
		if r := tp.W[i]*g[2*i] - tp.Y[2*i]; r <= 0 {
			t.Fatalf("row %d: v_0 = %g, want > 0", i, r)
		}
		if r := tp.W[i]*g[2*i+1] - tp.Y[2*i+1]; math.Abs(float64(r)) > 1e-5 {
			t.Fatalf("row %d: v_1 = %g, want 0", i, r)
		}
	}
}
