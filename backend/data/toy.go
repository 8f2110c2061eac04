// Package data provides the 2-D toy data sets of asbm.md §6.1 (8gaussians, moons, checkerboard),
// scaled so each coordinate has a variance of order 1–2 like the N(0, I) prior, and a Gaussian
// sampler for tests.
package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Sampler fills dst with len(dst)/dim points (row-major, dim = 2 for the toys) drawn with r. A
// trailing partial row, when len(dst) is not a multiple of dim, is left untouched.
type Sampler func(r *rand.Rand, dst []float32)

// Toy data set parameters (asbm.md §6.1).
const (
	// Modes8Radius and Modes8Std: 8 modes on a circle of radius 2, each N(mode, 0.1² I), so each
	// coordinate has mean 0 and variance R²/2 + s² = 2.01.
	Modes8Radius = 2.0
	Modes8Std    = 0.1
	// MoonsNoise is the standard deviation of the Gaussian noise added to the unit half circles
	// (scikit-learn's make_moons convention) before centring and scaling.
	MoonsNoise = 0.05
	// MoonsScale multiplies the centred moons: √3 makes the variance summed over both coordinates
	// 3·(0.7525 + 0.2467) ≈ 3.0, i.e. x var ≈ 2.26, y var ≈ 0.74. The moons are three times as
	// wide as tall, so no isotropic scale puts both coordinates in [1, 2]; stretching one axis
	// would change the shape.
	MoonsScale = 1.7320508075688772
)

var toys = map[string]Sampler{
	"8gaussians":   eightGaussians,
	"moons":        moons,
	"checkerboard": checkerboard,
}

// Names lists the toy data sets Toy accepts, in a fixed order.
func Names() []string { return []string{"8gaussians", "moons", "checkerboard"} }

// Toy returns the sampler of the 2-D toy data set called name.
func Toy(name string) (Sampler, error) {
	s, ok := toys[name]
	if !ok {
		return nil, fmt.Errorf("unknown toy data set %q: choose one of %s", name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// Modes8 returns the centres of the 8gaussians modes: angle 2πk/8 on the circle of radius
// Modes8Radius, k = 0…7.
func Modes8() [][2]float64 {
	m := make([][2]float64, 8)
	for k := range m {
		a := 2 * math.Pi * float64(k) / 8
		m[k] = [2]float64{Modes8Radius * math.Cos(a), Modes8Radius * math.Sin(a)}
	}
	return m
}

// NearestMode returns the index k of the 8gaussians mode nearest to the 2-D point x (the first two
// values of x), for the inversion test of asbm.md §6.3 item 3; −1 when x has fewer than two values
// or is not finite.
func NearestMode(x []float32) int {
	if len(x) < 2 {
		return -1
	}
	px, py := float64(x[0]), float64(x[1])
	if math.IsNaN(px) || math.IsNaN(py) || math.IsInf(px, 0) || math.IsInf(py, 0) {
		return -1
	}
	best, bestD := -1, math.Inf(1)
	for k, m := range Modes8() {
		d := (px-m[0])*(px-m[0]) + (py-m[1])*(py-m[1])
		if d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// eightGaussians draws a uniform mode and adds N(0, Modes8Std²) to each coordinate.
func eightGaussians(r *rand.Rand, dst []float32) {
	modes := Modes8()
	for i := 0; i+1 < len(dst); i += 2 {
		m := modes[r.IntN(8)]
		dst[i] = float32(m[0] + Modes8Std*r.NormFloat64())
		dst[i+1] = float32(m[1] + Modes8Std*r.NormFloat64())
	}
}

// moons draws scikit-learn-style two moons with θ ~ U[0, π]: the upper half circle (cos θ, sin θ)
// or the lower one (1 − cos θ, ½ − sin θ) with equal probability, plus N(0, MoonsNoise²) noise;
// then it subtracts the mean (½, ¼) and multiplies by MoonsScale.
func moons(r *rand.Rand, dst []float32) {
	for i := 0; i+1 < len(dst); i += 2 {
		th := math.Pi * r.Float64()
		x, y := math.Cos(th), math.Sin(th)
		if r.IntN(2) == 1 {
			x, y = 1-x, 0.5-y
		}
		x += MoonsNoise * r.NormFloat64()
		y += MoonsNoise * r.NormFloat64()
		dst[i] = float32(MoonsScale * (x - 0.5))
		dst[i+1] = float32(MoonsScale * (y - 0.25))
	}
}

// checkerboard draws uniformly from the 8 "black" cells of the 4×4 checkerboard on [−2, 2]²: the
// unit cells whose integer corner (⌊x⌋, ⌊y⌋) has an even sum. Each coordinate is then uniform on
// [−2, 2]: mean 0, variance 4/3.
func checkerboard(r *rand.Rand, dst []float32) {
	for i := 0; i+1 < len(dst); i += 2 {
		x := 4*r.Float64() - 2
		// y's cell row: same parity as x's column, so ⌊x⌋ + ⌊y⌋ is even.
		col := int(math.Floor(x)) // −2 … 1
		row := 2*r.IntN(2) - 2    // −2 or 0
		if (col+row)%2 != 0 {
			row++ // −1 or 1
		}
		dst[i] = float32(x)
		dst[i+1] = float32(float64(row) + r.Float64())
	}
}

// Gaussian returns a sampler of N(mean, variance) independently in each coordinate of d-dimensional
// points. For d < 1, a negative variance or a non-finite argument the sampler fills NaN, so misuse
// shows in the first statistic computed rather than as plausible data.
func Gaussian(mean, variance float64, d int) Sampler {
	if d < 1 || !(variance >= 0) || math.IsInf(variance, 0) || math.IsNaN(mean) || math.IsInf(mean, 0) {
		return func(_ *rand.Rand, dst []float32) {
			for i := range dst {
				dst[i] = float32(math.NaN())
			}
		}
	}
	s := math.Sqrt(variance)
	return func(r *rand.Rand, dst []float32) {
		for i := range len(dst) / d * d {
			dst[i] = float32(mean + s*r.NormFloat64())
		}
	}
}
