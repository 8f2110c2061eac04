package shaders

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"asbm/model"
	"asbm/weights"
)

var (
	testDevOnce sync.Once
	testDev     *Device
	testDevErr  error
)

func TestMain(m *testing.M) {
	// Mesa warns when XDG_RUNTIME_DIR is unset; give it a private directory.
	var tmp string
	if os.Getenv("XDG_RUNTIME_DIR") == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "asbm-xdg"); err == nil {
			os.Setenv("XDG_RUNTIME_DIR", tmp)
		}
	}
	code := m.Run()
	if testDev != nil {
		testDev.Close()
	}
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	os.Exit(code)
}

// gpu returns the shared test device, skipping the test when the machine has no adapter, or failing
// it when ASBM_REQUIRE_GPU=1.
func gpu(tb testing.TB) *Device {
	tb.Helper()
	testDevOnce.Do(func() {
		testDev, testDevErr = NewDevice()
		if testDevErr == nil {
			fmt.Fprintf(os.Stderr, "shaders tests: adapter %s (software: %v)\n", testDev.AdapterInfo(), testDev.IsSoftware())
		}
	})
	if testDevErr != nil {
		if os.Getenv("ASBM_REQUIRE_GPU") == "1" {
			tb.Fatalf("ASBM_REQUIRE_GPU=1 but no device: %v", testDevErr)
		}
		tb.Skipf("skipping: %v (set ASBM_REQUIRE_GPU=1 to fail instead)", testDevErr)
	}
	return testDev
}

// relErr is max|got − want| / max(max|want|, 1e-6): the kernels' error measure.
func relErr(got []float32, want []float64) float64 {
	var diff, scale float64
	for i, w := range want {
		diff = math.Max(diff, math.Abs(float64(got[i])-w))
		scale = math.Max(scale, math.Abs(w))
	}
	if math.IsNaN(diff) {
		return math.Inf(1)
	}
	return diff / math.Max(scale, 1e-6)
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		e := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d
}

func normals(r *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return v
}

func uniforms(r *rand.Rand, n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(lo + (hi-lo)*r.Float64())
	}
	return v
}

func upload(tb testing.TB, d *Device, v []float32) *Buffer {
	tb.Helper()
	b, err := d.newBufferFrom(v)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Destroy)
	return b
}

func alloc(tb testing.TB, d *Device, n int) *Buffer {
	tb.Helper()
	b, err := d.NewBuffer(n)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Destroy)
	return b
}

func read(tb testing.TB, d *Device, b *Buffer) []float32 {
	tb.Helper()
	v, err := d.Read(b)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// randomMLP is model.NewNet with a random, non-zero output layer, so that tests comparing engines fail
// when the network is evaluated wrongly.
func randomMLP(tb testing.TB, a weights.Arch, seed uint64, outScale float64) *model.Net {
	tb.Helper()
	m, err := model.NewNet(a, seed)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 99))
	bound := outScale / math.Sqrt(float64(a.Hidden))
	m.Params["out.w"] = uniforms(r, len(m.Params["out.w"]), -bound, bound)
	m.Params["out.b"] = uniforms(r, len(m.Params["out.b"]), -outScale/4, outScale/4)
	return m
}
