package asbm

import (
	"errors"
	"fmt"
	"math"
)

// DMDConfig holds the distribution-matching distillation settings (asbm.md §4.2, the official code's
// scheme, less its regression term).
type DMDConfig struct {
	VP        VP  // the teacher's base SDE (PaperVP for ASBM)
	Batch     int // minibatch of both the generator and the fake-score steps (the code: 128)
	GenSteps  int // generator steps per epoch
	FakeSteps int // fake-score steps before each generator step (the code's --distill-update-ratio 5)
	Epochs    int
	// TMin, TMax bound the generator step's bridge times, t ~ U[TMin, TMax]. Near t = 0 both scores
	// are the data's and their difference says little; near 1 the bridge is pinned to z. DMD uses
	// [0.02, 0.98] of its noise levels.
	TMin, TMax float64
	Seed       uint64 // seeds the loop's Noise
}

// DefaultDMD is the code's ratio of five fake-score steps per generator step at batch 128, with
// times in [0.02, 0.98].
func DefaultDMD() DMDConfig {
	return DMDConfig{VP: PaperVP(), Batch: 128, GenSteps: 100, FakeSteps: 5, Epochs: 100, TMin: 0.02, TMax: 0.98, Seed: 917}
}

// Validate reports a configuration DMD cannot run.
func (c DMDConfig) Validate() error {
	if err := c.VP.Validate(); err != nil {
		return fmt.Errorf("DMD: %w", err)
	}
	if !(c.TMin > 0 && c.TMin < c.TMax && c.TMax <= 1) {
		return fmt.Errorf("DMD: times [%g, %g] must satisfy 0 < TMin < TMax ≤ 1", c.TMin, c.TMax)
	}
	return positive("DMD", "Batch", c.Batch, "GenSteps", c.GenSteps, "FakeSteps", c.FakeSteps, "Epochs", c.Epochs)
}

// DMD trains the one-step generator G(z) = (z + σ_1² g(1, z))/α_1 (asbm.md §4.2) by distribution
// matching on the ASBM bridge, as the official distill.py does: a fake score s_ξ learns, by the
// stage-2 bridge matching of §3.2, the backward score of the generator's own coupling (G(z), z),
// and the generator moves along the difference of the teacher's score s_ψ and s_ξ on bridge points
// X_t ~ p^base_{t|0,1}(·|G(z), z). At the fixed point the generator's coupling has the teacher's
// bridge marginals. Unlike the regression of Distill it never runs the PF-ODE, which carries every
// error of the networks to its end and plateaus (README, "Why ASBM's PF-ODE plateaus"): it imitates
// the process the score network defines, whose SDE and ancestral samples are the model's best.
//
// Deviations from the code, for a workstation budget: no regression term on stored PF-ODE pairs
// (the 0.1·L_reg of §4.2; the pairs are what this scheme avoids), and the generator's step is
// DMD's (Yin et al. 2024): the x0-prediction difference through p^base_{t|0}, normalised by the
// mean |G(z) − x̂0_teacher| (over the batch, where DMD takes it per image), in place of the code's
// weight 0.9 b_t + 0.1 on the raw score difference, so one learning rate serves every t. Pass a generator warm-started from a
// regression-distilled one or from the teacher, and a fake score warm-started from the teacher
// (the code initialises both from s_ψ).
type DMD struct {
	Cfg     DMDConfig
	Teacher Net   // s_ψ, the EMA score (in score units)
	Fake    Model // s_ξ (in score units)
	Gen     Model // g, called at t = 1 only
	Epoch   int   // epochs completed

	dim   int
	noise *Noise
}

// NewDMD returns the DMD loop at epoch 0.
func NewDMD(cfg DMDConfig, teacher Net, fake, gen Model) (*DMD, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if teacher == nil || fake == nil || gen == nil {
		return nil, errors.New("DMD: needs a teacher score, a fake score and a generator")
	}
	d, err := sameDim(teacher, fake, gen)
	if err != nil {
		return nil, fmt.Errorf("DMD: %w", err)
	}
	return &DMD{Cfg: cfg, Teacher: teacher, Fake: fake, Gen: gen, dim: d, noise: NewNoise(cfg.Seed)}, nil
}

// Finished reports whether all Epochs have run.
func (g *DMD) Finished() bool { return g.Epoch >= g.Cfg.Epochs }

