package asbm

import (
	"fmt"
	"math"

	"asbm/model"
)

// VP is the variance-preserving base SDE of asbm.md §1.2 (model.VP: the samplers, the browser and the
// engines use the same type, so its closed forms exist once).
type VP = model.VP

// PaperVP is the paper's non-memoryless base, β 0.1→4, σ_v = 1 (asbm.md §1.2): α_1 ≈ 0.3588, so a
// third of the data signal survives at t = 1.
func PaperVP() VP { return VP{Beta0: 0.1, Beta1: 4, SigmaV: 1} }

// MemorylessVP is the score-matching baseline's base, β 0.1→20, σ_v = 1 (asbm.md §1.2): α_1 ≈ 0.0066.
func MemorylessVP() VP { return VP{Beta0: 0.1, Beta1: 20, SigmaV: 1} }

// Prior is the energy-defined prior ν = N(0, σ_p² I) with E(x) = ‖x‖²/(2σ_p²) (asbm.md §1.3).
type Prior struct {
	SigmaP float64 // σ_p
	// MaxGradNorm clips ∇E: each piece of length Axis is rescaled to norm ≤ MaxGradNorm (the code's
	// max_grad_E_norm = 100, with its +1e-6 in the denominator). 0 disables the clip.
	MaxGradNorm float64
	// Axis is the length of the data's last tensor axis, over which the clip norm is taken "as in the
	// original ASBS implementation" (for 32×32 images a row of 32 pixels). 0 means the whole sample.
	Axis int
}

// DefaultPrior is the paper's prior: σ_p = 1, clip 100 over the whole sample (a 2-D toy's last axis).
func DefaultPrior() Prior { return Prior{SigmaP: 1, MaxGradNorm: 100} }

// Validate reports a prior that cannot be used with samples of dimension dim.
func (p Prior) Validate(dim int) error {
	if !(p.SigmaP > 0) || math.IsInf(p.SigmaP, 0) {
		return fmt.Errorf("prior σ_p = %v must be finite and > 0", p.SigmaP)
	}
	if p.MaxGradNorm < 0 || math.IsNaN(p.MaxGradNorm) {
		return fmt.Errorf("prior MaxGradNorm = %v must be ≥ 0", p.MaxGradNorm)
	}
	if p.Axis < 0 || (p.Axis > 0 && dim%p.Axis != 0) {
		return fmt.Errorf("prior Axis = %d must be 0 or divide the dimension %d", p.Axis, dim)
	}
	return nil
}

// Energy is E(x) = ‖x‖²/(2σ_p²) of one sample x.
func (p Prior) Energy(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return s / (2 * p.SigmaP * p.SigmaP)
}

// GradE writes ∇E(x) = x/σ_p² for a batch x of rows of width dim into dst (which may alias x), clipping
// each Axis-long piece to norm MaxGradNorm (asbm.md §1.3; prior.py GaussianPrior.clip).
func (p Prior) GradE(x []float32, dim int, dst []float32) error {
	if err := p.Validate(dim); err != nil {
		return err
	}
	if _, err := rowsOf(x, dim); err != nil {
		return err
	}
	if len(dst) != len(x) {
		return fmt.Errorf("GradE: dst has %d entries, x has %d", len(dst), len(x))
	}
	axis := p.Axis
	if axis == 0 {
		axis = dim
	}
	inv := 1 / (p.SigmaP * p.SigmaP)
	for s := 0; s < len(x); s += axis {
		var n2 float64
		for i := s; i < s+axis; i++ {
			g := float64(x[i]) * inv
			n2 += g * g
		}
		c := inv
		if p.MaxGradNorm > 0 {
			c *= math.Min(1, p.MaxGradNorm/(math.Sqrt(n2)+1e-6))
		}
		for i := s; i < s+axis; i++ {
			dst[i] = float32(float64(x[i]) * c)
		}
	}
	return nil
}

// rowsOf returns the number of rows of a batch x of width dim, or an error when x is not a whole
// number of rows.
func rowsOf(x []float32, dim int) (int, error) {
	if dim < 1 {
		return 0, fmt.Errorf("dimension %d must be ≥ 1", dim)
	}
	if len(x)%dim != 0 {
		return 0, fmt.Errorf("batch of %d values is not a whole number of rows of width %d", len(x), dim)
	}
	return len(x) / dim, nil
}

// Noise is the project's seeded noise source (model.Noise, where the convention lives).
type Noise = model.Noise

// NewNoise returns the noise generator for seed (model.NewNoise).
func NewNoise(seed uint64) *Noise { return model.NewNoise(seed) }
