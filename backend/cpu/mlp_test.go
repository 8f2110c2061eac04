package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// smallArch keeps the finite-difference tests fast while exercising every layer kind.
var smallArch = weights.Arch{Kind: "mlp", Dim: 2, Hidden: 8, Layers: 2, Fourier: 3}

func mustFromMLP(t testing.TB, m *model.Net, cfg Config) *Net {
	t.Helper()
	c, err := FromNet(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// maxRelDiff returns max|a−b| / max|b|.
func maxRelDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den
}

// TestEvalMatchesForwardCPU checks the gorgonia forward (current and EMA parameters) against
// model.Net.ForwardCPU on random parameters and inputs: max|Δ|/max|ref| < 1e-5. The batch sizes
// include more sizes than the graph cache holds, and repeat, so eviction and reuse are exercised.
func TestEvalMatchesForwardCPU(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, a := range []weights.Arch{toyArch, smallArch, {Kind: "mlp", Dim: 3, Hidden: 5, Layers: 1, Fourier: 0}} {
		sm := randomMLP(a, r.Uint64())
		c := mustFromMLP(t, sm, DefaultConfig())
		var worst float64
		for _, n := range []int{1, 7, 512, 3, 2, 5, 6, 9, 7, 1, 300} {
			tt, x, _, _ := randBatch(r, n, a.Dim)
			if n >= 3 {
				tt[1] = tt[0] // equal consecutive times take the reuse path of fillInput
				tt[2] = tt[0]
			}
			want := sm.ForwardCPU(tt, x)
			got := make([]float32, len(x))
			c.Eval(tt, x, got)
			e := maxRelDiff(got, want)
			if e > 1e-5 || math.IsNaN(e) {
				t.Errorf("%+v n=%d: Eval rel err %.3g", a, n, e)
			}
			worst = math.Max(worst, e)
			got2 := make([]float32, len(x))
			c.EMA().Eval(tt, x, got2)
			if e := maxRelDiff(got2, want); e > 1e-5 || math.IsNaN(e) {
				t.Errorf("%+v n=%d: EMA().Eval rel err %.3g", a, n, e)
			}
		}
		t.Logf("%+v: worst Eval rel err %.3g", a, worst)
		if len(c.fwd.m) > maxCachedGraphs || len(c.fwd.order) != len(c.fwd.m) {
			t.Errorf("forward graph cache holds %d graphs (%d in order), bound %d", len(c.fwd.m), len(c.fwd.order), maxCachedGraphs)
		}
		// Evaluating must leave the parameters untouched.
		for name, p := range c.Params().Params {
			if maxRelDiff(p, sm.Params[name]) != 0 {
				t.Errorf("%+v: Eval changed parameter %s", a, name)
			}
		}
	}
	// Zero rows is a no-op, not a panic.
	c := mustFromMLP(t, randomMLP(smallArch, 3), DefaultConfig())
	c.Eval(nil, nil, nil)
}

// TestGradientFiniteDifference compares gorgonia's gradient of the weighted loss (random row
// weights) with central finite differences of the float64 plain-Go loss, on sampled entries of every
// parameter tensor: |g − fd| ≤ 1e-3·(|fd| + max|fd| of the tensor's samples). It also checks the
// returned loss against the float64 loss (rel 1e-5).
func TestGradientFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, a := range []weights.Arch{smallArch, {Kind: "mlp", Dim: 2, Hidden: 32, Layers: 3, Fourier: 8}, toyArch} {
		sm := randomMLP(a, r.Uint64())
		c := mustFromMLP(t, sm, DefaultConfig())
		p64 := toParams64(a, sm)
		n := 24
		if a.Hidden*n < parallelMin {
			// enough rows that the element-wise ops take their multi-goroutine path
			n = parallelMin/a.Hidden + 1
		}
		tt, x, w, y := randBatch(r, n, a.Dim)
		ng, loss := c.lossGrad(tt, x, w, y)
		if ref := loss64(a, p64, tt, x, w, y); math.Abs(float64(loss)-ref) > 1e-5*ref {
			t.Errorf("%+v: loss %v, float64 reference %v", a, loss, ref)
		}
		names, _ := model.ParamShapes(a)
		for k, name := range names {
			g := f32(ng.grads[k])
			if len(g) != len(p64[k]) {
				t.Fatalf("%s: gradient has %d entries, want %d", name, len(g), len(p64[k]))
			}
			idx := r.Perm(len(g))
			if len(idx) > 8 {
				idx = idx[:8]
			}
			fd := make([]float64, len(idx))
			var scale float64
			for i, j := range idx {
				fd[i] = fdGrad(a, p64, k, j, tt, x, w, y)
				scale = math.Max(scale, math.Abs(fd[i]))
			}
			if scale == 0 {
				t.Fatalf("%s: all sampled finite differences are 0, the test would prove nothing", name)
			}
			var worst float64
			for i, j := range idx {
				d := math.Abs(float64(g[j]) - fd[i])
				worst = math.Max(worst, d/(math.Abs(fd[i])+scale))
				if d > 1e-3*(math.Abs(fd[i])+scale) {
					t.Errorf("%+v %s[%d]: gorgonia %.8g, finite difference %.8g", a, name, j, g[j], fd[i])
				}
			}
			t.Logf("hidden %d %s: worst |g−fd|/(|fd|+max|fd|) = %.3g", a.Hidden, name, worst)
		}
	}
}

