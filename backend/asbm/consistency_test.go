package asbm_test

import (
	"math"
	"testing"

	"asbm/backend/asbm"
)

// TestConsistencyClosedForm checks ControlConsistency and ScoreConsistency on the stationary case of
// asbm.md §6.2 T1 (data N(0, σ_v²I): the base is already the bridge, u* ≡ 0, s*(t, x) = −x/σ_v²)
// against closed forms. The exact networks score zero; a network off by a constant vector d scores
// mean(d²)·((1−κ_t)/(1+κ_t))² (control) or mean(d²)·((1−α_t)/(1+α_t))² (score), because the
// continuation driven by the offset drifts too: solving the linear mean ODE of the forward SDE with
// drift f + g²d gives E[X_1 | x] = κ_t x + 2σ_v²(1−κ_t)d, so E[target] = 2κ_t d/(1+κ_t); the backward
// one gives E[X_0 | x] = α_t x + 2σ_v²(1−α_t)d and E[target] = −x/σ_v² + 2α_t d/(1+α_t).
func TestConsistencyClosedForm(t *testing.T) {
	const dim, anchors, draws, perUnit = 2, 200, 64, 500
	d := []float64{0.8, -0.5}
	md2 := (d[0]*d[0] + d[1]*d[1]) / 2
	for _, sv := range []float64{1, 0.8} {
		vp := asbm.VP{Beta0: 0.1, Beta1: 4, SigmaV: sv}
		for _, tt := range []float64{0.5, 0.8} {
			for _, off := range []bool{false, true} {
				shift := func(j int) float64 {
					if off {
						return d[j]
					}
					return 0
				}
				u := &funcNet{dim: dim, f: func(_ float64, _, out []float64) {
					for j := range out {
						out[j] = shift(j)
					}
				}}
				s := &funcNet{dim: dim, f: func(_ float64, x, out []float64) {
					for j := range out {
						out[j] = -x[j]/(sv*sv) + shift(j)
					}
				}}
				noise := asbm.NewNoise(11)
				// Anchors from the stationary law N(0, σ_v²): the closed forms hold at any x.
				xt := noise.Normal(anchors * dim)
				for i := range xt {
					xt[i] *= float32(sv)
				}
				cu, err := asbm.ControlConsistency(u, vp, xt, dim, tt, draws, perUnit, noise)
				if err != nil {
					t.Fatal(err)
				}
				cs, err := asbm.ScoreConsistency(s, vp, xt, dim, tt, draws, perUnit, noise)
				if err != nil {
					t.Fatal(err)
				}
				k, a := vp.Kappa(tt), vp.Alpha(tt)
				wantU, wantS := 0.0, 0.0
				if off {
					wantU = md2 * math.Pow((1-k)/(1+k), 2)
					wantS = md2 * math.Pow((1-a)/(1+a), 2)
				}
				for _, c := range []struct {
					name string
					got  asbm.ConsistencyStats
					want float64
				}{{"control", cu, wantU}, {"score", cs, wantS}} {
					tol := 4*c.got.SE + 0.03*c.want + 2e-3
					t.Logf("σ_v %g t %g offset %v %s: Err2 %.5f ± %.5f (want %.5f), rel %.3f, steps %d",
						sv, tt, off, c.name, c.got.Err2, c.got.SE, c.want, c.got.Rel(), c.got.Steps)
					if math.Abs(c.got.Err2-c.want) > tol {
						t.Errorf("σ_v %g t %g offset %v: %s Err2 = %.5f, want %.5f ± %.5f", sv, tt, off, c.name, c.got.Err2, c.want, tol)
					}
				}
			}
		}
	}
}

// TestConsistencyErrors checks the arguments the measures refuse.
func TestConsistencyErrors(t *testing.T) {
	vp := asbm.VP{Beta0: 0.1, Beta1: 4, SigmaV: 1}
	net := &funcNet{dim: 2, f: func(_ float64, _, out []float64) {}}
	x := make([]float32, 4)
	noise := asbm.NewNoise(1)
	for name, err := range map[string]error{
		"t = 1 control": func() error { _, e := asbm.ControlConsistency(net, vp, x, 2, 1, 4, 10, noise); return e }(),
		"t = 0 score":   func() error { _, e := asbm.ScoreConsistency(net, vp, x, 2, 0, 4, 10, noise); return e }(),
		"one draw":      func() error { _, e := asbm.ScoreConsistency(net, vp, x, 2, 0.5, 1, 10, noise); return e }(),
		"ragged rows":   func() error { _, e := asbm.ScoreConsistency(net, vp, x[:3], 2, 0.5, 4, 10, noise); return e }(),
		"wrong dim":     func() error { _, e := asbm.ControlConsistency(net, vp, x, 4, 0.5, 4, 10, noise); return e }(),
		"nil score":     func() error { _, e := asbm.ScoreConsistency(nil, vp, x, 2, 0.5, 4, 10, noise); return e }(),
		"zero steps":    asbm.Evolve(net, vp, x, 2, 0, 1, 0, noise),
		"time > 1":      asbm.Evolve(net, vp, x, 2, 0, 1.5, 3, noise),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
