//go:build js && wasm

// The SIMD kernels (simd/kernels.wat) against the plain-Go reference (model/unet.go), under Node.js:
//
//	wat2wasm wasm/simd/kernels.wat -o wasm/simd/kernels.wasm
//	GOOS=js GOARCH=wasm go test -tags asbmsimd -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./wasm
//
// (./build.sh test does both, with ASBM_REQUIRE_SIMD=1.) Without the tag the module is absent, and
// on an engine without wasm SIMD (node --no-enable-sse4-1) it does not validate: then these tests
// skip, unless ASBM_REQUIRE_SIMD=1 makes that a failure, and the client's tests (main_test.go)
// check that it falls back to the plain-Go kernels.
//
// Tolerance: none. The kernels compute every value with the reference's operations in the
// reference's order (kernels.wat), so every output must equal the reference's (== on float32, so
// −0 equals +0; NaN must meet NaN). A kernel that reorders a sum would change the last bits; this
// file is where its tolerance would then be stated.
package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// testModule instantiates a fresh copy of the kernels (not the client's).
func testModule(t *testing.T) *simdModule {
	t.Helper()
	if len(simdWasm) == 0 {
		if os.Getenv("ASBM_REQUIRE_SIMD") == "1" {
			t.Fatal("the SIMD kernels are not built in: build with -tags asbmsimd after wat2wasm (see build.sh)")
		}
		t.Skip("built without -tags asbmsimd: no SIMD kernels to test")
	}
	m, err := newSIMDModule(simdWasm)
	if err != nil {
		if os.Getenv("ASBM_REQUIRE_SIMD") == "1" {
			t.Fatal(err)
		}
		t.Skipf("the SIMD kernels do not run here: %v", err) // e.g. node --no-enable-sse4-1
	}
	return m
}

// sameFloats fails unless got and want are equal value for value (NaN matching NaN).
func sameFloats(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g != w && !(g != g && w != w) {
			t.Fatalf("%s: value %d of %d = %v (%08x), reference %v (%08x)", what, i, len(want), g, math.Float32bits(g), w, math.Float32bits(w))
		}
	}
}

func randFloats(r *rand.Rand, n int, scale, offset float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(offset + scale*r.NormFloat64())
	}
	return v
}

// out returns a buffer of n floats in m, filled with NaN so that a value the kernel fails to write
// shows.
func (m *simdModule) out(n int) int {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return m.put(v)
}

func (m *simdModule) get(off, n int) []float32 {
	v := make([]float32, n)
	m.read(off, v)
	return v
}

func TestSIMDConvMatchesConvCPU(t *testing.T) {
	m := testModule(t)
	r := newRand()
	for iter := 0; iter < 60; iter++ {
		m.resetWeights()
		n, cin, cout := 1+r.IntN(3), 1+r.IntN(13), 1+r.IntN(13)
		h, w, k := 1+r.IntN(9), 1+r.IntN(11), []int{1, 3}[r.IntN(2)]
		if iter < 4 { // the shipped nets' shapes, one image each
			n, cin, cout, h, w, k = 1, []int{12, 24, 36, 48}[iter], []int{12, 24, 3, 48}[iter], []int{32, 16, 32, 8}[iter], []int{32, 16, 32, 8}[iter], 3
		}
		x := randFloats(r, n*cin*h*w, 1, 0)
		wt := randFloats(r, cout*cin*k*k, 0.3, 0)
		b := randFloats(r, cout, 0.3, 0)
		want := model.ConvCPU(x, wt, b, n, cin, cout, h, w, k)
		mode := r.IntN(3) // 0: plain, 1: + tadd (per image and channel), 2: + radd (elementwise)
		add := randFloats(r, map[int]int{0: 1, 1: n * cout, 2: len(want)}[mode], 1, 0)
		for i := range want {
			switch mode {
			case 1:
				want[i] += add[i/(h*w)]
			case 2:
				want[i] += add[i]
			}
		}
		wp, bp := packConv(wt, b, cout, cin, k)
		px, pw, pb, pa := m.put(x), m.put(wp), m.put(bp), m.put(add)
		ps := m.put(make([]float32, convScratch(cin, cout, h, w, k)/4+1))
		py := m.out(len(want))
		tadd, radd := 0, 0
		if mode == 1 {
			tadd = pa
		} else if mode == 2 {
			radd = pa
		}
		m.conv.Invoke(px, pw, pb, py, ps, n, cin, cout, h, w, k, tadd, radd)
		sameFloats(t, "conv", m.get(py, len(want)), want)
	}
}

