package asbm_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"asbm/backend/asbm"
)

// loop is the common shape of Stage2, Baseline and Distill.
type loop interface {
	RunEpoch() (asbm.EpochStats, error)
	Finished() bool
	State() (asbm.Checkpoint, error)
	Restore(asbm.Checkpoint) error
}

// checkScore compares a learned score with the exact one at several times and points, relative to the
// exact value's scale.
func checkScore(t *testing.T, what string, s asbm.Net, exact func(tt float64, x, out []float64), times []float64, tol float64) {
	t.Helper()
	for _, tt := range times {
		for _, x := range []float64{-2, -0.5, 1, 2.5} {
			out := make([]float32, 1)
			s.Eval([]float32{float32(tt)}, []float32{float32(x)}, out)
			want := make([]float64, 1)
			exact(float64(float32(tt)), []float64{x}, want)
			near(t, fmt.Sprintf("%s s(%v, %v)", what, tt, x), float64(out[0]), want[0], tol*(0.5+math.Abs(want[0])))
		}
	}
}

// runAll runs a loop to the end and returns its stats.
func runAll(t *testing.T, l loop) []asbm.EpochStats {
	t.Helper()
	var st []asbm.EpochStats
	for !l.Finished() {
		s, err := l.RunEpoch()
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, s)
	}
	if _, err := l.RunEpoch(); !errors.Is(err, asbm.ErrFinished) {
		t.Errorf("RunEpoch after the last epoch: %v, want ErrFinished", err)
	}
	return st
}

