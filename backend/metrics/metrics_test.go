package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// gaussian returns n×d samples of N(mean, s² I).
func gaussian(r *rand.Rand, n, d int, mean []float64, s float64) []float32 {
	x := make([]float32, n*d)
	for i := range n {
		for k := range d {
			x[i*d+k] = float32(mean[k] + s*r.NormFloat64())
		}
	}
	return x
}

func relErr(got, want float64) float64 { return math.Abs(got-want) / math.Abs(want) }

func TestSlicedW2Gaussians1D(t *testing.T) {
	// In 1-D the sliced distance is the exact W2, and W2(N(m1,s1²), N(m2,s2²)) = √((m1−m2)² + (s1−s2)²).
	r := rand.New(rand.NewPCG(11, 1))
	for _, c := range []struct{ m1, s1, m2, s2 float64 }{{0, 1, 1, 2}, {0.5, 0.3, -1, 0.3}, {0, 1, 0, 3}} {
		a := gaussian(r, 20000, 1, []float64{c.m1}, c.s1)
		b := gaussian(r, 20000, 1, []float64{c.m2}, c.s2)
		want := math.Hypot(c.m1-c.m2, c.s1-c.s2)
		got := SlicedW2(a, b, 1, 4, 1)
		if relErr(got, want) > 0.03 {
			t.Errorf("%+v: SW2 = %.4f, closed form %.4f", c, got, want)
		}
	}
}

func TestSlicedW2GaussiansND(t *testing.T) {
	// For isotropic Gaussians the projection on θ is N(θ·m, s²), so
	// SW2² = E_θ[(θ·Δm)²] + (s1−s2)² = ‖Δm‖²/d + (s1−s2)². Unequal counts go through the quantile
	// matching path.
	r := rand.New(rand.NewPCG(12, 1))
	d := 3
	m1, m2 := []float64{1, -1, 0.5}, []float64{-0.5, 0, 1}
	a := gaussian(r, 8000, d, m1, 1)
	b := gaussian(r, 5000, d, m2, 1.5)
	dm := 0.0
	for k := range d {
		dm += (m1[k] - m2[k]) * (m1[k] - m2[k])
	}
	want := math.Sqrt(dm/float64(d) + 0.25)
	got := SlicedW2(a, b, d, 1000, 5)
	if relErr(got, want) > 0.04 {
		t.Errorf("SW2 = %.4f, closed form %.4f", got, want)
	}
}

func TestSlicedW2Identical(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 1))
	a := gaussian(r, 500, 2, []float64{0, 0}, 1)
	// The same set in another order.
	b := make([]float32, len(a))
	perm := r.Perm(500)
	for i, p := range perm {
		copy(b[2*i:2*i+2], a[2*p:2*p+2])
	}
	if got := SlicedW2(a, b, 2, 100, 3); got != 0 {
		t.Errorf("SW2 of a set and its permutation = %g, want 0", got)
	}
}

func TestSlicedW2QuantileMatching(t *testing.T) {
	// Unequal counts: replicating every point of a (na points) nb times and of b na times gives two
	// equal-count sets with the same empirical measures, whose W2² is the mean squared difference
	// of the sorted values. The quantile merge must agree with that.
	r := rand.New(rand.NewPCG(14, 1))
	for _, sizes := range [][2]int{{3, 2}, {7, 5}, {40, 13}, {1, 9}} {
		na, nb := sizes[0], sizes[1]
		a := gaussian(r, na, 1, []float64{0}, 1)
		b := gaussian(r, nb, 1, []float64{0.3}, 2)
		var ra, rb []float32
		for _, v := range a {
			for range nb {
				ra = append(ra, v)
			}
		}
		for _, v := range b {
			for range na {
				rb = append(rb, v)
			}
		}
		slices.Sort(ra)
		slices.Sort(rb)
		want := 0.0
		for i := range ra {
			diff := float64(ra[i]) - float64(rb[i])
			want += diff * diff
		}
		want = math.Sqrt(want / float64(len(ra)))
		if got := SlicedW2(a, b, 1, 1, 0); math.Abs(got-want) > 1e-12*want {
			t.Errorf("%d vs %d points: %v, replicated reference %v", na, nb, got, want)
		}
	}
}

