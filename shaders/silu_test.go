package shaders

import (
	"math"
	"math/rand/v2"
	"testing"
)

func siluRef(x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = v / (1 + math.Exp(-v))
	}
	return y
}

// siluBackwardRef is dy·σ(x)·(1 + x·(1 − σ(x))), checked against finite differences below.
func siluBackwardRef(dy, x []float64) []float64 {
	dx := make([]float64, len(x))
	for i, v := range x {
		s := 1 / (1 + math.Exp(-v))
		dx[i] = dy[i] * s * (1 + v*(1-s))
	}
	return dx
}

func TestSiLUReferenceGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 5))
	x, dy := randF64(r, 40), randF64(r, 40)
	for i := range x {
		x[i] *= 4
	}
	imageFD(t, "SiLU dx", func() []float64 { return siluRef(x) }, x, dy, siluBackwardRef(dy, x), 1e-7)
}

func TestSiLUKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 6))
	for _, count := range []int{1, 2 * 5 * 7 * 7, 1 * 8 * 16 * 16, 3001} {
		x, dy := normals(r, count, 4), normals(r, count, 1)
		if count > 2 {
			// The tails: e^{−x} overflows in float32 for x < −88.7.
			x[0], x[1] = -100, 100
		}
		xb, dyb, yb, dxb := upload(t, d, x), upload(t, d, dy), alloc(t, d, count), alloc(t, d, count)
		if err := d.SiLU(yb, xb, count); err != nil {
			t.Fatal(err)
		}
		if err := d.SiLUBackward(dxb, dyb, xb, count); err != nil {
			t.Fatal(err)
		}
		ey := relErr(read(t, d, yb), siluRef(f64s(x)))
		edx := relErr(read(t, d, dxb), siluBackwardRef(f64s(dy), f64s(x)))
		t.Logf("SiLU over %d values: y rel err %.2e, dx rel err %.2e", count, ey, edx)
		if !(ey < 1e-5) || !(edx < 1e-5) {
			t.Errorf("SiLU over %d values: y rel err %.2e, dx rel err %.2e, want < 1e-5", count, ey, edx)
		}
	}
}

func TestSiLUErrors(t *testing.T) {
	d := gpu(t)
	a, b, c := alloc(t, d, 10), alloc(t, d, 10), alloc(t, d, 5)
	for name, err := range map[string]error{
		"zero count":      d.SiLU(a, b, 0),
		"short output":    d.SiLU(c, b, 10),
		"aliased":         d.SiLU(a, a, 10),
		"nil dy":          d.SiLUBackward(a, nil, b, 10),
		"short x":         d.SiLUBackward(a, b, c, 10),
		"aliased dx":      d.SiLUBackward(a, b, a, 10),
		"destroyed input": func() error { e := alloc(t, d, 10); e.Destroy(); return d.SiLU(a, e, 10) }(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
