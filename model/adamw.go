package model

import (
	"fmt"
	"math"
)

// AdamW holds the optimiser and EMA settings of a network's training (asbm.md §2.5), shared by both
// engines: backend/cpu.Config and shaders.AdamW are this type.
type AdamW struct {
	LR          float64 // learning rate
	Beta1       float64 // first-moment decay
	Beta2       float64 // second-moment decay
	Eps         float64 // denominator epsilon
	WeightDecay float64 // decoupled: p ← p(1 − LR·WeightDecay) before the Adam update
	EMADecay    float64 // d in ema ← d·ema + (1−d)·p, after every step
	GradClip    float64 // maximum global gradient norm; ≤ 0 turns clipping off
}

// Validate reports the first setting that cannot work.
func (c AdamW) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(c.LR) || c.LR < 0:
		return fmt.Errorf("AdamW: learning rate %v must be finite and ≥ 0", c.LR)
	case !finite(c.Beta1) || c.Beta1 < 0 || c.Beta1 >= 1:
		return fmt.Errorf("AdamW: beta1 %v must be in [0, 1)", c.Beta1)
	case !finite(c.Beta2) || c.Beta2 < 0 || c.Beta2 >= 1:
		return fmt.Errorf("AdamW: beta2 %v must be in [0, 1)", c.Beta2)
	case !finite(c.Eps) || c.Eps <= 0:
		return fmt.Errorf("AdamW: eps %v must be finite and > 0", c.Eps)
	case !finite(c.WeightDecay) || c.WeightDecay < 0:
		return fmt.Errorf("AdamW: weight decay %v must be finite and ≥ 0", c.WeightDecay)
	case !finite(c.EMADecay) || c.EMADecay < 0 || c.EMADecay > 1:
		return fmt.Errorf("AdamW: EMA decay %v must be in [0, 1]", c.EMADecay)
	case math.IsNaN(c.GradClip):
		return fmt.Errorf("AdamW: gradient clip is NaN")
	}
	return nil
}