// TestStepMatchesAdamW runs three steps with weight decay and an active gradient clip and compares
// the parameters after each with a float64 AdamW driven by finite-difference gradients of the float64
// loss (|Δp| < 1e-4), and the returned losses with the float64 loss (rel 1e-5).
func TestStepMatchesAdamW(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	a := smallArch
	sm := randomMLP(a, r.Uint64())
	p64 := toParams64(a, sm)
	names, _ := model.ParamShapes(a)

	fullGrad := func(p params64, tt, x, w, y []float32) params64 {
		g := make(params64, len(p))
		for k := range p {
			g[k] = make([]float64, len(p[k]))
			for j := range p[k] {
				g[k][j] = fdGrad(a, p, k, j, tt, x, w, y)
			}
		}
		return g
	}
	norm := func(g params64) float64 {
		var s float64
		for _, gk := range g {
			for _, v := range gk {
				s += v * v
			}
		}
		return math.Sqrt(s)
	}

	n := 16
	batches := make([][4][]float32, 3)
	for i := range batches {
		tt, x, w, y := randBatch(r, n, a.Dim)
		batches[i] = [4][]float32{tt, x, w, y}
	}
	g0 := fullGrad(p64, batches[0][0], batches[0][1], batches[0][2], batches[0][3])
	cfg := Config{LR: 1e-3, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 2, EMADecay: 0.99,
		GradClip: 0.5 * norm(g0)} // below the first gradient's norm, so the clip fires
	c := mustFromMLP(t, sm, cfg)
	ref := newAdamW64(cfg, p64)

	for s, b := range batches {
		lossRef := loss64(a, p64, b[0], b[1], b[2], b[3])
		g := fullGrad(p64, b[0], b[1], b[2], b[3])
		clipped := ref.update(p64, g)
		if s == 0 && !clipped {
			t.Fatal("the reference clip did not fire on step 0; the test would not check clipping")
		}
		loss := c.Step(b[0], b[1], b[2], b[3])
		if math.Abs(float64(loss)-lossRef) > 1e-5*lossRef {
			t.Errorf("step %d: loss %v, reference %v", s, loss, lossRef)
		}
		got := c.Params()
		var worst float64
		for k, name := range names {
			for j, v := range got.Params[name] {
				worst = math.Max(worst, math.Abs(float64(v)-p64[k][j]))
			}
		}
		if worst > 1e-4 {
			t.Errorf("step %d (clipped %t): max |p − p_ref| = %.3g", s, clipped, worst)
		}
		// The moments see the clipped gradient directly (the Adam step is nearly scale-invariant).
		st := c.State()
		for k, name := range names {
			for _, mom := range []struct {
				key string
				ref []float64
			}{{"adam_m/" + name, ref.m[k]}, {"adam_v/" + name, ref.v[k]}} {
				var scale float64
				for _, v := range mom.ref {
					scale = math.Max(scale, math.Abs(v))
				}
				for j, v := range st[mom.key] {
					if d := math.Abs(float64(v) - mom.ref[j]); d > 1e-4*scale {
						t.Errorf("step %d: %s[%d] = %.8g, reference %.8g", s, mom.key, j, v, mom.ref[j])
						break
					}
				}
			}
		}
		t.Logf("step %d: clipped %t, max |p − p_ref| = %.3g", s, clipped, worst)
	}
	if c.Steps() != 3 {
		t.Errorf("Steps() = %d, want 3", c.Steps())
	}
}