func TestSIMDGroupNormSiLUMatchesGo(t *testing.T) {
	m := testModule(t)
	r := newRand()
	for iter := 0; iter < 60; iter++ {
		m.resetWeights()
		n, groups, cg, hw := 1+r.IntN(3), 1+r.IntN(4), 1+r.IntN(5), 1+r.IntN(50)
		if r.IntN(4) == 0 {
			hw = []int{49, 64, 196, 1024}[r.IntN(4)]
		}
		c := groups * cg
		x := randFloats(r, n*c*hw, math.Pow(10, float64(r.IntN(5)-2)), 3*r.NormFloat64())
		gamma, beta := randFloats(r, c, 0.5, 1), randFloats(r, c, 0.5, 0)
		silu := r.IntN(2)
		want := model.GroupNormCPU(x, gamma, beta, n, c, hw, groups)
		if silu == 1 {
			for i := range want {
				want[i] = model.SiLU(want[i])
			}
		}
		px, pg, pb, py := m.put(x), m.put(gamma), m.put(beta), m.out(len(want))
		m.gn.Invoke(px, py, pg, pb, n, c, hw, groups, silu)
		sameFloats(t, "gn", m.get(py, len(want)), want)
	}
}

// goLinear is model's linear (y = b, then y += x[i]·W[i, :] in order) on rows rows, then SiLU.
func goLinear(x, w, b []float32, rows, in, out int, silu bool) []float32 {
	y := make([]float32, rows*out)
	for r := 0; r < rows; r++ {
		yr := y[r*out : (r+1)*out]
		copy(yr, b)
		for i := 0; i < in; i++ {
			xi := x[r*in+i]
			for j := range yr {
				yr[j] += xi * w[i*out+j]
			}
		}
		if silu {
			for j := range yr {
				yr[j] = model.SiLU(yr[j])
			}
		}
	}
	return y
}

func TestSIMDLinearMatchesGo(t *testing.T) {
	m := testModule(t)
	r := newRand()
	for iter := 0; iter < 40; iter++ {
		m.resetWeights()
		rows, in, out := 1+r.IntN(5), 1+r.IntN(40), 1+r.IntN(40)
		x, w, b := randFloats(r, rows*in, 1, 0), randFloats(r, in*out, 0.5, 0), randFloats(r, out, 0.5, 0)
		silu := r.IntN(2)
		want := goLinear(x, w, b, rows, in, out, silu == 1)
		px, pw, pb, py := m.put(x), m.put(w), m.put(b), m.out(len(want))
		m.linear.Invoke(px, pw, pb, py, rows, in, out, silu)
		sameFloats(t, "linear", m.get(py, len(want)), want)
	}
}

// TestSIMDSiLUEdges checks the kernels' SiLU (a float64 exp written out in SIMD, kernels.wat) on
// the values where an exp goes wrong: zeros, the float32 overflow and underflow of exp(−x) (about
// ±88.7 and −103.3) and the clamp around them, infinities, NaN, and many values on every scale.
func TestSIMDSiLUEdges(t *testing.T) {
	m := testModule(t)
	r := newRand()
	v := []float32{0, float32(math.Copysign(0, -1)), 1e-30, 1.0 / (1 << 28), 1e-8, 0.5, 1, 10, 20, 40, 80, 87.3, 88.5, 88.7,
		88.72, 88.8, 89, 89.5, 100, 103, 103.28, 103.3, 103.9, 104, 104.5, 200, 709, 710, 745, 750, 1e30, math.MaxFloat32,
		float32(math.Inf(1)), 1.401298464324817e-45}
	for _, x := range slices.Clone(v) {
		v = append(v, -x)
	}
	v = append(v, float32(math.NaN()))
	for i := 0; i < 20000; i++ {
		v = append(v, float32(r.NormFloat64()*math.Pow(10, float64(r.IntN(9)-4))))
	}
	// linear with one input and W = b = 0 plus x·1: y = 0 + x·1 (−0 becomes +0), then SiLU.
	rows := len(v)
	w, b := []float32{1}, []float32{0}
	want := goLinear(v, w, b, rows, 1, 1, true)
	px, pw, pb, py := m.put(v), m.put(w), m.put(b), m.out(rows)
	m.linear.Invoke(px, pw, pb, py, rows, 1, 1, 1)
	sameFloats(t, "SiLU", m.get(py, rows), want)
}

func TestSIMDPoolUpConcatMatchGo(t *testing.T) {
	m := testModule(t)
	r := newRand()
	for iter := 0; iter < 40; iter++ {
		m.resetWeights()
		planes, h, w := 1+r.IntN(6), 2*(1+r.IntN(8)), 2*(1+r.IntN(8))
		x := randFloats(r, planes*h*w, 1, 0)
		px, py := m.put(x), m.out(planes*h*w/4)
		m.pool.Invoke(px, py, planes, h, w)
		sameFloats(t, "pool", m.get(py, planes*h*w/4), model.AvgPool2xCPU(x, planes, h, w))

		h, w = 1+r.IntN(9), 1+r.IntN(9)
		x = randFloats(r, planes*h*w, 1, 0)
		px, py = m.put(x), m.out(4*planes*h*w)
		m.up.Invoke(px, py, planes, h, w)
		sameFloats(t, "up", m.get(py, 4*planes*h*w), model.Upsample2xCPU(x, planes, h, w))

		n, ca, cb, hw := 1+r.IntN(3), 1+r.IntN(5), 1+r.IntN(5), 1+r.IntN(30)
		a, b := randFloats(r, n*ca*hw, 1, 0), randFloats(r, n*cb*hw, 1, 0)
		pa, pb, py := m.put(a), m.put(b), m.out(n*(ca+cb)*hw)
		m.concat.Invoke(pa, pb, py, n, ca, cb, hw)
		sameFloats(t, "concat", m.get(py, n*(ca+cb)*hw), model.ConcatCPU(a, b, n, ca, cb, hw))
	}
}

