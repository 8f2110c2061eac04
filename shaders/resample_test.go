package shaders

import (
	"math/rand/v2"
	"testing"
)

// upsampleRef is nearest 2× upsampling of planes h×w (float64 reference of Upsample2x).
func upsampleRef(x []float64, planes, h, w int) []float64 {
	y := make([]float64, planes*4*h*w)
	for p := 0; p < planes; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				y[(p*2*h+i)*2*w+j] = x[(p*h+i/2)*w+j/2]
			}
		}
	}
	return y
}

// avgPoolRef is the 2×2 average pool of planes h×w (float64 reference of AvgPool2x).
func avgPoolRef(x []float64, planes, h, w int) []float64 {
	y := make([]float64, planes*h/2*w/2)
	for p := 0; p < planes; p++ {
		for i := 0; i < h/2; i++ {
			for j := 0; j < w/2; j++ {
				b := (p*h+2*i)*w + 2*j
				y[(p*h/2+i)*w/2+j] = (x[b] + x[b+1] + x[b+w] + x[b+w+1]) / 4
			}
		}
	}
	return y
}

// upsampleBackwardRef and avgPoolBackwardRef scatter dy through the forward maps (the adjoints),
// written independently of the kernels' gather form and checked against finite differences.
func upsampleBackwardRef(dy []float64, planes, h, w int) []float64 {
	dx := make([]float64, planes*h*w)
	for p := 0; p < planes; p++ {
		for i := 0; i < 2*h; i++ {
			for j := 0; j < 2*w; j++ {
				dx[(p*h+i/2)*w+j/2] += dy[(p*2*h+i)*2*w+j]
			}
		}
	}
	return dx
}

func avgPoolBackwardRef(dy []float64, planes, h, w int) []float64 {
	dx := make([]float64, planes*h*w)
	for p := 0; p < planes; p++ {
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				dx[(p*h+i)*w+j] += dy[(p*h/2+i/2)*w/2+j/2] / 4
			}
		}
	}
	return dx
}

func TestResampleReferenceGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 7))
	planes, h, w := 3, 3, 5
	x, dy := randF64(r, planes*h*w), randF64(r, planes*4*h*w)
	imageFD(t, "upsample dx", func() []float64 { return upsampleRef(x, planes, h, w) }, x, dy,
		upsampleBackwardRef(dy, planes, h, w), 1e-7)
	h, w = 4, 6
	x, dy = randF64(r, planes*h*w), randF64(r, planes*h*w/4)
	imageFD(t, "avg pool dx", func() []float64 { return avgPoolRef(x, planes, h, w) }, x, dy,
		avgPoolBackwardRef(dy, planes, h, w), 1e-7)
}

func TestResampleKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 8))
	for _, s := range []struct{ n, c, h, w int }{{2, 3, 7, 5}, {1, 8, 16, 16}, {3, 1, 2, 10}} {
		planes, xs := s.n*s.c, s.n*s.c*s.h*s.w
		// Upsample: x is h×w, y is 2h×2w.
		x, dy := normals(r, xs, 1), normals(r, 4*xs, 1)
		y, dx := alloc(t, d, 4*xs), alloc(t, d, xs)
		if err := d.Upsample2x(y, upload(t, d, x), s.n, s.c, s.h, s.w); err != nil {
			t.Fatal(err)
		}
		if err := d.Upsample2xBackward(dx, upload(t, d, dy), s.n, s.c, s.h, s.w); err != nil {
			t.Fatal(err)
		}
		checks := []struct {
			name string
			got  *Buffer
			want []float64
		}{
			{"upsample y", y, upsampleRef(f64s(x), planes, s.h, s.w)},
			{"upsample dx", dx, upsampleBackwardRef(f64s(dy), planes, s.h, s.w)},
		}
		if s.h%2 == 0 && s.w%2 == 0 {
			// Pool: x is h×w, y is h/2×w/2.
			px, pdy := normals(r, xs, 1), normals(r, xs/4, 1)
			py, pdx := alloc(t, d, xs/4), alloc(t, d, xs)
			if err := d.AvgPool2x(py, upload(t, d, px), s.n, s.c, s.h, s.w); err != nil {
				t.Fatal(err)
			}
			if err := d.AvgPool2xBackward(pdx, upload(t, d, pdy), s.n, s.c, s.h, s.w); err != nil {
				t.Fatal(err)
			}
			checks = append(checks, []struct {
				name string
				got  *Buffer
				want []float64
			}{
				{"avg pool y", py, avgPoolRef(f64s(px), planes, s.h, s.w)},
				{"avg pool dx", pdx, avgPoolBackwardRef(f64s(pdy), planes, s.h, s.w)},
			}...)
		}
		for _, c := range checks {
			e := relErr(read(t, d, c.got), c.want)
			t.Logf("%v %s: rel err %.2e", s, c.name, e)
			if !(e < 1e-5) {
				t.Errorf("%v %s: rel err %.2e, want < 1e-5", s, c.name, e)
			}
		}
	}
}

func TestResampleErrors(t *testing.T) {
	d := gpu(t)
	small, big := alloc(t, d, 2*3*4*6), alloc(t, d, 4*2*3*4*6)
	for name, err := range map[string]error{
		"odd pool height":       d.AvgPool2x(small, big, 2, 3, 7, 6),
		"odd pool backward":     d.AvgPool2xBackward(big, small, 2, 3, 4, 5),
		"short upsample output": d.Upsample2x(small, small, 2, 3, 4, 6),
		"short upsample dy":     d.Upsample2xBackward(small, small, 2, 3, 4, 6),
		"zero channels":         d.Upsample2x(big, small, 2, 0, 4, 6),
		"aliased":               d.AvgPool2x(big, big, 2, 3, 8, 6),
		"nil input":             d.AvgPool2x(small, nil, 2, 3, 8, 6),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
