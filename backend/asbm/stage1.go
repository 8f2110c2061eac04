package asbm

import (
	"errors"
	"fmt"
	"math"
)

// Stage1Config holds the stage-1 settings (asbm.md §2.5, §2.6, §5.1). DefaultStage1 gives the paper's;
// scale epochs and sizes down by configuration, never the math.
type Stage1Config struct {
	VP    VP    // base SDE (paper: β 0.1→4, σ_v 1)
	Prior Prior // ν = N(0, σ_p² I) with the ∇E clip (σ_p 1, clip 100)

	AMEpochs int // epochs per adjoint-matching stage, n_a (15)
	CMEpochs int // epochs per corrector-matching stage, n_c (5); the first n_c epochs are the init stage
	// MaxEpochs bounds stage 1 (1000).
	MaxEpochs int
	// EvalStart is the first epoch after which an AM stage's end runs the terminal check (300).
	EvalStart int
	// EvalSamples is how many data points the terminal check simulates (the code's cap 51,200).
	EvalSamples int

	Resample   int // samples simulated into the buffer per epoch (4096)
	SimBatch   int // simulation chunk through Net.Eval (512)
	BufferSize int // replay buffer capacity in rows (20000)
	Batch      int // regression minibatch (128; the 2-D toys use 512)
	ForwardNFE int // time points of the AM and terminal-check simulations (20)
	CMNFE      int // time points of the CM simulations after the init stage (100)
	// ResetOptimizer resets both optimisers at every stage switch (true on CIFAR-10, false on FFHQ).
	ResetOptimizer bool
	Seed           uint64 // seeds the loop's Noise: data, simulation noise, times, shuffles

	// LambdaMax overrides the terminal check's λ_max of a sample covariance (x holds n rows of width
	// d); nil uses LambdaMax.
	LambdaMax func(x []float32, n, d int) (float64, error)
}

// DefaultStage1 is the paper's stage 1 (asbm.md §5.1, CIFAR-10 column).
func DefaultStage1() Stage1Config {
	return Stage1Config{
		VP: PaperVP(), Prior: DefaultPrior(),
		AMEpochs: 15, CMEpochs: 5, MaxEpochs: 1000, EvalStart: 300, EvalSamples: 51200,
		Resample: 4096, SimBatch: DefaultSimBatch, BufferSize: 20000, Batch: 128,
		ForwardNFE: 20, CMNFE: 100, ResetOptimizer: true, Seed: 917,
	}
}

// Validate reports a configuration stage 1 cannot run.
func (c Stage1Config) Validate() error {
	if err := c.VP.Validate(); err != nil {
		return fmt.Errorf("stage 1: %w", err)
	}
	if err := positive("stage 1", "AMEpochs", c.AMEpochs, "CMEpochs", c.CMEpochs, "MaxEpochs", c.MaxEpochs,
		"EvalSamples", c.EvalSamples, "Resample", c.Resample, "SimBatch", c.SimBatch,
		"BufferSize", c.BufferSize, "Batch", c.Batch); err != nil {
		return err
	}
	if c.ForwardNFE < 2 || c.CMNFE < 2 {
		return fmt.Errorf("stage 1: ForwardNFE = %d and CMNFE = %d must be ≥ 2 (time points)", c.ForwardNFE, c.CMNFE)
	}
	if c.EvalStart < 0 {
		return fmt.Errorf("stage 1: EvalStart = %d must be ≥ 0", c.EvalStart)
	}
	if c.EvalSamples < 2 {
		return fmt.Errorf("stage 1: EvalSamples = %d must be ≥ 2", c.EvalSamples)
	}
	return nil
}

// PhaseOf is the schedule of asbm.md §2.6 with init_stage = bridge (corrector matching first): epoch e
// is CM when e mod (n_a+n_c) < n_c, otherwise AM.
func (c Stage1Config) PhaseOf(epoch int) Phase {
	if epoch%(c.AMEpochs+c.CMEpochs) < c.CMEpochs {
		return PhaseCM
	}
	return PhaseAM
}

