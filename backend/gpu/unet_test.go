package gpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/backend/cpu"
	"asbm/model"
	"asbm/weights"
)

// tinyUNets are U-Nets small enough for lavapipe and gorgonia in a test: two levels with one block
// each; three levels with two blocks each on a non-square image (identity and 1×1 skips). Every group
// norm has two or more channels per group, so no gradient is identically zero (with one channel per
// group, a per-channel constant such as a conv bias is normalised away).
var tinyUNets = []weights.Arch{
	{Kind: "unet", Dim: 2 * 8 * 8, Channels: 2, Height: 8, Width: 8, Base: 4, Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3},
	{Kind: "unet", Dim: 1 * 4 * 12, Channels: 1, Height: 4, Width: 12, Base: 4, Mults: []int{1, 2, 2}, ResBlocks: 2, Groups: 2, TimeEmb: 6, Fourier: 2},
}

// randomUNet returns a U-Net whose every parameter is random and non-zero (the output conv, which
// starts at zero, included; group-norm scales in [0.5, 1.5] and shifts in [−0.5, 0.5]), so that a
// wrong term anywhere changes the loss and the gradients.
func randomUNet(t *testing.T, a weights.Arch, seed uint64) *model.Net {
	t.Helper()
	m, err := model.NewNet(a, seed)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 78))
	names, shapes := model.ParamShapes(a)
	fan := 1
	for i, name := range names {
		sh, p := shapes[i], m.Params[name]
		lo, hi := -0.5, 0.5
		switch {
		case strings.HasSuffix(name, ".g"):
			lo, hi = 0.5, 1.5
		case strings.HasSuffix(name, "gn1.b"), strings.HasSuffix(name, "gn2.b"), name == "out.gn.b":
		default:
			if len(sh) > 1 {
				fan = len(p) / sh[0]
				if len(sh) == 2 {
					fan = sh[0]
				}
			}
			hi = math.Sqrt(3 / float64(fan))
			lo = -hi
		}
		for j := range p {
			p[j] = float32(lo + (hi-lo)*r.Float64())
		}
	}
	return m
}

// imageBatch is a training batch of n images of dimension d with random times, targets and, when
// weighted, row weights.
func imageBatch(r *rand.Rand, n, d int, weighted bool) (t, x, w, y []float32) {
	t, x, y = make([]float32, n), make([]float32, n*d), make([]float32, n*d)
	for i := range t {
		t[i] = float32(r.Float64())
	}
	for i := range x {
		x[i] = float32(r.NormFloat64())
		y[i] = float32(r.NormFloat64())
	}
	if weighted {
		w = make([]float32, n)
		for i := range w {
			w[i] = float32(0.2 + 1.8*r.Float64())
		}
	}
	return
}

// newPair builds the gorgonia and the WGSL engine from the same network.
func newPair(t *testing.T, m *model.Net, cfg cpu.Config) (*cpu.Net, *Net) {
	t.Helper()
	c, err := cpu.FromNet(m, cfg)
	if err != nil {
		t.Fatalf("cpu.FromNet(U-Net): %v", err)
	}
	g, err := FromNet(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, g
}

// TestUNetGradientsMatchCPU compares the loss and every parameter's gradient of one step between the
// WGSL engine and the gorgonia engine (backend/cpu). The gradients are read through the engines'
// State: with Beta1 = 0 and no clipping the first AdamW step leaves adam_m = the gradient exactly
// (m = 0·m + 1·g) in both, so no engine needs a gradient accessor.
func TestUNetGradientsMatchCPU(t *testing.T) {
	needGPU(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 3))
	cfg := cpu.Config{LR: 1e-3, Beta1: 0, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.9}
	for ai, a := range tinyUNets {
		m := randomUNet(t, a, r.Uint64())
		c, g := newPair(t, m, cfg)
		tv, x, w, y := imageBatch(r, 3, a.Dim, true)
		lc, lg := c.Step(tv, x, w, y), g.Step(tv, x, w, y)
		if e := math.Abs(float64(lg)-float64(lc)) / math.Abs(float64(lc)); !(e < 1e-5) {
			t.Errorf("U-Net %d: loss gpu %v, cpu %v: rel err %.3g, want < 1e-5", ai, lg, lc, e)
		} else {
			t.Logf("U-Net %d: loss %v, gpu vs cpu rel err %.3g", ai, lc, e)
		}
		sc, sg := c.State(), g.State()
		names, _ := model.ParamShapes(a)
		var worst float64
		var worstName string
		for _, name := range names {
			want, got := sc["adam_m/"+name], sg["adam_m/"+name]
			if maxAbs(want) == 0 {
				t.Errorf("U-Net %d: the gorgonia gradient of %s is zero; the test cannot check it", ai, name)
				continue
			}
			e := relDiff(got, want)
			if e > worst || math.IsNaN(e) {
				worst, worstName = e, name
			}
			if !(e < 1e-3) {
				t.Errorf("U-Net %d: gradient of %s: gpu vs cpu rel err %.3g, want < 1e-3", ai, name, e)
			}
		}
		t.Logf("U-Net %d: %d gradient tensors, worst rel err %.3g (%s)", ai, len(names), worst, worstName)
		g.Close()
	}
}

