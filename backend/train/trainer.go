package train

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"asbm/backend/asbm"
	"asbm/backend/cpu"
	"asbm/backend/data"
	"asbm/backend/gpu"
	"asbm/backend/imgdata"
	"asbm/model"
)

// loop is what every asbm training loop offers.
type loop interface {
	RunEpoch() (asbm.EpochStats, error)
	Finished() bool
	State() (asbm.Checkpoint, error)
	Restore(asbm.Checkpoint) error
}

// trainer runs the Phases, checkpointing after every epoch (at most every CheckpointEvery).
type trainer struct {
	st        *State
	ckpt      string
	log       io.Writer
	gpu       bool         // train on the WGSL engine (backend/gpu) instead of gorgonia
	images    *imgdata.Set // the loaded image set, for image data
	stopAfter string       // --stop-after
	epochs    int          // epochs run by this process
}

// EngineModel is what the trainer needs of an engine's network: a trainable asbm.Model whose EMA
// parameters can be exported. backend/cpu and backend/gpu share state keys, so a checkpoint written
// by one resumes on the other.
type EngineModel interface {
	asbm.Model
	EMAParams() *model.Net
}

// chooseEngine picks the training engine for --device and describes it. auto takes a hardware
// WebGPU adapter when there is one; a software adapter (lavapipe, SwiftShader) is slower than the
// gorgonia engine on the same cores (design.md), so auto skips it while gpu honours it.
func (tr *trainer) chooseEngine(device string) (string, error) {
	if device == "cpu" {
		return tr.cpuEngine(), nil
	}
	dev, err := gpu.Device()
	switch {
	case err != nil && device == "gpu":
		return "", fmt.Errorf("--device gpu: %w", err)
	case err != nil:
		fmt.Fprintf(tr.log, "no WebGPU adapter (%v): training on the CPU\n", err)
		return tr.cpuEngine(), nil
	case device == "auto" && dev.IsSoftware():
		fmt.Fprintf(tr.log, "WebGPU adapter %s is a software rasteriser, slower than the CPU engine: training on the CPU (--device gpu forces it)\n", dev.AdapterInfo())
		return tr.cpuEngine(), nil
	}
	tr.gpu = true
	return "gpu (WGSL on " + dev.AdapterInfo() + ")", nil
}

// cpuEngine describes the CPU engine with the matrix multiply it runs on, and prints the one-line hint
// when that is the slow pure-Go fallback.
func (tr *trainer) cpuEngine() string {
	if h := cpu.BLASHint(); h != "" {
		fmt.Fprintln(tr.log, h)
	}
	return "cpu (gorgonia; " + cpu.BLAS() + ")"
}

// CheckpointEvery bounds how often a checkpoint is written inside a phase; phase ends always write one.
var CheckpointEvery = 15 * time.Second

// StopAfterEpochs, when positive, makes a run stop with ErrStopAfterEpochs after that many epochs, having
// written its checkpoint as a kill right after a checkpoint would leave it (the resume test).
var StopAfterEpochs int

// ErrStopAfterEpochs is the error of a run stopped by StopAfterEpochs.
var ErrStopAfterEpochs = errors.New("stopped for the resume test")

// errStopped ends a run that --stop-after stopped; its checkpoint is complete.
var errStopped = errors.New("stopped by --stop-after")

func (tr *trainer) run() error {
	for tr.st.Phase != "done" {
		done := tr.st.Phase
		if err := tr.runPhase(); err != nil {
			return err
		}
		if done == tr.stopAfter {
			return errStopped
		}
	}
	return nil
}