// TerminalStats is the terminal-marginal check of asbm.md §2.6 on simulated X_1.
type TerminalStats struct {
	N, Dim int
	// LambdaMax is λ_max of the sample covariance of X_1; LambdaPrior that of N samples of the prior
	// N(0, σ_p² I). EigenPass is LambdaMax ≤ LambdaPrior.
	LambdaMax, LambdaPrior float64
	// MeanSqNorm and VarSqNorm are the mean and (population) variance of ‖X_1‖², MeanErr and VarErr
	// their relative errors against dσ_p² and 2dσ_p⁴. RadialPass is MeanErr < 0.08 and VarErr < 0.08.
	MeanSqNorm, VarSqNorm, MeanErr, VarErr float64
	EigenPass, RadialPass, Pass            bool
}

// RadialTolerance is the terminal check's bound on the radial relative errors (asbm.md §2.6).
const RadialTolerance = 0.08

// TerminalCheck compares samples x1 (rows of width dim) with the prior N(0, σ_p² I) as the code does
// (runner.py evaluate_forward, asbm.md §2.6): λ_max of their sample covariance against λ_max of as many
// fresh prior samples (drawn from noise), and the radial statistics of ‖x1‖². lambdaMax nil uses
// LambdaMax. The code compares λ_max/σ_p² with the raw prior λ_max, which only agrees for σ_p = 1;
// here both are in the same units (prior samples σ_p·ε).
func TerminalCheck(x1 []float32, dim int, prior Prior, noise *Noise, lambdaMax func(x []float32, n, d int) (float64, error)) (TerminalStats, error) {
	if err := prior.Validate(dim); err != nil {
		return TerminalStats{}, err
	}
	n, err := rowsOf(x1, dim)
	if err != nil {
		return TerminalStats{}, fmt.Errorf("terminal check: %w", err)
	}
	if n < 2 {
		return TerminalStats{}, fmt.Errorf("terminal check: need ≥ 2 samples, got %d", n)
	}
	if noise == nil {
		return TerminalStats{}, errors.New("terminal check: nil noise")
	}
	if lambdaMax == nil {
		lambdaMax = LambdaMax
	}
	ts := TerminalStats{N: n, Dim: dim}
	if ts.LambdaMax, err = lambdaMax(x1, n, dim); err != nil {
		return ts, err
	}
	z := noise.Normal(len(x1))
	sp := float32(prior.SigmaP)
	for i := range z {
		z[i] *= sp
	}
	if ts.LambdaPrior, err = lambdaMax(z, n, dim); err != nil {
		return ts, err
	}
	var m, m2 float64
	for i := 0; i < n; i++ {
		var s float64
		for _, v := range x1[i*dim : (i+1)*dim] {
			s += float64(v) * float64(v)
		}
		m += s
		m2 += s * s
	}
	m /= float64(n)
	ts.MeanSqNorm, ts.VarSqNorm = m, m2/float64(n)-m*m
	s2 := prior.SigmaP * prior.SigmaP
	wantMean, wantVar := float64(dim)*s2, 2*float64(dim)*s2*s2
	ts.MeanErr = math.Abs(ts.MeanSqNorm-wantMean) / wantMean
	ts.VarErr = math.Abs(ts.VarSqNorm-wantVar) / wantVar
	ts.EigenPass = ts.LambdaMax <= ts.LambdaPrior
	ts.RadialPass = ts.MeanErr < RadialTolerance && ts.VarErr < RadialTolerance
	ts.Pass = ts.EigenPass && ts.RadialPass
	return ts, nil
}

// Stage1 is the forward stage of asbm.md §2 (ASBS applied data→energy): alternating corrector matching
// for h (the corrector, always called at t = 1) and adjoint matching for u (the forward control), each
// epoch filling a replay buffer by simulation and taking one shuffled pass over it (§2.8).
type Stage1 struct {
	Cfg  Stage1Config
	U, H Model // forward control u_θ and corrector h_φ; both start at zero output (§2.1)

	Epoch int  // epochs completed
	Done  bool // the terminal check passed: stage 1 stops (§2.6)

	dim          int
	data         DataFunc
	noise        *Noise
	amBuf, cmBuf *Buffer

	hasBest   bool
	best      map[string][]float32 // U's state at the best terminal check
	bestStats TerminalStats
	bestEpoch int
}

