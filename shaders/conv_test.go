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

// TestConvTiles runs the tiled kernels of both adapter families (the software tiles with 2×2
// register sub-blocks and the GPU tiles with one, whichever adapter the tests have) on fresh random
// inputs against the float64 references, at shapes that cut every tile short: channel counts that
// are no multiple of a tile or of a staged chunk (several channel tiles and chunks, 3 channels for
// the narrow tile), k = 1 and 3, batches > 1, H ≠ W, images smaller than a pixel tile (tiles span
// images), and the weight gradient with and without split pixel ranges. Tolerances as in
// TestConvKernels: y and dx 1e-5, dW and db 1e-4 relative to the largest reference value.
func TestConvTiles(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 12))
	defer func() { convTileKind = 0 }()
	shapes := []struct{ n, cin, cout, h, w, k int }{
		{2, 37, 70, 9, 6, 3},  // 70 outputs: 3 channel tiles of 32; 37 inputs: 3 staged chunks
		{3, 70, 37, 5, 11, 1}, // the transposed shape, 1×1; dW in 2 pixel splits
		{1, 20, 3, 17, 13, 3}, // the narrow tile (3 of 8 channels)
		{5, 9, 33, 4, 4, 3},   // 16-pixel images: a pixel tile spans 8 (or 4) of them
		{2, 8, 8, 32, 32, 1},  // dW in 16 pixel splits
		{1, 130, 66, 3, 5, 3}, // 130 input channels: 5 channel tiles of 32 in dx, 9 chunks in y
		{3, 3, 16, 6, 10, 3},  // dW: 9 taps of 3 channels packed into one 64-column tile
		{2, 16, 16, 8, 8, 3},  // dW: 2 taps of 16 channels a 32-column tile, the last tile half empty
	}
	for _, kind := range []int{1, 2} {
		convTileKind = kind
		for _, s := range shapes {
			nx, ny, nw := s.n*s.cin*s.h*s.w, s.n*s.cout*s.h*s.w, s.cout*s.cin*s.k*s.k
			x, w, b, dy := normals(r, nx, 1), normals(r, nw, 0.5), normals(r, s.cout, 1), normals(r, ny, 1)
			yRef := convRef(f64s(x), f64s(w), f64s(b), s.n, s.cin, s.cout, s.h, s.w, s.k)
			dxRef, dwRef, dbRef := convBackwardRef(f64s(dy), f64s(x), f64s(w), s.n, s.cin, s.cout, s.h, s.w, s.k)
			xb, wb, bb, dyb := upload(t, d, x), upload(t, d, w), upload(t, d, b), upload(t, d, dy)
			yb, dxb, dwb, dbb := alloc(t, d, ny), alloc(t, d, nx), alloc(t, d, nw), alloc(t, d, s.cout)
			if err := d.Conv(yb, xb, wb, bb, s.n, s.cin, s.cout, s.h, s.w, s.k); err != nil {
				t.Fatal(err)
			}
			if err := d.ConvBackwardData(dxb, dyb, wb, s.n, s.cin, s.cout, s.h, s.w, s.k); err != nil {
				t.Fatal(err)
			}
			if err := d.ConvBackwardWeights(dwb, dbb, dyb, xb, s.n, s.cin, s.cout, s.h, s.w, s.k); err != nil {
				t.Fatal(err)
			}
			wt := d.pickWeightTile(s.cout, s.cin, s.k)
			splits, _ := convWeightSplits(s.n*s.h*s.w, (s.cout+wt.bm-1)/wt.bm*((s.k*s.k*wt.cpad+wt.bn-1)/wt.bn), wt.bk)
			checkRel(t, d, fmt.Sprintf("tiles %d: conv %v (fwd %s, dx %s, dW %dx%d/%dx%d, tap stride %d, in %d splits)", kind, s,
				d.pickConvTile(s.cout).name, d.pickConvTile(s.cin).name, wt.bm, wt.bn, wt.sbm, wt.sbn, wt.cpad, splits), []relCase{
				{"y", yb, yRef, 1e-5},
				{"dx", dxb, dxRef, 1e-5},
				{"dW", dwb, dwRef, 1e-4},
				{"db", dbb, dbRef, 1e-4},
			})
		}
	}
}

