package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"asbm/model"
	"asbm/weights"
)

// tinyUNet has every U-Net op kind (two levels: pool, upsample, concat, 1×1 skip convs) at a size
// the float64 finite differences can afford.
var tinyUNet = weights.Arch{Kind: "unet", Dim: 2 * 8 * 8, Channels: 2, Height: 8, Width: 8, Base: 4,
	Mults: []int{1, 2}, ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3}

// deepUNet adds a third level, two blocks per level, identity skips next to 1×1 ones, and a
// non-square image.
var deepUNet = weights.Arch{Kind: "unet", Dim: 1 * 8 * 12, Channels: 1, Height: 8, Width: 12, Base: 4,
	Mults: []int{1, 2, 2}, ResBlocks: 2, Groups: 2, TimeEmb: 6, Fourier: 2}

// mnistUNet is the default MNIST architecture (common notes).
var mnistUNet = weights.Arch{Kind: "unet", Dim: 784, Channels: 1, Height: 28, Width: 28, Base: 16,
	Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}

// maxAbsRel returns max|a−b| / max|b| over float64 vectors.
func maxAbsRel(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	return num / den
}

// stockForward evaluates the U-Net with a graph of gorgonia's own ops (buildGraphWith stockOps).
func stockForward(t *testing.T, c *Net, tt, x []float32) []float32 {
	t.Helper()
	ng, err := buildGraphWith(c.arch, c.p, len(tt), false, true)
	if err != nil {
		t.Fatal(err)
	}
	c.fill(ng, tt, x)
	ng.run()
	return append([]float32(nil), f32(ng.pred)...)
}

// TestUNetEvalMatchesForwardCPU checks the gorgonia U-Net (fused ops: Eval and EMA().Eval; stock
// gorgonia ops) against model.Net.ForwardCPU on random parameters and inputs, max|Δ|/max|ref| ≤
// 1e-5, over several batch sizes including one above unetEvalChunk (so Eval runs in chunks) and large
// enough for the multi-goroutine paths; and the float64 test reference against ForwardCPU to the
// same tolerance.
func TestUNetEvalMatchesForwardCPU(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	for _, a := range []weights.Arch{tinyUNet, deepUNet} {
		sm := randomUNet(a, r.Uint64())
		c := mustFromMLP(t, sm, DefaultConfig())
		var worst, worstEMA, worstStock float64
		for _, n := range []int{1, 3, 2, 5, 3, 300} {
			tt, x, _, _ := randBatch(r, n, a.Dim)
			if n >= 3 {
				tt[2] = tt[1] // equal consecutive times take the reuse path of fill
			}
			want := sm.ForwardCPU(tt, x)
			got := make([]float32, len(x))
			c.Eval(tt, x, got)
			e := maxRelDiff(got, want)
			if e > 1e-5 || math.IsNaN(e) {
				t.Errorf("%v n=%d: Eval rel err %.3g", a.Mults, n, e)
			}
			worst = math.Max(worst, e)
			c.EMA().Eval(tt, x, got)
			e = maxRelDiff(got, want)
			if e > 1e-5 || math.IsNaN(e) {
				t.Errorf("%v n=%d: EMA().Eval rel err %.3g", a.Mults, n, e)
			}
			worstEMA = math.Max(worstEMA, e)
			if n <= 5 { // gorgonia's stock Upsample2D and Transpose are slow
				e = maxRelDiff(stockForward(t, c, tt, x), want)
				if e > 1e-5 || math.IsNaN(e) {
					t.Errorf("%v n=%d: stock-op graph rel err %.3g", a.Mults, n, e)
				}
				worstStock = math.Max(worstStock, e)
			}
		}
		t.Logf("%v %dx%d: worst rel err Eval %.3g, EMA().Eval %.3g, stock ops %.3g", a.Mults, a.Height, a.Width, worst, worstEMA, worstStock)
		for _, gc := range []*graphCache{c.fwd, c.emaFwd} {
			if len(gc.m) > maxCachedGraphs || len(gc.order) != len(gc.m) {
				t.Errorf("forward graph cache holds %d graphs (%d in order), bound %d", len(gc.m), len(gc.order), maxCachedGraphs)
			}
			for n := range gc.m {
				if n > unetEvalChunk {
					t.Errorf("forward graph for %d images, above the chunk size %d", n, unetEvalChunk)
				}
			}
		}

		// The float64 reference of the gradient tests computes the same function.
		tt, x, _, _ := randBatch(r, 2, a.Dim)
		want := sm.ForwardCPU(tt, x)
		p64 := toParams64(a, sm)
		var ref []float64
		for i := range tt {
			ref = append(ref, unet64(a, p64, tt[i], x[i*a.Dim:(i+1)*a.Dim])...)
		}
		w64 := make([]float64, len(want))
		for i, v := range want {
			w64[i] = float64(v)
		}
		if e := maxAbsRel(w64, ref); e > 1e-5 || math.IsNaN(e) {
			t.Errorf("%v: float64 reference vs ForwardCPU rel err %.3g", a.Mults, e)
		}
		for name, p := range c.Params().Params {
			if maxRelDiff(p, sm.Params[name]) != 0 {
				t.Errorf("%v: Eval changed parameter %s", a.Mults, name)
			}
		}
	}
}

