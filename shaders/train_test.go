package shaders

import (
	"math"
	"math/rand/v2"
	"testing"

	"asbm/model"
	"asbm/weights"
)

func TestTrainLossAndReduceKernels(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 32))
	for _, n := range []int{1, 37, 3000} {
		for _, dim := range []int{1, 2, 5} {
			f, w, y := normals(r, n*dim, 1), uniforms(r, n, 0.1, 2), normals(r, n*dim, 1)
			rB, dfB, lB := alloc(t, d, n*dim), alloc(t, d, n*dim), alloc(t, d, 3)
			lo, err := d.trainLossOp(rB, dfB, upload(t, d, f), upload(t, d, w), upload(t, d, y), n, dim)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.runOne(lo); err != nil {
				t.Fatal(err)
			}
			// Slot 2 also checks that the reduction writes only its slot.
			ro, err := d.trainReduceOp(lB, rB, 2, n*dim, true, float32(1/float64(n*dim)), false, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.runOne(ro); err != nil {
				t.Fatal(err)
			}
			var loss float64
			df := make([]float64, n*dim)
			for i := range f {
				ri := float64(w[i/dim])*float64(f[i]) - float64(y[i])
				loss += ri * ri
				df[i] = 2 * float64(w[i/dim]) * ri / float64(n*dim)
			}
			loss /= float64(n * dim)
			if e := relErr(read(t, d, dfB), df); e > kernelTol {
				t.Errorf("loss n=%d dim=%d: gradient rel err %.3g > %g", n, dim, e, kernelTol)
			}
			got := read(t, d, lB)
			if got[0] != 0 || got[1] != 0 {
				t.Errorf("reduction into slot 2 wrote slots 0, 1: %v", got)
			}
			if e := relErr(got[2:], []float64{loss}); e > 1e-5 {
				t.Errorf("loss n=%d dim=%d: %v vs %v, rel err %.3g > 1e-5", n, dim, got[2], loss, e)
			}
		}
	}
	// The plain sum and the clip factor.
	for _, clip := range []float64{0, 0.5, 1e6} {
		x := uniforms(r, 9, 0, 3)
		out := alloc(t, d, 1)
		o, err := d.trainReduceOp(out, upload(t, d, x), 0, len(x), false, 1, true, float32(clip))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.runOne(o); err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, v := range x {
			s += float64(v)
		}
		want := 1.0
		if clip > 0 {
			want = math.Min(1, clip/(math.Sqrt(s)+1e-6))
		}
		if e := relErr(read(t, d, out), []float64{want}); e > kernelTol {
			t.Errorf("clip factor (clip %v, Σ %v): rel err %.3g > %g", clip, s, e, kernelTol)
		}
	}
}

var trainArch = weights.Arch{Kind: "mlp", Dim: 2, Hidden: 32, Layers: 3, Fourier: 4}