// TestUNetTrainingMatchesCPU takes ten AdamW steps (weight decay on, a clip that fires, weighted and
// unweighted batches, two batch sizes) on both engines from the same random U-Net and compares every
// loss and, at the end, every parameter, EMA and AdamW moment, and the evaluation paths.
func TestUNetTrainingMatchesCPU(t *testing.T) {
	needGPU(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	a := tinyUNets[0]
	cfg := cpu.Config{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, EMADecay: 0.9, GradClip: 0.5}
	m := randomUNet(t, a, r.Uint64())
	c, g := newPair(t, m, cfg)
	defer g.Close()
	noClip := cfg
	noClip.GradClip = 0
	c0, err := cpu.FromNet(m, noClip)
	if err != nil {
		t.Fatal(err)
	}
	const steps = 10
	var worstLoss float64
	for s := range steps {
		tv, x, w, y := imageBatch(r, 2+s%2, a.Dim, s%2 == 0)
		lc, lg := c.Step(tv, x, w, y), g.Step(tv, x, w, y)
		c0.Step(tv, x, w, y)
		e := math.Abs(float64(lg)-float64(lc)) / math.Abs(float64(lc))
		worstLoss = math.Max(worstLoss, e)
		if !(e < 1e-4) {
			t.Errorf("step %d: loss gpu %v, cpu %v: rel err %.3g, want < 1e-4", s+1, lg, lc, e)
		}
	}
	t.Logf("losses: worst gpu vs cpu rel err over %d steps %.3g", steps, worstLoss)
	sc, sg, s0 := c.State(), g.State(), c0.State()
	if d := relDiff(sc["param/mid.conv1.w"], s0["param/mid.conv1.w"]); d < 1e-3 {
		t.Fatalf("clipping at %v did not change the run (rel diff %.3g): the test does not exercise it", cfg.GradClip, d)
	}
	if sg["adam_step"][0] != steps {
		t.Errorf("adam_step = %v after %d steps", sg["adam_step"][0], steps)
	}
	// Adam divides by √v, so an entry whose gradient is near zero (m̂/√v̂ of either sign from rounding)
	// can take a step of a different size, up to 2·LR, in the two engines: parameters and EMA are
	// compared to 1e-4 of their largest value except for at most 0.5% of a tensor's entries (at least
	// one), which must stay within the Adam bound 2·LR·steps. Moments have no such division: 1e-4.
	worst := map[string]float64{}
	for key, want := range sc {
		if key == "adam_step" {
			continue
		}
		prefix := key[:strings.Index(key, "/")]
		got := sg[key]
		if prefix == "param" || prefix == "ema" {
			var scale float64
			for _, v := range want {
				scale = math.Max(scale, math.Abs(float64(v)))
			}
			scale = math.Max(scale, 1e-6)
			outliers, worstAbs := 0, 0.0
			var e float64
			for i := range want {
				d := math.Abs(float64(got[i]) - float64(want[i]))
				if math.IsNaN(d) {
					d = math.Inf(1)
				}
				worstAbs = math.Max(worstAbs, d)
				if d/scale < 1e-4 {
					e = math.Max(e, d/scale)
				} else {
					outliers++
				}
			}
			worst[prefix] = math.Max(worst[prefix], e)
			if outliers > max(1, len(want)/200) || !(worstAbs <= 2*cfg.LR*steps) {
				t.Errorf("%s: %d of %d entries differ by more than 1e-4 of the largest value, worst by %.3g (Adam bound %.3g)",
					key, outliers, len(want), worstAbs, 2*cfg.LR*steps)
			} else if outliers > 0 {
				t.Logf("%s: %d of %d entries beyond 1e-4 (a near-zero gradient's Adam step), worst by %.3g", key, outliers, len(want), worstAbs)
			}
			continue
		}
		e := relDiff(got, want)
		worst[prefix] = math.Max(worst[prefix], e)
		if !(e < 1e-4) {
			t.Errorf("%s: gpu vs cpu rel err %.3g, want < 1e-4", key, e)
		}
	}
	t.Logf("after %d steps, worst rel err: param %.2g, ema %.2g, adam_m %.2g, adam_v %.2g",
		steps, worst["param"], worst["ema"], worst["adam_m"], worst["adam_v"])
	tv, x, _, _ := imageBatch(r, 3, a.Dim, false)
	for _, e := range []struct {
		name       string
		gEval, cEv func(t, x, out []float32)
	}{{"Eval", g.Eval, c.Eval}, {"EMA().Eval", g.EMA().Eval, c.EMA().Eval}} {
		og, oc := make([]float32, len(x)), make([]float32, len(x))
		e.gEval(tv, x, og)
		e.cEv(tv, x, oc)
		if d := relDiff(og, oc); !(d < 1e-4) {
			t.Errorf("%s: gpu vs cpu rel err %.3g, want < 1e-4", e.name, d)
		}
	}
}

// TestUNetStateRoundTrip moves a U-Net state from the GPU engine to the gorgonia one and back.
func TestUNetStateRoundTrip(t *testing.T) {
	needGPU(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 5))
	a := tinyUNets[0]
	cfg := cpu.Config{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.99}
	g, err := New(a, cfg, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for range 2 {
		tv, x, w, y := imageBatch(r, 2, a.Dim, false)
		g.Step(tv, x, w, y)
	}
	sg := g.State()
	c, err := cpu.New(a, cfg, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetState(sg); err != nil {
		t.Fatal(err)
	}
	back, err := New(a, cfg, r.Uint64())
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if err := back.SetState(c.State()); err != nil {
		t.Fatal(err)
	}
	sb := back.State()
	if len(sb) != len(sg) {
		t.Fatalf("round trip: %d entries, want %d", len(sb), len(sg))
	}
	for k, v := range sg {
		if relDiff(sb[k], v) != 0 {
			t.Errorf("round trip changed %s", k)
		}
	}
}

func maxAbs(v []float32) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}