// NewStage1 returns stage 1 at epoch 0 for control u and corrector h (same dimension, zero-initialised
// output layers) on data.
func NewStage1(cfg Stage1Config, u, h Model, data DataFunc) (*Stage1, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if u == nil || h == nil || data == nil {
		return nil, errors.New("stage 1: needs a control, a corrector and a data source")
	}
	d, err := sameDim(u, h)
	if err != nil {
		return nil, fmt.Errorf("stage 1: %w", err)
	}
	if err := cfg.Prior.Validate(d); err != nil {
		return nil, fmt.Errorf("stage 1: %w", err)
	}
	s := &Stage1{Cfg: cfg, U: u, H: h, dim: d, data: data, noise: NewNoise(cfg.Seed)}
	if s.amBuf, err = NewBuffer(3*d, cfg.BufferSize); err != nil {
		return nil, err
	}
	if s.cmBuf, err = NewBuffer(2*d, cfg.BufferSize); err != nil {
		return nil, err
	}
	return s, nil
}

// Finished reports whether RunEpoch has nothing left to do.
func (s *Stage1) Finished() bool { return s.Done || s.Epoch >= s.Cfg.MaxEpochs }

// RunEpoch runs one epoch of asbm.md §2.8: simulate Resample new samples into the phase's buffer, take
// one shuffled pass with a Step per minibatch, empty both buffers (and optionally reset both
// optimisers) when the next epoch is the other phase, and at the end of an AM stage from epoch
// EvalStart on (or at the last epoch) run the terminal check, which may finish stage 1.
func (s *Stage1) RunEpoch() (EpochStats, error) {
	if s.Finished() {
		return EpochStats{}, ErrFinished
	}
	c := s.Cfg
	e := s.Epoch
	phase, next := c.PhaseOf(e), c.PhaseOf(e+1)
	st := EpochStats{Epoch: e, Phase: phase}
	if err := s.fill(e, phase); err != nil {
		return st, err
	}
	buf := s.amBuf
	if phase == PhaseCM {
		buf = s.cmBuf
	}
	st.BufferLen = buf.Len()
	batches, err := buf.Minibatches(s.noise.Rand(), c.Batch)
	if err != nil {
		return st, err
	}
	d := s.dim
	if phase == PhaseAM {
		st.Loss, st.Steps, st.Examples, err = pass(s.U, batches, phase, e, func(idx []int) (Tuple, error) {
			return AMTuple(c.VP, buf.Field(idx, 0, d), buf.Field(idx, 1, d), buf.Field(idx, 2, d), d, s.noise)
		})
	} else {
		st.Loss, st.Steps, st.Examples, err = pass(s.H, batches, phase, e, func(idx []int) (Tuple, error) {
			return CMTuple(c.VP, buf.Field(idx, 0, d), buf.Field(idx, 1, d), d)
		})
	}
	if err != nil {
		return st, err
	}
	if phase != next {
		// §2.5: both buffers are emptied at every stage switch; on CIFAR-10 both optimisers are rebuilt.
		s.amBuf.Reset()
		s.cmBuf.Reset()
		if c.ResetOptimizer {
			s.U.ResetOptimizer()
			s.H.ResetOptimizer()
		}
		st.Switched = true
	}
	s.Epoch++
	last := s.Epoch == c.MaxEpochs
	if (phase != next || last) && e >= c.EvalStart && (phase == PhaseAM || last) {
		ts, err := s.terminal()
		if err != nil {
			return st, err
		}
		st.Terminal = &ts
		// §2.6: a full pass stops stage 1 and is the model kept. As a fallback for a run that ends
		// without one [INFERRED reading of §2.6], keep the radially-passing check with the lowest λ_max.
		if ts.Pass || (ts.RadialPass && (!s.hasBest || ts.LambdaMax <= s.bestStats.LambdaMax)) {
			s.hasBest, s.best, s.bestStats, s.bestEpoch = true, subState(s.U.State(), ""), ts, s.Epoch
		}
		s.Done = ts.Pass
	}
	st.Done = s.Finished()
	return st, nil
}

