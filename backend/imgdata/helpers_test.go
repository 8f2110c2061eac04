package imgdata

import (
	"image"
	"math"
	"os"
	"testing"
)

// requireData reports whether a missing installed data set must fail the test instead of
// skipping it (./build.sh test sets ASBM_REQUIRE_DATA=1 after installing the Debian packages).
func requireData() bool { return os.Getenv("ASBM_REQUIRE_DATA") == "1" }

// skipOrFail skips (or, under ASBM_REQUIRE_DATA=1, fails) a test whose data is not installed.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if requireData() {
		t.Fatalf(format+" (ASBM_REQUIRE_DATA=1)", args...)
	}
	t.Skipf(format+" (set ASBM_REQUIRE_DATA=1 to make this a failure)", args...)
}

// checkSet checks the invariants every Set promises: shapes, pixel count, range and label range.
func checkSet(t *testing.T, s *Set, n, c, size, maxLabel int) {
	t.Helper()
	if s.C != c || s.H != size || s.W != size {
		t.Fatalf("%s: shape C,H,W = %d,%d,%d, want %d,%d,%d", s.Name, s.C, s.H, s.W, c, size, size)
	}
	if n >= 0 && s.N != n {
		t.Fatalf("%s: N = %d, want %d", s.Name, s.N, n)
	}
	if len(s.Pixels) != s.N*s.Dim() {
		t.Fatalf("%s: %d pixels, want N·C·H·W = %d", s.Name, len(s.Pixels), s.N*s.Dim())
	}
	for i, v := range s.Pixels {
		if !(v >= -1 && v <= 1) {
			t.Fatalf("%s: pixel %d = %v outside [-1, 1]", s.Name, i, v)
		}
	}
	if maxLabel < 0 {
		if s.Labels != nil {
			t.Fatalf("%s: unlabelled set has %d labels", s.Name, len(s.Labels))
		}
		return
	}
	if len(s.Labels) != s.N {
		t.Fatalf("%s: %d labels for %d images", s.Name, len(s.Labels), s.N)
	}
	for i, l := range s.Labels {
		if l < 0 || l > maxLabel {
			t.Fatalf("%s: label %d = %d outside [0, %d]", s.Name, i, l, maxLabel)
		}
	}
}

// refArea is an independent reference for area resampling: each output pixel is the integral of
// the piecewise-constant source over its footprint, computed with 2-D rectangle overlaps in
// float64 (not the separable tap lists of resizeArea).
func refArea(src []float64, sh, sw, dh, dw int) []float64 {
	ry, rx := float64(sh)/float64(dh), float64(sw)/float64(dw)
	out := make([]float64, dh*dw)
	overlap := func(a0, a1, b0, b1 float64) float64 { return math.Max(0, math.Min(a1, b1)-math.Max(a0, b0)) }
	for oy := range dh {
		for ox := range dw {
			y0, y1, x0, x1 := float64(oy)*ry, float64(oy+1)*ry, float64(ox)*rx, float64(ox+1)*rx
			var acc float64
			for y := range sh {
				oyv := overlap(y0, y1, float64(y), float64(y+1))
				if oyv == 0 {
					continue
				}
				for x := range sw {
					acc += oyv * overlap(x0, x1, float64(x), float64(x+1)) * src[y*sw+x]
				}
			}
			out[oy*dw+ox] = acc / (ry * rx)
		}
	}
	return out
}

// refColour is an independent reference for fitColour: it reads img through the generic
// image.Image interface (non-premultiplied 16-bit colour), composites over white in float64,
// pads with white to a square and area-resamples with refArea. Returns 3×size×size in [-1, 1].
func refColour(img image.Image, size int) []float64 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	s := max(w, h)
	left, top := (s-w)/2, (s-h)/2
	out := make([]float64, 0, 3*size*size)
	for ch := range 3 {
		plane := make([]float64, s*s)
		for i := range plane {
			plane[i] = 1
		}
		for y := range h {
			for x := range w {
				// RGBA() is alpha-premultiplied, so over white: c + (1 - a).
				r, g, bl, a := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
				c := [3]uint32{r, g, bl}[ch]
				plane[(top+y)*s+left+x] = float64(c)/65535 + 1 - float64(a)/65535
			}
		}
		for _, v := range refArea(plane, s, s, size, size) {
			out = append(out, 2*v-1)
		}
	}
	return out
}

// maxAbsDiff returns the largest |a[i] - b[i]|.
func maxAbsDiff(a []float32, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-b[i]))
	}
	return m
}

// mean returns the mean of x.
func mean(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v)
	}
	return s / float64(len(x))
}
