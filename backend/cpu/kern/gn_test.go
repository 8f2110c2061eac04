package kern

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExp32 compares Exp32 with float64 math.Exp on a grid of [−87, 88] and on random points, and
// checks its limits; the relative error must stay under 3e-7 (a few float32 ulps).
func TestExp32(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	worst := 0.0
	check := func(x float32) {
		want := math.Exp(float64(x))
		got := float64(Exp32(x))
		worst = max(worst, math.Abs(got-want)/want)
	}
	for x := float32(-87); x <= 88; x += 0.001 {
		check(x)
	}
	for i := 0; i < 100000; i++ {
		check(float32(r.Float64()*175 - 87))
	}
	for _, x := range []float32{0, -0.5, 0.5, 1, -1, 1e-8, -1e-8} {
		check(x)
	}
	t.Logf("worst relative error %.3g", worst)
	if worst > 3e-7 {
		t.Fatalf("exp32: worst relative error %.3g > 3e-7", worst)
	}
	if v := Exp32(-1000); v < 0 || v > 2e-38 {
		t.Errorf("Exp32(-1000) = %g, want e^-87.3 (the clamp)", v)
	}
	if v := Exp32(1000); math.IsInf(float64(v), 0) || v < 1e38 {
		t.Errorf("Exp32(1000) = %g, want a large finite value", v)
	}
	if s := Sigmoid32(1000); s != 1 {
		t.Errorf("Sigmoid32(1000) = %g, want 1", s)
	}
	if s := Sigmoid32(-1000); s < 0 || s > 1e-37 {
		t.Errorf("Sigmoid32(-1000) = %g, want ~0", s)
	}
}

// gnCase is one group of random data: cg channels of hw values with a non-zero mean (so the
// statistics matter), γ, β, and the group's float64 statistics.
type gnCase struct {
	x, gy, gamma, beta []float32
	hw                 int
	mean, rstd         float64
}

func newGNCase(r *rand.Rand, cg, hw int) gnCase {
	c := gnCase{x: make([]float32, cg*hw), gy: make([]float32, cg*hw), gamma: make([]float32, cg), beta: make([]float32, cg), hw: hw}
	for i := range c.x {
		c.x[i] = float32(1.5 + 2*r.NormFloat64())
		c.gy[i] = float32(r.NormFloat64())
	}
	for i := range c.gamma {
		c.gamma[i] = float32(0.5 + r.Float64())
		c.beta[i] = float32(r.NormFloat64())
	}
	var s, q float64
	for _, v := range c.x {
		s += float64(v)
	}
	c.mean = s / float64(len(c.x))
	for _, v := range c.x {
		q += (float64(v) - c.mean) * (float64(v) - c.mean)
	}
	c.rstd = 1 / math.Sqrt(q/float64(len(c.x))+1e-5)
	return c
}

// ref returns the float64 forward (y, sig) and backward (dx, dγ, dβ) of the loops in gn.go.
func (c gnCase) ref() (y, sig, dx, dg, db []float64) {
	n, cg := len(c.x), len(c.gamma)
	y, sig, dx = make([]float64, n), make([]float64, n), make([]float64, n)
	dg, db = make([]float64, cg), make([]float64, cg)
	xh := make([]float64, n)
	var sumD, sumDX float64
	for j := range c.x {
		ch := j / c.hw
		xh[j] = (float64(c.x[j]) - c.mean) * c.rstd
		u := xh[j]*float64(c.gamma[ch]) + float64(c.beta[ch])
		s := 1 / (1 + math.Exp(-u))
		sig[j], y[j] = s, u*s
		du := float64(c.gy[j]) * s * (1 + u*(1-s))
		db[ch] += du
		dg[ch] += du * xh[j]
		dx[j] = du * float64(c.gamma[ch])
		sumD += dx[j]
		sumDX += dx[j] * xh[j]
	}
	for j := range dx {
		dx[j] = c.rstd * (dx[j] - sumD/float64(n) - xh[j]*sumDX/float64(n))
	}
	return
}

// relErr is max|got − want| / max|want|.
func relErr(got []float32, want []float64) float64 {
	var d, m float64
	for i, w := range want {
		d = max(d, math.Abs(float64(got[i])-w))
		m = max(m, math.Abs(w))
	}
	return d / m
}

