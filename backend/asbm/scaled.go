package asbm

import "asbm/model"

// SigmaScaledNet is a score-type network that outputs σ_t·s seen as the score s (model.SigmaScaled):
// the matchers, samplers and measures of this package keep working in units of s.
func SigmaScaledNet(n Net, vp VP) Net {
	if n == nil {
		return nil
	}
	return model.SigmaScaled{Net: n, VP: vp}
}

// SigmaScaled makes m a score-type model whose network outputs σ_t·s (the regression target's own
// scale, asbm.md §3.2: the bridge-matching and DSM losses are ‖σ_t s(t, x) − y‖², and y is O(1) at
// every t) while this package sees the score s. The raw parametrisation, the paper's, asks the
// network for outputs of size 1/σ_t, about 10³ near t = 0, which a small network learns poorly;
// here the network's output is y's size at every t and the division by σ_t is exact. Eval and EMA
// divide row i by σ_{t_i}; Step regresses with row weights w_i/σ_{t_i}, so the loss, its minimiser
// (as a score) and the reported values are those of the wrapped model's raw parametrisation.
func SigmaScaled(m Model, vp VP) Model { return sigmaModel{m, vp} }

type sigmaModel struct {
	Model
	vp VP
}

func (s sigmaModel) Eval(t, x, out []float32) {
	model.SigmaScaled{Net: s.Model, VP: s.vp}.Eval(t, x, out)
}

func (s sigmaModel) EMA() Net { return model.SigmaScaled{Net: s.Model.EMA(), VP: s.vp} }

func (s sigmaModel) Step(t, x, w, y []float32) float32 {
	ws := make([]float32, len(t))
	for i, ti := range t {
		wi := float32(1)
		if w != nil {
			wi = w[i]
		}
		ws[i] = wi * float32(s.vp.InvSigma(float64(ti)))
	}
	return s.Model.Step(t, x, ws, y)
}
