package shaders

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// f16Tol bounds max|GPU − ref|/(1+|ref|) between a GPUNetF16 forward and ForwardCPU on the same
// network with its weight matrices rounded to f16: both sides multiply the same values in f32 and
// differ only in summation order, like the f32 engines (mlpTol, unetTol).
const f16Tol = 1e-5

// roundedNet returns a copy of m whose parameters that NewGPUNetF16 stores as halves (storedAsHalf)
// are rounded to f16 through weights' conversion, the others unchanged.
func roundedNet(m *model.Net) *model.Net {
	names, shapes := model.ParamShapes(m.Arch)
	r := &model.Net{Arch: m.Arch, Params: map[string][]float32{}}
	for i, name := range names {
		p := append([]float32(nil), m.Params[name]...)
		if storedAsHalf(shapes[i]) {
			for j, v := range p {
				p[j] = weights.F16ToF32(weights.F32ToF16(v))
			}
		}
		r.Params[name] = p
	}
	return r
}

// scaledDiff is max|got − want|/(1 + |want|): absolute below 1, relative above.
func scaledDiff(got, want []float32) float64 {
	var m float64
	for i := range want {
		e := math.Abs(float64(got[i])-float64(want[i])) / (1 + math.Abs(float64(want[i])))
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		m = math.Max(m, e)
	}
	return m
}

// TestHalfWeightSource checks the mechanical rewrite: the f16 variant of every kernel that reads
// weights differs from its f32 source in exactly two lines, the WT alias and wt(), and a source
// missing (or repeating) either marker line is refused instead of running f32 reads on halves.
func TestHalfWeightSource(t *testing.T) {
	srcs := map[string]string{"conv": convWGSL}
	for _, tl := range tiles {
		srcs[tl.name] = tl.source()
	}
	for _, family := range convTiles {
		for _, tl := range family {
			src, err := tl.source(convWGSL)
			if err != nil {
				t.Fatal(err)
			}
			srcs["conv"+tl.name] = src
		}
	}
	for name, src := range srcs {
		half, err := halfWeightSource(name, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a, b := strings.Split(src, "\n"), strings.Split(half, "\n")
		if len(a) != len(b) {
			t.Fatalf("%s: the variant has %d lines, the source %d", name, len(b), len(a))
		}
		var changed []string
		for i := range a {
			if a[i] != b[i] {
				changed = append(changed, b[i])
				if !strings.HasPrefix(a[i], "alias WT = f32;") && !strings.HasPrefix(a[i], "fn wt(i: u32) -> f32 { return f32(Wt[i]); }") {
					t.Errorf("%s: line %d changed but is no marker line: %q", name, i+1, a[i])
				}
			}
		}
		if len(changed) != 2 || !strings.HasPrefix(changed[0], wtAliasHalf) || !strings.HasPrefix(changed[1], wtReadHalf) {
			t.Errorf("%s: changed lines %q, want the alias then the wt() line rewritten", name, changed)
		}
		// Every weight read goes through wt(): its body is the only indexing of Wt, in both.
		if strings.Count(src, "Wt[") != 1 || strings.Count(half, "Wt[") != 1 || strings.Contains(half, "f32(Wt[") {
			t.Errorf("%s: Wt is indexed outside wt()", name)
		}
	}
	for what, src := range map[string]string{
		"no alias":     strings.Replace(convWGSL, "alias WT = f32;", "alias WT = f16;", 1),
		"no wt()":      strings.Replace(convWGSL, "return f32(Wt[i]);", "return Wt[i];", 1),
		"two aliases":  convWGSL + "\nalias WT = f32;\n",
		"renamed read": strings.Replace(convWGSL, "fn wt(", "fn weight(", 1),
	} {
		if _, err := halfWeightSource("conv", src); err == nil || !strings.Contains(err.Error(), "f16-weight variant") {
			t.Errorf("%s: err %v, want a clear refusal", what, err)
		}
	}
}

// TestGPUNetF16Forward runs tiny U-Nets and MLPs with f16 weights on fresh random inputs: they match
// ForwardCPU on the network rounded the same way within f16Tol, while the unrounded network is
// further off than that (so the halves are what the kernels read), and the f32 GPUNet of the same
// network still matches the unrounded one.
func TestGPUNetF16Forward(t *testing.T) {
	d := gpu(t)
	if !d.F16Weights() {
		t.Skip("the test device was opened F32Only (ASBM_F32_ONLY=1)")
	}
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 16))
	type netCase struct {
		name string
		m    *model.Net
		n    int
	}
	cases := []netCase{
		{"unet0", randomUNet(t, testUNets[0], seed+1), 3},
		{"unet1", randomUNet(t, testUNets[1], seed+2), 2},
		{"mlp0", randomMLP(t, testArchs[0], seed+3, 8), 200},
		{"mlp1", randomMLP(t, testArchs[1], seed+4, 8), 50},
	}
	for _, c := range cases {
		g16, err := NewGPUNetF16(d, c.m)
		if err != nil {
			t.Fatal(err)
		}
		g32, err := NewGPUNet(d, c.m)
		if err != nil {
			t.Fatal(err)
		}
		if g16.Precision() != "f16" || g32.Precision() != "f32" {
			t.Errorf("%s: precisions %q and %q, want f16 and f32", c.name, g16.Precision(), g32.Precision())
		}
		rm := roundedNet(c.m)
		// The stored halves are exactly weights' rounding, packed in order (read back and widened).
		names, shapes := model.ParamShapes(c.m.Arch)
		halves := 0
		for i, name := range names {
			b := g16.param(name)
			if b.half != storedAsHalf(shapes[i]) {
				t.Errorf("%s: %s stored as half %v, want %v", c.name, name, b.half, storedAsHalf(shapes[i]))
			}
			if b.half {
				halves++
				if got := read(t, d, b); maxAbsDiff(got, rm.Params[name]) != 0 {
					t.Errorf("%s: %s on the device differs from its f16 rounding", c.name, name)
				}
			}
		}
		if halves == 0 {
			t.Fatalf("%s: no parameter stored as f16", c.name)
		}
		for rep := 0; rep < 2; rep++ {
			tv := uniforms(r, c.n, 0, 1)
			x := normals(r, c.n*c.m.Arch.Dim, 1)
			got16, err := g16.Forward(tv, x)
			if err != nil {
				t.Fatal(err)
			}
			got32, err := g32.Forward(tv, x)
			if err != nil {
				t.Fatal(err)
			}
			want16, want32 := rm.ForwardCPU(tv, x), c.m.ForwardCPU(tv, x)
			_, scale := f64Of(want32)
			if scale < 1e-1 {
				t.Fatalf("%s: outputs are ~0 (max %g); the test would not see errors", c.name, scale)
			}
			e16, e16raw, e32 := scaledDiff(got16, want16), scaledDiff(got16, want32), scaledDiff(got32, want32)
			t.Logf("%s n=%d: f16 GPU vs rounded CPU %.3g, vs unrounded CPU %.3g; f32 GPU vs CPU %.3g (max |y| %.3g)",
				c.name, c.n, e16, e16raw, e32, scale)
			if !(e16 <= f16Tol) {
				t.Errorf("%s: f16 GPU vs rounded CPU %.3g > %g", c.name, e16, f16Tol)
			}
			if !(e16raw > f16Tol) {
				t.Errorf("%s: f16 GPU vs unrounded CPU %.3g ≤ %g: the f16 rounding is not visible, so the test cannot tell halves from floats", c.name, e16raw, f16Tol)
			}
			if !(e32 <= f16Tol) {
				t.Errorf("%s: f32 GPU vs CPU %.3g > %g", c.name, e32, f16Tol)
			}
		}
		g16.Close()
		g32.Close()
	}
}

