package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/backend/cpu/kern"
)

// convRef64 is the direct float64 convolution (k odd, stride 1, zero padding k/2, NCHW) and its two
// gradients for the output gradient gy: the reference the im2col + sgemm ops are checked against.
func convRef64(x, w, b, gy []float32, n, cin, cout, h, wd, k int) (y, dx, dw []float64) {
	hw, pad := h*wd, k/2
	y, dx, dw = make([]float64, n*cout*hw), make([]float64, n*cin*hw), make([]float64, cout*cin*k*k)
	for i := 0; i < n; i++ {
		for co := 0; co < cout; co++ {
			for yy := 0; yy < h; yy++ {
				for xx := 0; xx < wd; xx++ {
					o := (i*cout+co)*hw + yy*wd + xx
					acc := float64(b[co])
					for ci := 0; ci < cin; ci++ {
						for kh := 0; kh < k; kh++ {
							for kw := 0; kw < k; kw++ {
								sy, sx := yy+kh-pad, xx+kw-pad
								if sy < 0 || sy >= h || sx < 0 || sx >= wd {
									continue
								}
								xi, wi := (i*cin+ci)*hw+sy*wd+sx, ((co*cin+ci)*k+kh)*k+kw
								acc += float64(x[xi]) * float64(w[wi])
								dx[xi] += float64(gy[o]) * float64(w[wi])
								dw[wi] += float64(gy[o]) * float64(x[xi])
							}
						}
					}
					y[o] = acc
				}
			}
		}
	}
	return
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// TestConvTiling checks the convolution ops (forward, data gradient, weight gradient) against the
// direct float64 convolution, max|Δ|/max|ref| < 1e-5, with convBlockBytes set so that the tiles are
// one-row bands, several-row bands, groups of whole images and a single group, for 3×3 and 1×1
// kernels, odd batch sizes and a non-square image, on the fast path and on the pure-Go path.
func TestConvTiling(t *testing.T) {
	was := convBlockBytes
	defer func() { convBlockBytes = was }()
	r := rand.New(rand.NewPCG(51, 52))
	for _, pureGo := range []bool{false, true} {
		kern.SetPureGo(pureGo)
		for _, sh := range [][6]int{{3, 5, 4, 9, 7, 3}, {5, 3, 6, 6, 6, 1}, {1, 8, 2, 5, 11, 3}, {4, 2, 3, 4, 4, 3}} {
			n, cin, cout, h, wd, k := sh[0], sh[1], sh[2], sh[3], sh[4], sh[5]
			kk := cin * k * k
			for _, cols := range []int{1, 2 * wd, h * wd, 3 * h * wd, 1 << 20} {
				convBlockBytes = 4 * kk * cols // tiles of about `cols` pixels
				rnd := func(m int) []float32 {
					v := make([]float32, m)
					for i := range v {
						v[i] = float32(r.NormFloat64())
					}
					return v
				}
				x, w, b, gy := rnd(n*cin*h*wd), rnd(cout*kk), rnd(cout), rnd(n*cout*h*wd)
				y64, dx64, dw64 := convRef64(x, w, b, gy, n, cin, cout, h, wd, k)
				xt := tensor.New(tensor.WithShape(n, cin, h, wd), tensor.WithBacking(x))
				wt := tensor.New(tensor.WithShape(cout, cin, k, k), tensor.WithBacking(w))
				bt := tensor.New(tensor.WithShape(cout), tensor.WithBacking(b))
				gt := tensor.New(tensor.WithShape(n, cout, h, wd), tensor.WithBacking(gy))
				op, err := newConvOp(xt.Shape(), wt.Shape())
				if err != nil {
					t.Fatal(err)
				}
				outs := map[string][]float64{}
				dData, dW := &convDataGradOp{convGeom: op.convGeom}, &convWeightGradOp{convGeom: op.convGeom}
				for name, run := range map[string]func() (G.Value, error){
					"y":  func() (G.Value, error) { return op.Do(xt, wt, bt) },
					"dx": func() (G.Value, error) { return dData.Do(wt, gt) },
					"dw": func() (G.Value, error) { return dW.Do(xt, gt) },
				} {
					// Twice: the second run reuses the op's buffers, as every step after a graph's first.
					if _, err := run(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					v, err := run()
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					outs[name] = f64(v.Data().([]float32))
				}
				for name, want := range map[string][]float64{"y": y64, "dx": dx64, "dw": dw64} {
					if e := maxAbsRel(outs[name], want); e > 1e-5 || math.IsNaN(e) {
						t.Errorf("pureGo=%v n,cin,cout,h,w,k=%v, tiles of ~%d pixels: %s rel err %.3g > 1e-5", pureGo, sh, cols, name, e)
					}
				}
			}
		}
	}
	kern.SetPureGo(false)
}

// TestUNetResumesOnPureGoPath trains a U-Net on the fast path (OpenBLAS and the C loops where they
// load), moves its state to a second net that continues on the pure-Go path while the first carries
// on, and checks both runs stay together: losses within 1e-4 relative and every parameter, EMA and
// AdamW moment within 1e-4 of its largest value after five more steps. A checkpoint of the fast
// engine is a checkpoint of the old path (the same State keys), and their arithmetic agrees.
func TestUNetResumesOnPureGoPath(t *testing.T) {
	defer kern.SetPureGo(false)
	r := rand.New(rand.NewPCG(61, 62))
	a := deepUNet
	cfg := DefaultConfig()
	cfg.LR = 1e-3
	A, err := New(a, cfg, 7)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		tt, x, w, y := randBatch(r, 5, a.Dim)
		A.Step(tt, x, w, y)
	}
	B, err := New(a, cfg, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := B.SetState(A.State()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		tt, x, w, y := randBatch(r, 5, a.Dim)
		kern.SetPureGo(false)
		la := A.Step(tt, x, w, y)
		kern.SetPureGo(true)
		lb := B.Step(tt, x, w, y)
		if e := math.Abs(float64(la-lb)) / math.Abs(float64(la)); !(e < 1e-4) {
			t.Errorf("step %d: loss fast %v, pure Go %v (rel %.3g)", i, la, lb, e)
		}
	}
	kern.SetPureGo(false)
	sa, sb := A.State(), B.State()
	worst := 0.0
	for key, va := range sa {
		if key == "adam_step" {
			continue
		}
		e := maxRelDiff(sb[key], va)
		worst = math.Max(worst, e)
		if !(e < 1e-4) {
			t.Errorf("%s: pure Go vs fast rel err %.3g, want < 1e-4", key, e)
		}
	}
	t.Logf("after 5 steps on each path: worst state rel err %.3g", worst)
}
