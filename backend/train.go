package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"asbm/backend/asbm"
	"asbm/backend/cpu"
	"asbm/backend/data"
	"asbm/weights"
)

// trainConfig is everything `backend train` needs; it is stored in the checkpoint so --resume
// continues the same run.
type trainConfig struct {
	Data    string       `json:"data"`
	Seed    uint64       `json:"seed"`
	Arch    weights.Arch `json:"arch"`
	LR      float64      `json:"lr"`
	EMA     float64      `json:"ema"`
	Batch   int          `json:"batch"`
	Beta0   float64      `json:"beta0"`
	Beta1   float64      `json:"beta1"`
	BaseB1  float64      `json:"baseline_beta1"`
	SigmaV  float64      `json:"sigma_v"`
	S1      s1Flags      `json:"stage1"`
	S2      s2Flags      `json:"stage2"`
	Distill distillFlags `json:"distill"`
}

type s1Flags struct {
	MaxEpochs, AMEpochs, CMEpochs, EvalStart, EvalSamples, Resample, Buffer, ForwardNFE, CMNFE int
}

type s2Flags struct{ Epochs, Couplings int }

type distillFlags struct{ Epochs, Samples, ODESteps int }

// The training phases in order. Each finished phase leaves its network under "final/<net>/" in the
// checkpoint; the running phase's loop state lives under "loop/".
var phases = []string{"stage1", "stage2", "baseline", "distill", "done"}

// checkpointName is the checkpoint's file name inside --run.
const checkpointName = "checkpoint.msgpack"

