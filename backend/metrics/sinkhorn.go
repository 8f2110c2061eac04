package metrics

import (
	"fmt"
	"math"
)

// Plan is an entropic transport plan between the points x0 (rows i) and x1 (columns j) with the
// statistics ASBM compares against its learned coupling (asbm.md §6.3 item 2). All expectations are
// under the plan: E[h] = Σ_ij P_ij h(x0_i, x1_j).
type Plan struct {
	N0, N1, D int
	// P is the plan, N0×N1 row-major; its entries sum to 1.
	P []float64
	// Dot is E[x0·x1]; DotDim[k] is E[x0_k x1_k].
	Dot    float64
	DotDim []float64
	// CrossCov is the mean over coordinates of CrossCovDim[k] = Cov(x0_k, x1_k) under the plan,
	// the quantity of the Gaussian closed form c of asbm.md §6.2.
	CrossCov    float64
	CrossCovDim []float64
	// Transport is E‖x0 − x1‖²; TransportDim[k] is E(x0_k − x1_k)².
	Transport    float64
	TransportDim []float64
	// Residual is E‖x1 − α1 x0‖², the base-transition cost without 1/(2σ1²); ResidualDim per
	// coordinate.
	Residual    float64
	ResidualDim []float64
	// MarginalErr0 and MarginalErr1 are the L1 errors Σ_i |Σ_j P_ij − 1/N0| and
	// Σ_j |Σ_i P_ij − 1/N1| of the marginals: how far Sinkhorn is from convergence.
	MarginalErr0, MarginalErr1 float64
	// Iters is the number of Sinkhorn iterations run (fewer than asked when it converged).
	Iters int
}

// maxPlanEntries bounds N0·N1: the solver keeps the cost and a kernel, 16 bytes an entry.
const maxPlanEntries = 1 << 26

// sinkhornTol is the L1 marginal error at which SinkhornSB stops early.
const sinkhornTol = 1e-10

// SinkhornSB solves the discrete static Schrödinger bridge between the empirical measures of x0
// (data, n0×d) and x1 (prior samples, n1×d) for a VP base (asbm.md §6.2, §6.3 item 2): the
// entropic OT plan with uniform marginals for the cost C_ij = ‖x1_j − α1 x0_i‖²/(2σ1²) and
// regularisation ε = eps (ε = 1 is exactly the SB of the base; sigma1sq is σ1² = σ_v²(1 − α1²)).
//
// It runs log-stabilised Sinkhorn (Schmitzer 2019, "Stabilized sparse scaling algorithms"): the
// dual potentials f, g are kept in the log domain and the scaling iterations u ← a/(Kv),
// v ← b/(Kᵀu) run on the stabilised kernel K_ij = exp((f_i + g_j − C_ij)/ε), absorbing u and v into
// f and g every few iterations or as soon as they leave [e⁻⁵⁰, e⁵⁰], and falling back to an exact
// log-sum-exp update when a row or column of K underflows. The iterates are those of plain
// log-domain Sinkhorn, but an iteration costs two matrix–vector products instead of 2·n0·n1
// exponentials. It does at most iters iterations (one iteration updates both u and v) and stops
// when the L1 marginal error is below 1e-10. Memory: 16·n0·n1 bytes; n0·n1 ≤ 2^26.
func SinkhornSB(x0, x1 []float32, d int, alpha1, sigma1sq, eps float64, iters int) (*Plan, error) {
	n0, n1 := rows(x0, d), rows(x1, d)
	switch {
	case d < 1:
		return nil, fmt.Errorf("metrics: SinkhornSB: dimension %d < 1", d)
	case n0 < 0 || n1 < 0:
		return nil, fmt.Errorf("metrics: SinkhornSB: x0 (%d values) and x1 (%d values) must hold at least one point of %d values each", len(x0), len(x1), d)
	case n0*n1 > maxPlanEntries:
		return nil, fmt.Errorf("metrics: SinkhornSB: %d×%d points need %d MiB; subsample to n0·n1 ≤ %d", n0, n1, 16*n0*n1>>20, maxPlanEntries)
	case !(sigma1sq > 0) || math.IsInf(sigma1sq, 0):
		return nil, fmt.Errorf("metrics: SinkhornSB: σ1² = %v must be positive and finite", sigma1sq)
	case !(eps > 0) || math.IsInf(eps, 0):
		return nil, fmt.Errorf("metrics: SinkhornSB: ε = %v must be positive and finite", eps)
	case math.IsNaN(alpha1) || math.IsInf(alpha1, 0):
		return nil, fmt.Errorf("metrics: SinkhornSB: α1 = %v must be finite", alpha1)
	case iters < 1:
		return nil, fmt.Errorf("metrics: SinkhornSB: iters = %d must be ≥ 1", iters)
	}
	for _, x := range [][]float32{x0, x1} {
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("metrics: SinkhornSB: point %d has a non-finite coordinate %v", i/d, v)
			}
		}
	}
	s := &sinkhorn{n0: n0, n1: n1, eps: eps}
	s.cost(x0, x1, d, alpha1, sigma1sq)
	s.solve(iters)
	return s.plan(x0, x1, d, alpha1), nil
}

