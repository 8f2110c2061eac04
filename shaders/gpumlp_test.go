package shaders

import (
	"math"
	"math/rand/v2"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// mlpTol bounds relErr(GPUNet.Forward, model.Net.ForwardCPU): both are float32, summed in different orders
// (fma, tiles), through 2–4 layers.
const mlpTol = 1e-5

var testArchs = []weights.Arch{
	{Kind: "mlp", Dim: 2, Hidden: 128, Layers: 3, Fourier: 8}, // the default toy arch
	{Kind: "mlp", Dim: 3, Hidden: 37, Layers: 2, Fourier: 5},
	{Kind: "mlp", Dim: 2, Hidden: 16, Layers: 1, Fourier: 0},
}

func TestGPUMLPForward(t *testing.T) {
	d := gpu(t)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 5))
	for ai, a := range testArchs {
		m := randomMLP(t, a, seed+uint64(ai), 1)
		g, err := NewGPUNet(d, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 37, 2000} {
			tv := uniforms(r, n, 0, 1)
			x := normals(r, n*a.Dim, 1.5)
			got, err := g.Forward(tv, x)
			if err != nil {
				t.Fatal(err)
			}
			ref := m.ForwardCPU(tv, x)
			want := make([]float64, len(ref))
			var scale float64
			for i, v := range ref {
				want[i] = float64(v)
				scale = math.Max(scale, math.Abs(want[i]))
			}
			if scale < 1e-2 {
				t.Fatalf("arch %+v: outputs are ~0 (max %g); the test would not see errors", a, scale)
			}
			e := relErr(got, want)
			t.Logf("arch %d n=%d: rel err vs ForwardCPU %.3g (max |y| %.3g)", ai, n, e, scale)
			if e > mlpTol {
				t.Errorf("arch %+v n=%d: rel err %.3g > %g", a, n, e, mlpTol)
			}
		}
		g.Close()
	}
}

func TestGPUMLPErrors(t *testing.T) {
	d := gpu(t)
	a := testArchs[0]
	m := randomMLP(t, a, 1, 1)
	g, err := NewGPUNet(d, m)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Forward([]float32{0.5}, []float32{1}); err == nil {
		t.Error("x of the wrong length gave no error")
	}
	if _, err := g.Forward(nil, nil); err == nil {
		t.Error("an empty batch gave no error")
	}
	bad := &model.Net{Arch: a, Params: map[string][]float32{}}
	for k, v := range m.Params {
		bad.Params[k] = v
	}
	bad.Params["l1.w"] = bad.Params["l1.w"][:10]
	if _, err := NewGPUNet(d, bad); err == nil {
		t.Error("a truncated parameter gave no error")
	}
	bad.Params["l1.w"] = append([]float32(nil), m.Params["l1.w"]...)
	bad.Params["l1.w"][3] = float32(math.NaN())
	if _, err := NewGPUNet(d, bad); err == nil {
		t.Error("a NaN parameter gave no error")
	}
	g.Close()
	if _, err := g.Forward([]float32{0.5}, []float32{1, 2}); err == nil {
		t.Error("a closed GPUNet gave no error")
	}
}