func runTrain(args []string, stdout io.Writer) error {
	fs := newFlags("train")
	var c trainConfig
	fs.StringVar(&c.Data, "data", "", "data set: toy:8gaussians, toy:moons or toy:checkerboard")
	out := fs.String("out", "", "model file to write at the end (default weights/<data set>.msgpack)")
	runDir := fs.String("run", "", "folder for the checkpoint and log (default runs/<data set>)")
	resume := fs.Bool("resume", false, "continue the run in --run from its checkpoint")
	device := fs.String("device", "cpu", "training engine: cpu (gorgonia), gpu or auto")
	f16 := fs.Bool("f16", false, "store the exported weights as f16")
	fs.Uint64Var(&c.Seed, "seed", 917, "seed of initialisation, data and noise (asbm.md §3.3)")
	fs.IntVar(&c.Arch.Hidden, "hidden", 128, "MLP width")
	fs.IntVar(&c.Arch.Layers, "layers", 3, "MLP hidden layers")
	fs.IntVar(&c.Arch.Fourier, "fourier", 8, "Fourier time frequencies")
	fs.Float64Var(&c.LR, "lr", 1e-3, "AdamW learning rate (asbm.md §6.1: 1e-3–1e-4 for the toys)")
	fs.Float64Var(&c.EMA, "ema", 0.999, "EMA decay")
	fs.IntVar(&c.Batch, "batch", 512, "regression batch (asbm.md §6.1: 512 for the toys)")
	fs.Float64Var(&c.Beta0, "beta0", 0.1, "VP β at t = 0")
	fs.Float64Var(&c.Beta1, "beta1", 4, "VP β at t = 1 for ASBM (the paper's non-memoryless base)")
	fs.Float64Var(&c.BaseB1, "baseline-beta1", 20, "VP β at t = 1 for the memoryless baseline")
	fs.Float64Var(&c.SigmaV, "sigma-v", 1, "VP σ_v")
	fs.IntVar(&c.S1.MaxEpochs, "stage1-epochs", 200, "maximum stage-1 epochs (paper 1000)")
	fs.IntVar(&c.S1.AMEpochs, "am-epochs", 15, "adjoint-matching epochs per stage-1 cycle")
	fs.IntVar(&c.S1.CMEpochs, "cm-epochs", 5, "corrector-matching epochs per stage-1 cycle")
	fs.IntVar(&c.S1.EvalStart, "eval-start", 60, "first epoch of the stage-1 terminal check (paper 300)")
	fs.IntVar(&c.S1.EvalSamples, "eval-samples", 8192, "points simulated by the terminal check")
	fs.IntVar(&c.S1.Resample, "resample", 4096, "stage-1 samples simulated per epoch")
	fs.IntVar(&c.S1.Buffer, "buffer", 20000, "stage-1 replay buffer size")
	fs.IntVar(&c.S1.ForwardNFE, "forward-nfe", 50, "time points of the AM, terminal-check and stage-2 simulations (asbm.md §6.1: 50–100 for the toys)")
	fs.IntVar(&c.S1.CMNFE, "cm-nfe", 100, "time points of the CM simulations")
	fs.IntVar(&c.S2.Epochs, "stage2-epochs", 150, "stage-2 epochs (the baseline gets the same)")
	fs.IntVar(&c.S2.Couplings, "couplings", 8192, "fresh couplings per stage-2 epoch (and baseline examples)")
	fs.IntVar(&c.Distill.Epochs, "distill-epochs", 40, "distillation epochs")
	fs.IntVar(&c.Distill.Samples, "distill-samples", 4096, "fresh (z, ODE teacher) pairs per distillation epoch")
	fs.IntVar(&c.Distill.ODESteps, "distill-ode-steps", 32, "Heun steps of the teacher PF-ODE")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch *device {
	case "cpu", "auto":
	case "gpu":
		return usagef("--device gpu: the WebGPU training engine is not built yet; use --device cpu")
	default:
		return usagef("--device must be cpu, gpu or auto, got %q", *device)
	}
	name := ""
	if !*resume || c.Data != "" {
		var err error
		if name, err = dataName(c.Data); err != nil {
			return err
		}
	}
	if *runDir == "" {
		if name == "" {
			return usagef("--resume needs --run (or --data to name the default run folder)")
		}
		*runDir = filepath.Join("runs", name)
	}
	ckptPath := filepath.Join(*runDir, checkpointName)
	var st *trainState
	if *resume {
		var err error
		if st, err = loadTrainState(ckptPath); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "resuming %s at phase %s\n", ckptPath, st.phase)
	} else {
		c.Arch = weights.Arch{Kind: "mlp", Dim: 2, Hidden: c.Arch.Hidden, Layers: c.Arch.Layers, Fourier: c.Arch.Fourier}
		if err := c.validate(); err != nil {
			return err
		}
		if _, err := os.Stat(ckptPath); err == nil {
			return usagef("%s exists: pass --resume to continue it, or a new --run folder", ckptPath)
		}
		if err := os.MkdirAll(*runDir, 0o755); err != nil {
			return err
		}
		st = &trainState{cfg: c, phase: phases[0], final: map[string]map[string][]float32{}}
	}
	if *out == "" {
		n, err := dataName(st.cfg.Data)
		if err != nil {
			return err
		}
		*out = filepath.Join("weights", n+".msgpack")
	}
	logf, err := os.OpenFile(filepath.Join(*runDir, "train.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	tr := &trainer{st: st, ckpt: ckptPath, log: io.MultiWriter(os.Stderr, logf)}
	fmt.Fprintf(tr.log, "engine: cpu (gorgonia); data %s; arch %+v; run %s\n", st.cfg.Data, st.cfg.Arch, *runDir)
	if err := tr.run(); err != nil {
		return err
	}
	if err := writeModel(st, *f16, *out); err != nil {
		return err
	}
	fmt.Fprintf(tr.log, "wrote %s\n", *out)
	return nil
}

// dataName checks a --data value and returns the data set's short name.
func dataName(spec string) (string, error) {
	if spec == "" {
		return "", usagef("--data is required: one of %s", strings.Join(dataSpecs(), ", "))
	}
	name, ok := strings.CutPrefix(spec, "toy:")
	if !ok {
		return "", usagef("unknown data set %q: want one of %s", spec, strings.Join(dataSpecs(), ", "))
	}
	if _, err := data.Toy(name); err != nil {
		return "", usagef("unknown data set %q: want one of %s", spec, strings.Join(dataSpecs(), ", "))
	}
	return name, nil
}

func dataSpecs() []string {
	var s []string
	for _, n := range data.Names() {
		s = append(s, "toy:"+n)
	}
	return s
}

func (c trainConfig) validate() error {
	pos := map[string]int{"--hidden": c.Arch.Hidden, "--layers": c.Arch.Layers, "--batch": c.Batch,
		"--stage1-epochs": c.S1.MaxEpochs, "--am-epochs": c.S1.AMEpochs, "--cm-epochs": c.S1.CMEpochs,
		"--resample": c.S1.Resample, "--buffer": c.S1.Buffer, "--eval-samples": c.S1.EvalSamples,
		"--stage2-epochs": c.S2.Epochs, "--couplings": c.S2.Couplings, "--distill-epochs": c.Distill.Epochs,
		"--distill-samples": c.Distill.Samples, "--distill-ode-steps": c.Distill.ODESteps}
	for k, v := range pos {
		if v < 1 {
			return usagef("%s must be ≥ 1, got %d", k, v)
		}
	}
	if c.Arch.Fourier < 0 {
		return usagef("--fourier must be ≥ 0")
	}
	if c.S1.ForwardNFE < 2 || c.S1.CMNFE < 2 {
		return usagef("--forward-nfe and --cm-nfe count time points and must be ≥ 2")
	}
	if !(c.LR > 0 && c.LR < 1) || !(c.EMA >= 0 && c.EMA < 1) {
		return usagef("--lr must be in (0, 1) and --ema in [0, 1)")
	}
	for _, vp := range []asbm.VP{c.vp(), c.baseVP()} {
		if err := vp.Validate(); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}

func (c trainConfig) vp() asbm.VP { return asbm.VP{Beta0: c.Beta0, Beta1: c.Beta1, SigmaV: c.SigmaV} }
func (c trainConfig) baseVP() asbm.VP {
	return asbm.VP{Beta0: c.Beta0, Beta1: c.BaseB1, SigmaV: c.SigmaV}
}

func (c trainConfig) opt() cpu.Config {
	o := cpu.DefaultConfig()
	o.LR, o.EMADecay = c.LR, c.EMA
	return o
}

// trainState is the resumable state of a whole `backend train` run.
type trainState struct {
	cfg   trainConfig
	phase string
	loop  asbm.Checkpoint                 // the running phase's loop, at an epoch boundary
	final map[string]map[string][]float32 // model states of finished phases: "u", "s", "b", "g"
	log   []string                        // one line per finished phase
}

// loadTrainState reads a checkpoint written by saveTrainState.
func loadTrainState(path string) (*trainState, error) {
	f, err := weights.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, usagef("no checkpoint at %s to resume", path)
		}
		return nil, err
	}
	st := &trainState{final: map[string]map[string][]float32{}, loop: asbm.Checkpoint{Tensors: map[string][]float32{}, Scalars: map[string]float64{}}}
	cfgJSON, _ := f.MetaString("config")
	if err := json.Unmarshal([]byte(cfgJSON), &st.cfg); err != nil {
		return nil, fmt.Errorf("%s: unreadable training config: %v", path, err)
	}
	st.phase, _ = f.MetaString("phase")
	if phaseIndex(st.phase) < 0 {
		return nil, fmt.Errorf("%s: unknown phase %q", path, st.phase)
	}
	if s, ok := f.MetaString("scalars"); ok && s != "" {
		if err := json.Unmarshal([]byte(s), &st.loop.Scalars); err != nil {
			return nil, fmt.Errorf("%s: unreadable loop scalars: %v", path, err)
		}
	}
	if s, ok := f.MetaString("log"); ok && s != "" {
		st.log = strings.Split(s, "\n")
	}
	for _, t := range f.Tensors {
		v, _, err := f.Float32(t.Name)
		if err != nil {
			return nil, err
		}
		if k, ok := strings.CutPrefix(t.Name, "loop/"); ok {
			st.loop.Tensors[k] = v
		} else if k, ok := strings.CutPrefix(t.Name, "final/"); ok {
			net, param, _ := strings.Cut(k, "/")
			if st.final[net] == nil {
				st.final[net] = map[string][]float32{}
			}
			st.final[net][param] = v
		}
	}
	if s, ok := f.MetaString("empty"); ok && s != "" {
		for _, k := range strings.Split(s, "\n") {
			st.loop.Tensors[k] = []float32{}
		}
	}
	if len(st.loop.Tensors) == 0 {
		st.loop = asbm.Checkpoint{}
	}
	return st, nil
}

