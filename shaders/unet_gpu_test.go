package shaders

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// unetTol bounds relErr(GPU U-Net forward, ForwardCPU): both float32, summed in different orders
// (fma, reduction trees; the CPU group norm keeps its statistics in float64) through ~20 layers.
const unetTol = 1e-5

// testUNets are tiny U-Nets (lavapipe runs ~1 GFLOP/s): two levels with one block each; three levels
// with two blocks each on a non-square image (identity and 1×1 skips, two pools and upsamplings).
// Every group norm has at least two channels per group: with one, a per-channel constant (a conv
// bias, the time projection) is normalised away and its gradient is exactly zero, which a relative
// gradient check cannot test.
var testUNets = []weights.Arch{
	{Kind: "unet", Dim: 2 * 8 * 8, Channels: 2, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3},
	{Kind: "unet", Dim: 1 * 4 * 12, Channels: 1, Height: 4, Width: 12, Base: 4, Mults: []int{1, 2, 2}, ResBlocks: 2, Groups: 2, TimeEmb: 6, Fourier: 2},
}

// randomUNet is a U-Net with every parameter random and non-zero (the output conv included, group
// norm scales around 1 and shifts around 0), so engine comparisons see every term.
func randomUNet(tb testing.TB, a weights.Arch, seed uint64) *model.Net {
	tb.Helper()
	m, err := model.NewNet(a, seed)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 77))
	names, shapes := model.ParamShapes(a)
	fan := 1
	for i, name := range names {
		sh := shapes[i]
		p := m.Params[name]
		switch {
		case strings.HasSuffix(name, ".g"):
			copy(p, uniforms(r, len(p), 0.5, 1.5))
		case strings.HasSuffix(name, "gn1.b") || strings.HasSuffix(name, "gn2.b") || name == "out.gn.b":
			copy(p, uniforms(r, len(p), -0.5, 0.5))
		default:
			if len(sh) > 1 {
				fan = len(p) / sh[0]
				if len(sh) == 2 {
					fan = sh[0]
				}
			}
			bound := math.Sqrt(3 / float64(fan))
			copy(p, uniforms(r, len(p), -bound, bound))
		}
	}
	return m
}

func f64Of(v []float32) ([]float64, float64) {
	out := make([]float64, len(v))
	var scale float64
	for i, x := range v {
		out[i] = float64(x)
		scale = math.Max(scale, math.Abs(out[i]))
	}
	return out, scale
}

func TestGPUUNetForward(t *testing.T) {
	d := gpu(t)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 6))
	for ai, a := range testUNets {
		m := randomUNet(t, a, seed+uint64(ai))
		g, err := NewGPUNet(d, m)
		if err != nil {
			t.Fatal(err)
		}
		// 3 then 1 then 3 again: the cached plan is rebuilt when the batch changes.
		for _, n := range []int{3, 1, 3} {
			tv := uniforms(r, n, 0, 1)
			x := normals(r, n*a.Dim, 1)
			got, err := g.Forward(tv, x)
			if err != nil {
				t.Fatal(err)
			}
			want, scale := f64Of(m.ForwardCPU(tv, x))
			if scale < 1e-1 {
				t.Fatalf("arch %d: outputs are ~0 (max %g); the test would not see errors", ai, scale)
			}
			e := relErr(got, want)
			t.Logf("U-Net %d n=%d: rel err vs ForwardCPU %.3g (max |y| %.3g)", ai, n, e, scale)
			if !(e < unetTol) {
				t.Errorf("U-Net %d n=%d: rel err %.3g, want < %g", ai, n, e, unetTol)
			}
		}
		g.Close()
	}
}

// TestGPUUNetRowsIndependent checks that a batch is n independent images: row i of a batch of 4 is
// the forward of image i alone (a wrong stride or shared statistic would mix rows).
func TestGPUUNetRowsIndependent(t *testing.T) {
	d := gpu(t)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 7))
	a := testUNets[0]
	g, err := NewGPUNet(d, randomUNet(t, a, seed))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	const n = 4
	tv, x := uniforms(r, n, 0, 1), normals(r, n*a.Dim, 1)
	all, err := g.Forward(tv, x)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		one, err := g.Forward(tv[i:i+1], x[i*a.Dim:(i+1)*a.Dim])
		if err != nil {
			t.Fatal(err)
		}
		want, _ := f64Of(one)
		if e := relErr(all[i*a.Dim:(i+1)*a.Dim], want); !(e < 1e-6) {
			t.Errorf("row %d of a batch of %d differs from the image alone: rel err %.3g", i, n, e)
		}
	}
}