// TestUNetGradientFiniteDifference compares gorgonia's gradient of the weighted loss (fused ops and
// stock ops) with central finite differences of the float64 U-Net on every entry of every parameter
// tensor: per tensor, max_j |g_j − fd_j| / max_j |fd_j| ≤ 1e-3. It also checks the returned loss
// against the float64 loss (rel 1e-5).
func TestUNetGradientFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	a := tinyUNet
	sm := randomUNet(a, r.Uint64())
	c := mustFromMLP(t, sm, DefaultConfig())
	p64 := toParams64(a, sm)
	tt, x, w, y := randBatch(r, 3, a.Dim)
	ng, loss := c.lossGrad(tt, x, w, y)
	if ref := unetLoss64(a, p64, tt, x, w, y); math.Abs(float64(loss)-ref) > 1e-5*ref {
		t.Errorf("loss %v, float64 reference %v", loss, ref)
	}
	stock, err := buildGraphWith(a, c.p, len(tt), true, true)
	if err != nil {
		t.Fatal(err)
	}
	c.fill(stock, tt, x)
	copy(stock.y, ng.y)
	copy(stock.wy, ng.wy)
	stock.run()

	names, _ := model.ParamShapes(a)
	var worst, worstStock float64
	total := 0
	for k, name := range names {
		fd := make([]float64, len(p64[k]))
		for j := range fd {
			v := p64[k][j]
			h := 1e-6 * math.Max(1, math.Abs(v))
			p64[k][j] = v + h
			lp := unetLoss64(a, p64, tt, x, w, y)
			p64[k][j] = v - h
			lm := unetLoss64(a, p64, tt, x, w, y)
			p64[k][j] = v
			fd[j] = (lp - lm) / (2 * h)
		}
		total += len(fd)
		for _, src := range []struct {
			what string
			g    []float32
			max  *float64
		}{{"fused", f32(ng.grads[k]), &worst}, {"stock", f32(stock.grads[k]), &worstStock}} {
			if len(src.g) != len(fd) {
				t.Fatalf("%s %s: gradient has %d entries, want %d", src.what, name, len(src.g), len(fd))
			}
			g := make([]float64, len(fd))
			for j, v := range src.g {
				g[j] = float64(v)
			}
			e := maxAbsRel(g, fd)
			if e > 1e-3 || math.IsNaN(e) {
				t.Errorf("%s gradient of %s: max|g−fd|/max|fd| = %.3g", src.what, name, e)
			}
			*src.max = math.Max(*src.max, e)
		}
	}
	t.Logf("%d parameters in %d tensors: worst max|g−fd|/max|fd| per tensor: fused ops %.3g, stock ops %.3g",
		total, len(names), worst, worstStock)
}

