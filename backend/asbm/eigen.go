package asbm

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// denseEigenMax is the largest dimension for which LambdaMax forms the covariance and diagonalises it;
// above it LambdaMax runs Lanczos on the data matrix and never forms the d×d covariance.
const denseEigenMax = 128

// lanczosSteps is the Krylov dimension of the large-d path. The extreme Ritz value of a Marchenko–
// Pastur-like spectrum converges like 1/k², so 100 steps leave a relative error far below the gap the
// terminal check cares about; both λ_max of X_1 and of the prior samples are computed the same way.
const lanczosSteps = 100

// LambdaMax is the largest eigenvalue of the sample covariance Σ = X_cᵀX_c/(n−1) of the n rows of x
// (width d), X_c the centred data (runner.py cov_eigenspectrum_test). For d ≤ 128 it diagonalises Σ by
// cyclic Jacobi; above, it runs Lanczos with full reorthogonalisation on v ↦ X_cᵀ(X_c v)/(n−1).
func LambdaMax(x []float32, n, d int) (float64, error) {
	if n < 2 || d < 1 || len(x) != n*d {
		return 0, fmt.Errorf("LambdaMax: need n ≥ 2 rows of width d ≥ 1 in %d values, got n=%d d=%d", len(x), n, d)
	}
	mu := make([]float64, d)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			mu[j] += float64(x[i*d+j])
		}
	}
	for j := range mu {
		mu[j] /= float64(n)
	}
	if d <= denseEigenMax {
		cov := make([]float64, d*d)
		row := make([]float64, d)
		for i := 0; i < n; i++ {
			for j := 0; j < d; j++ {
				row[j] = float64(x[i*d+j]) - mu[j]
			}
			for j := 0; j < d; j++ {
				for k := j; k < d; k++ {
					cov[j*d+k] += row[j] * row[k]
				}
			}
		}
		for j := 0; j < d; j++ {
			for k := j; k < d; k++ {
				cov[j*d+k] /= float64(n - 1)
				cov[k*d+j] = cov[j*d+k]
			}
		}
		return maxOf(SymEigenvalues(cov, d)), nil
	}
	// Matrix-free operator v ↦ X_cᵀ(X_c v)/(n−1).
	y := make([]float64, n)
	op := func(v, out []float64) {
		var mv float64
		for j := range v {
			mv += mu[j] * v[j]
		}
		for i := 0; i < n; i++ {
			var s float64
			r := x[i*d : (i+1)*d]
			for j, xv := range r {
				s += float64(xv) * v[j]
			}
			y[i] = s - mv
		}
		clear(out)
		var sy float64
		for i := 0; i < n; i++ {
			yi := y[i]
			sy += yi
			r := x[i*d : (i+1)*d]
			for j, xv := range r {
				out[j] += float64(xv) * yi
			}
		}
		for j := range out {
			out[j] = (out[j] - mu[j]*sy) / float64(n-1)
		}
	}
	return lanczosMax(op, d, min(d, lanczosSteps)), nil
}

// lanczosMax returns the largest Ritz value of the symmetric operator op after at most k Lanczos steps
// with full reorthogonalisation, from a fixed pseudo-random start (so it draws nothing from the
// training noise and is reproducible).
func lanczosMax(op func(v, out []float64), d, k int) float64 {
	r := rand.New(rand.NewPCG(1, 2))
	q := make([]float64, d)
	for j := range q {
		q[j] = 2*r.Float64() - 1
	}
	scale(q, 1/norm(q))
	basis := [][]float64{q}
	var alphas, betas []float64
	w := make([]float64, d)
	for it := 0; it < k; it++ {
		qj := basis[it]
		op(qj, w)
		a := dot(w, qj)
		alphas = append(alphas, a)
		// Full reorthogonalisation, twice ("twice is enough"), replaces the three-term recurrence's
		// subtraction and keeps the basis orthogonal in floating point.
		for pass := 0; pass < 2; pass++ {
			for _, b := range basis {
				c := dot(w, b)
				for j := range w {
					w[j] -= c * b[j]
				}
			}
		}
		bt := norm(w)
		if it == k-1 || bt <= 1e-12*math.Max(math.Abs(a), 1e-300) {
			break
		}
		betas = append(betas, bt)
		next := append([]float64(nil), w...)
		scale(next, 1/bt)
		basis = append(basis, next)
	}
	m := len(alphas)
	tri := make([]float64, m*m)
	for i := 0; i < m; i++ {
		tri[i*m+i] = alphas[i]
		if i+1 < m {
			tri[i*m+i+1], tri[(i+1)*m+i] = betas[i], betas[i]
		}
	}
	return maxOf(SymEigenvalues(tri, m))
}

// SymEigenvalues returns the eigenvalues (unsorted) of the symmetric d×d row-major matrix a by cyclic
// Jacobi rotations; a is not modified.
func SymEigenvalues(a []float64, d int) []float64 {
	m := append([]float64(nil), a...)
	for sweep := 0; sweep < 100; sweep++ {
		var off, diag float64
		for p := 0; p < d; p++ {
			diag += m[p*d+p] * m[p*d+p]
			for q := p + 1; q < d; q++ {
				off += m[p*d+q] * m[p*d+q]
			}
		}
		if off <= 1e-30*diag || off == 0 {
			break
		}
		for p := 0; p < d; p++ {
			for q := p + 1; q < d; q++ {
				apq := m[p*d+q]
				if apq == 0 {
					continue
				}
				theta := (m[q*d+q] - m[p*d+p]) / (2 * apq)
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < d; k++ { // columns p, q
					kp, kq := m[k*d+p], m[k*d+q]
					m[k*d+p], m[k*d+q] = c*kp-s*kq, s*kp+c*kq
				}
				for k := 0; k < d; k++ { // rows p, q
					pk, qk := m[p*d+k], m[q*d+k]
					m[p*d+k], m[q*d+k] = c*pk-s*qk, s*pk+c*qk
				}
			}
		}
	}
	ev := make([]float64, d)
	for i := range ev {
		ev[i] = m[i*d+i]
	}
	return ev
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func norm(a []float64) float64 { return math.Sqrt(dot(a, a)) }

func scale(a []float64, c float64) {
	for i := range a {
		a[i] *= c
	}
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
