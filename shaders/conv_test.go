package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// convRef is the float64 reference of Conv (NCHW, k×k, stride 1, zero padding k/2).
func convRef(x, w, b []float64, n, cin, cout, h, wd, k int) []float64 {
	y := make([]float64, n*cout*h*wd)
	pad := k / 2
	for in := 0; in < n; in++ {
		for co := 0; co < cout; co++ {
			for oy := 0; oy < h; oy++ {
				for ox := 0; ox < wd; ox++ {
					s := b[co]
					for ci := 0; ci < cin; ci++ {
						for kh := 0; kh < k; kh++ {
							for kw := 0; kw < k; kw++ {
								yy, xx := oy+kh-pad, ox+kw-pad
								if yy < 0 || yy >= h || xx < 0 || xx >= wd {
									continue
								}
								s += w[((co*cin+ci)*k+kh)*k+kw] * x[((in*cin+ci)*h+yy)*wd+xx]
							}
						}
					}
					y[((in*cout+co)*h+oy)*wd+ox] = s
				}
			}
		}
	}
	return y
}

// convBackwardRef is the float64 reference of the three conv gradients given dy: written as the
// chain rule applied term by term to convRef's sum, independently of the kernels' formulas.
func convBackwardRef(dy, x, w []float64, n, cin, cout, h, wd, k int) (dx, dw, db []float64) {
	dx = make([]float64, n*cin*h*wd)
	dw = make([]float64, cout*cin*k*k)
	db = make([]float64, cout)
	pad := k / 2
	for in := 0; in < n; in++ {
		for co := 0; co < cout; co++ {
			for oy := 0; oy < h; oy++ {
				for ox := 0; ox < wd; ox++ {
					g := dy[((in*cout+co)*h+oy)*wd+ox]
					db[co] += g
					for ci := 0; ci < cin; ci++ {
						for kh := 0; kh < k; kh++ {
							for kw := 0; kw < k; kw++ {
								yy, xx := oy+kh-pad, ox+kw-pad
								if yy < 0 || yy >= h || xx < 0 || xx >= wd {
									continue
								}
								xi := ((in*cin+ci)*h+yy)*wd + xx
								wi := ((co*cin+ci)*k+kh)*k + kw
								dx[xi] += g * w[wi]
								dw[wi] += g * x[xi]
							}
						}
					}
				}
			}
		}
	}
	return dx, dw, db
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func randF64(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

// imageFD checks grad (the claimed gradient of L(v) = Σ dy·f(v) with respect to v) against central
// differences of f in float64, entry by entry, failing above tol relative to max|grad|.
func imageFD(t *testing.T, name string, f func() []float64, v, dy, grad []float64, tol float64) {
	t.Helper()
	loss := func() float64 {
		var s float64
		for i, y := range f() {
			s += dy[i] * y
		}
		return s
	}
	const h = 1e-5
	var diff, scale float64
	for i := range v {
		old := v[i]
		v[i] = old + h
		lp := loss()
		v[i] = old - h
		lm := loss()
		v[i] = old
		fd := (lp - lm) / (2 * h)
		diff = math.Max(diff, math.Abs(fd-grad[i]))
		scale = math.Max(scale, math.Abs(grad[i]))
	}
	rel := diff / math.Max(scale, 1e-12)
	t.Logf("%s vs central differences: rel err %.2e", name, rel)
	if !(rel < tol) || scale == 0 {
		t.Errorf("%s: reference gradient rel err %.2e vs finite differences (max|grad| %.3g), want < %.0e", name, rel, scale, tol)
	}
}

// TestConvReferenceGradients verifies convBackwardRef against central differences of convRef on a
// tiny shape, so the kernels below are compared with a checked reference.
func TestConvReferenceGradients(t *testing.T) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	n, cin, cout, h, wd := 2, 2, 3, 4, 3
	for _, k := range []int{1, 3} {
		x, w, b := randF64(r, n*cin*h*wd), randF64(r, cout*cin*k*k), randF64(r, cout)
		dy := randF64(r, n*cout*h*wd)
		dx, dw, db := convBackwardRef(dy, x, w, n, cin, cout, h, wd, k)
		f := func() []float64 { return convRef(x, w, b, n, cin, cout, h, wd, k) }
		imageFD(t, fmt.Sprintf("conv k=%d dx", k), f, x, dy, dx, 1e-7)
		imageFD(t, fmt.Sprintf("conv k=%d dW", k), f, w, dy, dw, 1e-7)
		imageFD(t, fmt.Sprintf("conv k=%d db", k), f, b, dy, db, 1e-7)
	}
}

// convShapesForTest are the shapes the conv kernels are tested at: odd sizes, one channel, and a
// case with more workgroups than the reduction width; each at k = 3 and k = 1.
var convShapesForTest = []struct{ n, cin, cout, h, w int }{
	{2, 3, 5, 7, 7},
	{1, 8, 8, 16, 16},
	{3, 1, 2, 5, 9},
}

func TestConvKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 2))
	for _, k := range []int{3, 1} {
		for _, s := range convShapesForTest {
			nx, ny, nw := s.n*s.cin*s.h*s.w, s.n*s.cout*s.h*s.w, s.cout*s.cin*k*k
			x, w, b, dy := normals(r, nx, 1), normals(r, nw, 0.5), normals(r, s.cout, 1), normals(r, ny, 1)
			yRef := convRef(f64s(x), f64s(w), f64s(b), s.n, s.cin, s.cout, s.h, s.w, k)
			dxRef, dwRef, dbRef := convBackwardRef(f64s(dy), f64s(x), f64s(w), s.n, s.cin, s.cout, s.h, s.w, k)

			xb, wb, bb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, b), upload(t, d, dy)
			yb, dxb, dwb, dbb := alloc(t, d, ny), alloc(t, d, nx), alloc(t, d, nw), alloc(t, d, s.cout)
			if err := d.Conv(yb, xb, wb, bb, s.n, s.cin, s.cout, s.h, s.w, k); err != nil {
				t.Fatal(err)
			}
			if err := d.ConvBackwardData(dxb, dyb, wb, s.n, s.cin, s.cout, s.h, s.w, k); err != nil {
				t.Fatal(err)
			}
			if err := d.ConvBackwardWeights(dwb, dbb, dyb, xb, s.n, s.cin, s.cout, s.h, s.w, k); err != nil {
				t.Fatal(err)
			}
			checkRel(t, d, fmt.Sprintf("conv k=%d %v", k, s), []relCase{
				{"y", yb, yRef, 1e-5},
				{"dx", dxb, dxRef, 1e-5},
				{"dW", dwb, dwRef, 1e-4},
				{"db", dbb, dbRef, 1e-4},
			})
			// The weight-gradient reduction must be deterministic: a second run gives the same bits.
			first := read(t, d, dwb)
			if err := d.ConvBackwardWeights(dwb, dbb, dyb, xb, s.n, s.cin, s.cout, s.h, s.w, k); err != nil {
				t.Fatal(err)
			}
			if diff := maxAbsDiff(first, read(t, d, dwb)); diff != 0 {
				t.Errorf("conv k=%d %v dW differs between runs by %g", k, s, diff)
			}
		}
	}
}

