package asbm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Phase names what a training epoch regresses.
type Phase string

// The phases of the training loops.
const (
	PhaseCM      Phase = "CM"      // stage 1, corrector matching (asbm.md §2.3)
	PhaseAM      Phase = "AM"      // stage 1, adjoint matching (asbm.md §2.2)
	PhaseBM      Phase = "BM"      // stage 2, bridge matching (asbm.md §3.2)
	PhaseDSM     Phase = "DSM"     // memoryless baseline, denoising score matching (asbm.md §3.2)
	PhaseDistill Phase = "distill" // one-step generator regression (asbm.md §4.3(a))
	PhaseDMD     Phase = "DMD"     // one-step generator by distribution matching (asbm.md §4.2, DMD)
)

// DataFunc fills dst (a whole number of rows of the data dimension) with fresh data samples x0 drawn
// with r. The loops pass their own generator, so a seed fixes the data stream too.
type DataFunc func(r *rand.Rand, dst []float32)

// EpochStats reports one epoch of a training loop.
type EpochStats struct {
	Epoch     int     // index of the epoch just run, from 0
	Phase     Phase   // what it regressed
	Loss      float64 // mean of the Step losses (the code's MeanMetric over steps)
	FakeLoss  float64 // DMD: mean of the fake score's bridge-matching losses
	Steps     int     // optimiser steps taken
	Examples  int     // rows regressed on (Σ batch sizes)
	BufferLen int     // stage 1: rows in the replay buffer during the pass
	// Switched is set (stage 1) when the next epoch is the other phase: both buffers were emptied and,
	// with ResetOptimizer, both optimisers reset.
	Switched bool
	Terminal *TerminalStats // stage 1: the terminal-marginal check when it ran this epoch
	Done     bool           // the loop has finished (stage 1 passed its terminal check, or the epoch budget is spent)
}

// Checkpoint is a loop's resumable state at an epoch boundary: named float32 arrays (network, EMA and
// optimiser state, replay buffers, the noise generator's bytes one per value) and scalars (counters,
// flags). It maps directly onto a weights file's tensors and meta.
type Checkpoint struct {
	Tensors map[string][]float32
	Scalars map[string]float64
}

func newCheckpoint() Checkpoint {
	return Checkpoint{Tensors: map[string][]float32{}, Scalars: map[string]float64{}}
}

// ErrNonFinite is the error (matched with errors.Is) of a loop that met a NaN or ±Inf loss or
// simulated value; the concrete error is a *NonFiniteError saying where. Resume from the last
// checkpoint with a smaller learning rate.
var ErrNonFinite = errors.New("non-finite value")

// NonFiniteError says where a loop met a NaN or ±Inf.
type NonFiniteError struct {
	Phase Phase
	Epoch int
	Step  int    // optimiser step within the epoch, −1 when not in a step
	What  string // "loss", "simulated x1", "terminal adjoint", …
}

// Error says where the non-finite value appeared and what to do.
func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("%s epoch %d step %d: %s is NaN or Inf (resume from the last checkpoint, perhaps with a smaller learning rate)",
		e.Phase, e.Epoch, e.Step, e.What)
}

// Unwrap makes errors.Is(err, ErrNonFinite) hold.
func (e *NonFiniteError) Unwrap() error { return ErrNonFinite }

// ErrFinished is returned by RunEpoch once a loop has finished.
var ErrFinished = errors.New("training loop has finished")

// pass takes one optimiser step of m per index batch on the tuple built for it and returns the mean
// loss over steps; a non-finite loss stops it with a *NonFiniteError.
func pass(m Model, batches [][]int, phase Phase, epoch int, tuple func(idx []int) (Tuple, error)) (loss float64, steps, examples int, err error) {
	for s, idx := range batches {
		tp, err := tuple(idx)
		if err != nil {
			return 0, s, examples, err
		}
		l := float64(m.Step(tp.T, tp.X, tp.W, tp.Y))
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return 0, s, examples, &NonFiniteError{Phase: phase, Epoch: epoch, Step: s, What: "loss"}
		}
		loss += l
		examples += len(idx)
	}
	if len(batches) > 0 {
		loss /= float64(len(batches))
	}
	return loss, len(batches), examples, nil
}