// TestSampleGPUF16 samples tiny U-Nets and MLPs with f16-weight GPUNets and compares with model.SampleCPU
// on the networks rounded to f16, same seed, within sampleTol (the f32 engines' bound: the same
// values go through the same f32 sampler arithmetic).
func TestSampleGPUF16(t *testing.T) {
	d := gpu(t)
	if !d.F16Weights() {
		t.Skip("the test device was opened F32Only (ASBM_F32_ONLY=1)")
	}
	seed := rand.Uint64()
	for _, c := range []struct {
		name string
		cpu  model.CPUNets
		n    int
	}{
		{"unet", model.CPUNets{Score: randomUNet(t, testUNets[0], seed+1), Control: randomUNet(t, testUNets[0], seed+2), Gen: randomUNet(t, testUNets[0], seed+3)}, 3},
		{"mlp", sampleNets(t, seed+10), 37},
	} {
		rounded := model.CPUNets{Score: roundedNet(c.cpu.Score), Control: roundedNet(c.cpu.Control), Gen: roundedNet(c.cpu.Gen)}
		var g Nets
		for _, p := range []struct {
			dst **GPUNet
			src *model.Net
		}{{&g.Score, c.cpu.Score}, {&g.Control, c.cpu.Control}, {&g.Gen, c.cpu.Gen}} {
			var err error
			if *p.dst, err = NewGPUNetF16(d, p.src); err != nil {
				t.Fatal(err)
			}
			defer (*p.dst).Close()
		}
		for _, s := range []struct {
			method string
			steps  int
		}{{"sde", 4}, {"ode", 3}, {"gen", 1}} {
			o := model.SampleOptions{Points: c.n, Steps: s.steps, Method: s.method, Seed: seed, Beta0: 0.1, Beta1: 4, SigmaV: 1}
			want, err := model.SampleCPU(rounded.Nets(), o, model.SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			raw, err := model.SampleCPU(c.cpu.Nets(), o, model.SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := SampleGPU(d, g, o, model.SampleHooks{})
			if err != nil {
				t.Fatal(err)
			}
			e, eraw := maxAbsDiff(got, want), maxAbsDiff(got, raw)
			t.Logf("%s %s N=%d: max|GPU f16 − CPU rounded| = %.3g; vs the unrounded CPU nets %.3g", c.name, s.method, s.steps, e, eraw)
			if !(e < sampleTol) {
				t.Errorf("%s %s N=%d: max abs diff %.3g, want < %g", c.name, s.method, s.steps, e, sampleTol)
			}
		}
	}
}

// TestF32OnlyDevice: a device opened F32Only (by option or by ASBM_F32_ONLY=1) has no shader-f16,
// refuses f16 weights with an error that says what to do, and runs the f32 path; the default device
// reports shader-f16 exactly when it was granted.
func TestF32OnlyDevice(t *testing.T) {
	def := gpu(t)
	t.Logf("default device: shader-f16 %v, f16 weights %v", def.HasF16(), def.F16Weights())
	t.Setenv("ASBM_F32_ONLY", "1")
	env, err := NewDevice()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	opt, err := NewDeviceOpts(DeviceOptions{F32Only: true})
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Close()
	seed := rand.Uint64()
	m := randomUNet(t, testUNets[0], seed)
	for name, d := range map[string]*Device{"ASBM_F32_ONLY=1": env, "F32Only": opt} {
		if d.HasF16() || d.F16Weights() {
			t.Errorf("%s: HasF16 %v, F16Weights %v; want false, false", name, d.HasF16(), d.F16Weights())
		}
		if _, err := NewGPUNetF16(d, m); err == nil || !strings.Contains(err.Error(), "F32Only") || !strings.Contains(err.Error(), "NewGPUNet") {
			t.Errorf("%s: NewGPUNetF16 gave %v, want an error naming F32Only and NewGPUNet", name, err)
		}
		g, err := NewGPUNet(d, m)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(seed, 1))
		tv, x := uniforms(r, 2, 0, 1), normals(r, 2*m.Arch.Dim, 1)
		got, err := g.Forward(tv, x)
		g.Close()
		if err != nil {
			t.Fatal(err)
		}
		if e := scaledDiff(got, m.ForwardCPU(tv, x)); !(e <= f16Tol) || g.Precision() != "f32" {
			t.Errorf("%s: f32 path %.3g from ForwardCPU (precision %s)", name, e, g.Precision())
		}
	}
}

// TestGPUNetF16Errors: a weight beyond the f16 range is refused (never stored as an infinity), and
// a half buffer is refused by every binding but a weight's.
func TestGPUNetF16Errors(t *testing.T) {
	d := gpu(t)
	if !d.F16Weights() {
		t.Skip("the test device was opened F32Only (ASBM_F32_ONLY=1)")
	}
	m := randomUNet(t, testUNets[0], 5)
	big := roundedNet(m)
	big.Params["mid.conv1.w"][7] = 70000
	if _, err := NewGPUNetF16(d, big); err == nil || !strings.Contains(err.Error(), "mid.conv1.w") || !strings.Contains(err.Error(), "f16") {
		t.Errorf("a weight of 70000 gave %v, want an error naming the tensor and f16", err)
	}
	if _, err := NewGPUNet(d, big); err != nil {
		t.Errorf("the f32 path refused the same network: %v", err)
	}
	h, err := d.newHalfBufferFrom([]float32{1, -2, 3}, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Destroy()
	if h.bytes() != 8 {
		t.Errorf("3 halves take %d bytes, want 8 (whole words)", h.bytes())
	}
	if err := d.Upload(h, []float32{1, 2, 3}); err == nil || !strings.Contains(err.Error(), "f16") {
		t.Errorf("Upload into halves gave %v, want an error", err)
	}
	out := alloc(t, d, 3)
	if err := d.Update(out, h, nil, nil, 1, 0, 0); err == nil || !strings.Contains(err.Error(), "f16") {
		t.Errorf("update reading halves gave %v, want an error", err)
	}
	if got := read(t, d, h); maxAbsDiff(got, []float32{1, -2, 3}) != 0 {
		t.Errorf("halves read back as %v", got)
	}
}