func TestSlicedW2BadInput(t *testing.T) {
	for _, c := range []struct {
		a, b  []float32
		d, np int
	}{{nil, []float32{1}, 1, 1}, {[]float32{1, 2, 3}, []float32{1, 2}, 2, 1}, {[]float32{1}, []float32{1}, 0, 1}, {[]float32{1}, []float32{1}, 1, 0}} {
		if got := SlicedW2(c.a, c.b, c.d, c.np, 0); !math.IsNaN(got) {
			t.Errorf("SlicedW2(%v, %v, %d, %d) = %v, want NaN", c.a, c.b, c.d, c.np, got)
		}
	}
}

// closedFormC is the cross-covariance of the static SB between N(0, a) and N(0, 1) for a VP base
// (asbm.md §6.2): c = (−σ1² + √(σ1⁴ + 4α1² a))/(2α1).
func closedFormC(alpha1, a float64) float64 {
	s := 1 - alpha1*alpha1
	return (-s + math.Sqrt(s*s+4*alpha1*alpha1*a)) / (2 * alpha1)
}

// alpha1 of the VP base with β0 = 0.1 and the given β1, σ_v = 1: exp(−¼(β0 + β1)) (asbm.md §1.2).
func alpha1(beta1 float64) float64 { return math.Exp(-(0.1 + beta1) / 4) }

func TestSinkhornSBGaussianCrossCov(t *testing.T) {
	// Random samples, 1500 a side: the plan's cross-covariance is within sampling error (about
	// 4% standard deviation over seeds at this size) of the closed form.
	r := rand.New(rand.NewPCG(21, 1))
	for _, c := range []struct{ beta1, a float64 }{{4, 4}, {2, 0.25}, {1, 4}} {
		al := alpha1(c.beta1)
		x0 := gaussian(r, 1500, 1, []float64{0}, math.Sqrt(c.a))
		x1 := gaussian(r, 1500, 1, []float64{0}, 1)
		p, err := SinkhornSB(x0, x1, 1, al, 1-al*al, 1, 2000)
		if err != nil {
			t.Fatal(err)
		}
		want := closedFormC(al, c.a)
		t.Logf("β1=%v a=%v: α1=%.4f plan cross-cov %.4f, closed form %.4f (%.1f%%), %d iterations, marginal L1 errors %.1e %.1e",
			c.beta1, c.a, al, p.CrossCov, want, 100*relErr(p.CrossCov, want), p.Iters, p.MarginalErr0, p.MarginalErr1)
		if relErr(p.CrossCov, want) > 0.08 {
			t.Errorf("β1=%v a=%v: plan cross-covariance %.4f, closed form %.4f", c.beta1, c.a, p.CrossCov, want)
		}
		if p.MarginalErr0 > 1e-6 || p.MarginalErr1 > 1e-6 {
			t.Errorf("marginals not matched: %g %g", p.MarginalErr0, p.MarginalErr1)
		}
	}
	// The §6.2 table's example: α1 = .3588, a = 4 → c = 1.126.
	if c := closedFormC(0.3588, 4); math.Abs(c-1.126) > 5e-4 {
		t.Errorf("closed form gives %v for the table's 1.126", c)
	}
}

// quantileGaussian returns the n quantiles √a·Φ⁻¹((i+½)/n): a sample of N(0, a) without sampling
// noise, so the discrete plan must approach the continuous bridge closely.
func quantileGaussian(n int, a float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(math.Sqrt(a) * math.Sqrt2 * math.Erfinv(2*(float64(i)+0.5)/float64(n)-1))
	}
	return x
}

func TestSinkhornSBGaussianCrossCovQuantiles(t *testing.T) {
	// Every row of the asbm.md §6.2 table, on noise-free quantile samples (unequal counts):
	// within 1% of c.
	for _, beta1 := range []float64{1, 2, 4, 8, 20} {
		for _, a := range []float64{0.25, 1, 4} {
			al := alpha1(beta1)
			p, err := SinkhornSB(quantileGaussian(800, a), quantileGaussian(900, 1), 1, al, 1-al*al, 1, 5000)
			if err != nil {
				t.Fatal(err)
			}
			if want := closedFormC(al, a); relErr(p.CrossCov, want) > 0.01 {
				t.Errorf("β1=%v a=%v: plan cross-covariance %.4f, closed form %.4f", beta1, a, p.CrossCov, want)
			}
		}
	}
}