// TestConvAddedTerms checks conv.wgsl's optional epilogue terms, the time bias t[n·cout + co] and the
// residual r, alone and together, with both tile families, on images smaller than a pixel tile (a
// tile's pixels belong to several images, each with its own t), against the float64 reference plus
// the terms. Tolerance 1e-5 relative to the largest reference value, as for y in TestConvKernels.
func TestConvAddedTerms(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 13))
	defer func() { convTileKind = 0 }()
	n, cin, cout, h, w, k := 5, 6, 19, 4, 3, 3
	nx, ny, nw := n*cin*h*w, n*cout*h*w, cout*cin*k*k
	x, wt, b, tb, res := normals(r, nx, 1), normals(r, nw, 0.5), normals(r, cout, 1), normals(r, n*cout, 1), normals(r, ny, 1)
	base := convRef(f64s(x), f64s(wt), f64s(b), n, cin, cout, h, w, k)
	xb, wb, bb, tbb, rb := upload(t, d, x), upload(t, d, wt), upload(t, d, b), upload(t, d, tb), upload(t, d, res)
	for _, kind := range []int{1, 2} {
		convTileKind = kind
		for _, c := range []struct {
			name       string
			tb, res    *Buffer
			addT, addR bool
		}{{"time bias", tbb, nil, true, false}, {"residual", nil, rb, false, true}, {"both", tbb, rb, true, true}} {
			want := append([]float64(nil), base...)
			for i := range want {
				img, co := i/(cout*h*w), i/(h*w)%cout
				if c.addT {
					want[i] += float64(tb[img*cout+co])
				}
				if c.addR {
					want[i] += float64(res[i])
				}
			}
			y := alloc(t, d, ny)
			err := d.scoped("test", func() error {
				o, err := d.convOp(y, xb, wb, bb, c.tb, c.res, n, cin, cout, h, w, k)
				if err != nil {
					return err
				}
				return d.runOne(o)
			})
			if err != nil {
				t.Fatal(err)
			}
			checkRel(t, d, fmt.Sprintf("tiles %d: conv + %s", kind, c.name), []relCase{{"y", y, want, 1e-5}})
		}
	}
	// A wrong-sized term is an error, not a silent out-of-range read.
	if _, err := d.convOp(alloc(t, d, ny), xb, wb, bb, alloc(t, d, n*cout-1), nil, n, cin, cout, h, w, k); err == nil {
		t.Error("short time bias: no error")
	}
	if _, err := d.convOp(alloc(t, d, ny), xb, wb, bb, nil, alloc(t, d, ny-1), n, cin, cout, h, w, k); err == nil {
		t.Error("short residual: no error")
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
	{ // conv: 1×2→5 channels, 40×40: forward and backward-data each have one channel tile and
		// ⌈1600/128⌉ = 13 (software tiles) or 25 pixel tiles, which fold over y and z with overhang.
		// (conv_bwd_weights.wgsl's grid, tiles × taps × splits, stays far below the limit: not folded.)
		n, cin, cout, h, w := 1, 2, 5, 40, 40
		nx, ny, nw := n*cin*h*w, n*cout*h*w, cout*cin*9
		tiles := func(c int) int { return (n*h*w + d.pickConvTile(c).bn - 1) / d.pickConvTile(c).bn }
		x, wt, b, dy := normals(r, nx, 1), normals(r, nw, 0.5), normals(r, cout, 1), normals(r, ny, 1)
		xb, wb, bb, dyb := upload(t, d, x), upload(t, d, wt), upload(t, d, b), upload(t, d, dy)
		y, dx := alloc(t, d, ny), alloc(t, d, nx)
		dxRef, _, _ := convBackwardRef(f64s(dy), f64s(x), f64s(wt), n, cin, cout, h, w, 3)
		check("conv", tiles(cout), func() error { return d.Conv(y, xb, wb, bb, n, cin, cout, h, w, 3) },
			y, convRef(f64s(x), f64s(wt), f64s(b), n, cin, cout, h, w, 3), 1e-5)
		check("conv dx", tiles(cin), func() error { return d.ConvBackwardData(dx, dyb, wb, n, cin, cout, h, w, 3) },
			dx, dxRef, 1e-5)
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