// saveTrainState writes the checkpoint atomically (weights.WriteFile: temp file, fsync, rename), so a
// kill at any moment leaves the previous or the new checkpoint, never a torn one.
func saveTrainState(path string, st *trainState) error {
	f := weights.New(st.cfg.Arch)
	cfgJSON, _ := json.Marshal(st.cfg)
	f.Meta["config"] = string(cfgJSON)
	f.Meta["phase"] = st.phase
	f.Meta["log"] = strings.Join(st.log, "\n")
	if st.loop.Scalars != nil {
		s, err := json.Marshal(st.loop.Scalars)
		if err != nil {
			return err
		}
		f.Meta["scalars"] = string(s)
	}
	// The format has no zero-length tensors (a dimension 0 is rejected as corrupt), so empty arrays
	// (an emptied replay buffer) are listed by name in the metadata instead.
	var empty []string
	for _, k := range sortedKeys(st.loop.Tensors) {
		v := st.loop.Tensors[k]
		if len(v) == 0 {
			empty = append(empty, k)
			continue
		}
		f.AddF32("loop/"+k, []int{len(v)}, v)
	}
	f.Meta["empty"] = strings.Join(empty, "\n")
	for _, net := range sortedKeys(st.final) {
		for _, k := range sortedKeys(st.final[net]) {
			v := st.final[net][k]
			f.AddF32("final/"+net+"/"+k, []int{len(v)}, v)
		}
	}
	return weights.WriteFile(path, f)
}