// TestEMARecursion checks the EMA after k steps against ema_k = d·ema_{k−1} + (1−d)·p_k, ema_0 = p_0,
// computed in float64 from the parameters after each step, and that EMA().Eval evaluates them.
func TestEMARecursion(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	a := smallArch
	cfg := DefaultConfig()
	cfg.LR, cfg.EMADecay = 1e-2, 0.8
	c := mustFromMLP(t, randomMLP(a, r.Uint64()), cfg)
	ema := toParams64(a, c.Params())
	for k := 0; k < 6; k++ {
		tt, x, w, y := randBatch(r, 32, a.Dim)
		if k%2 == 0 {
			w = nil
		}
		c.Step(tt, x, w, y)
		p := toParams64(a, c.Params())
		for i := range ema {
			for j := range ema[i] {
				ema[i][j] = cfg.EMADecay*ema[i][j] + (1-cfg.EMADecay)*p[i][j]
			}
		}
	}
	got := toParams64(a, c.EMAParams())
	cur := toParams64(a, c.Params())
	var worst, moved float64
	for i := range ema {
		for j := range ema[i] {
			worst = math.Max(worst, math.Abs(got[i][j]-ema[i][j])/math.Max(1, math.Abs(ema[i][j])))
			moved = math.Max(moved, math.Abs(cur[i][j]-ema[i][j]))
		}
	}
	if worst > 1e-6 {
		t.Errorf("EMA differs from the recursion by %.3g", worst)
	}
	if moved < 1e-3 {
		t.Errorf("EMA and parameters differ by only %.3g; the test would not tell them apart", moved)
	}
	tt, x, _, _ := randBatch(r, 50, a.Dim)
	want := c.EMAParams().ForwardCPU(tt, x)
	out := make([]float32, len(x))
	c.EMA().Eval(tt, x, out)
	if e := maxRelDiff(out, want); e > 1e-5 {
		t.Errorf("EMA().Eval vs ForwardCPU of EMAParams: rel err %.3g", e)
	}
	c.Eval(tt, x, out)
	if e := maxRelDiff(out, want); e < 1e-4 {
		t.Errorf("Eval (current parameters) equals the EMA output to %.3g; expected them to differ", e)
	}
}

// sameState reports the first entry where two states differ bit for bit.
func sameState(a, b map[string][]float32) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d vs %d entries", len(a), len(b))
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || len(va) != len(vb) {
			return fmt.Errorf("entry %s missing or resized", k)
		}
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				return fmt.Errorf("%s[%d]: %v vs %v", k, i, va[i], vb[i])
			}
		}
	}
	return nil
}

