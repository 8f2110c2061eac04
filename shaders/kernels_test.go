package shaders

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Kernel tolerance: relErr (max|gpu − ref| / max|ref|) against float64 references.
const kernelTol = 1e-5

func TestTimeFeatKernel(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for _, n := range []int{1, 37, 2000} {
		// dim = 0 is the U-Net's time embedding input (features only; x is not read).
		for _, a := range [][2]int{{2, 8}, {3, 5}, {1, 0}, {0, 4}} {
			dim, F := a[0], a[1]
			x := normals(r, n*dim, 1)
			// Times beyond [0, 1] exercise the range reduction.
			tv := uniforms(r, n, -0.5, 1.5)
			w := dim + 2*F
			out := alloc(t, d, n*w)
			tb := upload(t, d, tv)
			xb := tb
			if dim > 0 {
				xb = upload(t, d, x)
			}
			if err := d.TimeFeat(out, xb, tb, n, dim, F); err != nil {
				t.Fatal(err)
			}
			got := read(t, d, out)
			// The x columns must be copied exactly; the features are compared on their own (|ref| ≤ 1).
			var feat []float32
			var want []float64
			for i := 0; i < n; i++ {
				for c := 0; c < dim; c++ {
					if got[i*w+c] != x[i*dim+c] {
						t.Fatalf("timefeat n=%d: row %d column %d is %v, x is %v", n, i, c, got[i*w+c], x[i*dim+c])
					}
				}
				feat = append(feat, got[i*w+dim:(i+1)*w]...)
				for k := 0; k < F; k++ {
					want = append(want, math.Sin(math.Pi*float64(k+1)*float64(tv[i])))
				}
				for k := 0; k < F; k++ {
					want = append(want, math.Cos(math.Pi*float64(k+1)*float64(tv[i])))
				}
			}
			if F == 0 {
				continue
			}
			if e := relErr(feat, want); e > kernelTol {
				t.Errorf("timefeat n=%d dim=%d F=%d: features rel err %.3g > %g", n, dim, F, e, kernelTol)
			} else {
				t.Logf("timefeat n=%d dim=%d F=%d: features rel err %.3g", n, dim, F, e)
			}
		}
	}
}

func linearRef(x, w, b []float32, n, in, out int, silu bool) []float64 {
	y := make([]float64, n*out)
	for i := 0; i < n; i++ {
		for j := 0; j < out; j++ {
			s := float64(b[j])
			for k := 0; k < in; k++ {
				s += float64(x[i*in+k]) * float64(w[k*out+j])
			}
			if silu {
				s = s / (1 + math.Exp(-s))
			}
			y[i*out+j] = s
		}
	}
	return y
}

func TestLinearKernel(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 2))
	shapes := [][2]int{{18, 128}, {128, 128}, {128, 2}, {7, 3}, {130, 67}}
	for _, tl := range tiles {
		for _, n := range []int{1, 37, 2000} {
			for _, s := range shapes {
				in, out := s[0], s[1]
				x := normals(r, n*in, 1)
				bound := 1 / math.Sqrt(float64(in))
				w := uniforms(r, in*out, -bound, bound)
				b := normals(r, out, 0.5)
				xb, wb, bb := upload(t, d, x), upload(t, d, w), upload(t, d, b)
				for _, silu := range []bool{false, true} {
					y := alloc(t, d, n*out)
					o, err := d.linearOp(tl, y, xb, wb, bb, n, in, out, silu)
					if err != nil {
						t.Fatal(err)
					}
					if err := d.runOne(o); err != nil {
						t.Fatal(err)
					}
					if e := relErr(read(t, d, y), linearRef(x, w, b, n, in, out, silu)); e > kernelTol {
						t.Errorf("%s n=%d %d→%d silu=%v: rel err %.3g > %g", tl.name, n, in, out, silu, e, kernelTol)
					}
				}
			}
		}
	}
	// The exported entry point picks a tile by itself.
	n, in, out := 300, 128, 128
	x, w, b := normals(r, n*in, 1), normals(r, in*out, 0.1), normals(r, out, 1)
	y := alloc(t, d, n*out)
	if err := d.Linear(y, upload(t, d, x), upload(t, d, w), upload(t, d, b), n, in, out, true); err != nil {
		t.Fatal(err)
	}
	e := relErr(read(t, d, y), linearRef(x, w, b, n, in, out, true))
	t.Logf("Linear (%s) n=%d %d→%d: rel err %.3g", pickTile(n, out).name, n, in, out, e)
	if e > kernelTol {
		t.Errorf("Linear: rel err %.3g > %g", e, kernelTol)
	}
}

func TestUpdateKernel(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 3))
	for _, n := range []int{1, 37, 2000, 100003} {
		x, y, z := normals(r, n, 1), normals(r, n, 1), normals(r, n, 1)
		a, b, c := float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64())
		xb, yb, zb := upload(t, d, x), upload(t, d, y), upload(t, d, z)
		for _, drop := range []string{"", "y", "z"} {
			yy, zz := yb, zb
			bw, cw := float64(b), float64(c)
			switch drop {
			case "y":
				yy, bw = nil, 0
			case "z":
				zz, cw = nil, 0
			}
			out := alloc(t, d, n)
			if err := d.Update(out, xb, yy, zz, a, b, c); err != nil {
				t.Fatal(err)
			}
			want := make([]float64, n)
			for i := range want {
				want[i] = float64(a)*float64(x[i]) + bw*float64(y[i]) + cw*float64(z[i])
			}
			if e := relErr(read(t, d, out), want); e > kernelTol {
				t.Errorf("update n=%d drop=%q: rel err %.3g > %g", n, drop, e, kernelTol)
			}
		}
	}
}

