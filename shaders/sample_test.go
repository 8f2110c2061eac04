package shaders

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/model"
)

// sampleTol bounds max|SampleGPU − model.SampleCPU| and max|model.SampleCPU − literal float64 reference|.
const sampleTol = 1e-4

var sampleArch = testArchs[0]

// sampleNets returns random networks with non-zero output layers (scaled so they move the points
// noticeably) on the CPU.
func sampleNets(tb testing.TB, seed uint64) model.CPUNets {
	return model.CPUNets{
		Score:   randomMLP(tb, sampleArch, seed+1, 2),
		Control: randomMLP(tb, sampleArch, seed+2, 2),
		Gen:     randomMLP(tb, sampleArch, seed+3, 2),
	}
}

// literalSample is the samplers exactly as the shared conventions state them, in float64 state
// (the networks still take float32 inputs), independent of model.Run.
func literalSample(nets model.CPUNets, o model.SampleOptions) []float64 {
	return literalSampleTo(nets, o, max(1, o.Steps))
}

// literalSampleTo is literalSample stopped after stop steps: the state a preview at step stop shows.
func literalSampleTo(nets model.CPUNets, o model.SampleOptions, stop int) []float64 {
	dim := nets.Score.Arch.Dim
	if o.Method == "gen" {
		dim = nets.Gen.Arch.Dim
	}
	n := o.Points * dim
	r := rand.New(rand.NewPCG(o.Seed, 0x4153424D))
	x := make([]float64, n)
	for i := range x {
		x[i] = float64(float32(r.NormFloat64()))
	}
	beta := func(t float64) float64 { return o.Beta0 + (o.Beta1-o.Beta0)*t }
	g2 := func(t float64) float64 { return o.SigmaV * o.SigmaV * beta(t) }
	net := func(m *model.Net, t float64, x []float64) []float64 {
		if m == nil {
			return make([]float64, len(x))
		}
		tv := make([]float32, o.Points)
		xv := make([]float32, len(x))
		for i := range tv {
			tv[i] = float32(t)
		}
		for i := range xv {
			xv[i] = float32(x[i])
		}
		y := m.ForwardCPU(tv, xv)
		out := make([]float64, len(y))
		for i, v := range y {
			out[i] = float64(v)
		}
		return out
	}
	N := o.Steps
	dt := 1 / float64(N)
	// alpha is α_t = exp(−½∫_0^t β) and s2 is σ_t² = σ_v²(1 − α_t²) (asbm.md §1.2).
	alpha := func(t float64) float64 { return math.Exp(-0.25 * t * (beta(t) + o.Beta0)) }
	s2 := func(t float64) float64 { return o.SigmaV * o.SigmaV * (1 - alpha(t)*alpha(t)) }
	// x0hat is Tweedie's estimate (x + σ_t² s(t, x))/α_t, the denoising step and the ancestral
	// sampler's prediction.
	x0hat := func(t float64, x []float64) []float64 {
		s := net(nets.Score, t, x)
		out := make([]float64, len(x))
		for i := range x {
			out[i] = (x[i] + s2(t)*s[i]) / alpha(t)
		}
		return out
	}
	switch o.Method {
	case "gen":
		if stop < 1 {
			break
		}
		a1 := math.Exp(-0.25 * (beta(1) + o.Beta0))
		s1 := o.SigmaV * o.SigmaV * (1 - a1*a1)
		gz := net(nets.Gen, 1, x)
		for i := range x {
			x[i] = (x[i] + s1*gz[i]) / a1
		}
	case "ancestral":
		// X_s given X_0 and X_t is the base bridge N(a X_0 + b X_t, γ²) with κ = α_t/α_s.
		for k := 0; k < min(N, stop); k++ {
			t, s := 1-float64(k)/float64(N), 1-float64(k+1)/float64(N)
			at, as := alpha(t), alpha(s)
			kap := at / as
			a := as * (1 - kap*kap) / (1 - at*at)
			b := kap * (1 - as*as) / (1 - at*at)
			gam := o.SigmaV * math.Sqrt(math.Max(0, (1-as*as)*(1-kap*kap)/(1-at*at)))
			x0 := x0hat(t, x)
			for i := range x {
				x[i] = a*x0[i] + b*x[i]
			}
			if k < N-1 {
				for i := range x {
					x[i] += gam * float64(float32(r.NormFloat64()))
				}
			}
		}
	case "sde":
		for k := 0; k < min(N, stop); k++ {
			tk := 1 - float64(k)/float64(N)
			if k == N-1 && o.Denoise {
				copy(x, x0hat(tk, x))
				break
			}
			b, g := beta(tk), g2(tk)
			s := net(nets.Score, tk, x)
			for i := range x {
				x[i] += dt * (0.5*b*x[i] + g*s[i])
			}
			if k < N-1 {
				for i := range x {
					x[i] += math.Sqrt(g*dt) * float64(float32(r.NormFloat64()))
				}
			}
		}
	case "ode":
		v := func(t float64, x []float64) []float64 {
			u, s := net(nets.Control, t, x), net(nets.Score, t, x)
			out := make([]float64, len(x))
			for i := range x {
				out[i] = -0.5*beta(t)*x[i] + 0.5*g2(t)*(u[i]-s[i])
			}
			return out
		}
		for k := 0; k < min(N, stop); k++ {
			tk, tk1 := 1-float64(k)/float64(N), 1-float64(k+1)/float64(N)
			if k == N-1 && o.Denoise {
				copy(x, x0hat(tk, x))
				break
			}
			v1 := v(tk, x)
			xt := make([]float64, n)
			for i := range x {
				xt[i] = x[i] - dt*v1[i]
			}
			if k < N-1 {
				v2 := v(tk1, xt)
				for i := range x {
					x[i] -= 0.5 * dt * (v1[i] + v2[i])
				}
			} else {
				copy(x, xt)
			}
		}
	}
	return x
}