func phaseIndex(p string) int {
	for i, q := range phases {
		if q == p {
			return i
		}
	}
	return -1
}

// loop is what every asbm training loop offers.
type loop interface {
	RunEpoch() (asbm.EpochStats, error)
	Finished() bool
	State() (asbm.Checkpoint, error)
	Restore(asbm.Checkpoint) error
}

// trainer runs the phases, checkpointing after every epoch (at most every ckptEvery).
type trainer struct {
	st     *trainState
	ckpt   string
	log    io.Writer
	epochs int // epochs run by this process
}

// ckptEvery bounds how often a checkpoint is written inside a phase; phase ends always write one.
var ckptEvery = 15 * time.Second

// testStopAfter, when positive, makes a run stop with errTestStop after that many epochs, having
// written its checkpoint as a kill right after a checkpoint would leave it (the resume test).
var testStopAfter int

var errTestStop = errors.New("stopped for the resume test")

func (tr *trainer) run() error {
	for tr.st.phase != "done" {
		if err := tr.runPhase(); err != nil {
			return err
		}
	}
	return nil
}

// newModel returns a fresh gorgonia MLP for one network, seeded per role.
func (tr *trainer) newModel(role uint64) (*cpu.MLP, error) {
	return cpu.New(tr.st.cfg.Arch, tr.st.cfg.opt(), tr.st.cfg.Seed*16+role)
}

// finalModel rebuilds a finished phase's network.
func (tr *trainer) finalModel(net string) (*cpu.MLP, error) {
	state := tr.st.final[net]
	if state == nil {
		return nil, fmt.Errorf("checkpoint lacks the finished network %q", net)
	}
	m, err := tr.newModel(0)
	if err != nil {
		return nil, err
	}
	return m, m.SetState(state)
}

