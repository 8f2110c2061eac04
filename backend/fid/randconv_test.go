package fid

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"asbm/weights"
)

// refRandConv is an independent float64 reference of RandConv's features for one image: refConv
// and ReLU per level, then the channel means of the last level.
func refRandConv(rc *RandConv, img []float32) []float64 {
	a := rc.arch
	c, h, w := a.Channels, a.Height, a.Width
	x := make([]float64, len(img))
	for i, v := range img {
		x[i] = math.Max(-1, math.Min(1, float64(v)))
	}
	for l, m := range a.Mults {
		z, _ := refConv(x, rc.w[l], rc.b[l], c, a.Base*m, h, w)
		x, c, h, w = relu64(z), a.Base*m, h/2, w/2
	}
	feat := make([]float64, c)
	for ci := range c {
		for _, v := range x[ci*h*w : (ci+1)*h*w] {
			feat[ci] += v / float64(h*w)
		}
	}
	return feat
}

// TestRandConvMatchesReference checks the strided-convolution features against refRandConv, on
// a small arch with non-zero biases and on the default emoji arch, with pixels beyond [-1, 1].
func TestRandConvMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 1))
	small := weights.Arch{Kind: KindRandConv, Dim: 2 * 8 * 16, Channels: 2, Height: 8, Width: 16, Base: 3, Mults: []int{1, 2, 3}}
	for _, a := range []weights.Arch{small, DefaultRandConvArch()} {
		rc, err := NewRandConv(a, 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range rc.b {
			for i := range b {
				b[i] = float32(0.2 * r.NormFloat64())
			}
		}
		const n = 3
		img := make([]float32, n*a.Dim)
		for i := range img {
			img[i] = float32(1.5 * (2*r.Float64() - 1))
		}
		feat, err := rc.Features(img, n)
		if err != nil {
			t.Fatal(err)
		}
		fd := rc.FeatureDim()
		if len(feat) != n*fd {
			t.Fatalf("%d feature values, want %d", len(feat), n*fd)
		}
		for i := range n {
			ref := refRandConv(rc, img[i*a.Dim:(i+1)*a.Dim])
			for j, v := range ref {
				if math.Abs(float64(feat[i*fd+j])-v) > 1e-5*(1+math.Abs(v)) {
					t.Fatalf("%dx%d arch, image %d feature %d: %v, reference %v", a.Height, a.Width, i, j, feat[i*fd+j], v)
				}
			}
		}
	}
}

// TestNewRandConv: the draw is deterministic per seed, every weight is exactly an f16 value, the
// weights have the He standard deviation √(2/fan_in) (within 5%: ≥ 864 draws per level) and
// bad arches are errors.
func TestNewRandConv(t *testing.T) {
	a := DefaultRandConvArch()
	rc1, err := NewRandConv(a, 3)
	if err != nil {
		t.Fatal(err)
	}
	rc2, _ := NewRandConv(a, 3)
	rc3, _ := NewRandConv(a, 4)
	cin := a.Channels
	for l, m := range a.Mults {
		if !slices.Equal(rc1.w[l], rc2.w[l]) {
			t.Errorf("level %d: seed 3 drew different weights twice", l)
		}
		if slices.Equal(rc1.w[l], rc3.w[l]) {
			t.Errorf("level %d: seeds 3 and 4 drew the same weights", l)
		}
		var ss float64
		for _, v := range rc1.w[l] {
			if weights.F16ToF32(weights.F32ToF16(v)) != v {
				t.Fatalf("level %d: weight %v is not an f16 value", l, v)
			}
			ss += float64(v) * float64(v)
		}
		std, want := math.Sqrt(ss/float64(len(rc1.w[l]))), math.Sqrt(2/float64(9*cin))
		if math.Abs(std-want) > 0.05*want {
			t.Errorf("level %d: weight std %.4f, want %.4f", l, std, want)
		}
		cin = a.Base * m
	}
	if rc1.FeatureDim() != 128 {
		t.Errorf("default feature width %d, want 128", rc1.FeatureDim())
	}
	for _, bad := range []weights.Arch{
		{Kind: KindRandConv, Dim: 3 * 30 * 30, Channels: 3, Height: 30, Width: 30, Base: 8, Mults: []int{1, 2, 4}},
		{Kind: KindRandConv, Dim: 3 * 32 * 32, Channels: 3, Height: 32, Width: 32, Base: 8},
		{Kind: KindRandConv, Dim: 100, Channels: 3, Height: 32, Width: 32, Base: 8, Mults: []int{1}},
		{Kind: KindClassifier, Dim: 3 * 32 * 32, Channels: 3, Height: 32, Width: 32, Base: 8, Mults: []int{1}},
	} {
		if _, err := NewRandConv(bad, 1); err == nil {
			t.Errorf("arch %+v: no error", bad)
		}
	}
	if _, err := rc1.Features(make([]float32, 10), 1); err == nil {
		t.Error("Features with a short image: no error")
	}
}

// TestRandConvSaveLoad: the net survives a save/load round trip exactly; a net whose weights are
// not f16 values is refused rather than rounded.
func TestRandConvSaveLoad(t *testing.T) {
	rc, err := NewRandConv(DefaultRandConvArch(), 9)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rc.msgpack")
	if err := rc.Save(path); err != nil {
		t.Fatal(err)
	}
	ex, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	back, ok := ex.(*RandConv)
	if !ok {
		t.Fatalf("Load returned %T, want *RandConv", ex)
	}
	for l := range rc.w {
		if !slices.Equal(rc.w[l], back.w[l]) || !slices.Equal(rc.b[l], back.b[l]) {
			t.Fatalf("level %d differs after the round trip", l)
		}
	}
	rc.w[1][7] += 1e-4
	if err := rc.Save(path); err == nil {
		t.Error("saving a non-f16 weight: no error")
	}
}

// TestShippedEmojiFeatures: the shipped emoji feature file is the net TrainAndSave("emoji") draws.
func TestShippedEmojiFeatures(t *testing.T) {
	ex, err := Load(shippedPath(t, "emoji"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ex.(*RandConv)
	if !ok {
		t.Fatalf("shipped emoji features are a %T, want *RandConv", ex)
	}
	want, _ := NewRandConv(DefaultRandConvArch(), 1)
	if !got.arch.Equal(want.arch) {
		t.Fatalf("shipped arch %+v, want %+v", got.arch, want.arch)
	}
	for l := range want.w {
		if !slices.Equal(got.w[l], want.w[l]) || !slices.Equal(got.b[l], want.b[l]) {
			t.Fatalf("level %d of the shipped file differs from NewRandConv(default, 1)", l)
		}
	}
}

func BenchmarkRandConvFeatures(b *testing.B) {
	rc, _ := NewRandConv(DefaultRandConvArch(), 1)
	r := rand.New(rand.NewPCG(1, 1))
	const n = 256
	img := make([]float32, n*rc.arch.Dim)
	for i := range img {
		img[i] = float32(2*r.Float64() - 1)
	}
	for b.Loop() {
		rc.Features(img, n)
	}
}

// TestTrainAndSaveEmojiReproducesShippedFile: TrainAndSave("emoji") writes the shipped file byte
// for byte (the emoji feature net is a pure function of the code and seed 1).
func TestTrainAndSaveEmojiReproducesShippedFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "emoji.msgpack")
	if err := TrainAndSave("emoji", out, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(shippedPath(t, "emoji"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("TrainAndSave(\"emoji\") wrote %d bytes that differ from the shipped %d-byte file", len(got), len(want))
	}
}