// TestDispatchFolding lowers the per-dimension workgroup limit so every kernel must fold its grid
// into 2-D (3-D for linear), and checks the results still match.
func TestDispatchFolding(t *testing.T) {
	d := gpu(t)
	old := maxGroupsPerDim
	maxGroupsPerDim = 12
	defer func() { maxGroupsPerDim = old }()
	r := rand.New(rand.NewPCG(rand.Uint64(), 4))
	n, dim, F := 2000, 2, 8
	w := dim + 2*F
	x, tv := normals(r, n*dim, 1), uniforms(r, n, 0, 1)
	feat := alloc(t, d, n*w)
	if err := d.TimeFeat(feat, upload(t, d, x), upload(t, d, tv), n, dim, F); err != nil {
		t.Fatal(err)
	}
	fv := read(t, d, feat)
	want := make([]float64, n*w)
	for i := 0; i < n; i++ {
		want[i*w], want[i*w+1] = float64(x[2*i]), float64(x[2*i+1])
		for k := 0; k < F; k++ {
			want[i*w+dim+k] = math.Sin(math.Pi * float64(k+1) * float64(tv[i]))
			want[i*w+dim+F+k] = math.Cos(math.Pi * float64(k+1) * float64(tv[i]))
		}
	}
	if e := relErr(fv, want); e > kernelTol {
		t.Errorf("folded timefeat: rel err %.3g", e)
	}
	out := 5
	wt, b := normals(r, w*out, 0.3), normals(r, out, 1)
	y := alloc(t, d, n*out)
	for _, tl := range tiles {
		o, err := d.linearOp(tl, y, feat, upload(t, d, wt), upload(t, d, b), n, w, out, true)
		if err != nil {
			t.Fatal(err)
		}
		if o.groups[2] < 2 {
			t.Fatalf("%s: grid %v is not folded", tl.name, o.groups)
		}
		if err := d.runOne(o); err != nil {
			t.Fatal(err)
		}
		if e := relErr(read(t, d, y), linearRef(fv, wt, b, n, w, out, true)); e > kernelTol {
			t.Errorf("folded %s: rel err %.3g", tl.name, e)
		}
	}
	u := alloc(t, d, n*w)
	if err := d.Update(u, feat, feat, nil, 2, -0.5, 0); err != nil {
		t.Fatal(err)
	}
	wu := make([]float64, n*w)
	for i := range wu {
		wu[i] = 1.5 * float64(fv[i])
	}
	if e := relErr(read(t, d, u), wu); e > kernelTol {
		t.Errorf("folded update: rel err %.3g", e)
	}
}

// TestBadShaderFails checks that a WGSL error and a layout mismatch come back as errors.
func TestBadShaderFails(t *testing.T) {
	d := gpu(t)
	if _, err := d.kernel("test-syntax-error", "fn main( {", []bindKind{bindUniform}); err == nil {
		t.Error("a WGSL syntax error compiled without error")
	} else {
		t.Logf("syntax error reported: %.120s", err)
	}
	// Valid WGSL whose binding 1 is read_write while the layout says read-only.
	src := strings.Replace(updateWGSL, "var<storage, read> x", "var<storage, read_write> x", 1)
	if _, err := d.kernel("test-layout-mismatch", src, []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite}); err == nil {
		t.Error("a shader that does not match its layout built without error")
	}
}

func TestKernelInputErrors(t *testing.T) {
	d := gpu(t)
	if _, err := d.NewBuffer(0); err == nil {
		t.Error("NewBuffer(0) gave no error")
	}
	if _, err := d.NewBuffer(1 << 30); err == nil {
		t.Error("a 4 GiB buffer gave no error")
	}
	a, b := alloc(t, d, 4), alloc(t, d, 8)
	if err := d.Upload(a, make([]float32, 5)); err == nil {
		t.Error("uploading 5 values into 4 gave no error")
	}
	if err := d.Update(a, a, nil, nil, 1, 0, 0); err == nil {
		t.Error("update with output = input gave no error")
	}
	if err := d.Linear(b, a, a, a, 2, 2, 4, false); err == nil {
		t.Error("linear with a short weight buffer gave no error")
	}
	if err := d.TimeFeat(a, b, b, 2, 2, 8); err == nil {
		t.Error("timefeat with a short output buffer gave no error")
	}
	if err := d.TimeFeat(b, a, a, 2, 0, 0); err == nil {
		t.Error("timefeat with no columns gave no error")
	}
	var nilDev *Device
	if _, err := nilDev.NewBuffer(1); err == nil {
		t.Error("nil device gave no error")
	}
	a.Destroy()
	if _, err := d.Read(a); err == nil {
		t.Error("reading a destroyed buffer gave no error")
	}
}