func TestSampleCPUMatchesLiteral(t *testing.T) {
	seed := rand.Uint64()
	nets := sampleNets(t, seed)
	for _, c := range []struct {
		method  string
		steps   int
		control bool
		denoise bool
	}{{"sde", 17, false, false}, {"ode", 11, true, false}, {"ode", 6, false, false}, {"gen", 1, false, false},
		{"sde", 1, false, false}, {"ode", 1, true, false}, {"sde", 9, false, true}, {"ode", 7, true, true},
		{"sde", 1, false, true}, {"ancestral", 13, false, false}, {"ancestral", 1, false, false}} {
		o := model.SampleOptions{Points: 50, Steps: c.steps, Method: c.method, Seed: seed, Beta0: 0.1, Beta1: 4, SigmaV: 1, Denoise: c.denoise}
		n := nets
		if !c.control {
			n.Control = nil
		}
		calls := 0
		got, err := model.SampleCPU(n.Nets(), o, model.SampleHooks{Progress: func(step, total int, x []float32) error {
			if step != calls || total != max(1, map[bool]int{true: 1, false: c.steps}[c.method == "gen"]) || x != nil {
				t.Errorf("%s: progress(%d, %d, %d values) at call %d", c.method, step, total, len(x), calls)
			}
			calls++
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		if total := max(1, map[bool]int{true: 1, false: c.steps}[c.method == "gen"]); calls != total+1 {
			t.Errorf("%s: %d progress calls, want %d (steps 0 … %d)", c.method, calls, total+1, total)
		}
		want := literalSample(n, o)
		var diff, moved float64
		for i := range want {
			diff = math.Max(diff, math.Abs(float64(got[i])-want[i]))
		}
		// The networks must matter, or the comparison would not see a wrong network call.
		zero := n
		for _, m := range []**model.Net{&zero.Score, &zero.Control, &zero.Gen} {
			if *m != nil {
				z := &model.Net{Arch: (*m).Arch, Params: map[string][]float32{}}
				for k, v := range (*m).Params {
					z.Params[k] = v
				}
				z.Params["out.w"] = make([]float32, len(z.Params["out.w"]))
				z.Params["out.b"] = make([]float32, len(z.Params["out.b"]))
				*m = z
			}
		}
		base := literalSample(zero, o)
		for i := range base {
			moved = math.Max(moved, math.Abs(base[i]-want[i]))
		}
		t.Logf("%s N=%d control=%v denoise=%v: max|model.SampleCPU − literal| = %.3g; networks move points by up to %.3g", c.method, c.steps, c.control, c.denoise, diff, moved)
		if diff > sampleTol || math.IsNaN(diff) {
			t.Errorf("%s N=%d control=%v denoise=%v: max abs diff %.3g > %g", c.method, c.steps, c.control, c.denoise, diff, sampleTol)
		}
		if moved < 1e-2 {
			t.Errorf("%s: the networks barely change the samples (%.3g); the test is too weak", c.method, moved)
		}
	}
}

func TestSampleGPUMatchesCPU(t *testing.T) {
	d := gpu(t)
	seed := rand.Uint64()
	cn := sampleNets(t, seed)
	var gn Nets
	var err error
	if gn.Score, err = NewGPUNet(d, cn.Score); err != nil {
		t.Fatal(err)
	}
	defer gn.Score.Close()
	if gn.Control, err = NewGPUNet(d, cn.Control); err != nil {
		t.Fatal(err)
	}
	defer gn.Control.Close()
	if gn.Gen, err = NewGPUNet(d, cn.Gen); err != nil {
		t.Fatal(err)
	}
	defer gn.Gen.Close()
	for _, c := range []struct {
		method  string
		steps   int
		points  int
		control bool
		denoise bool
	}{{"sde", 20, 37, false, false}, {"ode", 12, 37, true, false}, {"ode", 5, 64, false, false}, {"gen", 1, 301, false, false},
		{"sde", 1, 5, false, false}, {"sde", 6, 37, false, true}, {"ode", 4, 37, true, true}, {"ancestral", 9, 37, false, false}} {
		o := model.SampleOptions{Points: c.points, Steps: c.steps, Method: c.method, Seed: seed, Beta0: 0.1, Beta1: 4, SigmaV: 1, Denoise: c.denoise}
		g, cpu := gn, cn
		if !c.control {
			g.Control, cpu.Control = nil, nil
		}
		want, err := model.SampleCPU(cpu.Nets(), o, model.SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		got, err := SampleGPU(d, g, o, model.SampleHooks{Progress: func(step, total int, _ []float32) error { steps = step; return nil }})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", c.method, len(got), len(want))
		}
		e := maxAbsDiff(got, want)
		t.Logf("%s N=%d n=%d control=%v: max|GPU − CPU| = %.3g (progress reached %d)", c.method, c.steps, c.points, c.control, e, steps)
		if e > sampleTol {
			t.Errorf("%s N=%d control=%v: max abs diff %.3g > %g", c.method, c.steps, c.control, e, sampleTol)
		}
	}
}

func TestSampleOptionErrors(t *testing.T) {
	nets := sampleNets(t, 7)
	good := model.SampleOptions{Points: 10, Steps: 4, Method: "sde", Seed: 1, Beta0: 0.1, Beta1: 4, SigmaV: 1}
	if _, err := model.SampleCPU(nets.Nets(), good, model.SampleHooks{}); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	bad := map[string]func(o *model.SampleOptions, n *model.CPUNets){
		"points":  func(o *model.SampleOptions, _ *model.CPUNets) { o.Points = 0 },
		"points ": func(o *model.SampleOptions, _ *model.CPUNets) { o.Points = model.MaxPoints + 1 },
		"steps":   func(o *model.SampleOptions, _ *model.CPUNets) { o.Steps = 0 },
		"unknown": func(o *model.SampleOptions, _ *model.CPUNets) { o.Method = "euler" },
		"finite":  func(o *model.SampleOptions, _ *model.CPUNets) { o.Beta1 = math.NaN() },
		"β0, β1":  func(o *model.SampleOptions, _ *model.CPUNets) { o.Beta0 = -1 },
		"σ_v":     func(o *model.SampleOptions, _ *model.CPUNets) { o.SigmaV = 0 },
		"score":   func(_ *model.SampleOptions, n *model.CPUNets) { n.Score = nil },
		"generator": func(o *model.SampleOptions, n *model.CPUNets) {
			o.Method = "gen"
			n.Gen = nil
		},
		"dimension": func(o *model.SampleOptions, n *model.CPUNets) {
			o.Method = "ode"
			n.Control = randomMLP(t, testArchs[1], 3, 1)
		},
		"parameter": func(_ *model.SampleOptions, n *model.CPUNets) {
			n.Score = &model.Net{Arch: sampleArch, Params: map[string][]float32{}}
		},
	}
	for want, f := range bad {
		o, n := good, nets
		f(&o, &n)
		_, err := model.SampleCPU(n.Nets(), o, model.SampleHooks{})
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) {
			t.Errorf("%s: got error %v", want, err)
		}
	}
	// Gen ignores Steps; ode works without a control network.
	if _, err := model.SampleCPU(nets.Nets(), model.SampleOptions{Points: 3, Method: "gen", Beta0: 0.1, Beta1: 20, SigmaV: 1}, model.SampleHooks{}); err != nil {
		t.Errorf("gen with Steps = 0: %v", err)
	}
	if _, err := SampleGPU(nil, Nets{}, good, model.SampleHooks{}); err == nil {
		t.Error("SampleGPU with a nil device gave no error")
	}
}

func TestSampleGPUErrors(t *testing.T) {
	d := gpu(t)
	o := model.SampleOptions{Points: 10, Steps: 4, Method: "sde", Seed: 1, Beta0: 0.1, Beta1: 4, SigmaV: 1}
	if _, err := SampleGPU(d, Nets{}, o, model.SampleHooks{}); err == nil || !strings.Contains(err.Error(), "score") {
		t.Errorf("missing score: %v", err)
	}
	o.Method = "gen"
	if _, err := SampleGPU(d, Nets{}, o, model.SampleHooks{}); err == nil || !strings.Contains(err.Error(), "generator") {
		t.Errorf("missing generator: %v", err)
	}
}

func TestNoiseStreamConvention(t *testing.T) {
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0x4153424D))
	got := make([]float32, 16)
	model.NewNoise(seed).Fill(got)
	for i, g := range got {
		if w := float32(r.NormFloat64()); g != w {
			t.Fatalf("value %d: %v, the convention gives %v", i, g, w)
		}
	}
}