// dataFunc returns the training data: a toy sampler, or uniform draws (with replacement) from an
// image set's train split, loaded once.
func (tr *trainer) dataFunc() (asbm.DataFunc, error) {
	c := tr.st.Config
	if !isImageSpec(c.Data) {
		name, _ := strings.CutPrefix(c.Data, "toy:")
		toy, err := data.Toy(name)
		if err != nil {
			return nil, err
		}
		return asbm.DataFunc(toy), nil
	}
	if tr.images == nil {
		set, err := imgdata.Load(c.Data, c.Arch.Height)
		if err != nil {
			return nil, err
		}
		if set.Dim() != c.Arch.Dim {
			return nil, fmt.Errorf("%s loads %d×%d×%d images, the network takes %d values per image", c.Data, set.C, set.H, set.W, c.Arch.Dim)
		}
		tr.images = set
		fmt.Fprintf(tr.log, "data: %s, %d images %d×%d×%d\n", set.Name, set.N, set.C, set.H, set.W)
	}
	set := tr.images
	d := set.Dim()
	return func(r *rand.Rand, dst []float32) {
		for i := 0; i+d <= len(dst); i += d {
			copy(dst[i:i+d], set.Image(r.IntN(set.N)))
		}
	}, nil
}

// newModel returns a fresh network on the chosen engine, seeded per role.
func (tr *trainer) newModel(role uint64) (EngineModel, error) {
	if tr.gpu {
		return gpu.New(tr.st.Config.Arch, tr.st.Config.opt(), tr.st.Config.Seed*16+role)
	}
	return cpu.New(tr.st.Config.Arch, tr.st.Config.opt(), tr.st.Config.Seed*16+role)
}

// warmModel returns a network on the chosen engine starting from m's parameters.
func (tr *trainer) warmModel(m *model.Net, cfg cpu.Config) (EngineModel, error) {
	if tr.gpu {
		return gpu.FromNet(m, cfg)
	}
	return cpu.FromNet(m, cfg)
}

// finalModel rebuilds a finished phase's network.
func (tr *trainer) finalModel(net string) (EngineModel, error) {
	state := tr.st.Final[net]
	if state == nil {
		return nil, fmt.Errorf("checkpoint lacks the finished network %q", net)
	}
	m, err := tr.newModel(0)
	if err != nil {
		return nil, err
	}
	return m, m.SetState(state)
}

// warmStart continues m from the finished network key when --keep-weights marked it (else leaves
// m fresh), and returns the seed offset of the phase's loop: a continued phase draws a new noise
// stream (one per earlier run of the phase) rather than replaying the one it has already seen.
func (tr *trainer) warmStart(key string, m EngineModel) (uint64, error) {
	if !tr.st.Warm[key] || tr.st.Final[key] == nil {
		return 0, nil
	}
	if err := m.SetState(tr.st.Final[key]); err != nil {
		return 0, fmt.Errorf("--keep-weights: network %q: %w", key, err)
	}
	runs := 0
	for _, l := range tr.st.Log {
		if name, _, _ := strings.Cut(l, ":"); name == tr.st.Phase {
			runs++
		}
	}
	return uint64(runs) * 0x9E3779B9, nil
}

// finishWarm ends the warm start of key and marks the phase's log line as a continuation.
func (tr *trainer) finishWarm(key, line string) {
	if tr.st.Warm[key] {
		delete(tr.st.Warm, key)
		line += " (continued from the previous networks, --keep-weights)"
	}
	tr.st.Log = append(tr.st.Log, line)
}

