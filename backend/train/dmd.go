package train

import (
	"fmt"

	"asbm/backend/asbm"
)

// dmd builds the distillation phase's loop for --distill-method dmd (asbm.md §4.2, asbm.DMD): the
// teacher is the score network's EMA, the fake score starts from the same weights (the code's
// initialisation), and the generator g (from the teacher, or the file's with --keep-weights) gets
// fresh optimiser moments, its loss being a new one. Each epoch takes ⌈--distill-samples / --batch⌉
// generator steps. The fake score is not exported; it lives in the loop's checkpoint.
func (tr *trainer) dmd(s, g EngineModel, off uint64) (loop, int, func() error, error) {
	c := tr.st.Config
	fcfg := c.opt()
	fcfg.LR = c.distillLR()
	fake, err := tr.warmModel(s.EMAParams(), fcfg)
	if err != nil {
		return nil, 0, nil, err
	}
	g.ResetOptimizer()
	cfg := asbm.DefaultDMD()
	cfg.VP, cfg.Seed, cfg.Batch, cfg.Epochs = c.vp(), c.Seed+3+off, c.Batch, c.Distill.Epochs
	cfg.GenSteps = (c.Distill.Samples + c.Batch - 1) / c.Batch
	if c.Distill.FakeSteps > 0 {
		cfg.FakeSteps = c.Distill.FakeSteps
	}
	d, err := asbm.NewDMD(cfg, c.scoreNet(s.EMA(), cfg.VP), c.scoreModel(fake, cfg.VP), c.scoreModel(g, cfg.VP))
	if err != nil {
		return nil, 0, nil, err
	}
	finish := func() error {
		tr.st.Final["g"] = g.State()
		tr.finishWarm("g", fmt.Sprintf("distill (DMD): %d epochs × %d generator steps × %d fake-score steps, lr %g, EMA %g",
			cfg.Epochs, cfg.GenSteps, cfg.FakeSteps, fcfg.LR, c.Distill.EMA))
		return nil
	}
	return d, cfg.Epochs, finish, nil
}

// distillLR is the distillation's learning rate: --dmd-lr for DMD's generator and fake score when
// given, else --lr.
func (c Config) distillLR() float64 {
	if c.Distill.Method == "dmd" && c.Distill.DMDLR > 0 {
		return c.Distill.DMDLR
	}
	return c.LR
}

// fakeNote is the DMD fake score's loss for the epoch log line.
func fakeNote(st asbm.EpochStats) string {
	if st.Phase != asbm.PhaseDMD {
		return ""
	}
	return fmt.Sprintf("; fake-score loss %.5g", st.FakeLoss)
}
