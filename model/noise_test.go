package model_test

import (
	"math/rand/v2"
	"testing"

	"asbm/model"
)

// TestNoiseConvention checks the shared convention: rand.New(rand.NewPCG(seed, 0x4153424D)), values
// float32(r.NormFloat64()) in order.
func TestNoiseConvention(t *testing.T) {
	for _, seed := range []uint64{0, 1, 917, 1 << 40} {
		ref := rand.New(rand.NewPCG(seed, 0x4153424D))
		got := model.NewNoise(seed).Normal(1000)
		for i, v := range got {
			if want := float32(ref.NormFloat64()); v != want {
				t.Fatalf("seed %d value %d = %v, want %v", seed, i, v, want)
			}
		}
	}
	a, b := model.NewNoise(1).Normal(8), model.NewNoise(2).Normal(8)
	same := true
	for i := range a {
		same = same && a[i] == b[i]
	}
	if same {
		t.Error("seeds 1 and 2 gave the same values")
	}
}

// TestNoiseMarshal checks that a restored state continues the same stream, also across the Rand view.
func TestNoiseMarshal(t *testing.T) {
	n := model.NewNoise(42)
	n.Normal(37)
	n.Rand().Perm(11)
	st, err := n.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := n.Normal(100)
	wantU := n.Rand().Float64()
	m := model.NewNoise(7)
	if err := m.UnmarshalBinary(st); err != nil {
		t.Fatal(err)
	}
	got := m.Normal(100)
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("value %d after restore = %v, want %v", i, got[i], want[i])
		}
	}
	if u := m.Rand().Float64(); u != wantU {
		t.Errorf("uniform after restore = %v, want %v", u, wantU)
	}
	if err := m.UnmarshalBinary([]byte("garbage")); err == nil {
		t.Error("UnmarshalBinary(garbage) = nil, want an error")
	}
}