// TestStateRoundTrip restores a trained MLP's State into another and checks that both then take
// bit-identical steps; that a failed SetState leaves the MLP unchanged; and that ResetOptimizer gives
// the same next step as a fresh optimiser on the same parameters.
func TestStateRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	a := smallArch
	cfg := DefaultConfig()
	cfg.LR, cfg.GradClip, cfg.WeightDecay = 3e-3, 1, 0.01
	A, err := New(a, cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	B, err := New(a, cfg, 6)
	if err != nil {
		t.Fatal(err)
	}
	step := func(m *Net, b [4][]float32) float32 { return m.Step(b[0], b[1], b[2], b[3]) }
	batch := func() [4][]float32 {
		tt, x, w, y := randBatch(r, 40, a.Dim)
		return [4][]float32{tt, x, w, y}
	}
	for i := 0; i < 4; i++ {
		step(A, batch())
	}
	s := A.State()
	if err := B.SetState(s); err != nil {
		t.Fatal(err)
	}
	for k := range s { // B must hold copies, not s itself
		for i := range s[k] {
			s[k][i] = float32(math.NaN())
		}
	}
	for i := 0; i < 3; i++ {
		b := batch()
		la, lb := step(A, b), step(B, b)
		if math.Float32bits(la) != math.Float32bits(lb) {
			t.Fatalf("step %d after restore: loss %v vs %v", i, la, lb)
		}
	}
	if err := sameState(A.State(), B.State()); err != nil {
		t.Fatalf("states differ after identical steps: %v", err)
	}

	// Bad states are rejected and leave B unchanged.
	before := B.State()
	bad := []func(map[string][]float32){
		func(m map[string][]float32) { delete(m, "ema/l1.b") },
		func(m map[string][]float32) { m["param/out.w"] = m["param/out.w"][1:] },
		func(m map[string][]float32) { m["adam_step"] = []float32{1.5} },
		func(m map[string][]float32) { m["adam_step"] = []float32{-1} },
		func(m map[string][]float32) { m["extra"] = []float32{1} },
		func(m map[string][]float32) { delete(m, "adam_v/l0.w"); m["adam_v/l9.w"] = []float32{0} },
	}
	for i, corrupt := range bad {
		s := A.State()
		for k := range s {
			s[k][0] += 1 // differs from B's, so a partial copy would show
		}
		corrupt(s)
		if err := B.SetState(s); err == nil {
			t.Errorf("bad state %d accepted", i)
		}
		if err := sameState(before, B.State()); err != nil {
			t.Errorf("bad state %d changed the MLP: %v", i, err)
		}
	}

	// ResetOptimizer: the next step equals a fresh optimiser's on the same parameters.
	A.ResetOptimizer()
	C := mustFromMLP(t, A.Params(), cfg)
	b := batch()
	step(A, b)
	step(C, b)
	pa, pc := A.State(), C.State()
	for k, v := range pa {
		if strings.HasPrefix(k, "ema/") {
			continue // A's EMA carries its history; C's started at the parameters
		}
		if err := sameState(map[string][]float32{k: v}, map[string][]float32{k: pc[k]}); err != nil {
			t.Errorf("after ResetOptimizer: %v", err)
		}
	}
}

// TestRegressionToy fits y = sin(3x) on [−1, 1] with a 1-D network (t random, so the net must learn
// to ignore it): the held-out mean squared error must fall at least 10× in 400 steps.
func TestRegressionToy(t *testing.T) {
	a := weights.Arch{Kind: "mlp", Dim: 1, Hidden: 32, Layers: 2, Fourier: 2}
	cfg := DefaultConfig()
	cfg.LR = 3e-3
	c, err := New(a, cfg, 9)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(61, 62))
	batch := func(n int) (tt, x, y []float32) {
		tt, x, y = make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range x {
			tt[i] = r.Float32()
			x[i] = 2*r.Float32() - 1
			y[i] = float32(math.Sin(3 * float64(x[i])))
		}
		return
	}
	ht, hx, hy := batch(1000)
	mse := func() float64 {
		out := make([]float32, len(hx))
		c.Eval(ht, hx, out)
		var s float64
		for i := range out {
			d := float64(out[i] - hy[i])
			s += d * d
		}
		return s / float64(len(out))
	}
	start := mse()
	for i := 0; i < 400; i++ {
		tt, x, y := batch(128)
		c.Step(tt, x, nil, y)
	}
	end := mse()
	t.Logf("held-out MSE %.4g → %.4g (%.0f×)", start, end, start/end)
	if !(end < start/10) {
		t.Errorf("held-out MSE fell only from %.4g to %.4g", start, end)
	}
}

