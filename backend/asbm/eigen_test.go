package asbm_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"asbm/backend/asbm"
)

// randOrthogonal returns a d×d orthogonal matrix (Gram–Schmidt of a Gaussian matrix).
func randOrthogonal(r *rand.Rand, d int) [][]float64 {
	q := make([][]float64, d)
	for i := range q {
		v := make([]float64, d)
		for j := range v {
			v[j] = r.NormFloat64()
		}
		for _, u := range q[:i] {
			var c float64
			for j := range v {
				c += v[j] * u[j]
			}
			for j := range v {
				v[j] -= c * u[j]
			}
		}
		var n float64
		for _, x := range v {
			n += x * x
		}
		for j := range v {
			v[j] /= math.Sqrt(n)
		}
		q[i] = v
	}
	return q
}

// TestSymEigenvalues: Jacobi recovers the spectrum of Q diag(λ) Qᵀ.
func TestSymEigenvalues(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 3))
	for _, d := range []int{1, 2, 7, 30} {
		q := randOrthogonal(r, d)
		lam := make([]float64, d)
		for i := range lam {
			lam[i] = 10*r.Float64() - 3
		}
		a := make([]float64, d*d)
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				for k := 0; k < d; k++ {
					a[i*d+j] += q[k][i] * lam[k] * q[k][j]
				}
			}
		}
		got := asbm.SymEigenvalues(a, d)
		slices.Sort(got)
		slices.Sort(lam)
		for i := range lam {
			near(t, fmt.Sprintf("d=%d λ_%d", d, i), got[i], lam[i], 1e-9)
		}
	}
}

// sampleCov is the plain covariance (n−1 denominator) of rows of width d.
func sampleCov(x []float32, n, d int) []float64 {
	mu := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mu[j] += float64(x[i*d+j]) / float64(n)
		}
	}
	c := make([]float64, d*d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			for k := 0; k < d; k++ {
				c[j*d+k] += (float64(x[i*d+j]) - mu[j]) * (float64(x[i*d+k]) - mu[k]) / float64(n-1)
			}
		}
	}
	return c
}

// TestLambdaMax: the 2×2 closed form λ = (a+c)/2 + √(((a−c)/2)² + b²) on the sample covariance, and the
// Lanczos path (d > 128) against Jacobi on the explicitly formed covariance, for a spiked spectrum and
// for pure noise (a Marchenko–Pastur bulk, the prior case of the terminal check).
func TestLambdaMax(t *testing.T) {
	noise := asbm.NewNoise(3)
	x := noise.Normal(2 * 500)
	for i := 0; i < 500; i++ { // correlate the coordinates
		x[2*i+1] = 0.6*x[2*i] + 0.5*x[2*i+1] + 3
	}
	c := sampleCov(x, 500, 2)
	want := (c[0]+c[3])/2 + math.Sqrt((c[0]-c[3])*(c[0]-c[3])/4+c[1]*c[1])
	got, err := asbm.LambdaMax(x, 500, 2)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "2-D λ_max", got, want, 1e-9*want)

	for _, spike := range []float64{3, 1} {
		const n, d = 1500, 160
		x := noise.Normal(n * d)
		for i := 0; i < n; i++ { // a spike of variance spike² along coordinate 0 (1 = no spike)
			x[i*d] *= float32(spike)
		}
		want := asbm.SymEigenvalues(sampleCov(x, n, d), d)
		wmax := slices.Max(want)
		got, err := asbm.LambdaMax(x, n, d)
		if err != nil {
			t.Fatal(err)
		}
		near(t, fmt.Sprintf("Lanczos λ_max (spike %v)", spike), got, wmax, 1e-6*wmax)
	}
	if _, err := asbm.LambdaMax(make([]float32, 5), 2, 3); err == nil {
		t.Error("LambdaMax with a wrong length: want an error")
	}
}