// naiveSinkhorn is a plain reference: kernel-domain Sinkhorn on exp(−C/ε) for a fixed, large
// number of iterations, returning the plan.
func naiveSinkhorn(x0, x1 []float32, d int, alpha1, s2, eps float64, iters int) []float64 {
	n0, n1 := len(x0)/d, len(x1)/d
	K := make([]float64, n0*n1)
	for i := range n0 {
		for j := range n1 {
			c := 0.0
			for k := range d {
				diff := float64(x1[j*d+k]) - alpha1*float64(x0[i*d+k])
				c += diff * diff
			}
			K[i*n1+j] = math.Exp(-c / (2 * s2) / eps)
		}
	}
	u, v := make([]float64, n0), make([]float64, n1)
	for j := range v {
		v[j] = 1
	}
	for range iters {
		for i := range n0 {
			s := 0.0
			for j := range n1 {
				s += K[i*n1+j] * v[j]
			}
			u[i] = 1 / float64(n0) / s
		}
		for j := range n1 {
			s := 0.0
			for i := range n0 {
				s += K[i*n1+j] * u[i]
			}
			v[j] = 1 / float64(n1) / s
		}
	}
	P := make([]float64, n0*n1)
	for i := range n0 {
		for j := range n1 {
			P[i*n1+j] = u[i] * K[i*n1+j] * v[j]
		}
	}
	return P
}

func TestSinkhornSBMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 1))
	for _, c := range []struct {
		n0, n1, d int
		eps       float64
	}{{5, 7, 2, 1}, {30, 20, 3, 0.5}, {40, 40, 2, 0.2}} {
		x0 := gaussian(r, c.n0, c.d, make([]float64, c.d), 1.4)
		x1 := gaussian(r, c.n1, c.d, make([]float64, c.d), 1)
		al := alpha1(4)
		p, err := SinkhornSB(x0, x1, c.d, al, 1-al*al, c.eps, 5000)
		if err != nil {
			t.Fatal(err)
		}
		want := naiveSinkhorn(x0, x1, c.d, al, 1-al*al, c.eps, 5000)
		for i := range want {
			if math.Abs(p.P[i]-want[i]) > 1e-7*math.Max(want[i], 1e-3/float64(c.n0*c.n1)) {
				t.Fatalf("%+v: P[%d] = %g, naive %g", c, i, p.P[i], want[i])
			}
		}
		// The expectations against the plan computed directly.
		var dot, tr, res, m0, m1 float64
		for i := range c.n0 {
			for j := range c.n1 {
				w := want[i*c.n1+j]
				for k := range c.d {
					a, b := float64(x0[i*c.d+k]), float64(x1[j*c.d+k])
					dot += w * a * b
					tr += w * (a - b) * (a - b)
					res += w * (b - al*a) * (b - al*a)
					if k == 0 {
						m0 += w * a
						m1 += w * b
					}
				}
			}
		}
		for _, q := range []struct {
			name      string
			got, want float64
		}{{"Dot", p.Dot, dot}, {"Transport", p.Transport, tr}, {"Residual", p.Residual, res},
			{"CrossCovDim[0]", p.CrossCovDim[0], p.DotDim[0] - m0*m1}} {
			if math.Abs(q.got-q.want) > 1e-8*(1+math.Abs(q.want)) {
				t.Errorf("%+v: %s = %v, direct %v", c, q.name, q.got, q.want)
			}
		}
	}
}