func (tr *trainer) runPhase() error {
	c := tr.st.cfg
	name, _ := dataName(c.Data)
	toy, err := data.Toy(name)
	if err != nil {
		return err
	}
	dataFn := asbm.DataFunc(toy)
	var (
		l      loop
		total  int
		finish func() error
	)
	switch tr.st.phase {
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
			tr.st.final["u"] = u.State()
			tr.st.log = append(tr.st.log, fmt.Sprintf("stage1: %d epochs; %s", s1.Epoch, note))
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
		cfg := asbm.DefaultStage2()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+1, c.Batch
		cfg.Couplings, cfg.ForwardNFE, cfg.Epochs = c.S2.Couplings, c.S1.ForwardNFE, c.S2.Epochs
		s2, err := asbm.NewStage2(cfg, u.EMA(), s, dataFn)
		if err != nil {
			return err
		}
		l, total = s2, cfg.Epochs
		finish = func() error {
			tr.st.final["s"] = s.State()
			tr.st.log = append(tr.st.log, fmt.Sprintf("stage2: %d epochs × %d couplings", cfg.Epochs, cfg.Couplings))
			return nil
		}
	case "baseline":
		b, err := tr.newModel(4)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultBaseline()
		cfg.VP, cfg.Seed, cfg.Batch = c.baseVP(), c.Seed+2, c.Batch
		cfg.Examples, cfg.Epochs = c.S2.Couplings, c.S2.Epochs
		bl, err := asbm.NewBaseline(cfg, b, dataFn)
		if err != nil {
			return err
		}
		l, total = bl, cfg.Epochs
		finish = func() error {
			tr.st.final["b"] = b.State()
			tr.st.log = append(tr.st.log, fmt.Sprintf("baseline: %d epochs × %d examples (DSM, β1 = %g)", cfg.Epochs, cfg.Examples, c.BaseB1))
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
		g, err := cpu.FromMLP(s.EMAParams(), c.opt())
		if err != nil {
			return err
		}
		cfg := asbm.DefaultDistill()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+3, c.Batch
		cfg.Samples, cfg.ODESteps, cfg.Epochs = c.Distill.Samples, c.Distill.ODESteps, c.Distill.Epochs
		d, err := asbm.NewDistill(cfg, s.EMA(), u.EMA(), g)
		if err != nil {
			return err
		}
		l, total = d, cfg.Epochs
		finish = func() error {
			tr.st.final["g"] = g.State()
			tr.st.log = append(tr.st.log, fmt.Sprintf("distill: %d epochs × %d pairs, %d-step Heun teacher", cfg.Epochs, cfg.Samples, cfg.ODESteps))
			return nil
		}
	default:
		return fmt.Errorf("unknown phase %q", tr.st.phase)
	}
	if tr.st.loop.Tensors != nil {
		if err := l.Restore(tr.st.loop); err != nil {
			return fmt.Errorf("resume %s: %w", tr.st.phase, err)
		}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(tr.st.phase),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(500*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		// A bar in a log file is noise: draw it only on a terminal; the epoch lines below always print.
		progressbar.OptionSetVisibility(term.IsTerminal(int(os.Stderr.Fd()))))
	last := time.Now()
	start := time.Now()
	for !l.Finished() {
		stats, err := l.RunEpoch()
		if err != nil {
			if errors.Is(err, asbm.ErrNonFinite) {
				return fmt.Errorf("%w; the last good checkpoint is %s (resume with --resume)", err, tr.ckpt)
			}
			return err
		}
		bar.Set(stats.Epoch + 1)
		bar.Describe(fmt.Sprintf("%s %s loss %.4g", tr.st.phase, stats.Phase, stats.Loss))
		if stats.Terminal != nil || stats.Switched || stats.Epoch%10 == 0 || stats.Done {
			// One line per stage switch, terminal check and tenth epoch: the per-stage log.
			bar.Clear()
			fmt.Fprintf(tr.log, "%s epoch %d %s loss %.5g steps %d buffer %d%s\n", tr.st.phase, stats.Epoch, stats.Phase,
				stats.Loss, stats.Steps, stats.BufferLen, terminalNote(stats.Terminal))
		}
		if math.IsNaN(stats.Loss) {
			return fmt.Errorf("%s epoch %d: loss is NaN; the last good checkpoint is %s", tr.st.phase, stats.Epoch, tr.ckpt)
		}
		tr.epochs++
		stop := testStopAfter > 0 && tr.epochs%testStopAfter == 0 && !l.Finished()
		if (time.Since(last) > ckptEvery || stop) && !l.Finished() {
			if tr.st.loop, err = l.State(); err != nil {
				return err
			}
			if err := saveTrainState(tr.ckpt, tr.st); err != nil {
				return err
			}
			last = time.Now()
		}
		if stop {
			return errTestStop
		}
	}
	bar.Finish()
	if err := finish(); err != nil {
		return err
	}
	fmt.Fprintf(tr.log, "%s finished in %s: %s\n", tr.st.phase, time.Since(start).Round(time.Second), tr.st.log[len(tr.st.log)-1])
	tr.st.phase = phases[phaseIndex(tr.st.phase)+1]
	tr.st.loop = asbm.Checkpoint{}
	return saveTrainState(tr.ckpt, tr.st)
}

func terminalNote(t *asbm.TerminalStats) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("; terminal check: λmax %.3f vs prior %.3f, radial errors %.1f%% / %.1f%%, pass %v",
		t.LambdaMax, t.LambdaPrior, 100*t.MeanErr, 100*t.VarErr, t.Pass)
}
