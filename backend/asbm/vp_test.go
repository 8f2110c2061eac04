package asbm_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"asbm/backend/asbm"
)

// TestVPTable checks the closed forms against the table of asbm.md §1.2 (β 0.1→4, σ_v = 1), printed to
// 4 decimals, so the tolerance is half a unit of the last digit.
func TestVPTable(t *testing.T) {
	vp := asbm.PaperVP()
	rows := []struct{ t, alpha, kappa, a, b, gamma2, g2 float64 }{
		{0, 1, .3588, 1, 0, 0, 0.1},
		{.25, .9292, .3861, .9075, .0605, .1334, 1.075},
		{.5, .7643, .4694, .6840, .2240, .3721, 2.05},
		{.75, .5566, .6446, .3734, .5107, .4630, 3.025},
		{1, .3588, 1, 0, 1, 0, 4.0},
	}
	const tol = 5e-5 + 1e-9
	for _, r := range rows {
		a, b, g2 := vp.Bridge(r.t)
		name := fmt.Sprintf("t=%v", r.t)
		near(t, name+" α", vp.Alpha(r.t), r.alpha, tol)
		near(t, name+" κ", vp.Kappa(r.t), r.kappa, tol)
		near(t, name+" a", a, r.a, tol)
		near(t, name+" b", b, r.b, tol)
		near(t, name+" γ²", g2, r.gamma2, tol)
		near(t, name+" g²", vp.G2(r.t), r.g2, 1e-12)
	}
	// §1.2: α_1 = e^{−1.025} = 0.3588, σ_1² = 0.8713; §6.1: α_1 for β_1 = 1, 2, 8, 20.
	near(t, "α_1", vp.Alpha(1), math.Exp(-1.025), 1e-15)
	near(t, "σ_1²", vp.Sigma2(1), .8713, tol)
	for _, c := range []struct{ beta1, alpha1 float64 }{{1, .7596}, {2, .5916}, {8, .1320}, {20, .0066}} {
		near(t, fmt.Sprintf("α_1(β_1=%v)", c.beta1), asbm.VP{Beta0: 0.1, Beta1: c.beta1, SigmaV: 1}.Alpha(1), c.alpha1, tol)
	}
	near(t, "memoryless α_1", asbm.MemorylessVP().Alpha(1), .0066, tol)
}

// TestVPIdentities checks, for random schedules and times, the relations of asbm.md §1.2 and that the
// bridge is the Gaussian conditional of the base process: given x0, (X_t, X_1) is jointly Gaussian with
// means (α_t x0, α_1 x0), variances (σ_t², σ_1²) and covariance κ_t σ_t², so X_t | x0, x1 has mean
// α_t x0 + (κ_t σ_t²/σ_1²)(x1 − α_1 x0) and variance σ_t² − κ_t² σ_t⁴/σ_1².
func TestVPIdentities(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for it := 0; it < 200; it++ {
		vp := asbm.VP{Beta0: r.Float64(), Beta1: 0.5 + 25*r.Float64(), SigmaV: 0.5 + 1.5*r.Float64()}
		tt := r.Float64()
		name := fmt.Sprintf("%+v t=%.4f", vp, tt)
		al, ka, a1 := vp.Alpha(tt), vp.Kappa(tt), vp.Alpha(1)
		s2t, s21 := vp.Sigma2(tt), vp.Sigma2(1)
		a, b, g2 := vp.Bridge(tt)
		near(t, name+" α_tκ_t", al*ka, a1, 1e-14)
		near(t, name+" bridge x0 coefficient", a, al-ka*s2t/s21*a1, 1e-12)
		near(t, name+" bridge x1 coefficient", b, ka*s2t/s21, 1e-12)
		// γ² carries the code's +1e-8 in its denominator: a relative change of ~1e-8/σ_1².
		near(t, name+" bridge variance", g2, s2t-ka*ka*s2t*s2t/s21, 1e-7)
		// Marginalising the bridge over x1 ~ p_{1|0} gives back p_{t|0}: a + bα_1 = α_t, b²σ_1² + γ² = σ_t².
		near(t, name+" mean consistency", a+b*a1, al, 1e-12)
		near(t, name+" variance consistency", b*b*s21+g2, s2t, 1e-7)
		near(t, name+" σ_t²", s2t, vp.SigmaV*vp.SigmaV*(1-al*al), 1e-14)
		// Derivatives: dα/dt = −½β(t)α_t and dκ/dt = +½β(t)κ_t (central differences, error O(h²)).
		if tt > 1e-3 && tt < 1-1e-3 {
			h := 1e-5
			near(t, name+" dα/dt", (vp.Alpha(tt+h)-vp.Alpha(tt-h))/(2*h), -0.5*vp.Beta(tt)*al, 1e-7)
			near(t, name+" dκ/dt", (vp.Kappa(tt+h)-vp.Kappa(tt-h))/(2*h), 0.5*vp.Beta(tt)*ka, 1e-7)
		}
		x := []float32{float32(r.NormFloat64()), float32(r.NormFloat64())}
		dst := vp.Drift(tt, x, make([]float32, 2))
		for i := range x {
			near(t, name+" drift", float64(dst[i]), -0.5*vp.Beta(tt)*float64(x[i]), 1e-6*math.Abs(float64(x[i]))+1e-7)
		}
	}
	// The endpoints are exact: the bridge pins x0 at t = 0 and x1 at t = 1.
	vp := asbm.PaperVP()
	if a, b, g2 := vp.Bridge(0); a != 1 || b != 0 || g2 != 0 {
		t.Errorf("Bridge(0) = %v, %v, %v; want 1, 0, 0", a, b, g2)
	}
	if a, b, g2 := vp.Bridge(1); a != 0 || b != 1 || g2 != 0 {
		t.Errorf("Bridge(1) = %v, %v, %v; want 0, 1, 0", a, b, g2)
	}
}

