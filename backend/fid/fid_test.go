package fid

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// randRotation returns a random d×d orthogonal matrix (row-major), by Gram–Schmidt on normal draws.
func randRotation(r *rand.Rand, d int) []float64 {
	q := make([]float64, d*d)
	for i := range d {
		row := q[i*d : (i+1)*d]
		for {
			for j := range row {
				row[j] = r.NormFloat64()
			}
			for k := range i {
				prev := q[k*d : (k+1)*d]
				var dot float64
				for j := range row {
					dot += row[j] * prev[j]
				}
				for j := range row {
					row[j] -= dot * prev[j]
				}
			}
			var nrm float64
			for _, v := range row {
				nrm += v * v
			}
			if nrm > 1e-6 {
				for j := range row {
					row[j] /= math.Sqrt(nrm)
				}
				break
			}
		}
	}
	return q
}

// rotatedDiag returns Qᵀ·diag(ev)·Q.
func rotatedDiag(q, ev []float64) []float64 {
	d := len(ev)
	c := make([]float64, d*d)
	for i := range d {
		for j := range d {
			for k := range d {
				c[i*d+j] += q[k*d+i] * ev[k] * q[k*d+j]
			}
		}
	}
	return c
}

// TestFrechetDistanceDiagonalClosedForm: covariances diagonal in one common (random) basis
// commute, and then the distance is ‖μa − μb‖² + Σ(√λa − √λb)² (independent of any matrix root).
func TestFrechetDistanceDiagonalClosedForm(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 1))
	for _, d := range []int{1, 3, 16, 64} {
		q := randRotation(r, d)
		ea, eb := make([]float64, d), make([]float64, d)
		ma, mb := make([]float64, d), make([]float64, d)
		var want float64
		for i := range d {
			ea[i], eb[i] = 0.1+3*r.Float64(), 0.1+3*r.Float64()
			ma[i], mb[i] = r.NormFloat64(), r.NormFloat64()
			want += (ma[i]-mb[i])*(ma[i]-mb[i]) + (math.Sqrt(ea[i])-math.Sqrt(eb[i]))*(math.Sqrt(ea[i])-math.Sqrt(eb[i]))
		}
		a := &Stats{N: 100, Dim: d, Mean: ma, Cov: rotatedDiag(q, ea)}
		b := &Stats{N: 100, Dim: d, Mean: mb, Cov: rotatedDiag(q, eb)}
		got, err := FrechetDistance(a, b)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-9*(1+want) {
			t.Errorf("d=%d: distance %.12g, closed form %.12g", d, got, want)
		}
	}
}

// TestFrechetDistance2x2NonCommuting checks general (non-commuting) covariances in 2-D against the
// closed form Tr((A^{1/2} B A^{1/2})^{1/2}) = √(Tr(AB) + 2√(det A·det B)): the eigenvalues λ1, λ2
// of AB are those of the symmetric product, and (√λ1 + √λ2)² = λ1 + λ2 + 2√(λ1λ2).
func TestFrechetDistance2x2NonCommuting(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 1))
	spd := func() []float64 {
		// L·Lᵀ with a random lower-triangular L with positive diagonal.
		l00, l10, l11 := 0.2+r.Float64()*2, r.NormFloat64(), 0.2+r.Float64()*2
		return []float64{l00 * l00, l00 * l10, l00 * l10, l10*l10 + l11*l11}
	}
	for range 50 {
		A, B := spd(), spd()
		ma := []float64{r.NormFloat64(), r.NormFloat64()}
		mb := []float64{r.NormFloat64(), r.NormFloat64()}
		trAB := A[0]*B[0] + A[1]*B[2] + A[2]*B[1] + A[3]*B[3]
		detA, detB := A[0]*A[3]-A[1]*A[2], B[0]*B[3]-B[1]*B[2]
		want := (ma[0]-mb[0])*(ma[0]-mb[0]) + (ma[1]-mb[1])*(ma[1]-mb[1]) +
			A[0] + A[3] + B[0] + B[3] - 2*math.Sqrt(trAB+2*math.Sqrt(detA*detB))
		got, err := FrechetDistance(&Stats{N: 2, Dim: 2, Mean: ma, Cov: A}, &Stats{N: 2, Dim: 2, Mean: mb, Cov: B})
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-want) > 1e-9*(1+want) {
			t.Fatalf("A=%v B=%v: distance %.12g, closed form %.12g", A, B, got, want)
		}
	}
}