// sinkhorn is the solver state; see SinkhornSB.
type sinkhorn struct {
	n0, n1 int
	eps    float64
	c, k   []float64 // cost and stabilised kernel, n0×n1
	f, g   []float64 // dual potentials (log domain)
	u, v   []float64 // scalings on top of K
	iters  int
}

// cost fills C_ij = ‖x1_j − α1 x0_i‖²/(2σ1²).
func (s *sinkhorn) cost(x0, x1 []float32, d int, alpha1, sigma1sq float64) {
	s.c = make([]float64, s.n0*s.n1)
	scale := 1 / (2 * sigma1sq)
	y := make([]float64, d)
	for i := range s.n0 {
		for k := range d {
			y[k] = alpha1 * float64(x0[i*d+k])
		}
		row := s.c[i*s.n1 : (i+1)*s.n1]
		for j := range row {
			p := x1[j*d : (j+1)*d]
			sum := 0.0
			for k, yk := range y {
				diff := float64(p[k]) - yk
				sum += diff * diff
			}
			row[j] = sum * scale
		}
	}
}

// logUpdate does one exact log-domain Sinkhorn iteration from the current potentials:
// g_j = ε log b_j − ε LSE_i((f_i − C_ij)/ε), then f_i = ε log a_i − ε LSE_j((g_j − C_ij)/ε).
// It resets the scalings to 1 and rebuilds K. Unlike the scaling iteration it cannot underflow.
func (s *sinkhorn) logUpdate() {
	n0, n1, eps := s.n0, s.n1, s.eps
	// g: a column-wise LSE, done row by row so the matrix is read in order: first the column
	// maxima, then the sums of exponentials.
	m := make([]float64, n1)
	for j := range m {
		m[j] = math.Inf(-1)
	}
	for i := range n0 {
		row := s.c[i*n1 : (i+1)*n1]
		for j, c := range row {
			m[j] = max(m[j], s.f[i]-c)
		}
	}
	sum := make([]float64, n1)
	for i := range n0 {
		row := s.c[i*n1 : (i+1)*n1]
		for j, c := range row {
			sum[j] += math.Exp((s.f[i] - c - m[j]) / eps)
		}
	}
	lb := -math.Log(float64(n1))
	for j := range s.g {
		s.g[j] = eps*lb - m[j] - eps*math.Log(sum[j])
	}
	la := -math.Log(float64(n0))
	for i := range n0 {
		row := s.c[i*n1 : (i+1)*n1]
		mi := math.Inf(-1)
		for j, c := range row {
			mi = max(mi, s.g[j]-c)
		}
		si := 0.0
		for j, c := range row {
			si += math.Exp((s.g[j] - c - mi) / eps)
		}
		s.f[i] = eps*la - mi - eps*math.Log(si)
	}
	s.rebuild()
}

// absorb moves the scalings into the potentials and rebuilds K.
func (s *sinkhorn) absorb() {
	for i, u := range s.u {
		s.f[i] += s.eps * math.Log(u)
	}
	for j, v := range s.v {
		s.g[j] += s.eps * math.Log(v)
	}
	s.rebuild()
}

// rebuild sets K_ij = exp((f_i + g_j − C_ij)/ε) and u = v = 1.
func (s *sinkhorn) rebuild() {
	n1 := s.n1
	for i := range s.n0 {
		row := s.c[i*n1 : (i+1)*n1]
		krow := s.k[i*n1 : (i+1)*n1]
		for j, c := range row {
			krow[j] = math.Exp((s.f[i] + s.g[j] - c) / s.eps)
		}
	}
	for i := range s.u {
		s.u[i] = 1
	}
	for j := range s.v {
		s.v[j] = 1
	}
}