// passes takes count shuffled passes (at least one) of minibatch steps over n rows: the loops whose
// data are costly to make (simulated couplings, teacher samples) may reuse them for several passes.
// The loss is the mean over all steps.
func passes(m Model, noise *Noise, n, batch, count int, phase Phase, epoch int, tuple func(idx []int) (Tuple, error)) (loss float64, steps, examples int, err error) {
	count = max(count, 1)
	for p := 0; p < count; p++ {
		l, s, ex, err := pass(m, minibatches(noise, n, batch), phase, epoch, tuple)
		if err != nil {
			return 0, steps + s, examples + ex, err
		}
		loss += l / float64(count)
		steps += s
		examples += ex
	}
	return loss, steps, examples, nil
}

// putModel stores m's state under prefix.
func putModel(c Checkpoint, prefix string, m Model) {
	for k, v := range m.State() {
		c.Tensors[prefix+k] = append([]float32(nil), v...)
	}
}

// getModel restores m from the tensors under prefix.
func getModel(c Checkpoint, prefix string, m Model) error {
	st := subState(c.Tensors, prefix)
	if len(st) == 0 {
		return fmt.Errorf("checkpoint has no tensors under %q", prefix)
	}
	if err := m.SetState(st); err != nil {
		return fmt.Errorf("checkpoint %q: %w", prefix, err)
	}
	return nil
}

// subState returns copies of the tensors whose names start with prefix, with the prefix removed.
func subState(t map[string][]float32, prefix string) map[string][]float32 {
	st := map[string][]float32{}
	for k, v := range t {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			st[name] = append([]float32(nil), v...)
		}
	}
	return st
}

// putNoise stores the generator's bytes, one byte per float32 value (exact for 0…255).
func putNoise(c Checkpoint, key string, n *Noise) error {
	b, err := n.MarshalBinary()
	if err != nil {
		return err
	}
	v := make([]float32, len(b))
	for i, x := range b {
		v[i] = float32(x)
	}
	c.Tensors[key] = v
	return nil
}

// getNoise restores a generator stored by putNoise.
func getNoise(c Checkpoint, key string, n *Noise) error {
	v, ok := c.Tensors[key]
	if !ok {
		return fmt.Errorf("checkpoint has no %q", key)
	}
	b := make([]byte, len(v))
	for i, x := range v {
		if x < 0 || x > 255 || x != float32(int(x)) {
			return fmt.Errorf("checkpoint %q: value %v is not a byte", key, x)
		}
		b[i] = byte(x)
	}
	return n.UnmarshalBinary(b)
}

// scalar reads a required scalar.
func scalar(c Checkpoint, key string) (float64, error) {
	v, ok := c.Scalars[key]
	if !ok {
		return 0, fmt.Errorf("checkpoint has no scalar %q", key)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("checkpoint scalar %q is %v", key, v)
	}
	return v, nil
}

// restoreCounter reads the epoch counter and checks the data dimension of a checkpoint.
func restoreCounter(c Checkpoint, dim int) (int, error) {
	if c.Tensors == nil || c.Scalars == nil {
		return 0, errors.New("empty checkpoint")
	}
	d, err := scalar(c, "dim")
	if err != nil {
		return 0, err
	}
	if int(d) != dim {
		return 0, fmt.Errorf("checkpoint is for dimension %v, the networks have %d", d, dim)
	}
	e, err := scalar(c, "epoch")
	if err != nil {
		return 0, err
	}
	if e < 0 || e != math.Trunc(e) {
		return 0, fmt.Errorf("checkpoint epoch %v is not a count", e)
	}
	return int(e), nil
}

// positive checks that every named count is ≥ 1.
func positive(what string, kv ...any) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1].(int); v < 1 {
			return fmt.Errorf("%s: %s = %d must be ≥ 1", what, kv[i], v)
		}
	}
	return nil
}

// sameDim checks that the networks of a loop share one data dimension and returns it.
func sameDim(nets ...Net) (int, error) {
	d := -1
	for _, n := range nets {
		if n == nil {
			continue
		}
		if d < 0 {
			d = n.Dim()
		} else if n.Dim() != d {
			return 0, fmt.Errorf("networks disagree on the data dimension: %d and %d", d, n.Dim())
		}
	}
	if d < 1 {
		return 0, errors.New("no network with a dimension ≥ 1")
	}
	return d, nil
}