// TestTerminalCheck compares the radial statistics with a direct computation and checks the verdicts on
// samples that are clearly too wide or too narrow.
func TestTerminalCheck(t *testing.T) {
	const n, d = 4000, 3
	for _, c := range []struct {
		scale         float64
		eigen, radial bool
		sigmaP        float64
	}{{1.2, false, false, 1}, {0.85, true, false, 1}, {1.2 * 2, false, false, 2}, {0.85 * 2, true, false, 2}} {
		x := asbm.NewNoise(4).Normal(n * d)
		for i := range x {
			x[i] *= float32(c.scale)
		}
		ts, err := asbm.TerminalCheck(x, d, asbm.Prior{SigmaP: c.sigmaP}, asbm.NewNoise(5), nil)
		if err != nil {
			t.Fatal(err)
		}
		var m, m2 float64
		for i := 0; i < n; i++ {
			var s float64
			for _, v := range x[i*d : (i+1)*d] {
				s += float64(v) * float64(v)
			}
			m += s / n
			m2 += s * s / n
		}
		s2 := c.sigmaP * c.sigmaP
		near(t, "mean ‖x‖²", ts.MeanSqNorm, m, 1e-9*m)
		near(t, "var ‖x‖²", ts.VarSqNorm, m2-m*m, 1e-8*m2)
		near(t, "mean error", ts.MeanErr, math.Abs(m-d*s2)/(d*s2), 1e-9)
		near(t, "var error", ts.VarErr, math.Abs(m2-m*m-2*d*s2*s2)/(2*d*s2*s2), 1e-8)
		lam, _ := asbm.LambdaMax(x, n, d)
		near(t, "λ_max", ts.LambdaMax, lam, 1e-12*lam)
		if ts.EigenPass != c.eigen || ts.RadialPass != c.radial || ts.Pass != (c.eigen && c.radial) {
			t.Errorf("scale %v σ_p %v: verdicts %+v, want eigen %v radial %v", c.scale, c.sigmaP, ts, c.eigen, c.radial)
		}
		// λ_max of n prior samples is ≈ σ_p²(1+√(d/n))² (Marchenko–Pastur edge).
		mp := s2 * math.Pow(1+math.Sqrt(float64(d)/n), 2)
		near(t, "prior λ_max", ts.LambdaPrior, mp, 0.08*mp)
	}
}

// TestTerminalCheckPasses: samples whitened to an exactly identity sample covariance have λ_max = 1,
// below the Marchenko–Pastur edge of the prior samples, and Gaussian radial statistics, so they pass.
func TestTerminalCheckPasses(t *testing.T) {
	const n, d = 20000, 3
	x := asbm.NewNoise(6).Normal(n * d)
	c := sampleCov(x, n, d)
	// Cholesky c = L Lᵀ, then x ← L⁻¹(x − μ).
	l := make([]float64, d*d)
	for i := 0; i < d; i++ {
		for j := 0; j <= i; j++ {
			s := c[i*d+j]
			for k := 0; k < j; k++ {
				s -= l[i*d+k] * l[j*d+k]
			}
			if i == j {
				l[i*d+i] = math.Sqrt(s)
			} else {
				l[i*d+j] = s / l[j*d+j]
			}
		}
	}
	mu := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mu[j] += float64(x[i*d+j]) / n
		}
	}
	for i := 0; i < n; i++ {
		y := make([]float64, d)
		for j := 0; j < d; j++ {
			s := float64(x[i*d+j]) - mu[j]
			for k := 0; k < j; k++ {
				s -= l[j*d+k] * y[k]
			}
			y[j] = s / l[j*d+j]
		}
		for j := range y {
			x[i*d+j] = float32(y[j])
		}
	}
	ts, err := asbm.TerminalCheck(x, d, asbm.DefaultPrior(), asbm.NewNoise(7), nil)
	if err != nil {
		t.Fatal(err)
	}
	near(t, "whitened λ_max", ts.LambdaMax, 1, 1e-5)
	if !ts.Pass {
		t.Errorf("whitened Gaussian samples fail the terminal check: %+v", ts)
	}
}
