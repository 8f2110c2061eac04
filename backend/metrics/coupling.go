package metrics

import "math"

// Stats describes a paired coupling (x0_i, x1_i), i < n: the learned ASBM coupling (data point and
// the end of its forward SDE path) or an independent one (asbm.md §6.2 T2, §6.3 items 2 and 7).
// Expectations are sample means (1/n).
type Stats struct {
	N int
	// CrossCov is the mean over coordinates of CrossCovDim[k] = Cov(x0_k, x1_k), to compare with
	// the closed form c of asbm.md §6.2.
	CrossCov    float64
	CrossCovDim []float64
	// Corr is the mean over coordinates of the correlation of x0_k and x1_k.
	Corr float64
	// Dot is E[x0·x1].
	Dot float64
	// Transport is E‖x0 − x1‖².
	Transport float64
	// Residual is E‖x1 − α x0‖² for the α given (α1 of the base: the base-transition cost).
	Residual float64
}

// CouplingStats computes Stats of the pairs (x0_i, x1_i), both n×d, with α for Residual. Every
// number is NaN when the input is malformed (d < 1, unequal or empty point sets).
func CouplingStats(x0, x1 []float32, d int, alpha float64) Stats {
	n := rows(x0, d)
	if n < 0 || len(x1) != len(x0) {
		nan := math.NaN()
		return Stats{N: max(n, 0), CrossCov: nan, Corr: nan, Dot: nan, Transport: nan, Residual: nan}
	}
	s := Stats{N: n, CrossCovDim: make([]float64, d)}
	fn := float64(n)
	for k := range d {
		var m0, m1, dot, sq0, sq1 float64
		for i := range n {
			a, b := float64(x0[i*d+k]), float64(x1[i*d+k])
			m0 += a
			m1 += b
			dot += a * b
			sq0 += a * a
			sq1 += b * b
		}
		m0, m1, dot, sq0, sq1 = m0/fn, m1/fn, dot/fn, sq0/fn, sq1/fn
		cov := dot - m0*m1
		s.CrossCovDim[k] = cov
		s.CrossCov += cov / float64(d)
		s.Corr += cov / math.Sqrt((sq0-m0*m0)*(sq1-m1*m1)) / float64(d)
		s.Dot += dot
		s.Transport += sq0 + sq1 - 2*dot
		s.Residual += sq1 + alpha*alpha*sq0 - 2*alpha*dot
	}
	return s
}

// Straightness measures how straight the trajectories traj are (asbm.md §6.3 item 5). traj[k] holds
// the n×d states at times[k]; the grid is strictly monotone and may be non-uniform; normally
// times[0] = 1 (prior) and times[K] = 0 (data), as a sampler runs. With X_1 = traj[0], X_0 = traj[K]:
//
//	S = Σ_k Δt_k · E‖(X_1 − X_0)/(t_0 − t_K) − (X_{t_k} − X_{t_{k+1}})/(t_k − t_{k+1})‖²,  Δt_k = |t_k − t_{k+1}|,
//
// the rectified-flow straightness (0 exactly for paths at constant velocity; for the usual grid from
// 1 to 0 the first term is X_1 − X_0), and lengthRatio = E Σ_k ‖X_{t_k} − X_{t_{k+1}}‖ / E‖X_1 − X_0‖,
// the mean path length over the mean chord (1 for straight paths). Both are NaN for malformed input
// (fewer than two states, mismatched lengths, a grid that is not strictly monotone or not finite).
func Straightness(traj [][]float32, times []float64, d int) (S, lengthRatio float64) {
	K := len(traj) - 1
	if K < 1 || len(times) != len(traj) {
		return math.NaN(), math.NaN()
	}
	n := rows(traj[0], d)
	if n < 0 {
		return math.NaN(), math.NaN()
	}
	sign := math.Copysign(1, times[0]-times[K])
	for k := range traj {
		if len(traj[k]) != len(traj[0]) || math.IsNaN(times[k]) || math.IsInf(times[k], 0) {
			return math.NaN(), math.NaN()
		}
		if k < K && !(sign*(times[k]-times[k+1]) > 0) {
			return math.NaN(), math.NaN()
		}
	}
	first, last := traj[0], traj[K]
	span := times[0] - times[K]
	chord := make([]float64, n*d) // the constant velocity of the straight path, per point
	for i := range chord {
		chord[i] = (float64(first[i]) - float64(last[i])) / span
	}
	var sum, length float64
	for k := range K {
		a, b := traj[k], traj[k+1]
		dt := times[k] - times[k+1]
		dev := 0.0
		for i := range n {
			seg := 0.0
			for j := i * d; j < (i+1)*d; j++ {
				step := float64(a[j]) - float64(b[j])
				seg += step * step
				e := chord[j] - step/dt
				dev += e * e
			}
			length += math.Sqrt(seg)
		}
		sum += math.Abs(dt) * dev
	}
	dist := 0.0
	for i := range n {
		c := 0.0
		for j := i * d; j < (i+1)*d; j++ {
			c += chord[j] * chord[j]
		}
		dist += math.Sqrt(c) * math.Abs(span)
	}
	return sum / float64(n), length / dist
}