func TestSinkhornSBSmallEps(t *testing.T) {
	// With ε = 0.05 and an outlier x0 = 15 far from every x1, the whole outlier row of the raw
	// kernel exp(−C/ε) underflows to exactly 0 (checked below), so unstabilised Sinkhorn would
	// divide by zero there; the solver must still converge. The entropic plan then brackets the
	// OT cost: with α1 = σ1² = 1, E(x1 − x0)² = 2⟨C, P⟩ and OT ≤ ⟨C, P_ε⟩ ≤ OT + ε log n, where
	// in 1-D the OT plan is the sorted matching.
	r := rand.New(rand.NewPCG(23, 1))
	n, eps := 60, 0.05
	x0 := gaussian(r, n, 1, []float64{0}, 2)
	x1 := gaussian(r, n, 1, []float64{0}, 1)
	x0[0] = 15
	under, zeroRows := 0, 0
	for _, a := range x0 {
		row := 0.0
		for _, b := range x1 {
			k := math.Exp(-(float64(b) - float64(a)) * (float64(b) - float64(a)) / 2 / eps)
			row += k
			if k == 0 {
				under++
			}
		}
		if row == 0 {
			zeroRows++
		}
	}
	if zeroRows == 0 {
		t.Fatal("no kernel row underflows: the test does not exercise stabilisation")
	}
	p, err := SinkhornSB(x0, x1, 1, 1, 1, eps, 100000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ε = %v: %d of %d kernel entries underflow (%d whole rows); %d iterations, marginal errors %.1e %.1e", eps, under, n*n, zeroRows, p.Iters, p.MarginalErr0, p.MarginalErr1)
	if p.MarginalErr0 > 1e-6 || p.MarginalErr1 > 1e-6 {
		t.Errorf("marginal errors %g %g after %d iterations", p.MarginalErr0, p.MarginalErr1, p.Iters)
	}
	a, b := slices.Clone(x0), slices.Clone(x1)
	slices.Sort(a)
	slices.Sort(b)
	opt := 0.0
	for i := range a {
		opt += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i])) / float64(n)
	}
	if p.Residual < opt-1e-9 || p.Residual > opt+2*eps*math.Log(float64(n)) {
		t.Errorf("E(x1−x0)² = %v, outside [OT, OT + 2ε log n] = [%v, %v] (%d of %d kernel entries underflow)",
			p.Residual, opt, opt+2*eps*math.Log(float64(n)), under, n*n)
	}
}