// sampleGaussian draws n rows of N(mean, Qᵀ·diag(ev)·Q) as float32.
func sampleGaussian(r *rand.Rand, n int, mean, q, ev []float64) []float32 {
	d := len(mean)
	out := make([]float32, n*d)
	z := make([]float64, d)
	for i := range n {
		for k := range d {
			z[k] = math.Sqrt(ev[k]) * r.NormFloat64()
		}
		for j := range d {
			v := mean[j]
			for k := range d {
				v += q[k*d+j] * z[k]
			}
			out[i*d+j] = float32(v)
		}
	}
	return out
}

// TestFIDSampledGaussians: FID of large samples of two Gaussians approaches the analytic distance.
// With n = 40,000 per side in d = 6 the estimator's bias (≈ Tr terms / n) and spread are a few
// thousandths; the tolerance is 3% of the distance plus 0.02.
func TestFIDSampledGaussians(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 1))
	const d, n = 6, 40000
	q := randRotation(r, d)
	ea, eb := make([]float64, d), make([]float64, d)
	ma, mb := make([]float64, d), make([]float64, d)
	var want float64
	for i := range d {
		ea[i], eb[i] = 0.2+2*r.Float64(), 0.2+2*r.Float64()
		ma[i], mb[i] = r.NormFloat64(), r.NormFloat64()+0.5
		want += (ma[i]-mb[i])*(ma[i]-mb[i]) + (math.Sqrt(ea[i])-math.Sqrt(eb[i]))*(math.Sqrt(ea[i])-math.Sqrt(eb[i]))
	}
	fa := sampleGaussian(r, n, ma, q, ea)
	fb := sampleGaussian(r, n, mb, q, eb)
	got, err := FID(fa, fb, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sampled FID %.4f, analytic %.4f", got, want)
	if math.Abs(got-want) > 0.03*want+0.02 {
		t.Errorf("sampled FID %.4f, analytic %.4f", got, want)
	}
	// The sample statistics themselves: mean and covariance entries within a few standard errors.
	st, err := ComputeStats(fa, d)
	if err != nil {
		t.Fatal(err)
	}
	cov := rotatedDiag(q, ea)
	for j := range d {
		if se := math.Sqrt(cov[j*d+j] / n); math.Abs(st.Mean[j]-ma[j]) > 5*se {
			t.Errorf("mean[%d] = %.4f, want %.4f ± %.4f", j, st.Mean[j], ma[j], 5*se)
		}
		for k := range d {
			se := math.Sqrt((cov[j*d+j]*cov[k*d+k] + cov[j*d+k]*cov[j*d+k]) / n)
			if math.Abs(st.Cov[j*d+k]-cov[j*d+k]) > 5*se {
				t.Errorf("cov[%d,%d] = %.4f, want %.4f ± %.4f", j, k, st.Cov[j*d+k], cov[j*d+k], 5*se)
			}
		}
	}
}

