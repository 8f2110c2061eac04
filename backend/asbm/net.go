// Package asbm is the math of Adjoint Schrödinger Bridge Matching (asbm.md): the VP base SDE and its
// bridge, the adjoint, corrector and bridge matchers, the replay buffer, the stage-1 alternation
// schedule, the stage-2 and distillation loops, and the samplers. It never imports an engine: it
// talks to networks through Net and Model, so the gorgonia reference and the GPU engine are
// interchangeable.
package asbm

// Net is a network f(t, x) evaluated on a batch: t has n entries, x and out have n·Dim() entries
// (row-major). Implementations must not retain the slices.
type Net interface {
	Dim() int
	Eval(t, x, out []float32)
}

// Model is a trainable Net (its current parameters) with an exponential-moving-average copy.
type Model interface {
	Net
	// EMA evaluates the EMA parameters.
	EMA() Net
	// Step takes one optimiser step on L = mean_{i,j} (w_i·f(t_i, x_i)_j − y_ij)², where w has one
	// weight per row (nil means all ones), then updates the EMA. It returns L at the parameters
	// before the step.
	Step(t, x, w, y []float32) float32
	// ResetOptimizer clears the optimiser's moments and step count (asbm.md §2.5, stage switch).
	ResetOptimizer()
	// State returns everything needed to resume training (parameters, EMA, optimiser moments and
	// step count) as named float32 arrays; SetState restores it.
	State() map[string][]float32
	SetState(map[string][]float32) error
}