// scale sets dst_i = target / Σ_j K_ij w_j (rows, when trans is false) or dst_j = target / Σ_i K_ij w_i
// (columns), and reports whether every result is finite and inside [e⁻⁵⁰, e⁵⁰], and the L1
// marginal error of the side being fixed before the update (Σ |dst_old · (K w) − target|).
func (s *sinkhorn) scale(dst, w []float64, trans bool, target float64) (ok bool, err float64) {
	n1 := s.n1
	kw := make([]float64, len(dst))
	if !trans {
		for i := range s.n0 {
			krow := s.k[i*n1 : (i+1)*n1]
			sum := 0.0
			for j, kij := range krow {
				sum += kij * w[j]
			}
			kw[i] = sum
		}
	} else {
		for i := range s.n0 {
			wi := w[i]
			krow := s.k[i*n1 : (i+1)*n1]
			for j, kij := range krow {
				kw[j] += kij * wi
			}
		}
	}
	const lo, hi = 1.9287498479639178e-22, 5.184705528587072e+21 // e^-50, e^50
	ok = true
	for i, x := range kw {
		err += math.Abs(dst[i]*x - target)
		dst[i] = target / x
		if !(dst[i] >= lo && dst[i] <= hi) {
			ok = false
		}
	}
	return ok, err
}

// solve runs the stabilised iterations (see SinkhornSB).
func (s *sinkhorn) solve(iters int) {
	s.f = make([]float64, s.n0)
	s.g = make([]float64, s.n1)
	s.u = make([]float64, s.n0)
	s.v = make([]float64, s.n1)
	s.k = make([]float64, s.n0*s.n1)
	a, b := 1/float64(s.n0), 1/float64(s.n1)
	// Start from one exact log-domain step: with f = g = 0 the raw kernel exp(−C/ε) could
	// underflow entirely for small ε.
	s.logUpdate()
	s.iters = 1
	const absorbEvery = 20
	for s.iters < iters {
		s.iters++
		okU, rowErr := s.scale(s.u, s.v, false, a)
		if rowErr < sinkhornTol && s.iters > 2 {
			break // the row update just made was already below tolerance
		}
		okV, _ := s.scale(s.v, s.u, true, b)
		if okU && okV && s.iters%absorbEvery != 0 {
			continue
		}
		if !finiteAll(s.u) || !finiteAll(s.v) {
			// A row or column of K underflowed (or overflowed): drop this step's scalings
			// and take an exact step instead.
			for i := range s.u {
				s.u[i] = 1
			}
			for j := range s.v {
				s.v[j] = 1
			}
			s.logUpdate()
			continue
		}
		s.absorb()
	}
	s.absorb()
}

// finiteAll reports whether every x is finite and positive.
func finiteAll(x []float64) bool {
	for _, v := range x {
		if !(v > 0) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// plan computes the statistics of the converged plan P = K (the scalings are absorbed).
func (s *sinkhorn) plan(x0, x1 []float32, d int, alpha1 float64) *Plan {
	n0, n1 := s.n0, s.n1
	p := &Plan{N0: n0, N1: n1, D: d, P: s.k, Iters: s.iters,
		DotDim: make([]float64, d), CrossCovDim: make([]float64, d), TransportDim: make([]float64, d), ResidualDim: make([]float64, d)}
	// Normalise the total mass to 1 (it is 1 up to the remaining marginal error).
	total := 0.0
	for _, v := range p.P {
		total += v
	}
	for i := range p.P {
		p.P[i] /= total
	}
	r := make([]float64, n0) // row sums
	c := make([]float64, n1) // column sums
	y := make([]float64, n0*d)
	for i := range n0 {
		prow := p.P[i*n1 : (i+1)*n1]
		yi := y[i*d : (i+1)*d]
		for j, pij := range prow {
			r[i] += pij
			c[j] += pij
			for k := range d {
				yi[k] += pij * float64(x1[j*d+k]) // y = P·x1
			}
		}
	}
	for i := range r {
		p.MarginalErr0 += math.Abs(r[i] - 1/float64(n0))
	}
	for j := range c {
		p.MarginalErr1 += math.Abs(c[j] - 1/float64(n1))
	}
	for k := range d {
		var dot, m0, m1, sq0, sq1 float64
		for i := range n0 {
			v := float64(x0[i*d+k])
			dot += v * y[i*d+k]
			m0 += r[i] * v
			sq0 += r[i] * v * v
		}
		for j := range n1 {
			v := float64(x1[j*d+k])
			m1 += c[j] * v
			sq1 += c[j] * v * v
		}
		p.DotDim[k] = dot
		p.CrossCovDim[k] = dot - m0*m1
		p.TransportDim[k] = sq0 + sq1 - 2*dot
		p.ResidualDim[k] = sq1 + alpha1*alpha1*sq0 - 2*alpha1*dot
		p.Dot += dot
		p.CrossCov += p.CrossCovDim[k] / float64(d)
		p.Transport += p.TransportDim[k]
		p.Residual += p.ResidualDim[k]
	}
	return p
}
