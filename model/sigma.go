package model

// sigma.go is the σ-scaled parametrisation of the score-type networks (SampleOptions.SigmaScaled):
// the network form the trainers use and the model file's metadata key.

import (
	"fmt"

	"asbm/weights"
)

// SigmaScaled is a score-type network that outputs σ_t·s (SampleOptions.SigmaScaled) seen as the
// score s: Eval divides each row by σ_t of its own t (VP.InvSigma). The trainers' samplers and
// measures use it; Run scales coefficients instead, which is the same up to float32 rounding.
type SigmaScaled struct {
	Net Evaluator
	VP  VP
}

// Dim is the wrapped network's.
func (s SigmaScaled) Dim() int { return s.Net.Dim() }

// Eval evaluates the network and divides row i by σ_{t_i}.
func (s SigmaScaled) Eval(t, x, out []float32) {
	s.Net.Eval(t, x, out)
	d := s.Net.Dim()
	for i, ti := range t {
		c := float32(s.VP.InvSigma(float64(ti)))
		row := out[i*d : (i+1)*d]
		for j := range row {
			row[j] *= c
		}
	}
}

// SigmaScaledMeta reads a model file's "score_scale" metadata: "sigma" (its score-type networks output
// σ_t·s, SampleOptions.SigmaScaled), "raw" or absent (they output s).
func SigmaScaledMeta(f *weights.File) (bool, error) {
	sc, ok := f.MetaString("score_scale")
	if v, present := f.Meta["score_scale"]; present && !ok {
		return false, fmt.Errorf("score_scale in the model's metadata is %v, not a string (sigma or raw)", v)
	}
	switch sc {
	case "", "raw":
		return false, nil
	case "sigma":
		return true, nil
	default:
		return false, fmt.Errorf("unknown score_scale %q in the model's metadata (this build knows sigma and raw)", sc)
	}
}