// TestComputeStatsMatchesDefinition checks the mean and the (n−1) covariance against a direct
// float64 double sum, on data with a large common offset (which a one-pass formula would lose).
func TestComputeStatsMatchesDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(44, 1))
	const n, d = 37, 5
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(1000 + r.NormFloat64())
	}
	st, err := ComputeStats(x, d)
	if err != nil {
		t.Fatal(err)
	}
	for j := range d {
		var m float64
		for i := range n {
			m += float64(x[i*d+j])
		}
		m /= n
		if math.Abs(st.Mean[j]-m) > 1e-9 {
			t.Errorf("mean[%d] = %v, want %v", j, st.Mean[j], m)
		}
	}
	for j := range d {
		for k := range d {
			var c float64
			for i := range n {
				c += (float64(x[i*d+j]) - st.Mean[j]) * (float64(x[i*d+k]) - st.Mean[k])
			}
			c /= n - 1
			if math.Abs(st.Cov[j*d+k]-c) > 1e-9 {
				t.Errorf("cov[%d,%d] = %v, want %v", j, k, st.Cov[j*d+k], c)
			}
		}
	}
}

// TestFIDProperties: FID(x, x) = 0, FID is symmetric, a pure shift δ of every row gives exactly
// ‖δ‖² (the covariances are equal), and a larger shift gives a larger FID.
func TestFIDProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 1))
	const n, d = 500, 24
	x := make([]float32, n*d)
	y := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
		y[i] = float32(r.ExpFloat64())
	}
	self, err := FID(x, x, d)
	if err != nil {
		t.Fatal(err)
	}
	if self > 1e-8 {
		t.Errorf("FID(x, x) = %g, want 0", self)
	}
	ab, _ := FID(x, y, d)
	ba, _ := FID(y, x, d)
	if math.Abs(ab-ba) > 1e-9*ab {
		t.Errorf("FID(x, y) = %.12g but FID(y, x) = %.12g", ab, ba)
	}
	dir := make([]float64, d)
	for j := range dir {
		dir[j] = r.NormFloat64()
	}
	prev := 0.0
	for _, s := range []float64{0.25, 0.5, 1, 2} {
		shifted := make([]float32, n*d)
		var norm2 float64
		for j := range d {
			norm2 += s * dir[j] * s * dir[j]
		}
		for i := range n {
			for j := range d {
				shifted[i*d+j] = x[i*d+j] + float32(s*dir[j])
			}
		}
		got, err := FID(x, shifted, d)
		if err != nil {
			t.Fatal(err)
		}
		// float32 rounding of the shifted rows moves the covariance by ~1e-7 relative.
		if math.Abs(got-norm2) > 1e-4*norm2+1e-4 {
			t.Errorf("shift %.2f: FID %.6g, want ‖δ‖² = %.6g", s, got, norm2)
		}
		if got <= prev {
			t.Errorf("shift %.2f: FID %.6g not larger than at the smaller shift (%.6g)", s, got, prev)
		}
		prev = got
	}
}

// TestFIDErrors: bad input is an error with a message, never a panic.
func TestFIDErrors(t *testing.T) {
	ok := []float32{1, 2, 3, 4, 5, 6}
	cases := []struct {
		name string
		a, b []float32
		dim  int
		want string
	}{
		{"zero width", ok, ok, 0, "width"},
		{"ragged", []float32{1, 2, 3}, ok, 2, "whole number"},
		{"one row", []float32{1, 2}, ok, 2, "at least 2"},
		{"NaN", []float32{1, 2, float32(math.NaN()), 4}, ok, 2, "NaN"},
		{"Inf", ok, []float32{1, 2, float32(math.Inf(1)), 4}, 2, "Inf"},
	}
	for _, c := range cases {
		_, err := FID(c.a, c.b, c.dim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	a, _ := ComputeStats(ok, 2)
	b, _ := ComputeStats(ok, 3)
	if _, err := FrechetDistance(a, b); err == nil {
		t.Error("FrechetDistance of widths 2 and 3: no error")
	}
	if _, err := FrechetDistance(nil, a); err == nil {
		t.Error("FrechetDistance(nil, ·): no error")
	}
	if _, err := FrechetDistance(a, &Stats{Dim: 2, Mean: []float64{0, 0}, Cov: []float64{1, 0, 0}}); err == nil {
		t.Error("FrechetDistance with a short covariance: no error")
	}
}