// randomUNet is a U-Net of random, deliberately odd shape (channels not multiples of 4, widths
// like 6 or 10, odd time-embedding widths) with every parameter random, the output layer and the
// group norms' γ, β included (model.NewNet leaves them 0, 1 and 0).
func randomUNet(t *testing.T, r *rand.Rand) *model.Net {
	t.Helper()
	L := 1 + r.IntN(3)
	f := 1 << (L - 1)
	groups := 1 + r.IntN(3)
	a := weights.Arch{Kind: "unet", Channels: 1 + r.IntN(3), Height: f * (1 + r.IntN(3)), Width: f * (1 + r.IntN(3)),
		Base: groups * (1 + r.IntN(3)), ResBlocks: 1 + r.IntN(2), Groups: groups, TimeEmb: 1 + r.IntN(9), Fourier: 1 + r.IntN(4)}
	for l := 0; l < L; l++ {
		a.Mults = append(a.Mults, 1+r.IntN(3))
	}
	a.Dim = a.Channels * a.Height * a.Width
	net, err := model.NewNet(a, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range net.Params {
		if len(name) > 2 && (name[len(name)-2:] == ".g" || name[:4] == "out." || name[len(name)-3:] == "n.b" ||
			name[len(name)-4:] == "n1.b" || name[len(name)-4:] == "n2.b") {
			for i := range p {
				p[i] = float32(0.3 * (2*r.Float64() - 1))
			}
		}
	}
	return net
}

// TestSIMDNetMatchesForwardCPU: whole random U-Nets on the kernels equal net.ForwardCPU, also when
// a batch is split into passes.
func TestSIMDNetMatchesForwardCPU(t *testing.T) {
	m := testModule(t)
	r := newRand()
	for iter := 0; iter < 25; iter++ {
		net := randomUNet(t, r)
		m.resetWeights()
		s, err := newSIMDNet(m, net)
		if err != nil {
			t.Fatal(err)
		}
		n := 1 + r.IntN(5)
		if r.IntN(2) == 0 {
			s.rows = 1 + r.IntN(n) // several passes
		}
		tv := make([]float32, n)
		for i := range tv {
			tv[i] = r.Float32()
		}
		x := randFloats(r, n*net.Arch.Dim, 1, 0)
		got := make([]float32, len(x))
		s.Eval(tv, x, got)
		want := net.ForwardCPU(tv, x)
		sameFloats(t, fmt.Sprintf("U-Net %+v", net.Arch), got, want)
	}
}

// TestSIMDFallback: a client without the module, or a browser that rejects it, runs plain Go; a
// module that is there reports itself, and {simd: false} still picks plain Go.
func TestSIMDFallback(t *testing.T) {
	if _, err := newSIMDModule(nil); err == nil {
		t.Error("newSIMDModule(nil) succeeded")
	}
	if _, err := newSIMDModule([]byte("\x00asm\x01\x00\x00\x00\x01")); err == nil {
		t.Error("newSIMDModule(invalid bytes) succeeded")
	}
	m := testModule(t)
	r := newRand()
	f, _ := tinyUNetFile(t, r, "")
	var cpu model.CPUNets
	var err error
	if cpu.Gen, err = model.NetFromFile(f, "gen/"); err != nil {
		t.Fatal(err)
	}
	ld := &loaded{image: true, cpu: cpu}
	old, oldTried := simdMod, simdTried
	defer func() { simdMod, simdTried = old, oldTried }()
	simdMod, simdTried = m, true
	if nets, k := cpuEvaluators(ld, true); k != kernelsSIMD || nets.Gen == nil || nets.Score != nil {
		t.Errorf("with the module: kernels %q, gen %v, score %v", k, nets.Gen, nets.Score)
	}
	if nets, k := cpuEvaluators(ld, false); k != kernelsGo || nets.Gen != model.Evaluator(cpu.Gen) {
		t.Errorf("simd: false: kernels %q", k)
	}
	simdMod = nil
	if _, k := cpuEvaluators(ld, true); k != kernelsGo {
		t.Errorf("without the module: kernels %q", k)
	}
}
