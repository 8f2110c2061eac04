package kern

import (
	"math/rand/v2"
	"testing"
)

// TestIm2Col checks Im2Col against a direct definition (each patch value read from x by its index,
// zero outside) and Col2Im as its adjoint (Col2Im must equal, pixel by pixel, the sum of c over every
// patch entry that reads that pixel), on both paths, for k = 1, 3, 5, non-square sizes, ld larger
// than the block, and whole images as well as row blocks [y0, y1).
func TestIm2Col(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, g := range [][6]int{{1, 5, 4, 3, 0, 5}, {3, 8, 8, 3, 0, 8}, {3, 8, 8, 3, 2, 5}, {2, 7, 3, 5, 0, 7}, {2, 7, 3, 5, 6, 7},
		{4, 4, 4, 1, 1, 3}, {2, 1, 6, 3, 0, 1}} {
		cin, h, w, k, y0, y1 := g[0], g[1], g[2], g[3], g[4], g[5]
		hw, pad, n := h*w, k/2, (y1-y0)*w
		ld := n + 3
		x := make([]float32, cin*hw)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		c := make([]float32, cin*k*k*ld)
		for i := range c {
			c[i] = float32(r.NormFloat64())
		}
		// The reference: patch (ci, kh, kw) at pixel (yy, xx) reads x[ci, yy+kh−pad, xx+kw−pad].
		want := make([]float32, len(c))
		wantAdj := make([]float64, len(x))
		for ci := 0; ci < cin; ci++ {
			for kh := 0; kh < k; kh++ {
				for kw := 0; kw < k; kw++ {
					row := ((ci*k+kh)*k + kw) * ld
					for yy := y0; yy < y1; yy++ {
						for xx := 0; xx < w; xx++ {
							sy, sx := yy+kh-pad, xx+kw-pad
							if sy >= 0 && sy < h && sx >= 0 && sx < w {
								j := row + (yy-y0)*w + xx
								want[j] = x[ci*hw+sy*w+sx]
								wantAdj[ci*hw+sy*w+sx] += float64(c[j])
							}
						}
					}
				}
			}
		}
		for _, impl := range []struct {
			name   string
			im2col func(x, cols []float32, ld, cin, h, w, k, y0, y1 int)
			col2im func(cols, dx []float32, ld, cin, h, w, k, y0, y1 int)
		}{{"Im2Col/Col2Im", Im2Col, Col2Im}, {"Go", Im2ColGo, Col2ImGo}} {
			got := make([]float32, len(c))
			for i := range got {
				got[i] = 7 // the padding columns [n, ld) must stay untouched
			}
			impl.im2col(x, got, ld, cin, h, w, k, y0, y1)
			for row := 0; row < cin*k*k; row++ {
				for j := 0; j < ld; j++ {
					wv := want[row*ld+j]
					if j >= n {
						wv = 7
					}
					if got[row*ld+j] != wv {
						t.Fatalf("%s im2col %v: cols[%d, %d] = %g, want %g", impl.name, g, row, j, got[row*ld+j], wv)
					}
				}
			}
			adj := make([]float32, len(x))
			impl.col2im(c, adj, ld, cin, h, w, k, y0, y1)
			for i, v := range adj {
				if d := float64(v) - wantAdj[i]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("%s col2im %v: dx[%d] = %g, want %g", impl.name, g, i, v, wantAdj[i])
				}
			}
		}
	}
}

func benchIm2Col(b *testing.B, f func(x, cols []float32, ld, cin, h, w, k, y0, y1 int)) {
	const cin, h, w, k = 32, 32, 32, 3
	x, cols := make([]float32, cin*h*w), make([]float32, cin*k*k*h*w)
	b.SetBytes(int64(4 * len(cols)))
	for b.Loop() {
		f(x, cols, h*w, cin, h, w, k, 0, h)
	}
}

func BenchmarkIm2Col(b *testing.B) { benchIm2Col(b, Im2Col) }
func BenchmarkCol2Im(b *testing.B) {
	benchIm2Col(b, func(x, c []float32, ld, ci, h, w, k, y0, y1 int) { Col2Im(c, x, ld, ci, h, w, k, y0, y1) })
}

func BenchmarkCol2ImGo(b *testing.B) {
	benchIm2Col(b, func(x, c []float32, ld, ci, h, w, k, y0, y1 int) { Col2ImGo(c, x, ld, ci, h, w, k, y0, y1) })
}