// RunEpoch takes GenSteps generator steps, each after FakeSteps fake-score steps on fresh z. Loss is
// the generator's mean ‖v‖² per value (its step's loss), FakeLoss the fake score's bridge-matching
// loss.
func (g *DMD) RunEpoch() (EpochStats, error) {
	if g.Finished() {
		return EpochStats{}, ErrFinished
	}
	c, d, e := g.Cfg, g.dim, g.Epoch
	st := EpochStats{Epoch: e, Phase: PhaseDMD}
	for k := 0; k < c.GenSteps; k++ {
		for f := 0; f < c.FakeSteps; f++ {
			z := g.noise.Normal(c.Batch * d)
			x0, err := Generate(g.Gen, c.VP, z)
			if err != nil {
				return st, err
			}
			tp, err := BMTuple(c.VP, x0, z, d, g.noise)
			if err != nil {
				return st, err
			}
			l := float64(g.Fake.Step(tp.T, tp.X, tp.W, tp.Y))
			if math.IsNaN(l) || math.IsInf(l, 0) {
				return st, &NonFiniteError{Phase: PhaseDMD, Epoch: e, Step: k, What: "fake-score loss"}
			}
			st.FakeLoss += l / float64(c.GenSteps*c.FakeSteps)
		}
		tp, err := DMDTuple(c.VP, g.Gen, g.Teacher, g.Fake, g.noise.Normal(c.Batch*d), d, c.TMin, c.TMax, g.noise)
		if err != nil {
			return st, err
		}
		l := float64(g.Gen.Step(tp.T, tp.X, tp.W, tp.Y))
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return st, &NonFiniteError{Phase: PhaseDMD, Epoch: e, Step: k, What: "generator loss"}
		}
		st.Loss += l / float64(c.GenSteps)
		st.Steps++
		st.Examples += c.Batch
	}
	g.Epoch++
	st.Done = g.Finished()
	return st, nil
}

// DMDTuple is one generator step of distribution matching (asbm.md §4.2, with DMD's weighting): for
// x0 = G(z), t ~ U[lo, hi] and X_t ~ p^base_{t|0,1}(·|x0, z), the x0-predictions through p^base_{t|0},
// x̂0 = (X_t + σ_t² s(t, X_t))/α_t, of the teacher and the fake score give
// v = (x̂0_fake − x̂0_teacher) / mean|x0 − x̂0_teacher| (the mean over the batch), and the tuple is GenTuple's regression of G(z)
// onto the fixed target x0 − v: its gradient with respect to G(z) is 2v per value, the direction
// that lowers the fake score's density relative to the teacher's. The loss it reports is mean v².
// gen is evaluated at its current parameters.
func DMDTuple(vp VP, gen, teacher, fake Net, z []float32, dim int, lo, hi float64, noise *Noise) (Tuple, error) {
	if err := vp.Validate(); err != nil {
		return Tuple{}, err
	}
	n, err := checkPairs(dim, noise, true, z)
	if err != nil {
		return Tuple{}, fmt.Errorf("DMD tuple: %w", err)
	}
	x0, err := Generate(gen, vp, z)
	if err != nil {
		return Tuple{}, err
	}
	t := sampleTimes(n, lo, hi, noise)
	xt := bridgeSample(vp, t, x0, z, noise.Normal(len(z)), dim)
	sr := make([]float32, len(z))
	sf := make([]float32, len(z))
	teacher.Eval(t, xt, sr)
	fake.Eval(t, xt, sf)
	// x̂0 differences first, then one normaliser for the batch (a per-image one, DMD's, is the
	// same for images of many pixels but degenerate for one value per row).
	v := make([]float64, len(z))
	norm := 0.0
	for i, ti := range t {
		tt := float64(ti)
		al, s2 := vp.Alpha(tt), vp.Sigma2(tt)
		for j := i * dim; j < (i+1)*dim; j++ {
			norm += math.Abs(float64(x0[j]) - (float64(xt[j])+s2*float64(sr[j]))/al)
			v[j] = s2 / al * float64(sf[j]-sr[j])
		}
	}
	norm = math.Max(norm/float64(len(z)), 1e-6)
	target := make([]float32, len(z))
	for j := range target {
		target[j] = float32(float64(x0[j]) - v[j]/norm)
	}
	return GenTuple(vp, z, target, dim)
}

// State is the loop's checkpoint: the generator ("gen/…"), the fake score ("fake/…"), the noise
// generator, the epoch.
func (g *DMD) State() (Checkpoint, error) {
	c, err := loopState(g.Gen, "gen/", g.noise, g.dim, g.Epoch)
	if err != nil {
		return c, err
	}
	putModel(c, "fake/", g.Fake)
	return c, nil
}

// Restore resumes from a State.
func (g *DMD) Restore(c Checkpoint) error {
	e, err := loopRestore(c, g.Gen, "gen/", g.noise, g.dim)
	if err == nil {
		err = getModel(c, "fake/", g.Fake)
	}
	if err != nil {
		return fmt.Errorf("DMD restore: %w", err)
	}
	g.Epoch = e
	return nil
}