func TestVPValidate(t *testing.T) {
	for _, vp := range []asbm.VP{
		{Beta0: 0, Beta1: 0, SigmaV: 1}, {Beta0: -1, Beta1: 4, SigmaV: 1}, {Beta0: 0.1, Beta1: 4, SigmaV: 0},
		{Beta0: math.NaN(), Beta1: 4, SigmaV: 1}, {Beta0: 0.1, Beta1: math.Inf(1), SigmaV: 1},
	} {
		if vp.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", vp)
		}
	}
	for _, vp := range []asbm.VP{asbm.PaperVP(), asbm.MemorylessVP()} {
		if err := vp.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", vp, err)
		}
	}
}

// TestPriorGradE checks ∇E = x/σ_p² against finite differences of E, and the clip of asbm.md §1.3
// (each Axis-long piece rescaled by min(1, M/(‖g‖+1e-6))) against a plain re-implementation.
func TestPriorGradE(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		p   asbm.Prior
		dim int
	}{{asbm.DefaultPrior(), 2}, {asbm.Prior{SigmaP: 0.7, MaxGradNorm: 5, Axis: 3}, 12}, {asbm.Prior{SigmaP: 1.3}, 5}} {
		n := 50
		x := make([]float32, n*c.dim)
		for i := range x {
			x[i] = float32(r.NormFloat64() * (1 + 200*float64(i%7/6))) // some pieces far beyond the clip
		}
		g := make([]float32, len(x))
		if err := c.p.GradE(x, c.dim, g); err != nil {
			t.Fatal(err)
		}
		axis := c.p.Axis
		if axis == 0 {
			axis = c.dim
		}
		s2 := c.p.SigmaP * c.p.SigmaP
		for s := 0; s < len(x); s += axis {
			var nn float64
			for i := s; i < s+axis; i++ {
				nn += float64(x[i]) * float64(x[i]) / (s2 * s2)
			}
			f := 1.0
			if c.p.MaxGradNorm > 0 {
				f = math.Min(1, c.p.MaxGradNorm/(math.Sqrt(nn)+1e-6))
			}
			for i := s; i < s+axis; i++ {
				want := float64(x[i]) / s2 * f
				near(t, fmt.Sprintf("%+v GradE[%d]", c.p, i), float64(g[i]), want, 1e-5*math.Abs(want)+1e-6)
			}
		}
		// Unclipped gradient = finite difference of E on a small sample.
		row := []float32{0.3, -1.2, 0.8, 0.1, 2}[:min(5, c.dim)]
		gr := make([]float32, len(row))
		big := c.p
		big.MaxGradNorm, big.Axis = 0, 0
		if err := big.GradE(row, len(row), gr); err != nil {
			t.Fatal(err)
		}
		for i := range row {
			h := float32(1e-2)
			xp, xm := append([]float32(nil), row...), append([]float32(nil), row...)
			xp[i] += h
			xm[i] -= h
			fd := (c.p.Energy(xp) - c.p.Energy(xm)) / float64(xp[i]-xm[i])
			near(t, "∂E/∂x", float64(gr[i]), fd, 1e-4)
		}
	}
	if err := (asbm.Prior{SigmaP: 1, Axis: 3}).GradE(make([]float32, 4), 4, make([]float32, 4)); err == nil {
		t.Error("GradE with an Axis that does not divide the dimension: want an error")
	}
	if err := asbm.DefaultPrior().GradE(make([]float32, 5), 2, make([]float32, 5)); err == nil {
		t.Error("GradE on a ragged batch: want an error")
	}
}