// TestBadInput checks the errors of the constructors and the panics (programmer errors) of Eval,
// EMA().Eval, Step and SetLR on bad arguments.
func TestBadInput(t *testing.T) {
	if _, err := New(weights.Arch{Kind: "cnn", Dim: 2, Hidden: 4, Layers: 1}, DefaultConfig(), 1); err == nil {
		t.Error("New accepted kind cnn")
	}
	if _, err := New(weights.Arch{Kind: "mlp", Dim: 0, Hidden: 4, Layers: 1}, DefaultConfig(), 1); err == nil {
		t.Error("New accepted dim 0")
	}
	for i, cfg := range []Config{
		{LR: -1, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.999},
		{LR: 1e-3, Beta1: 1, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.999},
		{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 0, EMADecay: 0.999},
		{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, EMADecay: 1.5},
		{LR: math.NaN(), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.999},
	} {
		if _, err := New(smallArch, cfg, 1); err == nil {
			t.Errorf("config %d accepted: %+v", i, cfg)
		}
	}
	sm := randomMLP(smallArch, 1)
	delete(sm.Params, "l1.b")
	if _, err := FromNet(sm, DefaultConfig()); err == nil {
		t.Error("FromNet accepted a missing parameter")
	}
	sm = randomMLP(smallArch, 1)
	sm.Params["l0.w"] = sm.Params["l0.w"][:3]
	if _, err := FromNet(sm, DefaultConfig()); err == nil {
		t.Error("FromNet accepted a short parameter")
	}
	if _, err := FromNet(nil, DefaultConfig()); err == nil {
		t.Error("FromNet accepted nil")
	}

	c := mustFromMLP(t, randomMLP(smallArch, 2), DefaultConfig())
	mustPanic := func(what, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil {
				t.Errorf("%s did not panic", what)
				return
			}
			if msg := fmt.Sprint(r); !strings.Contains(msg, want) {
				t.Errorf("%s panicked with %q, want it to mention %q", what, msg, want)
			}
		}()
		f()
	}
	f := func(n int) []float32 { return make([]float32, n) }
	mustPanic("Eval short x", "Eval", func() { c.Eval(f(3), f(5), f(6)) })
	mustPanic("Eval short out", "len(out)", func() { c.Eval(f(3), f(6), f(5)) })
	mustPanic("EMA Eval short x", "EMA().Eval", func() { c.EMA().Eval(f(3), f(5), f(6)) })
	mustPanic("Step short y", "Step", func() { c.Step(f(3), f(6), nil, f(5)) })
	mustPanic("Step short w", "len(w)", func() { c.Step(f(3), f(6), f(2), f(6)) })
	mustPanic("Step empty", "≥ 1", func() { c.Step(nil, nil, nil, nil) })
	mustPanic("SetLR NaN", "SetLR", func() { c.SetLR(math.NaN()) })
	if c.Steps() != 0 {
		t.Errorf("a rejected Step changed the step count to %d", c.Steps())
	}
}

// TestCopies checks that FromNet, Params and EMAParams copy: later changes on either side do not
// leak through.
func TestCopies(t *testing.T) {
	sm := randomMLP(smallArch, 4)
	c := mustFromMLP(t, sm, DefaultConfig())
	before := c.Params()
	sm.Params["l0.w"][0] += 1
	p := c.Params()
	p.Params["out.b"][0] += 1
	e := c.EMAParams()
	e.Params["out.b"][0] += 1
	after := c.Params()
	for name, v := range before.Params {
		if maxRelDiff(after.Params[name], v) != 0 {
			t.Errorf("parameter %s changed through a copy", name)
		}
	}
	if maxRelDiff(c.EMAParams().Params["out.b"], before.Params["out.b"]) != 0 {
		t.Error("EMA changed through a copy")
	}
	c.SetLR(0.5)
	if c.Config().LR != 0.5 {
		t.Errorf("SetLR: LR = %v", c.Config().LR)
	}
}

// TestFusedOpsMatchStockGorgonia checks the fused bias+SiLU ops against the same network built from
// gorgonia's stock ops (so against gorgonia's own derivative of sigmoid and broadcasting): loss and
// every gradient entry agree to 1e-5 relative to the tensor's largest gradient.
func TestFusedOpsMatchStockGorgonia(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	a := toyArch
	c := mustFromMLP(t, randomMLP(a, r.Uint64()), DefaultConfig())
	n := 200 // n·Hidden ≥ parallelMin: the fused ops' multi-goroutine path
	tt, x, w, y := randBatch(r, n, a.Dim)
	fused, lf := c.lossGrad(tt, x, w, y)
	stock, err := buildGraphWith(a, c.p, n, true, true)
	if err != nil {
		t.Fatal(err)
	}
	c.fillInput(stock.x, tt, x)
	copy(stock.y, y)
	for i := range tt {
		for j := 0; j < a.Dim; j++ {
			stock.wy[i*a.Dim+j] = w[i]
		}
	}
	stock.run()
	if ls := scalarF32(stock.loss); math.Abs(float64(lf-ls)) > 1e-6*math.Abs(float64(ls)) {
		t.Errorf("loss: fused %v, stock %v", lf, ls)
	}
	names, _ := model.ParamShapes(a)
	for k, name := range names {
		gf, gs := f32(fused.grads[k]), f32(stock.grads[k])
		if e := maxRelDiff(gf, gs); e > 1e-5 || math.IsNaN(e) {
			t.Errorf("%s: fused vs stock gradient rel err %.3g", name, e)
		}
	}
}
