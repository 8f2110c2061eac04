package shaders

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestAdamWKernel(t *testing.T) {
	d := gpu(t)
	r := rand.New(rand.NewPCG(rand.Uint64(), 21))
	cfg := AdamW{LR: 3e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, EMADecay: 0.99}
	for _, n := range []int{1, 300, 2305} {
		for _, step := range []int{1, 7} {
			g, p, ema := normals(r, n, 1), normals(r, n, 0.5), normals(r, n, 0.5)
			m := normals(r, n, 0.1)
			v := uniforms(r, n, 0, 0.05)
			scale := float32(0.3 + 0.7*r.Float64())
			pB, mB, vB, eB := upload(t, d, p), upload(t, d, m), upload(t, d, v), upload(t, d, ema)
			if err := d.AdamWStep(upload(t, d, g), upload(t, d, []float32{scale}), pB, mB, vB, eB, cfg, step); err != nil {
				t.Fatal(err)
			}
			// float64 reference: backend/cpu MLP.update.
			bc1 := 1 - math.Pow(cfg.Beta1, float64(step))
			sbc2 := math.Sqrt(1 - math.Pow(cfg.Beta2, float64(step)))
			wp, wm, wv, we := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
			for j := range n {
				gv := float64(g[j]) * float64(scale)
				wm[j] = cfg.Beta1*float64(m[j]) + (1-cfg.Beta1)*gv
				wv[j] = cfg.Beta2*float64(v[j]) + (1-cfg.Beta2)*gv*gv
				wp[j] = float64(p[j])*(1-cfg.LR*cfg.WeightDecay) - cfg.LR/bc1*wm[j]/(math.Sqrt(wv[j])/sbc2+cfg.Eps)
				we[j] = cfg.EMADecay*float64(ema[j]) + (1-cfg.EMADecay)*wp[j]
			}
			for _, c := range []struct {
				name string
				b    *Buffer
				want []float64
			}{{"param", pB, wp}, {"m", mB, wm}, {"v", vB, wv}, {"ema", eB, we}} {
				if e := relErr(read(t, d, c.b), c.want); e > kernelTol {
					t.Errorf("AdamW n=%d step=%d: %s rel err %.3g > %g", n, step, c.name, e, kernelTol)
				} else {
					t.Logf("AdamW n=%d step=%d: %s rel err %.3g", n, step, c.name, e)
				}
			}
		}
	}
}

func TestAdamWBadInput(t *testing.T) {
	d := gpu(t)
	cfg := AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, EMADecay: 0.999}
	a, b, c, e, g, s := alloc(t, d, 4), alloc(t, d, 4), alloc(t, d, 4), alloc(t, d, 4), alloc(t, d, 4), alloc(t, d, 1)
	if err := d.AdamWStep(g, s, a, b, c, e, cfg, 0); err == nil {
		t.Error("AdamWStep accepted step 0")
	}
	if err := d.AdamWStep(g, s, a, a, c, e, cfg, 1); err == nil {
		t.Error("AdamWStep accepted the parameter aliasing the first moment")
	}
	if err := d.AdamWStep(alloc(t, d, 3), s, a, b, c, e, cfg, 1); err == nil {
		t.Error("AdamWStep accepted a 3-value gradient for 4 parameters")
	}
	bad := cfg
	bad.Beta2 = 1
	if err := d.AdamWStep(g, s, a, b, c, e, bad, 1); err == nil {
		t.Error("AdamWStep accepted beta2 = 1")
	}
}
