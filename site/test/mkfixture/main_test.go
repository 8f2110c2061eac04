package main

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"asbm/model"
	"asbm/weights"
)

// TestFixtureUpToDate holds the committed file to this program: the browser tests load the file,
// and what they assume about it (arch, networks, meta) is written here.
func TestFixtureUpToDate(t *testing.T) {
	want, err := Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../fixtures/tiny-unet.msgpack")
	if err != nil {
		t.Fatalf("%v (run go run ./site/test/mkfixture from the repository root)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("site/test/fixtures/tiny-unet.msgpack (%d bytes) differs from what mkfixture writes (%d bytes): run go run ./site/test/mkfixture", len(got), len(want))
	}
}

// TestFixtureNetworks decodes the file as the browser does and checks that every network gives
// finite outputs that vary across pixels and across inputs, so images drawn from it are not blank.
func TestFixtureNetworks(t *testing.T) {
	b, err := Encode()
	if err != nil {
		t.Fatal(err)
	}
	f, err := weights.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Arch.Equal(Arch) {
		t.Fatalf("arch %+v, want %+v", f.Arch, Arch)
	}
	for _, k := range []string{"beta0", "beta1", "sigma_v", "baseline_beta1"} {
		if _, ok := f.MetaFloat(k); !ok {
			t.Errorf("meta %q missing", k)
		}
	}
	s := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(s, 1))
	const n = 3
	for _, p := range Prefixes {
		net, err := model.NetFromFile(f, p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		x := make([]float32, n*Arch.Dim)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		ts := []float32{1, float32(r.Float64()), 0}
		y := net.ForwardCPU(ts, x)
		var lo, hi float64 = math.Inf(1), math.Inf(-1)
		for i, v := range y {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: output %d = %v", p, i, v)
			}
			lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
		}
		// Untrained networks with PyTorch-style bounds give outputs of order 0.1–1.
		if hi-lo < 0.05 {
			t.Errorf("%s: outputs span only [%g, %g] (seed %d): images would be flat", p, lo, hi, s)
		}
	}
}
