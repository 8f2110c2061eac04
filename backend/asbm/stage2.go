package asbm

import (
	"errors"
	"fmt"
)

// Stage2Config holds the stage-2 settings (asbm.md §3, §5.1).
type Stage2Config struct {
	VP         VP  // the stage-1 base SDE
	Couplings  int // fresh pairs (x0, x1) simulated per epoch (50,000 on CIFAR-10)
	Batch      int // regression minibatch (128; the 2-D toys use 512)
	ForwardNFE int // time points of the coupling simulation (20)
	Epochs     int // backward epochs (600)
	// Passes is the number of shuffled passes over each epoch's coupling set (the code: 1). More
	// passes trade fresh couplings for optimiser steps when simulation dominates the cost, as it
	// does for the small toy networks; every pass still draws fresh bridge times and noise. 0 means 1.
	Passes   int
	SimBatch int    // simulation chunk (512)
	Seed     uint64 // seeds the loop's Noise
}

// DefaultStage2 is the paper's stage 2 (asbm.md §5.1, CIFAR-10 column).
func DefaultStage2() Stage2Config {
	return Stage2Config{VP: PaperVP(), Couplings: 50000, Batch: 128, ForwardNFE: 20, Epochs: 600, Passes: 1,
		SimBatch: DefaultSimBatch, Seed: 917}
}

// Validate reports a configuration stage 2 cannot run.
func (c Stage2Config) Validate() error {
	if err := c.VP.Validate(); err != nil {
		return fmt.Errorf("stage 2: %w", err)
	}
	if err := positive("stage 2", "Couplings", c.Couplings, "Batch", c.Batch, "Epochs", c.Epochs,
		"SimBatch", c.SimBatch); err != nil {
		return err
	}
	if c.ForwardNFE < 2 {
		return fmt.Errorf("stage 2: ForwardNFE = %d must be ≥ 2 (time points)", c.ForwardNFE)
	}
	if c.Passes < 0 {
		return fmt.Errorf("stage 2: Passes = %d must be ≥ 0", c.Passes)
	}
	return nil
}

// Stage2 is the backward stage of asbm.md §3: with the forward control frozen, every epoch simulates
// an entirely fresh coupling (x0 ~ data, x1 = forward SDE with the EMA control, §3.1) and takes one
// shuffled pass of bridge-matching steps on the score network s_ψ (§3.2).
type Stage2 struct {
	Cfg     Stage2Config
	Control Net   // the frozen EMA control u_θ; nil simulates the base process (reference coupling)
	Score   Model // s_ψ, freshly initialised (§2.7: the code re-initialises it, no warm start)
	Epoch   int   // epochs completed

	dim   int
	data  DataFunc
	noise *Noise
}

// NewStage2 returns stage 2 at epoch 0.
func NewStage2(cfg Stage2Config, control Net, score Model, data DataFunc) (*Stage2, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if score == nil || data == nil {
		return nil, errors.New("stage 2: needs a score network and a data source")
	}
	d, err := sameDim(score, control)
	if err != nil {
		return nil, fmt.Errorf("stage 2: %w", err)
	}
	return &Stage2{Cfg: cfg, Control: control, Score: score, dim: d, data: data, noise: NewNoise(cfg.Seed)}, nil
}

// Finished reports whether all Epochs have run.
func (s *Stage2) Finished() bool { return s.Epoch >= s.Cfg.Epochs }

// RunEpoch simulates Couplings fresh pairs and takes Passes shuffled passes of BMTuple steps.
func (s *Stage2) RunEpoch() (EpochStats, error) {
	if s.Finished() {
		return EpochStats{}, ErrFinished
	}
	c, d, e := s.Cfg, s.dim, s.Epoch
	st := EpochStats{Epoch: e, Phase: PhaseBM}
	x0 := drawData(s.data, s.noise, c.Couplings, c.SimBatch, d)
	x1, err := Simulate(s.Control, c.VP, x0, d, c.ForwardNFE, c.SimBatch, s.noise)
	if err != nil {
		return st, err
	}
	if !allFinite(x1) {
		return st, &NonFiniteError{Phase: PhaseBM, Epoch: e, Step: -1, What: "simulated x1"}
	}
	st.Loss, st.Steps, st.Examples, err = passes(s.Score, s.noise, c.Couplings, c.Batch, c.Passes, PhaseBM, e, func(idx []int) (Tuple, error) {
		return BMTuple(c.VP, gatherRows(x0, idx, d), gatherRows(x1, idx, d), d, s.noise)
	})
	if err != nil {
		return st, err
	}
	s.Epoch++
	st.Done = s.Finished()
	return st, nil
}

// State is stage 2's checkpoint at the current epoch boundary: the score model ("score/…"), the noise
// generator and the epoch counter. The frozen control is not included: it is stage 1's result.
func (s *Stage2) State() (Checkpoint, error) {
	return loopState(s.Score, "score/", s.noise, s.dim, s.Epoch)
}

// Restore resumes from a State.
func (s *Stage2) Restore(c Checkpoint) error {
	e, err := loopRestore(c, s.Score, "score/", s.noise, s.dim)
	if err != nil {
		return fmt.Errorf("stage 2 restore: %w", err)
	}
	s.Epoch = e
	return nil
}

// drawData draws n data rows of width dim, chunk rows per call of data (the code samples one samp_bs
// minibatch per simulation chunk).
func drawData(data DataFunc, noise *Noise, n, chunk, dim int) []float32 {
	x := make([]float32, n*dim)
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		data(noise.Rand(), x[lo*dim:hi*dim])
	}
	return x
}

// minibatches cuts a random permutation of n rows into batches (the last possibly smaller).
func minibatches(noise *Noise, n, batch int) [][]int {
	perm := noise.Rand().Perm(n)
	var out [][]int
	for lo := 0; lo < n; lo += batch {
		out = append(out, perm[lo:min(lo+batch, n)])
	}
	return out
}

// gatherRows copies rows idx of x (width dim) into a new slice.
func gatherRows(x []float32, idx []int, dim int) []float32 {
	out := make([]float32, 0, len(idx)*dim)
	for _, i := range idx {
		out = append(out, x[i*dim:(i+1)*dim]...)
	}
	return out
}

// loopState is the checkpoint of a one-model loop.
func loopState(m Model, prefix string, noise *Noise, dim, epoch int) (Checkpoint, error) {
	c := newCheckpoint()
	putModel(c, prefix, m)
	if err := putNoise(c, "noise", noise); err != nil {
		return c, err
	}
	c.Scalars["dim"] = float64(dim)
	c.Scalars["epoch"] = float64(epoch)
	return c, nil
}

// loopRestore restores a one-model loop and returns its epoch counter.
func loopRestore(c Checkpoint, m Model, prefix string, noise *Noise, dim int) (int, error) {
	e, err := restoreCounter(c, dim)
	if err != nil {
		return 0, err
	}
	if err := getModel(c, prefix, m); err != nil {
		return 0, err
	}
	if err := getNoise(c, "noise", noise); err != nil {
		return 0, err
	}
	return e, nil
}
