package data

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// moments returns the per-coordinate means and variances of n×d points.
func moments(x []float32, d int) (mean, variance []float64) {
	n := len(x) / d
	mean, variance = make([]float64, d), make([]float64, d)
	for i := range n {
		for k := range d {
			mean[k] += float64(x[i*d+k]) / float64(n)
		}
	}
	for i := range n {
		for k := range d {
			e := float64(x[i*d+k]) - mean[k]
			variance[k] += e * e / float64(n-1)
		}
	}
	return mean, variance
}

// Analytic moments of the toys (asbm.md §6.1).
//   - 8gaussians: a uniform angle on 8 equally spaced points gives E cos² = ½, so each coordinate
//     has mean 0 and variance R²/2 + s².
//   - moons, θ ~ U[0, π], each moon with probability ½: before scaling, E x = ½, E y = ¼,
//     E x² = ½·½ + ½(1 + ½) = 1, E y² = ½·½ + ½(¼ − 2/π + ½); the noise adds its variance.
//   - checkerboard: each coordinate uniform on [−2, 2]: mean 0, variance 16/12.
func analytic(name string) (mean, variance [2]float64) {
	switch name {
	case "8gaussians":
		v := Modes8Radius*Modes8Radius/2 + Modes8Std*Modes8Std
		return [2]float64{0, 0}, [2]float64{v, v}
	case "moons":
		n2 := MoonsNoise * MoonsNoise
		vx := 1 - 0.25 + n2
		vy := 0.5*0.5 + 0.5*(0.25-2/math.Pi+0.5) - 0.0625 + n2
		s2 := MoonsScale * MoonsScale
		return [2]float64{0, 0}, [2]float64{s2 * vx, s2 * vy}
	case "checkerboard":
		return [2]float64{0, 0}, [2]float64{16.0 / 12, 16.0 / 12}
	}
	panic("no analytic moments for " + name)
}

func TestToyMoments(t *testing.T) {
	const n = 200000
	for i, name := range Names() {
		s, err := Toy(name)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 2*n)
		s(rand.New(rand.NewPCG(uint64(i), 5)), x)
		mean, variance := moments(x, 2)
		wm, wv := analytic(name)
		t.Logf("%s: mean %.4f %.4f, variance %.4f %.4f (analytic %.4f %.4f)", name, mean[0], mean[1], variance[0], variance[1], wv[0], wv[1])
		for k := range 2 {
			// Five standard errors: SE(mean) = √(v/n); SE(variance) = v·√((κ−1)/n) ≤ v·√(2/n) for kurtosis
			// κ ≤ 3, true of these light-tailed sets.
			if math.Abs(mean[k]-wm[k]) > 5*math.Sqrt(wv[k]/n) {
				t.Errorf("%s: mean[%d] = %v, want %v", name, k, mean[k], wm[k])
			}
			if math.Abs(variance[k]-wv[k]) > 5*wv[k]*math.Sqrt(2.0/n) {
				t.Errorf("%s: variance[%d] = %v, want %v", name, k, variance[k], wv[k])
			}
		}
	}
}

func TestToyShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	x := make([]float32, 2*20000)
	s, _ := Toy("checkerboard")
	s(r, x)
	for i := 0; i < len(x); i += 2 {
		cx, cy := math.Floor(float64(x[i])), math.Floor(float64(x[i+1]))
		if cx < -2 || cx > 1 || cy < -2 || cy > 1 || int(cx+cy)%2 != 0 {
			t.Fatalf("checkerboard point (%v, %v) is not in a black cell of [−2, 2]²", x[i], x[i+1])
		}
	}
	// Every 8gaussians point lies within 6σ of its nearest mode, and each mode gets ≈ 1/8.
	s, _ = Toy("8gaussians")
	s(r, x)
	counts := make([]int, 8)
	modes := Modes8()
	for i := 0; i < len(x); i += 2 {
		k := NearestMode(x[i : i+2])
		counts[k]++
		if d := math.Hypot(float64(x[i])-modes[k][0], float64(x[i+1])-modes[k][1]); d > 6*Modes8Std {
			t.Fatalf("8gaussians point %v is %v from its nearest mode", x[i:i+2], d)
		}
	}
	for k, c := range counts {
		if math.Abs(float64(c)-2500) > 5*math.Sqrt(2500) {
			t.Errorf("mode %d got %d of 20000 points", k, c)
		}
	}
	// Moons: each point is within 6 noise-σ of one of the two scaled half circles.
	s, _ = Toy("moons")
	s(r, x)
	for i := 0; i < len(x); i += 2 {
		px, py := float64(x[i])/MoonsScale+0.5, float64(x[i+1])/MoonsScale+0.25
		upper := math.Abs(math.Hypot(px, py) - 1)
		lower := math.Abs(math.Hypot(px-1, py-0.5) - 1)
		if min(upper, lower) > 6*MoonsNoise*math.Sqrt2 {
			t.Fatalf("moons point (%v, %v) is off both half circles", x[i], x[i+1])
		}
	}
}

func TestToyDeterministicAndPartialRow(t *testing.T) {
	for _, name := range Names() {
		s, _ := Toy(name)
		a, b := make([]float32, 11), make([]float32, 11)
		a[10], b[10] = 42, 42
		s(rand.New(rand.NewPCG(1, 2)), a)
		s(rand.New(rand.NewPCG(1, 2)), b)
		if !slices.Equal(a, b) {
			t.Errorf("%s: same seed, different points", name)
		}
		if a[10] != 42 {
			t.Errorf("%s: wrote into the trailing partial row", name)
		}
	}
}

func TestToyUnknown(t *testing.T) {
	_, err := Toy("swissroll")
	if err == nil {
		t.Fatal("Toy(swissroll) succeeded")
	}
	for _, n := range Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %q", err, n)
		}
	}
}

func TestNearestMode(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for k, m := range Modes8() {
		if a := math.Atan2(m[1], m[0]); math.Abs(math.Remainder(a-2*math.Pi*float64(k)/8, 2*math.Pi)) > 1e-12 || math.Abs(math.Hypot(m[0], m[1])-2) > 1e-12 {
			t.Errorf("mode %d = %v", k, m)
		}
		for range 100 {
			// Any point within half the distance between neighbouring modes (2R sin(π/8)/2 ≈ 0.77)
			// is nearest to its mode.
			rad, ang := 0.76*r.Float64(), 2*math.Pi*r.Float64()
			p := []float32{float32(m[0] + rad*math.Cos(ang)), float32(m[1] + rad*math.Sin(ang))}
			if got := NearestMode(p); got != k {
				t.Fatalf("NearestMode(%v) = %d, want %d", p, got, k)
			}
		}
	}
	for _, bad := range [][]float32{nil, {1}, {float32(math.NaN()), 0}, {0, float32(math.Inf(1))}} {
		if got := NearestMode(bad); got != -1 {
			t.Errorf("NearestMode(%v) = %d, want -1", bad, got)
		}
	}
}

func TestGaussian(t *testing.T) {
	const n = 100000
	x := make([]float32, 3*n+1)
	x[3*n] = 7
	Gaussian(1.5, 0.25, 3)(rand.New(rand.NewPCG(6, 6)), x)
	mean, variance := moments(x[:3*n], 3)
	for k := range 3 {
		if math.Abs(mean[k]-1.5) > 5*math.Sqrt(0.25/n) || math.Abs(variance[k]-0.25) > 5*0.25*math.Sqrt(2.0/n) {
			t.Errorf("coordinate %d: mean %v variance %v, want 1.5 and 0.25", k, mean[k], variance[k])
		}
	}
	if x[3*n] != 7 {
		t.Error("Gaussian wrote into the trailing partial row")
	}
	y := make([]float32, 4)
	Gaussian(0, -1, 2)(rand.New(rand.NewPCG(1, 1)), y)
	for _, v := range y {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("a negative variance gave %v, want NaN", y)
		}
	}
}
