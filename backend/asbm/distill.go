package asbm

import (
	"errors"
	"fmt"
)

// DistillConfig holds the one-step distillation settings (asbm.md §4.3(a)).
type DistillConfig struct {
	VP       VP  // the teacher's base SDE (PaperVP for ASBM, MemorylessVP for the baseline)
	Samples  int // fresh (z, teacher x0) pairs per epoch
	Batch    int // regression minibatch
	ODESteps int // Heun steps of the teacher's PF-ODE (100)
	// Passes over each epoch's (z, x0) pairs, 0 meaning 1: the code likewise regresses on stored
	// teacher pairs for many epochs (asbm.md §4.2), the teacher's ODE being the costly part.
	Passes   int
	Epochs   int    // epochs
	SimBatch int    // rows per teacher SampleODE call (512)
	Seed     uint64 // seeds the loop's Noise
}

// DefaultDistill is a regression-distillation setting for the toys: 100-step Heun teacher samples,
// 50,000 fresh pairs per epoch at batch 128. (The official code's scheme, asbm.md §4.2, is DMD;
// §4.3(a) is its simpler fallback, DMD the project's implementation of §4.2. The regression imitates
// the PF-ODE, which plateaus; DMD imitates the score network's process.)
func DefaultDistill() DistillConfig {
	return DistillConfig{VP: PaperVP(), Samples: 50000, Batch: 128, ODESteps: 100, Epochs: 100,
		SimBatch: DefaultSimBatch, Seed: 917}
}

// Validate reports a configuration distillation cannot run.
func (c DistillConfig) Validate() error {
	if err := c.VP.Validate(); err != nil {
		return fmt.Errorf("distill: %w", err)
	}
	if c.Passes < 0 {
		return fmt.Errorf("distill: Passes = %d must be ≥ 0", c.Passes)
	}
	return positive("distill", "Samples", c.Samples, "Batch", c.Batch, "ODESteps", c.ODESteps,
		"Epochs", c.Epochs, "SimBatch", c.SimBatch)
}

// Distill trains the one-step generator G(z) = (z + σ_1² g(1, z))/α_1 of asbm.md §4.2 by regression on
// PF-ODE pairs (§4.3(a)): each epoch draws fresh z ~ N(0, I), computes the teacher's x0 =
// SampleODE(score, control, z, ODESteps), and takes one shuffled pass of GenTuple steps on g. Pass a g
// warm-started from the teacher score (the code initialises s_ω from s_ψ).
type Distill struct {
	Cfg            DistillConfig
	Score, Control Net   // the teacher: EMA score s_ψ and EMA control u_θ (nil for the baseline)
	Gen            Model // g, called at t = 1 only
	Epoch          int   // epochs completed

	dim   int
	noise *Noise
}

// NewDistill returns the distillation loop at epoch 0.
func NewDistill(cfg DistillConfig, score, control Net, gen Model) (*Distill, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if score == nil || gen == nil {
		return nil, errors.New("distill: needs a teacher score and a generator")
	}
	d, err := sameDim(score, control, gen)
	if err != nil {
		return nil, fmt.Errorf("distill: %w", err)
	}
	return &Distill{Cfg: cfg, Score: score, Control: control, Gen: gen, dim: d, noise: NewNoise(cfg.Seed)}, nil
}

// Finished reports whether all Epochs have run.
func (g *Distill) Finished() bool { return g.Epoch >= g.Cfg.Epochs }

// RunEpoch draws Samples noises, samples the teacher's PF-ODE from them and takes Passes shuffled
// passes.
func (g *Distill) RunEpoch() (EpochStats, error) {
	if g.Finished() {
		return EpochStats{}, ErrFinished
	}
	c, d, e := g.Cfg, g.dim, g.Epoch
	st := EpochStats{Epoch: e, Phase: PhaseDistill}
	z := g.noise.Normal(c.Samples * d)
	x0 := make([]float32, 0, len(z))
	for lo := 0; lo < c.Samples; lo += c.SimBatch {
		hi := min(lo+c.SimBatch, c.Samples)
		part, err := SampleODE(g.Score, g.Control, c.VP, z[lo*d:hi*d], c.ODESteps, nil)
		if err != nil {
			return st, err
		}
		x0 = append(x0, part...)
	}
	if !allFinite(x0) {
		return st, &NonFiniteError{Phase: PhaseDistill, Epoch: e, Step: -1, What: "teacher sample"}
	}
	var err error
	st.Loss, st.Steps, st.Examples, err = passes(g.Gen, g.noise, c.Samples, c.Batch, c.Passes, PhaseDistill, e, func(idx []int) (Tuple, error) {
		return GenTuple(c.VP, gatherRows(z, idx, d), gatherRows(x0, idx, d), d)
	})
	if err != nil {
		return st, err
	}
	g.Epoch++
	st.Done = g.Finished()
	return st, nil
}

// State is the loop's checkpoint: the generator ("gen/…"), the noise generator, the epoch.
func (g *Distill) State() (Checkpoint, error) {
	return loopState(g.Gen, "gen/", g.noise, g.dim, g.Epoch)
}

// Restore resumes from a State.
func (g *Distill) Restore(c Checkpoint) error {
	e, err := loopRestore(c, g.Gen, "gen/", g.noise, g.dim)
	if err != nil {
		return fmt.Errorf("distill restore: %w", err)
	}
	g.Epoch = e
	return nil
}