// TestStage2ReferenceCoupling: with no control the coupling is the base's, (x0, α_1 x0 + σ_1 ε), its
// bridge marginals are the base marginals, and bridge matching must learn their score
// −(x − α_t m)/(α_t² a + σ_t²) (asbm.md §3.2). The PF-ODE with the learned score then maps N(0, 1) back to
// N(m, a) (for x1 ~ p_1). Fresh couplings every epoch: Couplings rows, ⌈Couplings/Batch⌉ steps.
func TestStage2ReferenceCoupling(t *testing.T) {
	vp := asbm.PaperVP()
	m, a := []float64{1.5}, 0.5
	cfg := asbm.Stage2Config{VP: vp, Couplings: 4096, Batch: 256, ForwardNFE: 50, Epochs: 120, SimBatch: 512, Seed: 3}
	score := newLinModel(1, 6, 1e-2, 0.99)
	s, err := asbm.NewStage2(cfg, nil, score, gaussData(m, a))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range runAll(t, s) {
		if st.Phase != asbm.PhaseBM || st.Steps != 16 || st.Examples != 4096 {
			t.Fatalf("epoch stats %+v", st)
		}
	}
	// Seeds 10–14 gave worst relative errors 2.8–4.3% (at small t, where the σ_t² weight is small).
	checkScore(t, "BM", score.EMA(), gaussScore(vp, m, a), []float64{0.2, 0.5, 0.8, 1}, 0.06)
	noise := asbm.NewNoise(4)
	a1 := vp.Alpha(1)
	sd1 := math.Sqrt(a1*a1*a + vp.Sigma2(1))
	x1 := asbm.SamplePrior(noise, 20000, 1)
	for i := range x1 {
		x1[i] = float32(a1*m[0] + sd1*float64(x1[i]))
	}
	x0, err := asbm.SampleODE(score.EMA(), nil, vp, x1, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	mean, vr := meanVar(x0, 1)
	near(t, "ODE sample mean", mean[0], m[0], 0.05)
	near(t, "ODE sample variance", vr[0], a, 0.05*a)
}

// TestBaselineDSM: denoising score matching on the memoryless VP learns the marginal score of N(m, a).
func TestBaselineDSM(t *testing.T) {
	vp := asbm.MemorylessVP()
	m, a := []float64{-1}, 2.0
	cfg := asbm.BaselineConfig{VP: vp, Examples: 4096, Batch: 256, Epochs: 30, SimBatch: 512, Seed: 5}
	score := newLinModel(1, 6, 1e-2, 0.99)
	b, err := asbm.NewBaseline(cfg, score, gaussData(m, a))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range runAll(t, b) {
		if st.Phase != asbm.PhaseDSM || st.Steps != 16 || st.Examples != 4096 {
			t.Fatalf("epoch stats %+v", st)
		}
	}
	checkScore(t, "DSM", score.EMA(), gaussScore(vp, m, a), []float64{0.2, 0.5, 0.8, 1}, 0.05)
}

// TestDistillGaussian: with the exact score of N(m, a) as teacher the PF-ODE map is affine,
// x0 = m + √(a/v_1)(z − α_1 m), and the generator (z + σ_1² g(1, z))/α_1 with an affine g can match it.
func TestDistillGaussian(t *testing.T) {
	vp := asbm.PaperVP()
	m, a := []float64{0.7}, 3.0
	teacher := &funcNet{dim: 1, f: gaussScore(vp, m, a)}
	gen := newLinModel(1, 1, 1e-2, 0.99)
	cfg := asbm.DistillConfig{VP: vp, Samples: 2048, Batch: 256, ODESteps: 50, Epochs: 120, SimBatch: 512, Seed: 6}
	g, err := asbm.NewDistill(cfg, teacher, nil, gen)
	if err != nil {
		t.Fatal(err)
	}
	st := runAll(t, g)
	if st[0].Phase != asbm.PhaseDistill || st[0].Steps != 8 || st[0].Examples != 2048 {
		t.Fatalf("epoch stats %+v", st[0])
	}
	a1 := vp.Alpha(1)
	v1 := a1*a1*a + vp.Sigma2(1)
	z := []float32{-2, -1, 0, 1, 2}
	x0, err := asbm.Generate(gen.EMA(), vp, z)
	if err != nil {
		t.Fatal(err)
	}
	for i, zi := range z {
		want := m[0] + math.Sqrt(a/v1)*(float64(zi)-a1*m[0])
		near(t, fmt.Sprintf("G(%v)", zi), float64(x0[i]), want, 5e-3*(1+math.Abs(want))) // seeds 10–14: 2e-4
	}
}

// TestLoopsResume: Stage2, Baseline, Distill and DMD resumed from a mid-run checkpoint into fresh models
// continue bit-identically.
func TestLoopsResume(t *testing.T) {
	data := gaussData([]float64{1, -1}, 2)
	teacher := &funcNet{dim: 2, f: gaussScore(asbm.PaperVP(), []float64{1, -1}, 2)}
	control := &funcNet{dim: 2, f: func(tt float64, x, out []float64) { out[0], out[1] = -0.1*x[0]*tt, 0.2 }}
	mk := map[string]func() (loop, *linModel){
		"stage2": func() (loop, *linModel) {
			sc := newLinModel(2, 3, 1e-2, 0.9)
			cfg := asbm.Stage2Config{VP: asbm.PaperVP(), Couplings: 300, Batch: 64, ForwardNFE: 5, Epochs: 5, SimBatch: 128, Seed: 1}
			l, err := asbm.NewStage2(cfg, control, sc, data)
			if err != nil {
				t.Fatal(err)
			}
			return l, sc
		},
		"baseline": func() (loop, *linModel) {
			sc := newLinModel(2, 3, 1e-2, 0.9)
			cfg := asbm.BaselineConfig{VP: asbm.MemorylessVP(), Examples: 300, Batch: 64, Epochs: 5, SimBatch: 128, Seed: 2}
			l, err := asbm.NewBaseline(cfg, sc, data)
			if err != nil {
				t.Fatal(err)
			}
			return l, sc
		},
		"distill": func() (loop, *linModel) {
			gen := newLinModel(2, 1, 1e-2, 0.9)
			cfg := asbm.DistillConfig{VP: asbm.PaperVP(), Samples: 300, Batch: 64, ODESteps: 4, Epochs: 5, SimBatch: 128, Seed: 3}
			l, err := asbm.NewDistill(cfg, teacher, control, gen)
			if err != nil {
				t.Fatal(err)
			}
			return l, gen
		},
		"dmd": func() (loop, *linModel) {
			gen := newLinModel(2, 1, 1e-2, 0.9)
			cfg := asbm.DMDConfig{VP: asbm.PaperVP(), Batch: 64, GenSteps: 3, FakeSteps: 2, Epochs: 5, TMin: 0.02, TMax: 0.98, Seed: 4}
			l, err := asbm.NewDMD(cfg, teacher, newLinModel(2, 3, 1e-2, 0.9), gen)
			if err != nil {
				t.Fatal(err)
			}
			return l, gen
		},
	}
	for name, f := range mk {
		a, ma := f()
		want := runAll(t, a)
		b, _ := f()
		for i := 0; i < 2; i++ {
			if _, err := b.RunEpoch(); err != nil {
				t.Fatal(err)
			}
		}
		ck, err := b.State()
		if err != nil {
			t.Fatal(err)
		}
		c, mc := f()
		for i := range mc.p {
			mc.p[i] = 3
		}
		if err := c.Restore(ck); err != nil {
			t.Fatal(err)
		}
		got := runAll(t, c)
		if !reflect.DeepEqual(got, want[2:]) {
			t.Errorf("%s: epochs after resume %+v, want %+v", name, got, want[2:])
		}
		if !reflect.DeepEqual(ma.State(), mc.State()) {
			t.Errorf("%s: final model state differs after resume", name)
		}
		ck.Scalars["dim"] = 5
		if c.Restore(ck) == nil {
			t.Errorf("%s: Restore of a dimension-5 checkpoint: want an error", name)
		}
	}
}

func TestLoopErrors(t *testing.T) {
	sc := newLinModel(2, 1, 1e-2, 0.9)
	data := gaussData([]float64{0, 0}, 1)
	if _, err := asbm.NewStage2(asbm.Stage2Config{VP: asbm.PaperVP(), Couplings: 0, Batch: 1, ForwardNFE: 5, Epochs: 1, SimBatch: 1}, nil, sc, data); err == nil {
		t.Error("stage 2 with Couplings 0: want an error")
	}
	if _, err := asbm.NewStage2(asbm.DefaultStage2(), &funcNet{dim: 3}, sc, data); err == nil {
		t.Error("stage 2 with a control of another dimension: want an error")
	}
	if _, err := asbm.NewBaseline(asbm.DefaultBaseline(), nil, data); err == nil {
		t.Error("baseline without a score: want an error")
	}
	if _, err := asbm.NewDistill(asbm.DefaultDistill(), nil, nil, sc); err == nil {
		t.Error("distill without a teacher: want an error")
	}
	if _, err := asbm.NewDMD(asbm.DefaultDMD(), sc, nil, sc); err == nil {
		t.Error("DMD without a fake score: want an error")
	}
	badDMD := asbm.DefaultDMD()
	badDMD.TMin = 0
	if _, err := asbm.NewDMD(badDMD, sc, sc, sc); err == nil {
		t.Error("DMD with TMin 0: want an error")
	}
	bad := asbm.DefaultDistill()
	bad.ODESteps = 0
	if _, err := asbm.NewDistill(bad, sc, nil, sc); err == nil {
		t.Error("distill with ODESteps 0: want an error")
	}
	nan := newLinModel(2, 1, 1e-2, 0.9)
	nan.nanStep = true
	b, _ := asbm.NewBaseline(asbm.BaselineConfig{VP: asbm.MemorylessVP(), Examples: 10, Batch: 5, Epochs: 1, SimBatch: 5}, nan, data)
	var nf *asbm.NonFiniteError
	if _, err := b.RunEpoch(); !errors.As(err, &nf) || nf.Phase != asbm.PhaseDSM {
		t.Errorf("NaN DSM loss: %v", err)
	}
}

// TestPassesReuseEachEpochsData checks that Passes multiplies the steps and examples of an epoch
// (0 meaning 1) and that a negative count is rejected.
func TestPassesReuseEachEpochsData(t *testing.T) {
	data := func(r *rand.Rand, dst []float32) {
		for i := range dst {
			dst[i] = float32(r.NormFloat64())
		}
	}
	control := &funcNet{dim: 2, f: func(tt float64, x, out []float64) { out[0], out[1] = -0.1*x[0]*tt, 0.2 }}
	for _, p := range []int{0, 1, 3} {
		cfg := asbm.Stage2Config{VP: asbm.PaperVP(), Couplings: 300, Batch: 64, ForwardNFE: 5, Epochs: 2, Passes: p, SimBatch: 128, Seed: 1}
		l, err := asbm.NewStage2(cfg, control, newLinModel(2, 3, 1e-2, 0.9), data)
		if err != nil {
			t.Fatal(err)
		}
		st, err := l.RunEpoch()
		if err != nil {
			t.Fatal(err)
		}
		want := max(p, 1)
		if st.Steps != want*5 || st.Examples != want*300 {
			t.Errorf("Passes %d: %d steps, %d examples; want %d and %d", p, st.Steps, st.Examples, want*5, want*300)
		}
	}
	if _, err := asbm.NewStage2(asbm.Stage2Config{VP: asbm.PaperVP(), Couplings: 3, Batch: 1, ForwardNFE: 5, Epochs: 1, Passes: -1, SimBatch: 1},
		control, newLinModel(2, 3, 1e-2, 0.9), data); err == nil {
		t.Error("Passes −1 accepted")
	}
}