func TestSinkhornSBBadInput(t *testing.T) {
	x := []float32{1, 2}
	for name, f := range map[string]func() error{
		"d":     func() error { _, err := SinkhornSB(x, x, 0, 1, 1, 1, 10); return err },
		"len":   func() error { _, err := SinkhornSB([]float32{1, 2, 3}, x, 2, 1, 1, 1, 10); return err },
		"empty": func() error { _, err := SinkhornSB(nil, x, 1, 1, 1, 1, 10); return err },
		"sigma": func() error { _, err := SinkhornSB(x, x, 1, 1, 0, 1, 10); return err },
		"eps":   func() error { _, err := SinkhornSB(x, x, 1, 1, 1, math.NaN(), 10); return err },
		"iters": func() error { _, err := SinkhornSB(x, x, 1, 1, 1, 1, 0); return err },
		"nan":   func() error { _, err := SinkhornSB([]float32{float32(math.NaN())}, x, 1, 1, 1, 1, 10); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCouplingStats(t *testing.T) {
	// Pairs x1 = ρ x0 + √(1−ρ²) z with x0 ~ N(0, a I): Cov(x0_k, x1_k) = ρ a; checked against a
	// direct two-pass computation on the same samples.
	r := rand.New(rand.NewPCG(31, 1))
	n, d, rho, a, al := 50000, 2, 0.6, 4.0, 0.3588
	x0 := gaussian(r, n, d, []float64{1, -1}, math.Sqrt(a))
	x1 := make([]float32, n*d)
	for i := range x1 {
		x1[i] = float32(rho*float64(x0[i]) + math.Sqrt(1-rho*rho)*r.NormFloat64())
	}
	s := CouplingStats(x0, x1, d, al)
	m0, m1 := columnMeans(x0, n, d), columnMeans(x1, n, d)
	var cov, dot, tr, res float64
	for i := range n {
		for k := range d {
			p, q := float64(x0[i*d+k]), float64(x1[i*d+k])
			cov += (p - m0[k]) * (q - m1[k]) / float64(n*d)
			dot += p * q / float64(n)
			tr += (p - q) * (p - q) / float64(n)
			res += (q - al*p) * (q - al*p) / float64(n)
		}
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"CrossCov", s.CrossCov, cov}, {"Dot", s.Dot, dot}, {"Transport", s.Transport, tr}, {"Residual", s.Residual, res}} {
		if math.Abs(c.got-c.want) > 1e-9*(1+math.Abs(c.want)) {
			t.Errorf("%s = %v, direct %v", c.name, c.got, c.want)
		}
	}
	if relErr(s.CrossCov, rho*a) > 0.03 {
		t.Errorf("CrossCov %v, population %v", s.CrossCov, rho*a)
	}
	// corr(x0, x1) = ρa/√(a(ρ²a + 1 − ρ²)).
	if want := rho * a / math.Sqrt(a*(rho*rho*a+1-rho*rho)); relErr(s.Corr, want) > 0.02 {
		t.Errorf("Corr %v, population %v", s.Corr, want)
	}
	if bad := CouplingStats(x0, x1[:10], d, al); !math.IsNaN(bad.CrossCov) {
		t.Error("mismatched lengths should give NaN")
	}
}

func TestStraightnessLine(t *testing.T) {
	// X_t = X_0 + t (X_1 − X_0) on a non-uniform grid from 1 to 0: S = 0 and length ratio 1, up to
	// float32 storage of the states.
	r := rand.New(rand.NewPCG(41, 1))
	n, d := 200, 3
	x0 := gaussian(r, n, d, make([]float64, d), 1)
	x1 := gaussian(r, n, d, make([]float64, d), 1)
	times := []float64{1, 0.9, 0.85, 0.5, 0.49, 0.2, 0}
	traj := make([][]float32, len(times))
	for k, tk := range times {
		traj[k] = make([]float32, n*d)
		for i := range traj[k] {
			traj[k][i] = float32(float64(x0[i]) + tk*(float64(x1[i])-float64(x0[i])))
		}
	}
	S, ratio := Straightness(traj, times, d)
	if S > 1e-9 || math.Abs(ratio-1) > 1e-6 {
		t.Errorf("straight paths: S = %g, ratio = %v", S, ratio)
	}
}

func TestStraightnessQuarterCircle(t *testing.T) {
	// X_t = ρ_i (cos θ, sin θ) rotated by φ_i, θ = πt/2, t from 1 to 0. Continuous values:
	// S = ∫‖Ẋ‖² dt − ‖X_1 − X_0‖² = E ρ²(π²/4 − 2), ratio = arc/chord = (π/2)/√2. On a uniform
	// grid of K steps the chords give exactly S_K = E ρ²((2K sin(π/4K))² − 2) and
	// ratio_K = 2K sin(π/4K)/√2.
	r := rand.New(rand.NewPCG(42, 1))
	n := 300
	rho, phi := make([]float64, n), make([]float64, n)
	e2 := 0.0
	for i := range n {
		rho[i], phi[i] = 0.5+r.Float64(), 2*math.Pi*r.Float64()
		e2 += rho[i] * rho[i] / float64(n)
	}
	for _, K := range []int{7, 2000} {
		times := make([]float64, K+1)
		traj := make([][]float32, K+1)
		for k := range times {
			times[k] = 1 - float64(k)/float64(K)
			traj[k] = make([]float32, 2*n)
			for i := range n {
				th := math.Pi/2*times[k] + phi[i]
				traj[k][2*i] = float32(rho[i] * math.Cos(th))
				traj[k][2*i+1] = float32(rho[i] * math.Sin(th))
			}
		}
		S, ratio := Straightness(traj, times, 2)
		chordK := 2 * float64(K) * math.Sin(math.Pi/(4*float64(K)))
		wantS, wantR := e2*(chordK*chordK-2), chordK/math.Sqrt2
		if relErr(S, wantS) > 1e-4 || relErr(ratio, wantR) > 1e-5 {
			t.Errorf("K=%d: S = %.6f (discrete closed form %.6f), ratio = %.6f (%.6f)", K, S, wantS, ratio, wantR)
		}
		if K == 2000 {
			if contS := e2 * (math.Pi*math.Pi/4 - 2); relErr(S, contS) > 1e-4 {
				t.Errorf("S = %.6f, continuous value %.6f", S, contS)
			}
		}
	}
}

func TestStraightnessBadInput(t *testing.T) {
	x := []float32{0, 0}
	for name, c := range map[string]struct {
		traj  [][]float32
		times []float64
	}{
		"one state":     {[][]float32{x}, []float64{1}},
		"times length":  {[][]float32{x, x}, []float64{1}},
		"not monotone":  {[][]float32{x, x, x}, []float64{1, 0, 0.5}},
		"repeated time": {[][]float32{x, x}, []float64{1, 1}},
		"ragged":        {[][]float32{x, {0}}, []float64{1, 0}},
	} {
		if S, ratio := Straightness(c.traj, c.times, 2); !math.IsNaN(S) || !math.IsNaN(ratio) {
			t.Errorf("%s: got %v %v, want NaN", name, S, ratio)
		}
	}
}

// columnMeans returns the per-coordinate means of the n×d rows of x.
func columnMeans(x []float32, n, d int) []float64 {
	m := make([]float64, d)
	for i := range n {
		for k := range d {
			m[k] += float64(x[i*d+k]) / float64(n)
		}
	}
	return m
}
