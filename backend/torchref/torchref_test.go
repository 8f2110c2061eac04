package torchref

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"asbm/backend/cpu"
	"asbm/shaders"
	"asbm/weights"
)

// needTorch skips the test when the reference cannot run, unless ASBM_REQUIRE_TORCH=1 (build.sh
// test, which installs it) makes that a failure.
func needTorch(t *testing.T) {
	t.Helper()
	if _, err := Python(); err != nil {
		if os.Getenv("ASBM_REQUIRE_TORCH") == "1" {
			t.Fatalf("ASBM_REQUIRE_TORCH=1: %v", err)
		}
		t.Skipf("PyTorch reference unavailable: %v", err)
	}
	if _, err := Script(); err != nil {
		t.Fatal(err)
	}
}

// randomNet returns a U-Net of arch a with every parameter random (so the zero-initialised output
// conv does not make the comparison trivial), scaled by 1/√fan-in so activations stay O(1), and
// group norms' γ around 1.
func randomNet(t *testing.T, a weights.Arch, r *rand.Rand) *shaders.Net {
	t.Helper()
	m, err := shaders.NewNet(a, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	names, shapes := shaders.ParamShapes(a)
	for i, name := range names {
		p := m.Params[name]
		fan := 1
		if len(shapes[i]) > 1 {
			fan = len(p) / shapes[i][0]
			if strings.HasSuffix(name, "temb.l1.w") || strings.HasSuffix(name, "temb.l2.w") || strings.HasSuffix(name, ".temb.w") {
				fan = shapes[i][0] // linear weights are [in, out]
			}
		}
		for j := range p {
			switch {
			case strings.HasSuffix(name, ".g"):
				p[j] = float32(1 + 0.2*r.NormFloat64())
			default:
				p[j] = float32(r.NormFloat64() / math.Sqrt(float64(fan)))
			}
		}
	}
	return m
}

// writeNet writes m's parameters under prefix into a new weights file.
func writeNet(t *testing.T, m *shaders.Net, prefix string, drop string) string {
	t.Helper()
	f := weights.New(m.Arch)
	names, shapes := shaders.ParamShapes(m.Arch)
	for i, name := range names {
		if name == drop {
			continue
		}
		f.AddF32(prefix+name, shapes[i], m.Params[name])
	}
	path := filepath.Join(t.TempDir(), "net.msgpack")
	if err := weights.WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	return path
}

// relErr is max|a − b| / max|b|.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den
}

// TestForwardMatchesGo evaluates random U-Nets (a grey one with two levels, and a colour one with two
// blocks per level, three levels and channel changes, as the 32×32 benchmark net) in PyTorch and in
// Go, both the plain-Go forward (shaders.Net.ForwardCPU) and the CPU engine (cpu.Net.Eval), on random
// times and images: max|torch − go| / max|go| < 1e-4 for each.
func TestForwardMatchesGo(t *testing.T) {
	needTorch(t)
	r := rand.New(rand.NewPCG(71, 72))
	archs := []weights.Arch{
		{Kind: "unet", Dim: 1 * 8 * 8, Channels: 1, Height: 8, Width: 8, Base: 8, Mults: []int{1, 2}, ResBlocks: 1,
			Groups: 4, TimeEmb: 16, Fourier: 4},
		{Kind: "unet", Dim: 3 * 16 * 16, Channels: 3, Height: 16, Width: 16, Base: 16, Mults: []int{1, 2, 2}, ResBlocks: 2,
			Groups: 8, TimeEmb: 32, Fourier: 8},
	}
	for _, a := range archs {
		m := randomNet(t, a, r)
		path := writeNet(t, m, "score.", "")
		const n = 5
		tt, x := make([]float32, n), make([]float32, n*a.Dim)
		for i := range tt {
			tt[i] = r.Float32()
		}
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		got, err := Forward(path, "score.", tt, x)
		if err != nil {
			t.Fatal(err)
		}
		plain := m.ForwardCPU(tt, x)
		eng, err := cpu.FromNet(m, cpu.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		fast := make([]float32, len(x))
		eng.Eval(tt, x, fast)
		ep, ef := relErr(got, plain), relErr(got, fast)
		t.Logf("%d×%d×%d base %d: torch vs plain Go %.2g, vs the CPU engine %.2g", a.Channels, a.Height, a.Width, a.Base, ep, ef)
		if !(ep < 1e-4) || !(ef < 1e-4) {
			t.Errorf("%d×%d×%d base %d: torch vs plain Go %.3g, vs the CPU engine %.3g, want < 1e-4", a.Channels, a.Height, a.Width, a.Base, ep, ef)
		}
	}
}

// TestForwardErrors checks that a file without a tensor the arch needs, a wrong prefix and a file
// that is no weights file each give an error naming the problem.
func TestForwardErrors(t *testing.T) {
	needTorch(t)
	r := rand.New(rand.NewPCG(73, 74))
	a := weights.Arch{Kind: "unet", Dim: 64, Channels: 1, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2}, ResBlocks: 1,
		Groups: 2, TimeEmb: 8, Fourier: 2}
	m := randomNet(t, a, r)
	tt, x := []float32{0.5}, make([]float32, a.Dim)
	if _, err := Forward(writeNet(t, m, "", "mid.conv2.w"), "", tt, x); err == nil || !strings.Contains(err.Error(), "missing tensor mid.conv2.w") {
		t.Errorf("missing tensor: got %v", err)
	}
	if _, err := Forward(writeNet(t, m, "score.", ""), "control.", tt, x); err == nil || !strings.Contains(err.Error(), "missing tensor control.in.w") {
		t.Errorf("wrong prefix: got %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.msgpack")
	os.WriteFile(junk, []byte("not a weights file"), 0o644)
	if _, err := Forward(junk, "", tt, x); err == nil || !strings.Contains(err.Error(), "not a weights file") {
		t.Errorf("junk file: got %v", err)
	}
	if _, err := Forward(writeNet(t, m, "", ""), "", tt, make([]float32, 3)); err == nil || !strings.Contains(err.Error(), "values") {
		t.Errorf("short x: got %v", err)
	}
}

// TestBenchStep runs the benchmark on a tiny U-Net: it must report positive times for the batch and
// thread count asked (timings themselves are not asserted).
func TestBenchStep(t *testing.T) {
	needTorch(t)
	a := weights.Arch{Kind: "unet", Dim: 64, Channels: 1, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2}, ResBlocks: 1,
		Groups: 2, TimeEmb: 8, Fourier: 2}
	res, err := BenchStep(a, 4, 1, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, shapes := shaders.ParamShapes(a)
	params := 0
	for _, sh := range shapes {
		p := 1
		for _, v := range sh {
			p *= v
		}
		params += p
	}
	if res.Batch != 4 || res.Threads != 1 || res.Params != params || !(res.StepMS > 0) || !(res.ForwardMS > 0) {
		t.Errorf("BenchStep = %+v, want batch 4, 1 thread, %d parameters, positive times", res, params)
	}
	if _, err := BenchStep(weights.Arch{Kind: "mlp", Dim: 2}, 4, 1, 1, 1); err == nil {
		t.Errorf("BenchStep of an MLP: want an error")
	}
}
