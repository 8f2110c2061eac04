package asbm_test

import (
	"fmt"
	"math"
	"testing"

	"asbm/backend/asbm"
)

// TestSimulateMarginal: the uncontrolled forward EM from a point mass x0 ends at N(α_1 x0, σ_1² I)
// (asbm.md §1.2). n = 20000 rows, 500 steps; tolerances are 4 standard errors plus 0.01 for the EM
// discretisation bias (O(Δ∫β²) ≈ 2e-3 here).
func TestSimulateMarginal(t *testing.T) {
	for _, vp := range []asbm.VP{asbm.PaperVP(), {Beta0: 0.3, Beta1: 2, SigmaV: 1.5}} {
		const n, d = 20000, 2
		x0 := []float64{1.5, -0.5}
		x := make([]float32, n*d)
		for i := range x {
			x[i] = float32(x0[i%d])
		}
		x1, err := asbm.Simulate(nil, vp, x, d, 501, 512, asbm.NewNoise(5))
		if err != nil {
			t.Fatal(err)
		}
		mean, vr := meanVar(x1, d)
		s2 := vp.Sigma2(1)
		for j := 0; j < d; j++ {
			near(t, fmt.Sprintf("%+v mean[%d]", vp, j), mean[j], vp.Alpha(1)*x0[j], 4*math.Sqrt(s2/n)+0.01)
			near(t, fmt.Sprintf("%+v var[%d]", vp, j), vr[j], s2, 4*s2*math.Sqrt(2.0/n)+0.01)
		}
	}
}

// TestSimulateControlSign: with a constant control u ≡ c the mean obeys m' = −½βm + σ_v²βc, so
// m_1 = α_1 m_0 + σ_v² c ∫_0^1 β(s)κ_s ds = α_1 m_0 + 2σ_v² c(1 − α_1) (dκ/ds = ½βκ). A sign error in the
// g²u term or a missing g² would miss this by far more than the tolerance.
func TestSimulateControlSign(t *testing.T) {
	vp := asbm.VP{Beta0: 0.1, Beta1: 4, SigmaV: 1.2}
	const n, d = 20000, 1
	c := -0.7
	u := &funcNet{dim: d, f: func(_ float64, _, out []float64) { out[0] = c }}
	x := make([]float32, n)
	for i := range x {
		x[i] = 2
	}
	x1, err := asbm.Simulate(u, vp, x, d, 401, 4096, asbm.NewNoise(6))
	if err != nil {
		t.Fatal(err)
	}
	mean, _ := meanVar(x1, d)
	a1 := vp.Alpha(1)
	want := a1*2 + 2*vp.SigmaV*vp.SigmaV*c*(1-a1)
	near(t, "controlled mean", mean[0], want, 4*math.Sqrt(vp.Sigma2(1)/n)+0.01)
}

// TestSimulateGridAndNoise checks the time grid linspace(0, 1, nfe) (nfe−1 steps, control evaluated at
// t_0 … t_{nfe−2}), the chunking, one exact EM step against the formula of asbm.md §2.4, and that noise
// is drawn on every step including the last: (nfe−1)·n·d values.
func TestSimulateGridAndNoise(t *testing.T) {
	vp := asbm.PaperVP()
	const d, n, nfe, batch = 2, 7, 5, 3
	u := &funcNet{dim: d, record: true, f: func(tt float64, x, out []float64) {
		out[0], out[1] = math.Sin(x[1])+tt, x[0]*x[0]-1
	}}
	x0 := asbm.NewNoise(9).Normal(n * d)
	noise := asbm.NewNoise(10)
	if _, err := asbm.Simulate(u, vp, x0, d, nfe, batch, noise); err != nil {
		t.Fatal(err)
	}
	if want := 3 * (nfe - 1); u.calls != want {
		t.Fatalf("control evaluated %d times, want %d (3 chunks × %d steps)", u.calls, want, nfe-1)
	}
	for c, rows := range u.rows {
		want := []int{3, 3, 1}[c/(nfe-1)]
		if rows != want {
			t.Errorf("call %d had %d rows, want %d", c, rows, want)
		}
		k := c % (nfe - 1)
		for _, tv := range u.times[c] {
			if tv != float32(float64(k)/float64(nfe-1)) {
				t.Errorf("call %d: t = %v, want %v", c, tv, float64(k)/float64(nfe-1))
			}
		}
	}
	ref := asbm.NewNoise(10)
	ref.Normal((nfe - 1) * n * d)
	if a, b := noise.Normal(1)[0], ref.Normal(1)[0]; a != b {
		t.Errorf("noise consumed differs from (nfe−1)·n·d draws: next value %v, want %v", a, b)
	}

	// One step (nfe = 2): X_1 = x0 + [−½β(0)x0 + g(0)²u(0,x0)]·1 + g(0)·ε.
	x1, err := asbm.Simulate(u, vp, x0, d, 2, 512, asbm.NewNoise(11))
	if err != nil {
		t.Fatal(err)
	}
	eps := asbm.NewNoise(11).Normal(n * d)
	for i := 0; i < n; i++ {
		xr := f32to64(x0[i*d : (i+1)*d])
		ur := []float64{math.Sin(xr[1]), xr[0]*xr[0] - 1}
		for j := 0; j < d; j++ {
			want := xr[j] + (-0.5*vp.Beta(0)*xr[j] + vp.G2(0)*ur[j]) + math.Sqrt(vp.G2(0))*float64(eps[i*d+j])
			near(t, "one EM step", float64(x1[i*d+j]), want, 1e-5)
		}
	}
}

func TestSimulateErrors(t *testing.T) {
	vp := asbm.PaperVP()
	u := &funcNet{dim: 2, f: func(float64, []float64, []float64) {}}
	cases := map[string]func() error{
		"nfe 1": func() error {
			_, err := asbm.Simulate(u, vp, make([]float32, 4), 2, 1, 8, asbm.NewNoise(1))
			return err
		},
		"ragged": func() error {
			_, err := asbm.Simulate(u, vp, make([]float32, 5), 2, 5, 8, asbm.NewNoise(1))
			return err
		},
		"dim mismatch": func() error {
			_, err := asbm.Simulate(u, vp, make([]float32, 6), 3, 5, 8, asbm.NewNoise(1))
			return err
		},
		"nil noise": func() error { _, err := asbm.Simulate(u, vp, make([]float32, 4), 2, 5, 8, nil); return err },
		"batch 0": func() error {
			_, err := asbm.Simulate(u, vp, make([]float32, 4), 2, 5, 0, asbm.NewNoise(1))
			return err
		},
		"bad vp": func() error {
			_, err := asbm.Simulate(u, asbm.VP{}, make([]float32, 4), 2, 5, 8, asbm.NewNoise(1))
			return err
		},
		"encode ragged": func() error { _, err := asbm.Encode(u, vp, make([]float32, 3), 2, 5, asbm.NewNoise(1)); return err },
	}
	for name, f := range cases {
		if f() == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}
