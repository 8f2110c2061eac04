package asbm

import (
	"errors"
	"fmt"
)

// BaselineConfig holds the memoryless score-matching baseline's settings (asbm.md §3.2, §6.1).
type BaselineConfig struct {
	VP       VP     // MemorylessVP (β 0.1→20): the baseline is plain DSM on a memoryless base
	Examples int    // fresh data rows per epoch; equal to Stage2Config.Couplings, the same examples seen
	Batch    int    // regression minibatch, equal to stage 2's
	Epochs   int    // epochs; equal to stage 2's for the same number of steps (the paper trains 3300)
	SimBatch int    // data chunk per DataFunc call (512)
	Seed     uint64 // seeds the loop's Noise
}

// DefaultBaseline matches DefaultStage2 in batch, examples per epoch and epochs (asbm.md §6.1: "the
// same MLP and the same number of steps"); the paper's SM baseline ran 3300 epochs.
func DefaultBaseline() BaselineConfig {
	return BaselineConfig{VP: MemorylessVP(), Examples: 50000, Batch: 128, Epochs: 600,
		SimBatch: DefaultSimBatch, Seed: 917}
}

// Validate reports a configuration the baseline cannot run.
func (c BaselineConfig) Validate() error {
	if err := c.VP.Validate(); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	return positive("baseline", "Examples", c.Examples, "Batch", c.Batch, "Epochs", c.Epochs, "SimBatch", c.SimBatch)
}

// Baseline is the memoryless score-matching baseline (runner.py train_score_matching): each epoch
// draws Examples fresh data rows and takes one shuffled pass of DSMTuple steps on the score network.
// Sample it with SampleSDE, or SampleODE with a nil control, on the same VP.
type Baseline struct {
	Cfg   BaselineConfig
	Score Model
	Epoch int // epochs completed

	dim   int
	data  DataFunc
	noise *Noise
}

// NewBaseline returns the baseline loop at epoch 0.
func NewBaseline(cfg BaselineConfig, score Model, data DataFunc) (*Baseline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if score == nil || data == nil {
		return nil, errors.New("baseline: needs a score network and a data source")
	}
	d, err := sameDim(score)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return &Baseline{Cfg: cfg, Score: score, dim: d, data: data, noise: NewNoise(cfg.Seed)}, nil
}

// Finished reports whether all Epochs have run.
func (b *Baseline) Finished() bool { return b.Epoch >= b.Cfg.Epochs }

// RunEpoch draws Examples data rows and takes one shuffled pass of DSM steps.
func (b *Baseline) RunEpoch() (EpochStats, error) {
	if b.Finished() {
		return EpochStats{}, ErrFinished
	}
	c, d, e := b.Cfg, b.dim, b.Epoch
	st := EpochStats{Epoch: e, Phase: PhaseDSM}
	x0 := drawData(b.data, b.noise, c.Examples, c.SimBatch, d)
	batches := minibatches(b.noise, c.Examples, c.Batch)
	var err error
	st.Loss, st.Steps, st.Examples, err = pass(b.Score, batches, PhaseDSM, e, func(idx []int) (Tuple, error) {
		return DSMTuple(c.VP, gatherRows(x0, idx, d), d, b.noise)
	})
	if err != nil {
		return st, err
	}
	b.Epoch++
	st.Done = b.Finished()
	return st, nil
}

// State is the baseline's checkpoint: the score model ("score/…"), the noise generator, the epoch.
func (b *Baseline) State() (Checkpoint, error) {
	return loopState(b.Score, "score/", b.noise, b.dim, b.Epoch)
}

// Restore resumes from a State.
func (b *Baseline) Restore(c Checkpoint) error {
	e, err := loopRestore(c, b.Score, "score/", b.noise, b.dim)
	if err != nil {
		return fmt.Errorf("baseline restore: %w", err)
	}
	b.Epoch = e
	return nil
}
