package torchref

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"asbm/backend/cpu"
	"asbm/model"
	"asbm/weights"
)

// needTorch skips the test when the reference cannot run, unless ASBM_REQUIRE_TORCH=1 (build.sh
// test, which installs it) makes that a failure: a machine set up to run it must not pass by
// skipping.
func needTorch(t *testing.T) {
	t.Helper()
	if _, err := Python(); err != nil {
		if os.Getenv("ASBM_REQUIRE_TORCH") == "1" {
			t.Fatalf("ASBM_REQUIRE_TORCH=1: %v", err)
		}
		t.Skipf("PyTorch reference unavailable (set ASBM_REQUIRE_TORCH=1 to make this a failure): %v", err)
	}
	if _, err := Script(); err != nil {
		t.Fatal(err)
	}
}

// randomNet returns a U-Net of arch a with every parameter random, the zero-initialised output
// conv included (else the outputs would be the bias alone and agree trivially): weights and biases
// N(0, 1/fan-in) so activations stay O(1) through the residual stack, group norms' γ around 1 and
// β around 0.
func randomNet(t *testing.T, a weights.Arch, r *rand.Rand) *model.Net {
	t.Helper()
	m, err := model.NewNet(a, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	names, shapes := model.ParamShapes(a)
	fan := 1
	for i, name := range names {
		p, sh := m.Params[name], shapes[i]
		switch {
		case len(sh) == 2: // a linear weight [in, out]
			fan = sh[0]
		case len(sh) == 4: // a conv weight [cout, cin, k, k]
			fan = sh[1] * sh[2] * sh[3]
		} // a bias uses the fan-in of the weight before it
		for j := range p {
			switch {
			case strings.HasSuffix(name, ".g"):
				p[j] = float32(1 + 0.2*r.NormFloat64())
			case strings.Contains(name, "gn") && strings.HasSuffix(name, ".b"):
				p[j] = float32(0.2 * r.NormFloat64())
			default:
				p[j] = float32(r.NormFloat64() / math.Sqrt(float64(fan)))
			}
		}
	}
	return m
}

// writeNet writes m's parameters under prefix into a new weights file, in f32 or (f16) half
// precision; edit, when not nil, may change or drop (return false) a tensor on the way.
func writeNet(t *testing.T, m *model.Net, prefix string, f16 bool, edit func(name string, shape *[]int) bool) string {
	t.Helper()
	f := weights.New(m.Arch)
	names, shapes := model.ParamShapes(m.Arch)
	for i, name := range names {
		sh := append([]int(nil), shapes[i]...)
		if edit != nil && !edit(name, &sh) {
			continue
		}
		if f16 {
			if err := f.AddF16(prefix+name, sh, m.Params[name]); err != nil {
				t.Fatal(err)
			}
		} else {
			f.AddF32(prefix+name, sh, m.Params[name])
		}
	}
	path := filepath.Join(t.TempDir(), "net.msgpack")
	if err := weights.WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	return path
}

// readNet reads the network under prefix back from a weights file, as the engines do.
func readNet(t *testing.T, path, prefix string) *model.Net {
	t.Helper()
	f, err := weights.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.NetFromFile(f, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomInputs returns n times in [0, 1) and n images of arch a with N(0, 1) pixels.
func randomInputs(a weights.Arch, n int, r *rand.Rand) (tt, x []float32) {
	tt, x = make([]float32, n), make([]float32, n*a.Dim)
	for i := range tt {
		tt[i] = r.Float32()
	}
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return tt, x
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

// TestForwardMatchesGo evaluates random U-Nets in PyTorch and in Go on random times and images: a
// grey one with two levels, and a colour one with three levels, two blocks per level and channel
// changes (1×1 skips) down and up. The Go side is the network read back from the same file with
// model.NetFromFile, run by the plain-Go forward (model.Net.ForwardCPU) and by the CPU engine
// (cpu.Net.Eval): max|torch − go| / max|go| < 1e-4 for each (float32 rounding, summation order and
// group-norm statistics in float64 in Go against float32 in PyTorch).
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
		path := writeNet(t, randomNet(t, a, r), "score/", false, nil)
		m := readNet(t, path, "score/")
		const n = 5
		tt, x := randomInputs(a, n, r)
		got, err := Forward(path, "score/", tt, x, n)
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
		t.Logf("%d×%d×%d base %d mults %v, %d blocks: max rel. error torch vs plain Go %.2g, vs the CPU engine %.2g",
			a.Channels, a.Height, a.Width, a.Base, a.Mults, a.ResBlocks, ep, ef)
		if !(ep < 1e-4) || !(ef < 1e-4) {
			t.Errorf("%d×%d×%d base %d: torch vs plain Go %.3g, vs the CPU engine %.3g, want < 1e-4",
				a.Channels, a.Height, a.Width, a.Base, ep, ef)
		}
	}
}

// TestForwardF16 checks the half-precision path: a random U-Net stored as f16 (as `backend export
// --f16` writes the shipped models) gives the same outputs in PyTorch and in Go, both decoding the
// file's f16 values to float32.
func TestForwardF16(t *testing.T) {
	needTorch(t)
	r := rand.New(rand.NewPCG(75, 76))
	a := weights.Arch{Kind: "unet", Dim: 1 * 16 * 16, Channels: 1, Height: 16, Width: 16, Base: 8, Mults: []int{1, 2}, ResBlocks: 1,
		Groups: 4, TimeEmb: 16, Fourier: 4}
	path := writeNet(t, randomNet(t, a, r), "gen/", true, nil)
	const n = 3
	tt, x := randomInputs(a, n, r)
	got, err := Forward(path, "gen/", tt, x, n)
	if err != nil {
		t.Fatal(err)
	}
	e := relErr(got, readNet(t, path, "gen/").ForwardCPU(tt, x))
	t.Logf("f16 file, 1×16×16 base 8: max rel. error torch vs plain Go %.2g", e)
	if !(e < 1e-4) {
		t.Errorf("f16 file: torch vs plain Go %.3g, want < 1e-4", e)
	}
}

// TestForwardErrors checks that a missing tensor, a mis-shaped one, a wrong prefix, a file that is
// no weights file and an x of the wrong size each give an error naming the problem.
func TestForwardErrors(t *testing.T) {
	needTorch(t)
	r := rand.New(rand.NewPCG(73, 74))
	a := weights.Arch{Kind: "unet", Dim: 64, Channels: 1, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2}, ResBlocks: 1,
		Groups: 2, TimeEmb: 8, Fourier: 2}
	m := randomNet(t, a, r)
	tt, x := []float32{0.5}, make([]float32, a.Dim)
	check := func(what string, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", what, err, w)
			}
		}
	}

	missing := writeNet(t, m, "score/", false, func(name string, _ *[]int) bool { return name != "mid.conv2.w" })
	_, err := Forward(missing, "score/", tt, x, 1)
	check("missing tensor", err, "missing tensor score/mid.conv2.w")

	misShaped := writeNet(t, m, "score/", false, func(name string, sh *[]int) bool {
		if name == "down1.0.conv1.w" { // [8, 4, 3, 3] stored as [4, 8, 3, 3]: same bytes, wrong shape
			(*sh)[0], (*sh)[1] = (*sh)[1], (*sh)[0]
		}
		return true
	})
	_, err = Forward(misShaped, "score/", tt, x, 1)
	check("mis-shaped tensor", err, "tensor score/down1.0.conv1.w has shape [4, 8, 3, 3], the arch needs [8, 4, 3, 3]")

	_, err = Forward(writeNet(t, m, "score/", false, nil), "control/", tt, x, 1)
	check("wrong prefix", err, "missing tensor control/in.w", "the file's prefixes: 'score/'")

	junk := filepath.Join(t.TempDir(), "junk.msgpack")
	if err := os.WriteFile(junk, []byte("not a weights file"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Forward(junk, "", tt, x, 1)
	check("junk file", err, "not a weights file")

	_, err = Forward(writeNet(t, m, "", false, nil), "", tt, make([]float32, 3), 1)
	check("short x", err, "--x holds 3 values, want n·C·H·W = 1·1·8·8 = 64")

	_, err = Forward(missing, "score/", tt, x, 2)
	check("n ≠ len(t)", err, "n = 2, 1 times")
}

// TestBenchStep runs the benchmark on a tiny U-Net: it must report positive times for the batch and
// thread count asked and the arch's parameter count (timings themselves are never asserted), and
// refuse what is not a U-Net.
func TestBenchStep(t *testing.T) {
	needTorch(t)
	a := weights.Arch{Kind: "unet", Dim: 64, Channels: 1, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2}, ResBlocks: 1,
		Groups: 2, TimeEmb: 8, Fourier: 2}
	res, err := BenchStep(a, 4, 1, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	params := model.ParamCount(a)
	if res.Batch != 4 || res.Threads != 1 || res.Params != params || res.Torch == "" || !(res.StepMS > 0) || !(res.ForwardMS > 0) {
		t.Errorf("BenchStep = %+v, want batch 4, 1 thread, %d parameters, a torch version, positive times", res, params)
	}
	if _, err := BenchStep(weights.Arch{Kind: "mlp", Dim: 2}, 4, 1, 1, 1); err == nil {
		t.Errorf("BenchStep of an MLP: want an error")
	}
	bad := a
	bad.Groups = 3 // base·mult = 4, 8: not divisible
	if _, err := BenchStep(bad, 4, 0, 1, 1); err == nil || !strings.Contains(err.Error(), "divisible by groups") {
		t.Errorf("BenchStep of a bad arch: got %v, want an error about groups", err)
	}
}
