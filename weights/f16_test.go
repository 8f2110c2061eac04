package weights

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// refF16Value is the value of the binary16 bits h computed from the IEEE definition in float64,
// independently of F16ToF32's bit manipulation.
func refF16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch {
	case exp == 0x1f && mant == 0:
		return sign * math.Inf(1)
	case exp == 0x1f:
		return math.NaN()
	case exp == 0:
		return sign * math.Ldexp(mant, -24)
	}
	return sign * math.Ldexp(1+mant/1024, exp-15)
}

// halfTable lists the values of the non-negative half bit patterns 0 … 0x7c00 in order (they are
// increasing); entry 0x7c00 stands for the overflow point 65536, so that a nearest-even search
// over it rounds exactly like IEEE does into +Inf.
var halfTable = func() []float64 {
	t := make([]float64, 0x7c01)
	for h := range 0x7c00 {
		t[h] = refF16Value(uint16(h))
	}
	t[0x7c00] = 65536
	return t
}()

// refF32ToF16 rounds the finite x to binary16 by searching halfTable for the nearest value and
// breaking ties towards the even bit pattern: a float64 reference for F32ToF16.
func refF32ToF16(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	i, _ := slices.BinarySearch(halfTable, x) // first entry ≥ x
	if i == len(halfTable) {
		return sign | 0x7c00
	}
	if i == 0 || halfTable[i] == x {
		return sign | uint16(i)
	}
	lo, hi := x-halfTable[i-1], halfTable[i]-x
	switch {
	case lo < hi:
		return sign | uint16(i-1)
	case hi < lo:
		return sign | uint16(i)
	case (i-1)%2 == 0:
		return sign | uint16(i-1)
	}
	return sign | uint16(i)
}

func TestF16AllPatternsRoundTrip(t *testing.T) {
	for b := range 1 << 16 {
		h := uint16(b)
		f := F16ToF32(h)
		want := refF16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, f)
			}
			back := F32ToF16(f)
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x → %v → %#04x is not a NaN of the same sign", h, f, back)
			}
			continue
		}
		if float64(f) != want || math.Signbit(float64(f)) != math.Signbit(want) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, want)
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("half %#04x → %v → %#04x, want it back exactly", h, f, back)
		}
	}
}

func TestF32ToF16MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(x float32) {
		t.Helper()
		got, want := F32ToF16(x), refF32ToF16(float64(x))
		if got != want {
			t.Fatalf("F32ToF16(%g = bits %#08x) = %#04x (%g), reference %#04x (%g)",
				x, math.Float32bits(x), got, refF16Value(got), want, refF16Value(want))
		}
	}
	// Random float32 across the whole range a half can touch, from far below the smallest
	// subnormal (2^-24) to past the overflow point, with random mantissas and signs.
	for range 400000 {
		e := 127 - 30 + r.IntN(30+18) // 2^-30 … 2^17
		bits := uint32(e)<<23 | r.Uint32()&0x7fffff | r.Uint32()&0x80000000
		check(math.Float32frombits(bits))
	}
	// Exact ties between neighbouring halves (representable in float32: 12 significant bits),
	// and their float32 neighbours, normal and subnormal, including the overflow tie 65520.
	for range 100000 {
		h := uint16(r.IntN(0x7c00))
		mid := float32((halfTable[h] + halfTable[h+1]) / 2)
		for _, x := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e9)} {
			check(x)
			check(-x)
		}
	}
	// float32 subnormals, zeros, the edge of the range.
	for _, x := range []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, 1e-40, 65504, 65519.99, 65520, 65536, math.MaxFloat32} {
		check(x)
		check(-x)
	}
}

func TestF32ToF16SpecialValues(t *testing.T) {
	if h := F32ToF16(float32(math.Inf(1))); h != 0x7c00 {
		t.Errorf("+Inf → %#04x, want 0x7c00", h)
	}
	if h := F32ToF16(float32(math.Inf(-1))); h != 0xfc00 {
		t.Errorf("-Inf → %#04x, want 0xfc00", h)
	}
	if h := F32ToF16(float32(math.NaN())); F16IsFinite(h) || h&0x3ff == 0 {
		t.Errorf("NaN → %#04x, want a NaN", h)
	}
}

func TestAddF16(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	f := New(Arch{Kind: "mlp", Dim: 2})
	v := make([]float32, 6*7)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 100)
	}
	v[0], v[1] = 65504, -65519 // the largest finite half, and a value that rounds to it
	if err := f.AddF16("w", []int{6, 7}, v); err != nil {
		t.Fatal(err)
	}
	got, shape, err := f.Float32("w")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int{6, 7}) {
		t.Fatalf("shape %v", shape)
	}
	for i := range v {
		// Round to nearest: the error is at most half a half-precision ulp, 2^-11 relative.
		if want := refF16Value(refF32ToF16(float64(v[i]))); float64(got[i]) != want {
			t.Fatalf("value %d: stored %v, want %v", i, got[i], want)
		}
		if d := math.Abs(float64(got[i]) - float64(v[i])); d > math.Abs(float64(v[i]))*math.Ldexp(1, -11) {
			t.Fatalf("value %d: %v stored as %v, error %g beyond half an ulp", i, v[i], got[i], d)
		}
	}

	bad := []struct {
		name  string
		shape []int
		v     []float32
		want  string
	}{
		{"over", []int{2}, []float32{1, 65520}, "not representable in f16"},
		{"over", []int{2}, []float32{-1e6, 1}, "not representable in f16"},
		{"inf", []int{1}, []float32{float32(math.Inf(1))}, "not representable"},
		{"nan", []int{1}, []float32{float32(math.NaN())}, "not representable"},
		{"w", []int{1}, []float32{1}, "already exists"},
		{"short", []int{2, 2}, []float32{1, 2, 3}, "holds 4 values, got 3"},
		{"zero", []int{0}, nil, "dim 0 < 1"},
		{"", []int{1}, []float32{1}, "empty tensor name"},
	}
	for _, b := range bad {
		n := len(f.Tensors)
		err := f.AddF16(b.name, b.shape, b.v)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("AddF16(%q, %v, %v) = %v, want an error containing %q", b.name, b.shape, b.v, err, b.want)
		}
		if len(f.Tensors) != n {
			t.Errorf("AddF16(%q) appended a tensor despite the error", b.name)
		}
	}
}