func TestGPUUNetErrors(t *testing.T) {
	d := gpu(t)
	a := testUNets[0]
	m := randomUNet(t, a, 3)
	bad := &model.Net{Arch: a, Params: map[string][]float32{}}
	for k, v := range m.Params {
		bad.Params[k] = v
	}
	delete(bad.Params, "mid.conv2.w")
	if _, err := NewGPUNet(d, bad); err == nil {
		t.Error("a U-Net without mid.conv2.w gave no error")
	}
	bad.Params["mid.conv2.w"] = m.Params["mid.conv2.w"][:5]
	if _, err := NewGPUNet(d, bad); err == nil {
		t.Error("a truncated mid.conv2.w gave no error")
	}
	badArch := a
	badArch.Groups = 3 // 4 channels do not split into 3 groups
	if _, err := NewGPUNet(d, &model.Net{Arch: badArch, Params: m.Params}); err == nil {
		t.Error("an arch with groups not dividing the channels gave no error")
	}
	g, err := NewGPUNet(d, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Forward([]float32{0.5}, make([]float32, a.Dim-1)); err == nil {
		t.Error("x of the wrong length gave no error")
	}
	g.Close()
	if _, err := g.Forward([]float32{0.5}, make([]float32, a.Dim)); err == nil {
		t.Error("a closed GPUNet gave no error")
	}
}

// TestSampleGPUUNet runs every sampler on tiny U-Nets through the device-resident path (the plan
// encoded into each step's batch) and compares with model.SampleCPU (ForwardCPU).
func TestSampleGPUUNet(t *testing.T) {
	d := gpu(t)
	seed := rand.Uint64()
	a := testUNets[0]
	cn := model.CPUNets{Score: randomUNet(t, a, seed+1), Control: randomUNet(t, a, seed+2), Gen: randomUNet(t, a, seed+3)}
	// The same networks with a zero output conv: the points they give show how much the networks move
	// them, so a sampler that skipped a network call would be seen.
	zero := func(m *model.Net) *model.Net {
		z := &model.Net{Arch: m.Arch, Params: map[string][]float32{}}
		for k, v := range m.Params {
			z.Params[k] = v
		}
		z.Params["out.w"] = make([]float32, len(m.Params["out.w"]))
		z.Params["out.b"] = make([]float32, len(m.Params["out.b"]))
		return z
	}
	cz := model.CPUNets{Score: zero(cn.Score), Control: zero(cn.Control), Gen: zero(cn.Gen)}
	var gn Nets
	var err error
	for _, c := range []struct {
		dst **GPUNet
		src *model.Net
	}{{&gn.Score, cn.Score}, {&gn.Control, cn.Control}, {&gn.Gen, cn.Gen}} {
		if *c.dst, err = NewGPUNet(d, c.src); err != nil {
			t.Fatal(err)
		}
		defer (*c.dst).Close()
	}
	for _, c := range []struct {
		method  string
		steps   int
		control bool
	}{{"sde", 4, false}, {"ode", 3, true}, {"ode", 2, false}, {"gen", 1, false}} {
		o := model.SampleOptions{Points: 3, Steps: c.steps, Method: c.method, Seed: seed, Beta0: 0.1, Beta1: 4, SigmaV: 1}
		g, cpu, cz := gn, cn, cz
		if !c.control {
			g.Control, cpu.Control, cz.Control = nil, nil, nil
		}
		want, err := model.SampleCPU(cpu.Nets(), o, model.SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		base, err := model.SampleCPU(cz.Nets(), o, model.SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := SampleGPU(d, g, o, model.SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		e, moved := maxAbsDiff(got, want), maxAbsDiff(base, want)
		t.Logf("U-Net %s N=%d control=%v: max|GPU − CPU| = %.3g; the networks move points by up to %.3g", c.method, c.steps, c.control, e, moved)
		if !(e < sampleTol) {
			t.Errorf("U-Net %s N=%d control=%v: max abs diff %.3g, want < %g", c.method, c.steps, c.control, e, sampleTol)
		}
		if moved < 1e-2 {
			t.Errorf("U-Net %s: the networks barely change the samples (%.3g); the test is too weak", c.method, moved)
		}
	}
}