// fill simulates Resample new samples in chunks of SimBatch into the buffer of phase (§2.5 step 1).
func (s *Stage1) fill(e int, phase Phase) error {
	c, d := s.Cfg, s.dim
	for rem := c.Resample; rem > 0; {
		m := min(c.SimBatch, rem)
		rem -= m
		x0 := make([]float32, m*d)
		s.data(s.noise.Rand(), x0)
		var x1 []float32
		var err error
		switch {
		case phase == PhaseCM && e < c.CMEpochs:
			// Init stage (§2.3): exact reference couplings, so h^(0) ≈ ∇log p^base_1.
			x1, err = ReferenceCoupling(c.VP, x0, s.noise)
		case phase == PhaseCM:
			x1, err = Simulate(s.U.EMA(), c.VP, x0, d, c.CMNFE, c.SimBatch, s.noise)
		default:
			x1, err = Simulate(s.U.EMA(), c.VP, x0, d, c.ForwardNFE, c.SimBatch, s.noise)
		}
		if err != nil {
			return err
		}
		if !allFinite(x1) {
			return &NonFiniteError{Phase: phase, Epoch: e, Step: -1, What: "simulated x1"}
		}
		if phase == PhaseCM {
			if err := s.cmBuf.Append(interleave(m, d, x0, x1)); err != nil {
				return err
			}
			continue
		}
		// §2.2: a_1 = ∇E(x_1) + h(1, x_1) with the current non-EMA corrector, at buffer-fill time.
		a1, err := TerminalAdjoint(c.Prior, s.H, x1, d)
		if err != nil {
			return err
		}
		if !allFinite(a1) {
			return &NonFiniteError{Phase: phase, Epoch: e, Step: -1, What: "terminal adjoint"}
		}
		if err := s.amBuf.Append(interleave(m, d, x0, x1, a1)); err != nil {
			return err
		}
	}
	return nil
}

// terminal simulates X_1 from EvalSamples data points with the EMA control and ForwardNFE points and
// runs TerminalCheck (§2.6).
func (s *Stage1) terminal() (TerminalStats, error) {
	c, d := s.Cfg, s.dim
	x0 := make([]float32, c.EvalSamples*d)
	s.data(s.noise.Rand(), x0)
	x1, err := Simulate(s.U.EMA(), c.VP, x0, d, c.ForwardNFE, c.SimBatch, s.noise)
	if err != nil {
		return TerminalStats{}, err
	}
	if !allFinite(x1) {
		return TerminalStats{}, &NonFiniteError{Phase: PhaseAM, Epoch: s.Epoch - 1, Step: -1, What: "terminal-check x1"}
	}
	return TerminalCheck(x1, d, c.Prior, s.noise, c.LambdaMax)
}

// Best returns the control's state (parameters, EMA, optimiser) at the kept terminal check, its
// statistics and the number of epochs completed then; ok is false when no check has passed (then use
// the last model, as the code does).
func (s *Stage1) Best() (state map[string][]float32, stats TerminalStats, epoch int, ok bool) {
	if !s.hasBest {
		return nil, TerminalStats{}, 0, false
	}
	return subState(s.best, ""), s.bestStats, s.bestEpoch, true
}

// UseBest loads the kept control into U (runner.py train: "Load the best forward model"); without one
// it leaves the last model and returns false.
func (s *Stage1) UseBest() (bool, error) {
	if !s.hasBest {
		return false, nil
	}
	return true, s.U.SetState(subState(s.best, ""))
}