// TestUNetFusedMatchesStockGradient compares the fused ops' gradient with the stock-op graph's on a
// batch large enough that every fused op takes its multi-goroutine path (per tensor
// max|Δ|/max|stock| ≤ 1e-4, both float32).
func TestUNetFusedMatchesStockGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(81, 82))
	a := tinyUNet
	c := mustFromMLP(t, randomUNet(a, r.Uint64()), DefaultConfig())
	n := parallelMin/(a.Base*a.Height*a.Width) + 2
	tt, x, w, y := randBatch(r, n, a.Dim)
	ng, loss := c.lossGrad(tt, x, w, y)
	stock, err := buildGraphWith(a, c.p, n, true, true)
	if err != nil {
		t.Fatal(err)
	}
	c.fill(stock, tt, x)
	copy(stock.y, ng.y)
	copy(stock.wy, ng.wy)
	stock.run()
	if sl := scalarF32(stock.loss); math.Abs(float64(loss-sl)) > 1e-5*float64(sl) {
		t.Errorf("loss fused %v, stock %v", loss, sl)
	}
	names, _ := model.ParamShapes(a)
	var worst float64
	for k, name := range names {
		e := maxRelDiff(f32(ng.grads[k]), f32(stock.grads[k]))
		if e > 1e-4 || math.IsNaN(e) {
			t.Errorf("n=%d %s: fused vs stock gradient rel err %.3g", n, name, e)
		}
		worst = math.Max(worst, e)
	}
	t.Logf("n=%d: worst fused vs stock gradient rel err %.3g", n, worst)
}

// TestUNetStateRoundTrip restores a trained U-Net's State into another (different seed) and checks
// that both then take bit-identical steps and evaluate identically (current and EMA parameters), and
// that training lowers the loss on a fixed batch.
func TestUNetStateRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(91, 92))
	a := tinyUNet
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
	tt, x, w, y := randBatch(r, 6, a.Dim)
	var first, last float32
	for i := 0; i < 30; i++ {
		l := A.Step(tt, x, w, y)
		if i == 0 {
			first = l
		}
		last = l
	}
	if !(last < 0.9*first) {
		t.Errorf("30 steps on one batch: loss %v → %v, want a drop of at least 10%%", first, last)
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
		tt, x, w, y := randBatch(r, 4, a.Dim)
		la, lb := A.Step(tt, x, w, y), B.Step(tt, x, w, y)
		if math.Float32bits(la) != math.Float32bits(lb) {
			t.Fatalf("step %d after restore: loss %v vs %v", i, la, lb)
		}
	}
	if err := sameState(A.State(), B.State()); err != nil {
		t.Fatalf("states differ after identical steps: %v", err)
	}
	tt, x, _, _ = randBatch(r, 3, a.Dim)
	for _, pair := range [][2]interface{ Eval(t, x, out []float32) }{{A, B}, {A.EMA(), B.EMA()}} {
		oa, ob := make([]float32, len(x)), make([]float32, len(x))
		pair[0].Eval(tt, x, oa)
		pair[1].Eval(tt, x, ob)
		if err := sameState(map[string][]float32{"out": oa}, map[string][]float32{"out": ob}); err != nil {
			t.Errorf("restored net evaluates differently: %v", err)
		}
	}
	// The EMA is not the current parameters after training, and EMA().Eval must show that.
	oa, oe := make([]float32, len(x)), make([]float32, len(x))
	A.Eval(tt, x, oa)
	A.EMA().Eval(tt, x, oe)
	if maxRelDiff(oa, oe) == 0 {
		t.Errorf("EMA().Eval equals Eval after 33 steps at lr %v", cfg.LR)
	}
	if want := A.EMAParams().ForwardCPU(tt, x); maxRelDiff(oe, want) > 1e-5 {
		t.Errorf("EMA().Eval vs ForwardCPU of EMAParams: rel err %.3g", maxRelDiff(oe, want))
	}
}

// TestUNetBadArch checks that New and FromNet reject U-Net archs and parameter sets they cannot
// build with an error.
func TestUNetBadArch(t *testing.T) {
	bad := tinyUNet
	bad.Groups = 3 // 4 channels are not divisible into 3 groups
	if _, err := New(bad, DefaultConfig(), 1); err == nil {
		t.Error("New accepted groups = 3 with base 4")
	}
	bad = tinyUNet
	bad.Dim = 100
	if _, err := New(bad, DefaultConfig(), 1); err == nil {
		t.Error("New accepted dim ≠ C·H·W")
	}
	m := randomUNet(tinyUNet, 1)
	m.Params["mid.conv1.w"] = m.Params["mid.conv1.w"][1:]
	if _, err := FromNet(m, DefaultConfig()); err == nil {
		t.Error("FromNet accepted a short mid.conv1.w")
	}
	delete(m.Params, "out.b")
	if _, err := FromNet(m, DefaultConfig()); err == nil {
		t.Error("FromNet accepted a net without out.b")
	}
}