func TestConvErrors(t *testing.T) {
	d := gpu(t)
	x, w, b, y := alloc(t, d, 2*3*4*4), alloc(t, d, 5*3*9), alloc(t, d, 5), alloc(t, d, 2*5*4*4)
	small := alloc(t, d, 7)
	for name, err := range map[string]error{
		"zero batch":    d.Conv(y, x, w, b, 0, 3, 5, 4, 4, 3),
		"short weight":  d.Conv(y, x, small, b, 2, 3, 5, 4, 4, 3),
		"short output":  d.Conv(small, x, w, b, 2, 3, 5, 4, 4, 3),
		"aliased out":   d.Conv(x, x, w, b, 1, 3, 3, 4, 4, 3),
		"k = 2":         d.Conv(y, x, w, b, 2, 3, 5, 4, 4, 2),
		"k = 5":         d.ConvBackwardData(x, y, w, 2, 3, 5, 4, 4, 5),
		"nil dy":        d.ConvBackwardData(x, nil, w, 2, 3, 5, 4, 4, 3),
		"same dW db":    d.ConvBackwardWeights(w, w, y, x, 2, 3, 5, 4, 4, 1),
		"negative size": d.ConvBackwardWeights(w, b, y, x, 2, 3, 5, -4, 4, 3),
		"huge":          d.Conv(y, x, w, b, 1<<20, 3, 5, 1<<20, 4, 3),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestImageKernelsFolded runs every image kernel with the per-dimension workgroup limit lowered to
// about √(its workgroup count), so the 2-D grid folding and the overhang skip are exercised.
func TestImageKernelsFolded(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 9))
	old := maxGroupsPerDim
	defer func() { maxGroupsPerDim = old }()
	// fold sets the limit so that g workgroups need a second dimension with some overhang.
	fold := func(g int) {
		m := 2
		for m*m < g {
			m++
		}
		if g <= m {
			t.Fatalf("%d workgroups do not fold; enlarge the test shape", g)
		}
		maxGroupsPerDim = m
	}
	check := func(name string, g int, run func() error, got *Buffer, want []float64, tol float64) {
		t.Helper()
		fold(g)
		if err := run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		maxGroupsPerDim = old
		e := relErr(read(t, d, got), want)
		t.Logf("folded %s (%d workgroups): rel err %.2e", name, g, e)
		if !(e < tol) {
			t.Errorf("folded %s: rel err %.2e, want < %.0e", name, e, tol)
		}
	}
	const up = imageWG
	{ // conv: 1×2→5 channels, 40×40. Workgroups: forward 2 channel blocks × 1600 pixels / 256 = 13,
		// backward-data 1 block × 1600 / 256 = 7, backward-weights 5·2 pairs + 5 biases = 15; all fold
		// with overhang.
		n, cin, cout, h, w := 1, 2, 5, 40, 40
		nx, ny, nw := n*cin*h*w, n*cout*h*w, cout*cin*9
		blocks := func(c int) int { return (c + convBlock - 1) / convBlock }
		x, wt, b, dy := normals(r, nx, 1), normals(r, nw, 0.5), normals(r, cout, 1), normals(r, ny, 1)
		xb, wb, bb, dyb := upload(t, d, x), upload(t, d, wt), upload(t, d, b), upload(t, d, dy)
		y, dx, dw, db := alloc(t, d, ny), alloc(t, d, nx), alloc(t, d, nw), alloc(t, d, cout)
		dxRef, dwRef, dbRef := convBackwardRef(f64s(dy), f64s(x), f64s(wt), n, cin, cout, h, w, 3)
		check("conv", (n*blocks(cout)*h*w+up-1)/up, func() error { return d.Conv(y, xb, wb, bb, n, cin, cout, h, w, 3) },
			y, convRef(f64s(x), f64s(wt), f64s(b), n, cin, cout, h, w, 3), 1e-5)
		check("conv dx", (n*blocks(cin)*h*w+up-1)/up, func() error { return d.ConvBackwardData(dx, dyb, wb, n, cin, cout, h, w, 3) },
			dx, dxRef, 1e-5)
		check("conv dW", cout*cin+cout, func() error { return d.ConvBackwardWeights(dw, db, dyb, xb, n, cin, cout, h, w, 3) },
			dw, dwRef, 1e-4)
		check("conv db", cout*cin+cout, func() error { return d.ConvBackwardWeights(dw, db, dyb, xb, n, cin, cout, h, w, 3) },
			db, dbRef, 1e-4)
	}
	{ // group norm: 5 samples, 6 channels in 3 groups
		n, c, h, w, groups := 5, 6, 3, 3, 3
		nx, ns := n*c*h*w, n*groups
		x, gm, bt, dy := normals(r, nx, 1), normals(r, c, 1), normals(r, c, 1), normals(r, nx, 1)
		xb, gb, bb, dyb := upload(t, d, x), upload(t, d, gm), upload(t, d, bt), upload(t, d, dy)
		y, mb, rb, dx, dg, dbt := alloc(t, d, nx), alloc(t, d, ns), alloc(t, d, ns), alloc(t, d, nx), alloc(t, d, c), alloc(t, d, c)
		yRef, _, _ := groupNormRef(f64s(x), f64s(gm), f64s(bt), n, c, h*w, groups, 1e-5)
		dxRef, dgRef, _ := groupNormBackwardRef(f64s(dy), f64s(x), f64s(gm), n, c, h*w, groups, 1e-5)
		check("group norm", ns, func() error { return d.GroupNorm(y, mb, rb, xb, gb, bb, n, c, h, w, groups, 1e-5) },
			y, yRef, 1e-5)
		check("group norm dx", ns, func() error {
			return d.GroupNormBackward(dx, dg, dbt, dyb, xb, gb, mb, rb, n, c, h, w, groups)
		}, dx, dxRef, 1e-4)
		// Both backward kernels run in one call: fold for the larger grid (c = 6 still folds).
		check("group norm dgamma", ns, func() error {
			return d.GroupNormBackward(dx, dg, dbt, dyb, xb, gb, mb, rb, n, c, h, w, groups)
		}, dg, dgRef, 1e-4)
	}
	{ // SiLU over 7 workgroups less a few values
		count := 7*up - 5
		x, dy := normals(r, count, 3), normals(r, count, 1)
		xb, dyb, y, dx := upload(t, d, x), upload(t, d, dy), alloc(t, d, count), alloc(t, d, count)
		check("SiLU", 7, func() error { return d.SiLU(y, xb, count) }, y, siluRef(f64s(x)), 1e-5)
		check("SiLU dx", 7, func() error { return d.SiLUBackward(dx, dyb, xb, count) }, dx,
			siluBackwardRef(f64s(dy), f64s(x)), 1e-5)
	}
	{ // resampling: 8 planes of 20×20
		planes, h, w := 8, 20, 20
		xs := planes * h * w
		x, dyUp, dyPool := normals(r, xs, 1), normals(r, 4*xs, 1), normals(r, xs/4, 1)
		xb, dub, dpb := upload(t, d, x), upload(t, d, dyUp), upload(t, d, dyPool)
		y, dx, py, pdx := alloc(t, d, 4*xs), alloc(t, d, xs), alloc(t, d, xs/4), alloc(t, d, xs)
		check("upsample", (4*xs+up-1)/up, func() error { return d.Upsample2x(y, xb, planes, 1, h, w) },
			y, upsampleRef(f64s(x), planes, h, w), 1e-5)
		check("upsample dx", (xs+up-1)/up, func() error { return d.Upsample2xBackward(dx, dub, planes, 1, h, w) },
			dx, upsampleBackwardRef(f64s(dyUp), planes, h, w), 1e-5)
		check("avg pool", (xs/4+up-1)/up, func() error { return d.AvgPool2x(py, xb, planes, 1, h, w) },
			py, avgPoolRef(f64s(x), planes, h, w), 1e-5)
		check("avg pool dx", (xs+up-1)/up, func() error { return d.AvgPool2xBackward(pdx, dpb, planes, 1, h, w) },
			pdx, avgPoolBackwardRef(f64s(dyPool), planes, h, w), 1e-5)
	}
}

// relCase is one output of a kernel test: the GPU buffer, its float64 reference and the tolerance on
// the relative error max|gpu − ref| / max|ref|.
type relCase struct {
	name string
	got  *Buffer
	want []float64
	tol  float64
}

// checkRel reads every case back and fails the test where the relative error is not below its
// tolerance; what names the kernel and shape in the messages.
func checkRel(t *testing.T, d *Device, what string, cases []relCase) {
	t.Helper()
	for _, c := range cases {
		e := relErr(read(t, d, c.got), c.want)
		t.Logf("%s %s: rel err %.2e", what, c.name, e)
		if !(e < c.tol) {
			t.Errorf("%s %s: rel err %.2e, want < %.0e", what, c.name, e, c.tol)
		}
	}
}