func (tr *trainer) runPhase() error {
	c := tr.st.Config
	dataFn, err := tr.dataFunc()
	if err != nil {
		return err
	}
	var (
		l      loop
		total  int
		finish func() error
	)
	switch tr.st.Phase {
	case "stage1":
		u, err := tr.newModel(1)
		if err != nil {
			return err
		}
		h, err := tr.newModel(2)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultStage1()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed, c.Batch
		cfg.AMEpochs, cfg.CMEpochs, cfg.MaxEpochs, cfg.EvalStart = c.S1.AMEpochs, c.S1.CMEpochs, c.S1.MaxEpochs, c.S1.EvalStart
		cfg.EvalSamples, cfg.Resample, cfg.BufferSize = c.S1.EvalSamples, c.S1.Resample, c.S1.Buffer
		cfg.ForwardNFE, cfg.CMNFE = c.S1.ForwardNFE, c.S1.CMNFE
		s1, err := asbm.NewStage1(cfg, u, h, dataFn)
		if err != nil {
			return err
		}
		l, total = s1, cfg.MaxEpochs
		finish = func() error {
			used, err := s1.UseBest()
			if err != nil {
				return err
			}
			note := "no terminal check passed: keeping the last control"
			if _, stats, epoch, ok := s1.Best(); ok && used {
				note = fmt.Sprintf("kept the control of epoch %d%s", epoch, terminalNote(&stats))
			}
			tr.st.Final["u"] = u.State()
			tr.st.Log = append(tr.st.Log, fmt.Sprintf("stage1: %d epochs; %s", s1.Epoch, note))
			return nil
		}
	case "stage2":
		u, err := tr.finalModel("u")
		if err != nil {
			return err
		}
		s, err := tr.newModel(3)
		if err != nil {
			return err
		}
		off, err := tr.warmStart("s", s)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultStage2()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+1+off, c.Batch
		cfg.Couplings, cfg.ForwardNFE, cfg.Epochs, cfg.Passes = c.S2.Couplings, c.S2.ForwardNFE, c.S2.Epochs, c.S2.Passes
		s2, err := asbm.NewStage2(cfg, u.EMA(), c.scoreModel(s, cfg.VP), dataFn)
		if err != nil {
			return err
		}
		l, total = s2, cfg.Epochs
		finish = func() error {
			tr.st.Final["s"] = s.State()
			tr.finishWarm("s", fmt.Sprintf("stage2: %d epochs × %d couplings × %d passes, forward NFE %d", cfg.Epochs, cfg.Couplings, cfg.Passes, cfg.ForwardNFE))
			return nil
		}
	case "baseline":
		b, err := tr.newModel(4)
		if err != nil {
			return err
		}
		off, err := tr.warmStart("b", b)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultBaseline()
		cfg.VP, cfg.Seed, cfg.Batch = c.baseVP(), c.Seed+2+off, c.Batch
		// The same network, batch, number of steps and of examples seen as stage 2 (asbm.md §6.1); the
		// baseline's examples are fresh data, which cost nothing to draw.
		cfg.Examples, cfg.Epochs = c.S2.Couplings*max(c.S2.Passes, 1), c.S2.Epochs
		bl, err := asbm.NewBaseline(cfg, c.scoreModel(b, cfg.VP), dataFn)
		if err != nil {
			return err
		}
		l, total = bl, cfg.Epochs
		finish = func() error {
			tr.st.Final["b"] = b.State()
			tr.finishWarm("b", fmt.Sprintf("baseline: %d epochs × %d examples (DSM, β1 = %g)", cfg.Epochs, cfg.Examples, c.BaseB1))
			return nil
		}
	case "distill":
		u, err := tr.finalModel("u")
		if err != nil {
			return err
		}
		s, err := tr.finalModel("s")
		if err != nil {
			return err
		}
		// The generator starts from the teacher score's EMA weights (asbm.md §4.2: s_ω ← s_ψ).
		gcfg := c.opt()
		gcfg.EMADecay, gcfg.LR = c.Distill.EMA, c.distillLR()
		g, err := tr.warmModel(s.EMAParams(), gcfg)
		if err != nil {
			return err
		}
		off, err := tr.warmStart("g", g)
		if err != nil {
			return err
		}
		if c.Distill.Method == "dmd" {
			l, total, finish, err = tr.dmd(s, g, off)
			if err != nil {
				return err
			}
			break
		}
		cfg := asbm.DefaultDistill()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+3+off, c.Batch
		cfg.Samples, cfg.ODESteps, cfg.Epochs, cfg.Passes = c.Distill.Samples, c.Distill.ODESteps, c.Distill.Epochs, c.Distill.Passes
		d, err := asbm.NewDistill(cfg, c.scoreNet(s.EMA(), cfg.VP), u.EMA(), c.scoreModel(g, cfg.VP))
		if err != nil {
			return err
		}
		l, total = d, cfg.Epochs
		finish = func() error {
			tr.st.Final["g"] = g.State()
			tr.finishWarm("g", fmt.Sprintf("distill: %d epochs × %d pairs × %d passes, %d-step Heun teacher, EMA %g", cfg.Epochs, cfg.Samples, cfg.Passes, cfg.ODESteps, c.Distill.EMA))
			return nil
		}
	default:
		return fmt.Errorf("unknown phase %q", tr.st.Phase)
	}
	if tr.st.Loop.Tensors != nil {
		if err := l.Restore(tr.st.Loop); err != nil {
			return fmt.Errorf("resume %s: %w", tr.st.Phase, err)
		}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(tr.st.Phase),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(500*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		// A bar in a log file is noise: draw it only on a terminal; the epoch lines below always print.
		progressbar.OptionSetVisibility(term.IsTerminal(int(os.Stderr.Fd()))))
	last := time.Now()
	start := time.Now()
	for !l.Finished() {
		epochStart := time.Now()
		stats, err := l.RunEpoch()
		if err != nil {
			if errors.Is(err, asbm.ErrNonFinite) {
				return fmt.Errorf("%w; the last good checkpoint is %s (resume with --resume)", err, tr.ckpt)
			}
			return err
		}
		bar.Set(stats.Epoch + 1)
		bar.Describe(fmt.Sprintf("%s %s loss %.4g", tr.st.Phase, stats.Phase, stats.Loss))
		if stats.Terminal != nil || stats.Switched || stats.Epoch%10 == 0 || stats.Done || time.Since(epochStart) > 5*time.Second {
			// One line per stage switch, terminal check, tenth epoch and slow epoch (image runs): the
			// per-stage log.
			bar.Clear()
			fmt.Fprintf(tr.log, "%s epoch %d %s loss %.5g steps %d buffer %d time %s%s\n", tr.st.Phase, stats.Epoch, stats.Phase,
				stats.Loss, stats.Steps, stats.BufferLen, time.Since(epochStart).Round(100*time.Millisecond), terminalNote(stats.Terminal)+fakeNote(stats))
		}
		if math.IsNaN(stats.Loss) {
			return fmt.Errorf("%s epoch %d: loss is NaN; the last good checkpoint is %s", tr.st.Phase, stats.Epoch, tr.ckpt)
		}
		tr.epochs++
		tr.st.PhaseSeconds += time.Since(epochStart).Seconds()
		tr.st.PhaseSteps += stats.Steps
		stop := StopAfterEpochs > 0 && tr.epochs%StopAfterEpochs == 0 && !l.Finished()
		if (time.Since(last) > CheckpointEvery || stop) && !l.Finished() {
			if tr.st.Loop, err = l.State(); err != nil {
				return err
			}
			if err := saveTrainState(tr.ckpt, tr.st); err != nil {
				return err
			}
			last = time.Now()
		}
		if stop {
			return ErrStopAfterEpochs
		}
	}
	bar.Finish()
	if err := finish(); err != nil {
		return err
	}
	// The phase's steps and wall time (all its epochs, across resumes) go into its log line, which the
	// model file's "training" metadata keeps.
	line := &tr.st.Log[len(tr.st.Log)-1]
	*line += fmt.Sprintf("; %d steps, %s", tr.st.PhaseSteps, time.Duration(tr.st.PhaseSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(tr.log, "%s finished in %s: %s\n", tr.st.Phase, time.Since(start).Round(time.Second), *line)
	tr.st.Phase = Phases[PhaseIndex(tr.st.Phase)+1]
	tr.st.Loop, tr.st.PhaseSeconds, tr.st.PhaseSteps = asbm.Checkpoint{}, 0, 0
	return saveTrainState(tr.ckpt, tr.st)
}

func terminalNote(t *asbm.TerminalStats) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("; terminal check: λmax %.3f vs prior %.3f, radial errors %.1f%% / %.1f%%, pass %v",
		t.LambdaMax, t.LambdaPrior, 100*t.MeanErr, 100*t.VarErr, t.Pass)
}