// TestTrainerLossAndDeterminism checks the step's loss against a float64 loss of ForwardCPU, that
// the evaluation paths agree with ForwardCPU of the read-back parameters, and that two engines fed
// the same batches end bit-identical (the reductions have a fixed order).
func TestTrainerLossAndDeterminism(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 33))
	m := randomMLP(t, trainArch, r.Uint64(), 1)
	cfg := AdamW{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, EMADecay: 0.9, GradClip: 0.05}
	var engines [2]*Trainer
	for i := range engines {
		tm, err := NewTrainer(d, m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tm.Close)
		engines[i] = tm
	}
	n := 50
	for step := 0; step < 4; step++ {
		tv, x, y := uniforms(r, n, 0, 1), normals(r, n*2, 1), normals(r, n*2, 1)
		var w []float32
		if step%2 == 1 {
			w = uniforms(r, n, 0.2, 2)
		}
		cur, err := engines[0].Params()
		if err != nil {
			t.Fatal(err)
		}
		f := cur.ForwardCPU(tv, x)
		var want float64
		for i := range f {
			wi := 1.0
			if w != nil {
				wi = float64(w[i/2])
			}
			ri := wi*float64(f[i]) - float64(y[i])
			want += ri * ri
		}
		want /= float64(len(f))
		var losses [2]float32
		for i, tm := range engines {
			if losses[i], err = tm.Step(tv, x, w, y); err != nil {
				t.Fatal(err)
			}
		}
		if e := math.Abs(float64(losses[0])-want) / want; e > 1e-5 {
			t.Errorf("step %d: loss %v, float64 loss of ForwardCPU %v: rel err %.3g > 1e-5", step, losses[0], want, e)
		}
		if losses[0] != losses[1] {
			t.Errorf("step %d: two engines gave losses %v and %v", step, losses[0], losses[1])
		}
	}
	s0, err := engines[0].State()
	if err != nil {
		t.Fatal(err)
	}
	s1, err := engines[1].State()
	if err != nil {
		t.Fatal(err)
	}
	if s0.Step != 4 {
		t.Errorf("Steps = %d after 4 steps", s0.Step)
	}
	for i, name := range engines[0].Names() {
		for _, c := range [][2][]float32{{s0.Params[i], s1.Params[i]}, {s0.EMA[i], s1.EMA[i]}, {s0.M[i], s1.M[i]}, {s0.V[i], s1.V[i]}} {
			if maxAbsDiff(c[0], c[1]) != 0 {
				t.Fatalf("%s: two engines on the same batches differ by %g", name, maxAbsDiff(c[0], c[1]))
			}
		}
	}
	// Eval and EMAEval match ForwardCPU of the read-back parameters.
	tv, x := uniforms(r, 70, 0, 1), normals(r, 140, 1)
	for _, c := range []struct {
		name string
		eval func(t, x []float32) ([]float32, error)
		get  func() (*model.Net, error)
	}{{"Eval", engines[0].Eval, engines[0].Params}, {"EMAEval", engines[0].EMAEval, engines[0].EMAParams}} {
		got, err := c.eval(tv, x)
		if err != nil {
			t.Fatal(err)
		}
		pm, err := c.get()
		if err != nil {
			t.Fatal(err)
		}
		ref := pm.ForwardCPU(tv, x)
		want := make([]float64, len(ref))
		for i, v := range ref {
			want[i] = float64(v)
		}
		if e := relErr(got, want); e > 1e-5 {
			t.Errorf("%s vs ForwardCPU: rel err %.3g > 1e-5", c.name, e)
		}
	}
	// The EMA moved away from the parameters (decay 0.9 over 4 steps).
	if maxAbsDiff(s0.Params[0], s0.EMA[0]) == 0 {
		t.Error("EMA equals the parameters after 4 steps")
	}
}

func TestTrainerStateAndErrors(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 34))
	cfg := AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.999}
	a, err := NewTrainer(d, randomMLP(t, trainArch, r.Uint64(), 1), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b, err := NewTrainer(d, randomMLP(t, trainArch, r.Uint64(), 1), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	n := 20
	for range 2 {
		if _, err := a.Step(uniforms(r, n, 0, 1), normals(r, 2*n, 1), nil, normals(r, 2*n, 1)); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetState(sa); err != nil {
		t.Fatal(err)
	}
	// After restoring, both take the same step to the same place.
	tv, x, y := uniforms(r, n, 0, 1), normals(r, 2*n, 1), normals(r, 2*n, 1)
	la, err := a.Step(tv, x, nil, y)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Step(tv, x, nil, y)
	if err != nil {
		t.Fatal(err)
	}
	pa, _ := a.Params()
	pb, _ := b.Params()
	if la != lb || maxAbsDiff(pa.Params["l0.w"], pb.Params["l0.w"]) != 0 {
		t.Errorf("after SetState: losses %v vs %v, l0.w differs by %g", la, lb, maxAbsDiff(pa.Params["l0.w"], pb.Params["l0.w"]))
	}
	if err := b.ResetOptimizer(); err != nil {
		t.Fatal(err)
	}
	sb, _ := b.State()
	if sb.Step != 0 || maxAbsDiff(sb.M[0], make([]float32, len(sb.M[0]))) != 0 {
		t.Error("ResetOptimizer left the step count or the moments")
	}
	// Bad input.
	if _, err := a.Step(nil, nil, nil, nil); err == nil {
		t.Error("Step accepted an empty batch")
	}
	if _, err := a.Step(make([]float32, 3), make([]float32, 6), make([]float32, 2), make([]float32, 6)); err == nil {
		t.Error("Step accepted 2 weights for 3 rows")
	}
	bad := *sa
	bad.V = bad.V[:1]
	if err := b.SetState(&bad); err == nil {
		t.Error("SetState accepted a state missing second moments")
	}
	if err := a.SetLR(math.NaN()); err == nil {
		t.Error("SetLR accepted NaN")
	}
	if _, err := NewTrainer(d, &model.Net{Arch: trainArch}, cfg); err == nil {
		t.Error("NewTrainer accepted an MLP without parameters")
	}
	a.Close()
	if _, err := a.Step(tv, x, nil, y); err == nil {
		t.Error("Step on a closed Trainer returned no error")
	}
}
