package cpu

import (
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// plainForward evaluates the network in plain Go on a batch whose input rows ([x, time features])
// are already in x: per layer out = h·W + b with blas32's sgemm (kern.Gemm, as gorgonia's; blas.go),
// then SiLU in place. buf is scratch reused between calls.
func (c *Net) plainForward(ps [][]float32, x []float32, n int, buf *[2][]float32, out []float32) {
	a := c.arch
	in := len(x) / n
	for i := range buf {
		if len(buf[i]) < n*a.Hidden {
			buf[i] = make([]float32, n*a.Hidden)
		}
	}
	h := blas32.General{Rows: n, Cols: in, Stride: in, Data: x}
	for l := 0; l <= a.Layers; l++ {
		w, b := ps[2*l], ps[2*l+1]
		width := len(b)
		var dst []float32
		if l == a.Layers {
			dst = out[:n*width]
		} else {
			dst = buf[l%2][:n*width]
		}
		for r := 0; r < n; r++ {
			copy(dst[r*width:(r+1)*width], b)
		}
		blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, h,
			blas32.General{Rows: h.Cols, Cols: width, Stride: width, Data: w}, 1,
			blas32.General{Rows: n, Cols: width, Stride: width, Data: dst})
		if l < a.Layers {
			parallelRows(n, width, func(r0, r1 int) {
				for j, u := range dst[r0*width : r1*width] {
					dst[r0*width+j] = u * float32(1/(1+math.Exp(-float64(u))))
				}
			})
		}
		h = blas32.General{Rows: n, Cols: width, Stride: width, Data: dst}
	}
}
