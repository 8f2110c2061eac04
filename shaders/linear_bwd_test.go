package shaders

import (
	"math"
	"math/rand/v2"
	"testing"
)

// linearBwdRef is the float64 backward pass of y = x·w + b: dW = xᵀ·dy, db = Σ_rows dy and
// dX = (dy·wᵀ) ⊙ silu'(z) (z nil: no derivative factor).
func linearBwdRef(x, w, z, dy []float32, n, in, out int) (dx, dw, db []float64) {
	dx, dw, db = make([]float64, n*in), make([]float64, in*out), make([]float64, out)
	for i := 0; i < n; i++ {
		for j := 0; j < out; j++ {
			g := float64(dy[i*out+j])
			db[j] += g
			for k := 0; k < in; k++ {
				dw[k*out+j] += float64(x[i*in+k]) * g
				dx[i*in+k] += g * float64(w[k*out+j])
			}
		}
	}
	if z != nil {
		for i, zv := range z {
			s := 1 / (1 + math.Exp(-float64(zv)))
			dx[i] *= s * (1 + float64(zv)*(1-s))
		}
	}
	return dx, dw, db
}

func TestLinearBackwardKernel(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 11))
	for _, n := range []int{1, 37, 300} {
		for _, s := range [][2]int{{18, 128}, {128, 128}, {128, 2}, {7, 3}, {130, 67}} {
			in, out := s[0], s[1]
			x, w, z, dy := normals(r, n*in, 1), normals(r, in*out, 0.3), normals(r, n*in, 2), normals(r, n*out, 1)
			for _, withZ := range []bool{false, true} {
				zz := z
				if !withZ {
					zz = nil
				}
				dxB, dwB, dbB := alloc(t, d, n*in), alloc(t, d, in*out), alloc(t, d, out)
				var zB *Buffer
				if withZ {
					zB = upload(t, d, z)
				}
				if err := d.LinearBackward(dxB, dwB, dbB, upload(t, d, x), upload(t, d, w), zB, upload(t, d, dy), n, in, out); err != nil {
					t.Fatal(err)
				}
				dx, dw, db := linearBwdRef(x, w, zz, dy, n, in, out)
				for _, c := range []struct {
					name string
					got  []float32
					want []float64
				}{{"dX", read(t, d, dxB), dx}, {"dW", read(t, d, dwB), dw}, {"db", read(t, d, dbB), db}} {
					if e := relErr(c.got, c.want); e > kernelTol {
						t.Errorf("linear backward n=%d %d→%d silu'=%v: %s rel err %.3g > %g", n, in, out, withZ, c.name, e, kernelTol)
					} else if n == 300 {
						t.Logf("linear backward n=%d %d→%d silu'=%v: %s rel err %.3g", n, in, out, withZ, c.name, e)
					}
				}
			}
		}
	}
}

// TestLinearBackwardFolded forces the row dispatch to fold into the z dimension and the bias
// reduction to fold into y.
func TestLinearBackwardFolded(t *testing.T) {
	d := gpu(t)
	old := maxGroupsPerDim
	maxGroupsPerDim = 2
	defer func() { maxGroupsPerDim = old }()
	r := rand.New(rand.NewPCG(rand.Uint64(), 12))
	n, in, out := 300, 5, 4
	x, w, z, dy := normals(r, n*in, 1), normals(r, in*out, 1), normals(r, n*in, 1), normals(r, n*out, 1)
	dxB, dwB, dbB := alloc(t, d, n*in), alloc(t, d, in*out), alloc(t, d, out)
	if err := d.LinearBackward(dxB, dwB, dbB, upload(t, d, x), upload(t, d, w), upload(t, d, z), upload(t, d, dy), n, in, out); err != nil {
		t.Fatal(err)
	}
	dx, dw, db := linearBwdRef(x, w, z, dy, n, in, out)
	for _, c := range []struct {
		name string
		got  []float32
		want []float64
	}{{"dX", read(t, d, dxB), dx}, {"dW", read(t, d, dwB), dw}, {"db", read(t, d, dbB), db}} {
		if e := relErr(c.got, c.want); e > kernelTol {
			t.Errorf("folded linear backward: %s rel err %.3g > %g", c.name, e, kernelTol)
		}
	}
}

func TestLinearBackwardBadInput(t *testing.T) {
	d := gpu(t)
	a, b := alloc(t, d, 10), alloc(t, d, 10)
	if err := d.LinearBackward(nil, a, b, a, b, nil, b, 5, 2, 2); err == nil {
		t.Error("LinearBackward accepted dW aliasing x")
	}
	if err := d.LinearBackward(nil, alloc(t, d, 4), alloc(t, d, 2), a, alloc(t, d, 4), nil, alloc(t, d, 9), 5, 2, 2); err == nil {
		t.Error("LinearBackward accepted a 9-value dY for 5×2")
	}
	if err := d.LinearBackward(nil, alloc(t, d, 4), alloc(t, d, 2), a, alloc(t, d, 4), nil, b, 0, 2, 2); err == nil {
		t.Error("LinearBackward accepted n = 0")
	}
}
