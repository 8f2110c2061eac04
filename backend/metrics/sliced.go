// Package metrics holds the sample-based measures used to evaluate ASBM models (asbm.md §6.3):
// sliced Wasserstein-2 between point clouds, the discrete static Schrödinger bridge by Sinkhorn,
// statistics of a paired coupling, straightness of trajectories, and the terminal-marginal check
// of stage 1. Points are n×d row-major []float32; everything is computed in float64.
//
// Functions that return plain numbers (no error) return NaN for malformed input (d < 1, a length
// that is not a multiple of d, no points); they never panic.
package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
)

// rows returns the number of d-dimensional points in x, or -1 when x is not a non-empty n×d array.
func rows(x []float32, d int) int {
	if d < 1 || len(x) == 0 || len(x)%d != 0 {
		return -1
	}
	return len(x) / d
}

// SlicedW2 is the sliced Wasserstein-2 distance between the point clouds a and b (n_a×d and n_b×d):
// the square root of the mean, over `projections` random directions θ uniform on the unit sphere,
// of the squared 1-D Wasserstein-2 distance between the projections ⟨θ, a_i⟩ and ⟨θ, b_j⟩ (asbm.md
// §6.3 item 4). The 1-D distance is exact for the empirical measures, ∫₀¹ (F_a⁻¹(u) − F_b⁻¹(u))² du
// over the sorted projections, so unequal counts are matched by quantile. Directions come from a
// PCG generator seeded with seed, so a seed gives the same directions for any inputs. For d = 1 it is
// the exact W2. It returns NaN for malformed input or projections < 1.
func SlicedW2(a, b []float32, d, projections int, seed uint64) float64 {
	na, nb := rows(a, d), rows(b, d)
	if na < 0 || nb < 0 || projections < 1 {
		return math.NaN()
	}
	r := rand.New(rand.NewPCG(seed, 0x5357))
	theta := make([]float64, d)
	pa, pb := make([]float64, na), make([]float64, nb)
	sum := 0.0
	for range projections {
		randomDirection(r, theta)
		project(a, theta, pa)
		project(b, theta, pb)
		slices.Sort(pa)
		slices.Sort(pb)
		sum += w2SquaredSorted(pa, pb)
	}
	return math.Sqrt(sum / float64(projections))
}

// randomDirection fills theta with a uniform unit vector (a normalised Gaussian vector).
func randomDirection(r *rand.Rand, theta []float64) {
	for {
		norm := 0.0
		for k := range theta {
			theta[k] = r.NormFloat64()
			norm += theta[k] * theta[k]
		}
		if norm > 1e-300 {
			norm = math.Sqrt(norm)
			for k := range theta {
				theta[k] /= norm
			}
			return
		}
	}
}

// project writes ⟨theta, x_i⟩ for every row of x into p.
func project(x []float32, theta []float64, p []float64) {
	d := len(theta)
	for i := range p {
		s := 0.0
		for k, t := range theta {
			s += t * float64(x[i*d+k])
		}
		p[i] = s
	}
}

// w2SquaredSorted is ∫₀¹ (F_a⁻¹(u) − F_b⁻¹(u))² du for the empirical measures of the sorted samples
// a and b: the quantile functions are step functions with steps at i/len(a) and j/len(b), so the
// integral is a sum over the merged steps. Merging in integer units of 1/(len(a)·len(b)) keeps the
// step boundaries exact.
func w2SquaredSorted(a, b []float64) float64 {
	na, nb := len(a), len(b)
	if na == nb {
		s := 0.0
		for i := range a {
			diff := a[i] - b[i]
			s += diff * diff
		}
		return s / float64(na)
	}
	// a's i-th step covers [i·nb, (i+1)·nb) and b's j-th covers [j·na, (j+1)·na), in units of
	// 1/(na·nb).
	s := 0.0
	i, j, u := 0, 0, 0
	for i < na && j < nb {
		endA, endB := (i+1)*nb, (j+1)*na
		end := min(endA, endB)
		diff := a[i] - b[j]
		s += diff * diff * float64(end-u)
		u = end
		if endA == end {
			i++
		}
		if endB == end {
			j++
		}
	}
	return s / (float64(na) * float64(nb))
}
