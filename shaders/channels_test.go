package shaders

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The float64 references of channels.wgsl, chanbias.wgsl and chanbias_bwd.wgsl.

func concatRef(a, b []float64, n, ca, cb, hw int) []float64 {
	var y []float64
	for i := 0; i < n; i++ {
		y = append(y, a[i*ca*hw:(i+1)*ca*hw]...)
		y = append(y, b[i*cb*hw:(i+1)*cb*hw]...)
	}
	return y
}

// splitRef is written per element (not as slices of images) so it does not share concatRef's
// structure.
func splitRef(s []float64, n, ca, cb, hw int) (da, db []float64) {
	da, db = make([]float64, n*ca*hw), make([]float64, n*cb*hw)
	for i := 0; i < n; i++ {
		for c := 0; c < ca+cb; c++ {
			for p := 0; p < hw; p++ {
				v := s[(i*(ca+cb)+c)*hw+p]
				if c < ca {
					da[(i*ca+c)*hw+p] = v
				} else {
					db[(i*cb+c-ca)*hw+p] = v
				}
			}
		}
	}
	return da, db
}

func channelBiasRef(y, tb []float64, hw int) []float64 {
	out := make([]float64, len(y))
	for i := range y {
		out[i] = y[i] + tb[i/hw]
	}
	return out
}

func channelBiasBackwardRef(dy []float64, nc, hw int) []float64 {
	out := make([]float64, nc)
	for j := range out {
		for p := 0; p < hw; p++ {
			out[j] += dy[j*hw+p]
		}
	}
	return out
}

func addRef(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] + b[i]
	}
	return out
}

// channelShapes cover one image, odd sizes, one channel, and hw above the reduction width.
var channelShapes = []struct{ n, ca, cb, h, w int }{
	{1, 1, 1, 1, 1},
	{3, 2, 5, 3, 7},
	{2, 4, 1, 20, 20},
}

func TestChannelKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 41))
	for _, s := range channelShapes {
		hw := s.h * s.w
		na, nb, nc := s.n*s.ca*hw, s.n*s.cb*hw, s.n*(s.ca+s.cb)*hw
		a, b, cat := normals(r, na, 1), normals(r, nb, 1), normals(r, nc, 1)
		ab, bb, catb := upload(t, d, a), upload(t, d, b), upload(t, d, cat)
		y, da, db := alloc(t, d, nc), alloc(t, d, na), alloc(t, d, nb)
		if err := d.Concat(y, ab, bb, s.n, s.ca, s.cb, hw); err != nil {
			t.Fatal(err)
		}
		if err := d.Split(da, db, catb, s.n, s.ca, s.cb, hw); err != nil {
			t.Fatal(err)
		}
		daRef, dbRef := splitRef(f64s(cat), s.n, s.ca, s.cb, hw)
		// The bias: tb per (image, channel) of the concatenated tensor, and its gradient.
		c := s.ca + s.cb
		tb, dy := normals(r, s.n*c, 1), normals(r, nc, 1)
		bias, dtb := upload(t, d, cat), alloc(t, d, s.n*c)
		if err := d.AddChannelBias(bias, upload(t, d, tb), s.n, c, hw); err != nil {
			t.Fatal(err)
		}
		if err := d.ChannelBiasBackward(dtb, upload(t, d, dy), s.n, c, hw); err != nil {
			t.Fatal(err)
		}
		// Accumulation: y (the concat) += cat.
		acc := upload(t, d, cat)
		if err := d.AddTo(acc, ab, na); err != nil { // only the first na values
			t.Fatal(err)
		}
		accRef := f64s(cat)
		copy(accRef, addRef(accRef[:na], f64s(a)))
		checkRel(t, d, fmt.Sprintf("channels %v", s), []relCase{
			// Copies are exact: any difference is a wrong index.
			{"concat", y, concatRef(f64s(a), f64s(b), s.n, s.ca, s.cb, hw), 1e-30},
			{"split a", da, daRef, 1e-30},
			{"split b", db, dbRef, 1e-30},
			{"add", acc, accRef, 1e-6},
			{"channel bias", bias, channelBiasRef(f64s(cat), f64s(tb), hw), 1e-6},
			{"channel bias backward", dtb, channelBiasBackwardRef(f64s(dy), s.n*c, hw), 1e-5},
		})
	}
}

// TestChannelKernelsFolded runs the channel kernels with the per-dimension workgroup limit lowered so
// the 2-D grid folding and the overhang skip are exercised.
func TestChannelKernelsFolded(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 42))
	old := maxGroupsPerDim
	defer func() { maxGroupsPerDim = old }()
	// concat: a workgroup per (image, channel) row of 150 values, 9 for a; bias backward: an
	// invocation per row, 300 rows in 5 workgroups of 64.
	n, ca, cb, hw := 3, 3, 2, 150
	bc, bhw := 100, 7
	a, b, dy := normals(r, n*ca*hw, 1), normals(r, n*cb*hw, 1), normals(r, n*bc*bhw, 1)
	y, dtb := alloc(t, d, n*(ca+cb)*hw), alloc(t, d, n*bc)
	maxGroupsPerDim = 4 // 9 → 4×3 and 5 → 4×2 workgroups, both with overhang
	if err := d.Concat(y, upload(t, d, a), upload(t, d, b), n, ca, cb, hw); err != nil {
		t.Fatal(err)
	}
	if err := d.ChannelBiasBackward(dtb, upload(t, d, dy), n, bc, bhw); err != nil {
		t.Fatal(err)
	}
	maxGroupsPerDim = old
	checkRel(t, d, "folded channels", []relCase{
		{"concat", y, concatRef(f64s(a), f64s(b), n, ca, cb, hw), 1e-30},
		{"channel bias backward", dtb, channelBiasBackwardRef(f64s(dy), n*bc, bhw), 1e-5},
	})
}

func TestChannelKernelErrors(t *testing.T) {
	d := gpu(t)
	a, b, y, small := alloc(t, d, 2*3*4), alloc(t, d, 2*1*4), alloc(t, d, 2*4*4), alloc(t, d, 3)
	for name, err := range map[string]error{
		"concat short output":  d.Concat(small, a, b, 2, 3, 1, 4),
		"concat short input":   d.Concat(y, a, small, 2, 3, 1, 4),
		"concat zero channels": d.Concat(y, a, b, 2, 0, 1, 4),
		"concat aliased":       d.Concat(a, a, b, 1, 1, 1, 4),
		"split short output":   d.Split(a, small, y, 2, 3, 1, 4),
		"add aliased":          d.AddTo(a, a, 4),
		"add short":            d.AddTo(small, a, 4),
		"bias short values":    d.AddChannelBias(y, small, 2, 4, 4),
		"bias zero hw":         d.AddChannelBias(y, a, 2, 4, 0),
		"bias bwd short":       d.ChannelBiasBackward(small, y, 2, 4, 4),
		"bias bwd nil":         d.ChannelBiasBackward(a, nil, 2, 4, 4),
		"huge":                 d.AddTo(y, a, 1<<40),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := d.channelCopyOp(y, a, 2, 4, 2, 3, 2, 4, 0, false); err == nil {
		t.Error("a source block past the source's channels gave no error")
	}
}