// State is stage 1's checkpoint at the current epoch boundary: U and H ("u/…", "h/…"), both buffers,
// the noise generator, the kept best control ("best/u/…") and the counters.
func (s *Stage1) State() (Checkpoint, error) {
	c := newCheckpoint()
	putModel(c, "u/", s.U)
	putModel(c, "h/", s.H)
	c.Tensors["buffer/am"] = append([]float32(nil), s.amBuf.Data()...)
	c.Tensors["buffer/cm"] = append([]float32(nil), s.cmBuf.Data()...)
	if err := putNoise(c, "noise", s.noise); err != nil {
		return c, err
	}
	c.Scalars["dim"] = float64(s.dim)
	c.Scalars["epoch"] = float64(s.Epoch)
	c.Scalars["done"] = b2f(s.Done)
	c.Scalars["has_best"] = b2f(s.hasBest)
	if s.hasBest {
		for k, v := range s.best {
			c.Tensors["best/u/"+k] = append([]float32(nil), v...)
		}
		b := s.bestStats
		for k, v := range map[string]float64{
			"best/epoch": float64(s.bestEpoch), "best/n": float64(b.N), "best/lambda_max": b.LambdaMax,
			"best/lambda_prior": b.LambdaPrior, "best/mean_sqnorm": b.MeanSqNorm, "best/var_sqnorm": b.VarSqNorm,
			"best/mean_err": b.MeanErr, "best/var_err": b.VarErr, "best/pass": b2f(b.Pass),
		} {
			c.Scalars[k] = v
		}
	}
	return c, nil
}

// Restore resumes from a State taken with the same configuration and network shapes.
func (s *Stage1) Restore(c Checkpoint) error {
	e, err := restoreCounter(c, s.dim)
	if err != nil {
		return fmt.Errorf("stage 1 restore: %w", err)
	}
	if err := getModel(c, "u/", s.U); err != nil {
		return fmt.Errorf("stage 1 restore: %w", err)
	}
	if err := getModel(c, "h/", s.H); err != nil {
		return fmt.Errorf("stage 1 restore: %w", err)
	}
	for key, b := range map[string]*Buffer{"buffer/am": s.amBuf, "buffer/cm": s.cmBuf} {
		v, ok := c.Tensors[key]
		if !ok {
			return fmt.Errorf("stage 1 restore: checkpoint has no %q", key)
		}
		if err := b.SetData(v); err != nil {
			return fmt.Errorf("stage 1 restore %q: %w", key, err)
		}
	}
	if err := getNoise(c, "noise", s.noise); err != nil {
		return fmt.Errorf("stage 1 restore: %w", err)
	}
	done, err := scalar(c, "done")
	if err != nil {
		return fmt.Errorf("stage 1 restore: %w", err)
	}
	hb, err := scalar(c, "has_best")
	if err != nil {
		return fmt.Errorf("stage 1 restore: %w", err)
	}
	s.Epoch, s.Done, s.hasBest, s.best = e, done != 0, hb != 0, nil
	if s.hasBest {
		s.best = subState(c.Tensors, "best/u/")
		if len(s.best) == 0 {
			return errors.New("stage 1 restore: has_best is set but there are no best/u/ tensors")
		}
		var b TerminalStats
		vals := map[string]*float64{"best/lambda_max": &b.LambdaMax, "best/lambda_prior": &b.LambdaPrior,
			"best/mean_sqnorm": &b.MeanSqNorm, "best/var_sqnorm": &b.VarSqNorm, "best/mean_err": &b.MeanErr, "best/var_err": &b.VarErr}
		for k, p := range vals {
			if *p, err = scalar(c, k); err != nil {
				return fmt.Errorf("stage 1 restore: %w", err)
			}
		}
		be, err := scalar(c, "best/epoch")
		if err != nil {
			return fmt.Errorf("stage 1 restore: %w", err)
		}
		bn, err := scalar(c, "best/n")
		if err != nil {
			return fmt.Errorf("stage 1 restore: %w", err)
		}
		bp, err := scalar(c, "best/pass")
		if err != nil {
			return fmt.Errorf("stage 1 restore: %w", err)
		}
		b.N, b.Dim = int(bn), s.dim
		b.EigenPass = b.LambdaMax <= b.LambdaPrior
		b.RadialPass = b.MeanErr < RadialTolerance && b.VarErr < RadialTolerance
		b.Pass = bp != 0
		s.bestStats, s.bestEpoch = b, int(be)
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
