package model

import (
	"math"
	"testing"

	"asbm/weights"
)

// TestSigmaScaledRun checks SampleOptions.SigmaScaled, the coefficient form every engine runs (Run
// multiplies the score and generator terms by 1/σ_t), against SigmaScaled, the network form the
// trainers use (each row divided by σ_t), on random MLPs for the three methods: they must agree to
// float32 rounding, and differ from the unscaled run (so the test can fail).
func TestSigmaScaledRun(t *testing.T) {
	a := weights.Arch{Kind: "mlp", Dim: 3, Hidden: 16, Layers: 2, Fourier: 4}
	score, err := NewNet(a, 1)
	if err != nil {
		t.Fatal(err)
	}
	control, _ := NewNet(a, 2)
	gen, _ := NewNet(a, 3)
	// The output layers start at zero; give them random weights so that the networks say something.
	r := NewNoise(9)
	for _, m := range []*Net{score, control, gen} {
		w := m.Params["out.w"]
		copy(w, r.Normal(len(w)))
		for i := range w {
			w[i] *= 0.3
		}
	}
	vp := VP{Beta0: 0.1, Beta1: 4, SigmaV: 1}
	for _, method := range []string{"sde", "ode", "gen"} {
		o := SampleOptions{Points: 64, Steps: 12, Method: method, Seed: 5, Beta0: vp.Beta0, Beta1: vp.Beta1, SigmaV: vp.SigmaV}
		raw, err := SampleCPU(Nets{Score: score, Control: control, Gen: gen}, o, SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		wrapped, err := SampleCPU(Nets{Score: SigmaScaled{score, vp}, Control: control, Gen: SigmaScaled{gen, vp}}, o, SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		o.SigmaScaled = true
		coef, err := SampleCPU(Nets{Score: score, Control: control, Gen: gen}, o, SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		var diff, moved, scale float64
		for i := range coef {
			diff = math.Max(diff, math.Abs(float64(coef[i]-wrapped[i])))
			moved = math.Max(moved, math.Abs(float64(coef[i]-raw[i])))
			scale = math.Max(scale, math.Abs(float64(wrapped[i])))
		}
		if diff > 1e-5*math.Max(1, scale) {
			t.Errorf("%s: coefficient form vs wrapped network: max |Δ| = %.3g (scale %.3g)", method, diff, scale)
		}
		if moved < 1e-3 {
			t.Errorf("%s: SigmaScaled changed the samples by only %.3g: the option is not applied", method, moved)
		}
	}
}

// TestSigmaScaledMeta checks the metadata parse: absent and "raw" are unscaled, "sigma" scaled, and
// anything else an error rather than a silently wrong sampler.
func TestSigmaScaledMeta(t *testing.T) {
	for _, c := range []struct {
		v       any
		want    bool
		wantErr bool
	}{{nil, false, false}, {"raw", false, false}, {"sigma", true, false}, {"eps", false, true}, {1.0, false, true}} {
		f := &weights.File{Meta: map[string]any{}}
		if c.v != nil {
			f.Meta["score_scale"] = c.v
		}
		got, err := SigmaScaledMeta(f)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("score_scale %v: got %v, %v", c.v, got, err)
		}
	}
}