// TestGNSiLU checks GNSiLU (the C loops on a cgo build) and GNSiLUGo against the float64 reference,
// forward and backward, on fresh random groups of several shapes (hw not a multiple of 8 included);
// tolerance 1e-5 relative to each output's largest value.
func TestGNSiLU(t *testing.T) {
	t.Logf("C loops: %v", useC())
	r := rand.New(rand.NewPCG(21, 22))
	for _, sh := range [][2]int{{1, 5}, {4, 64}, {8, 1024}, {3, 49}, {16, 7}} {
		c := newGNCase(r, sh[0], sh[1])
		y64, sig64, dx64, dg64, db64 := c.ref()
		for _, impl := range []struct {
			name string
			fwd  func(x, y, sig, gamma, beta []float32, hw int, mean, rstd float32)
			bwd  func(x, sig, gy, dx, gamma, beta []float32, hw int, mean, rstd float32, dgamma, dbeta []float32)
		}{{"GNSiLU", GNSiLU, GNSiLUGrad}, {"GNSiLUGo", GNSiLUGo, GNSiLUGradGo}} {
			n, cg := len(c.x), len(c.gamma)
			y, sig, y2 := make([]float32, n), make([]float32, n), make([]float32, n)
			impl.fwd(c.x, y, sig, c.gamma, c.beta, c.hw, float32(c.mean), float32(c.rstd))
			impl.fwd(c.x, y2, nil, c.gamma, c.beta, c.hw, float32(c.mean), float32(c.rstd))
			dx, dg, db := make([]float32, n), make([]float32, cg), make([]float32, cg)
			impl.bwd(c.x, sig, c.gy, dx, c.gamma, c.beta, c.hw, float32(c.mean), float32(c.rstd), dg, db)
			for _, chk := range []struct {
				what string
				got  []float32
				want []float64
			}{{"y", y, y64}, {"y (no sig)", y2, y64}, {"sig", sig, sig64}, {"dx", dx, dx64}, {"dγ", dg, dg64}, {"dβ", db, db64}} {
				if e := relErr(chk.got, chk.want); e > 1e-5 || math.IsNaN(e) {
					t.Errorf("%s cg=%d hw=%d: %s relative error %.3g > 1e-5", impl.name, sh[0], sh[1], chk.what, e)
				}
			}
		}
	}
}

func benchGN(b *testing.B, fwd func(x, y, sig, gamma, beta []float32, hw int, mean, rstd float32)) {
	c := newGNCase(rand.New(rand.NewPCG(1, 2)), 4, 1024)
	y, sig := make([]float32, len(c.x)), make([]float32, len(c.x))
	b.SetBytes(int64(4 * len(c.x)))
	for b.Loop() {
		fwd(c.x, y, sig, c.gamma, c.beta, c.hw, float32(c.mean), float32(c.rstd))
	}
}

func BenchmarkGNSiLU(b *testing.B)   { benchGN(b, GNSiLU) }
func BenchmarkGNSiLUGo(b *testing.B) { benchGN(b, GNSiLUGo) }

// TestSum64 compares Sum64 (C on a cgo build) and Sum64Go with a plain float64 sum on random data of
// several lengths (relative to Σ|v|, 1e-12).
func TestSum64(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, n := range []int{1, 3, 8, 17, 64, 1000, 4096} {
		v := make([]float32, n)
		var want, abs float64
		for i := range v {
			v[i] = float32(r.NormFloat64() + 0.3)
			want += float64(v[i])
			abs += math.Abs(float64(v[i]))
		}
		for name, f := range map[string]func([]float32) float64{"Sum64": Sum64, "Sum64Go": Sum64Go} {
			if got := f(v); math.Abs(got-want) > 1e-12*abs {
				t.Errorf("%s of %d values = %v, want %v", name, n, got, want)
			}
		}
	}
	if Sum64(nil) != 0 {
		t.Errorf("Sum64(nil) != 0")
	}
}

// TestGroupStats compares GroupStats (C on a cgo build) and GroupStatsGo with two-pass float64
// statistics, on values with a large mean (where a one-pass sum of squares would lose precision).
func TestGroupStats(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, n := range []int{1, 5, 64, 1000, 4096} {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(100 + 0.5*r.NormFloat64())
		}
		var s, q float64
		for _, x := range v {
			s += float64(x)
		}
		mean := s / float64(n)
		for _, x := range v {
			q += (float64(x) - mean) * (float64(x) - mean)
		}
		rstd := 1 / math.Sqrt(q/float64(n)+1e-5)
		for name, f := range map[string]func([]float32, float64) (float64, float64){"GroupStats": GroupStats, "GroupStatsGo": GroupStatsGo} {
			m, rs := f(v, 1e-5)
			if math.Abs(m-mean) > 1e-12*math.Abs(mean) || math.Abs(rs-rstd) > 1e-9*rstd {
				t.Errorf("%s of %d values: (%v, %v), want (%v, %v)", name, n, m, rs, mean, rstd)
			}
		}
	}
}
