package main

import (
	"encoding/json"
	"errors"
	"flag"
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
	"asbm/backend/gpu"
	"asbm/shaders"
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

type s2Flags struct{ Epochs, Couplings, Passes, ForwardNFE int }

type distillFlags struct {
	Epochs, Samples, ODESteps, Passes int
	EMA                               float64
}

// The training phases in order. Each finished phase leaves its network under "final/<net>/" in the
// checkpoint; the running phase's loop state lives under "loop/".
var phases = []string{"stage1", "stage2", "baseline", "distill", "done"}

// checkpointName is the checkpoint's file name inside --run.
const checkpointName = "checkpoint.msgpack"

// defaultTrainConfig is the toys' configuration (asbm.md §6.1; the paper's numbers where they apply).
func defaultTrainConfig() trainConfig {
	return trainConfig{
		Seed: 917, Arch: weights.Arch{Kind: "mlp", Dim: 2, Hidden: 128, Layers: 3, Fourier: 8},
		LR: 1e-3, EMA: 0.999, Batch: 512, Beta0: 0.1, Beta1: 4, BaseB1: 20, SigmaV: 1,
		S1: s1Flags{MaxEpochs: 200, AMEpochs: 15, CMEpochs: 5, EvalStart: 60, EvalSamples: 8192,
			Resample: 4096, Buffer: 20000, ForwardNFE: 50, CMNFE: 100},
		S2:      s2Flags{Epochs: 200, Couplings: 8192, Passes: 4, ForwardNFE: 20},
		Distill: distillFlags{Epochs: 40, Samples: 4096, ODESteps: 32, Passes: 4, EMA: 0.99},
	}
}

// bindTrainFlags defines the configuration flags on fs with c's current values as defaults, so
// binding a resumed run's stored configuration changes only what the command line names.
func bindTrainFlags(fs *flag.FlagSet, c *trainConfig) {
	fs.StringVar(&c.Data, "data", c.Data, "data set: toy:8gaussians, toy:moons or toy:checkerboard")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of initialisation, data and noise (asbm.md §3.3)")
	fs.IntVar(&c.Arch.Hidden, "hidden", c.Arch.Hidden, "MLP width")
	fs.IntVar(&c.Arch.Layers, "layers", c.Arch.Layers, "MLP hidden layers")
	fs.IntVar(&c.Arch.Fourier, "fourier", c.Arch.Fourier, "Fourier time frequencies")
	fs.Float64Var(&c.LR, "lr", c.LR, "AdamW learning rate (asbm.md §6.1: 1e-3–1e-4 for the toys)")
	fs.Float64Var(&c.EMA, "ema", c.EMA, "EMA decay")
	fs.IntVar(&c.Batch, "batch", c.Batch, "regression batch (asbm.md §6.1: 512 for the toys)")
	fs.Float64Var(&c.Beta0, "beta0", c.Beta0, "VP β at t = 0")
	fs.Float64Var(&c.Beta1, "beta1", c.Beta1, "VP β at t = 1 for ASBM (the paper's non-memoryless base)")
	fs.Float64Var(&c.BaseB1, "baseline-beta1", c.BaseB1, "VP β at t = 1 for the memoryless baseline")
	fs.Float64Var(&c.SigmaV, "sigma-v", c.SigmaV, "VP σ_v")
	fs.IntVar(&c.S1.MaxEpochs, "stage1-epochs", c.S1.MaxEpochs, "maximum stage-1 epochs (paper 1000)")
	fs.IntVar(&c.S1.AMEpochs, "am-epochs", c.S1.AMEpochs, "adjoint-matching epochs per stage-1 cycle")
	fs.IntVar(&c.S1.CMEpochs, "cm-epochs", c.S1.CMEpochs, "corrector-matching epochs per stage-1 cycle")
	fs.IntVar(&c.S1.EvalStart, "eval-start", c.S1.EvalStart, "first epoch of the stage-1 terminal check (paper 300)")
	fs.IntVar(&c.S1.EvalSamples, "eval-samples", c.S1.EvalSamples, "points simulated by the terminal check")
	fs.IntVar(&c.S1.Resample, "resample", c.S1.Resample, "stage-1 samples simulated per epoch")
	fs.IntVar(&c.S1.Buffer, "buffer", c.S1.Buffer, "stage-1 replay buffer size")
	fs.IntVar(&c.S1.ForwardNFE, "forward-nfe", c.S1.ForwardNFE, "time points of the AM and terminal-check simulations (asbm.md §6.1: 50–100 for the toys)")
	fs.IntVar(&c.S1.CMNFE, "cm-nfe", c.S1.CMNFE, "time points of the CM simulations")
	fs.IntVar(&c.S2.Epochs, "stage2-epochs", c.S2.Epochs, "stage-2 epochs (the baseline gets the same steps)")
	fs.IntVar(&c.S2.Couplings, "couplings", c.S2.Couplings, "fresh couplings simulated per stage-2 epoch")
	fs.IntVar(&c.S2.Passes, "stage2-passes", c.S2.Passes, "passes over each epoch's couplings (the paper: 1)")
	fs.IntVar(&c.S2.ForwardNFE, "stage2-nfe", c.S2.ForwardNFE, "time points of the stage-2 coupling simulation (asbm.md §5.1: 20)")
	fs.IntVar(&c.Distill.Epochs, "distill-epochs", c.Distill.Epochs, "distillation epochs")
	fs.IntVar(&c.Distill.Samples, "distill-samples", c.Distill.Samples, "fresh (z, ODE teacher) pairs per distillation epoch")
	fs.IntVar(&c.Distill.ODESteps, "distill-ode-steps", c.Distill.ODESteps, "Heun steps of the teacher PF-ODE")
	fs.IntVar(&c.Distill.Passes, "distill-passes", c.Distill.Passes, "passes over each epoch's teacher pairs")
	fs.Float64Var(&c.Distill.EMA, "distill-ema", c.Distill.EMA, "EMA decay of the generator (it takes few steps)")
}

// trainFlagSet returns the train verb's flags bound to c and to the run options.
func trainFlagSet(c *trainConfig, o *runOptions) *flag.FlagSet {
	fs := newFlags("train")
	bindTrainFlags(fs, c)
	fs.StringVar(&o.out, "out", "", "model file to write at the end (default weights/<data set>.msgpack)")
	fs.StringVar(&o.run, "run", "", "folder for the checkpoint and log (default runs/<data set>)")
	fs.BoolVar(&o.resume, "resume", false, "continue the run in --run from its checkpoint; flags given with it override the stored ones")
	fs.StringVar(&o.fromPhase, "from-phase", "", "with --resume: restart at this phase (stage2, baseline or distill), keeping the earlier phases' networks")
	fs.StringVar(&o.device, "device", "cpu", "training engine: cpu (gorgonia), gpu or auto")
	fs.BoolVar(&o.f16, "f16", false, "store the exported weights as f16")
	return fs
}

// runOptions are the train flags that are not part of the stored configuration.
type runOptions struct {
	out, run, fromPhase, device string
	resume, f16                 bool
}

func runTrain(args []string, stdout io.Writer) error {
	c := defaultTrainConfig()
	var o runOptions
	if err := parseFlags(trainFlagSet(&c, &o), args); err != nil {
		return err
	}
	if o.device != "cpu" && o.device != "gpu" && o.device != "auto" {
		return usagef("--device must be cpu, gpu or auto, got %q", o.device)
	}
	if o.fromPhase != "" && (!o.resume || phaseIndex(o.fromPhase) < 1 || o.fromPhase == "done") {
		return usagef("--from-phase needs --resume and one of stage2, baseline, distill; got %q", o.fromPhase)
	}
	name := ""
	if !o.resume || c.Data != "" {
		var err error
		if name, err = dataName(c.Data); err != nil {
			return err
		}
	}
	if o.run == "" {
		if name == "" {
			return usagef("--resume needs --run (or --data to name the default run folder)")
		}
		o.run = filepath.Join("runs", name)
	}
	ckptPath := filepath.Join(o.run, checkpointName)
	var st *trainState
	if o.resume {
		var err error
		if st, err = loadTrainState(ckptPath); err != nil {
			return err
		}
		if c.Data != "" && c.Data != st.cfg.Data {
			return usagef("%s is a run on %s, not %s: drop --data or pick another --run", ckptPath, st.cfg.Data, c.Data)
		}
		// Flags named on the command line override the stored configuration.
		if err := parseFlags(trainFlagSet(&st.cfg, &runOptions{}), args); err != nil {
			return err
		}
		if err := st.cfg.validate(); err != nil {
			return err
		}
		if o.fromPhase != "" {
			if err := st.rewind(o.fromPhase); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "resuming %s at phase %s\n", ckptPath, st.phase)
	} else {
		if err := c.validate(); err != nil {
			return err
		}
		if _, err := os.Stat(ckptPath); err == nil {
			return usagef("%s exists: pass --resume to continue it, or a new --run folder", ckptPath)
		}
		if err := os.MkdirAll(o.run, 0o755); err != nil {
			return err
		}
		st = &trainState{cfg: c, phase: phases[0], final: map[string]map[string][]float32{}}
	}
	if o.out == "" {
		n, err := dataName(st.cfg.Data)
		if err != nil {
			return err
		}
		o.out = filepath.Join("weights", n+".msgpack")
	}
	logf, err := os.OpenFile(filepath.Join(o.run, "train.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	tr := &trainer{st: st, ckpt: ckptPath, log: io.MultiWriter(os.Stderr, logf)}
	engine, err := tr.chooseEngine(o.device)
	if err != nil {
		return err
	}
	fmt.Fprintf(tr.log, "engine: %s; data %s; arch %+v; run %s\n", engine, st.cfg.Data, st.cfg.Arch, o.run)
	if err := tr.run(); err != nil {
		return err
	}
	if err := writeModel(st, o.f16, o.out); err != nil {
		return err
	}
	fmt.Fprintf(tr.log, "wrote %s\n", o.out)
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
		"--distill-samples": c.Distill.Samples, "--distill-ode-steps": c.Distill.ODESteps,
		"--stage2-passes": c.S2.Passes, "--distill-passes": c.Distill.Passes}
	for k, v := range pos {
		if v < 1 {
			return usagef("%s must be ≥ 1, got %d", k, v)
		}
	}
	if c.Arch.Fourier < 0 {
		return usagef("--fourier must be ≥ 0")
	}
	if c.S1.ForwardNFE < 2 || c.S1.CMNFE < 2 || c.S2.ForwardNFE < 2 {
		return usagef("--forward-nfe, --cm-nfe and --stage2-nfe count time points and must be ≥ 2")
	}
	if !(c.LR > 0 && c.LR < 1) || !(c.EMA >= 0 && c.EMA < 1) || !(c.Distill.EMA >= 0 && c.Distill.EMA < 1) {
		return usagef("--lr must be in (0, 1), --ema and --distill-ema in [0, 1)")
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

// rewind restarts the run at phase, dropping the networks of that phase and the later ones.
func (st *trainState) rewind(phase string) error {
	i := phaseIndex(phase)
	if i > phaseIndex(st.phase) {
		return usagef("--from-phase %s: the run has not reached it yet (it is at %s): resume without --from-phase", phase, st.phase)
	}
	for _, p := range phases[i:] {
		delete(st.final, map[string]string{"stage1": "u", "stage2": "s", "baseline": "b", "distill": "g"}[p])
	}
	var kept []string
	for _, l := range st.log {
		if name, _, _ := strings.Cut(l, ":"); phaseIndex(name) < i {
			kept = append(kept, l)
		}
	}
	st.phase, st.log, st.loop = phase, kept, asbm.Checkpoint{}
	return nil
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
	// Settings added after a checkpoint was written take the values those runs used.
	if st.cfg.S2.ForwardNFE == 0 {
		st.cfg.S2.ForwardNFE = st.cfg.S1.ForwardNFE
	}
	if st.cfg.Distill.EMA == 0 {
		st.cfg.Distill.EMA = st.cfg.EMA
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
	gpu    bool // train on the WGSL engine (backend/gpu) instead of gorgonia
	epochs int  // epochs run by this process
}

// engineModel is what the trainer needs of an engine's network: a trainable asbm.Model whose EMA
// parameters can be exported. backend/cpu and backend/gpu share state keys, so a checkpoint written
// by one resumes on the other.
type engineModel interface {
	asbm.Model
	EMAParams() *shaders.Net
}

// chooseEngine picks the training engine for --device and describes it. auto takes a hardware
// WebGPU adapter when there is one; a software adapter (lavapipe, SwiftShader) is slower than the
// gorgonia engine on the same cores (design.md), so auto skips it while gpu honours it.
func (tr *trainer) chooseEngine(device string) (string, error) {
	if device == "cpu" {
		return "cpu (gorgonia)", nil
	}
	dev, err := gpu.Device()
	switch {
	case err != nil && device == "gpu":
		return "", fmt.Errorf("--device gpu: %w", err)
	case err != nil:
		fmt.Fprintf(tr.log, "no WebGPU adapter (%v): training on the CPU\n", err)
		return "cpu (gorgonia)", nil
	case device == "auto" && dev.IsSoftware():
		fmt.Fprintf(tr.log, "WebGPU adapter %s is a software rasteriser, slower than the CPU engine: training on the CPU (--device gpu forces it)\n", dev.AdapterInfo())
		return "cpu (gorgonia)", nil
	}
	tr.gpu = true
	return "gpu (WGSL on " + dev.AdapterInfo() + ")", nil
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

// newModel returns a fresh network on the chosen engine, seeded per role.
func (tr *trainer) newModel(role uint64) (engineModel, error) {
	if tr.gpu {
		return gpu.New(tr.st.cfg.Arch, tr.st.cfg.opt(), tr.st.cfg.Seed*16+role)
	}
	return cpu.New(tr.st.cfg.Arch, tr.st.cfg.opt(), tr.st.cfg.Seed*16+role)
}

// warmModel returns a network on the chosen engine starting from m's parameters.
func (tr *trainer) warmModel(m *shaders.Net, cfg cpu.Config) (engineModel, error) {
	if tr.gpu {
		return gpu.FromNet(m, cfg)
	}
	return cpu.FromNet(m, cfg)
}

// finalModel rebuilds a finished phase's network.
func (tr *trainer) finalModel(net string) (engineModel, error) {
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
		cfg.Couplings, cfg.ForwardNFE, cfg.Epochs, cfg.Passes = c.S2.Couplings, c.S2.ForwardNFE, c.S2.Epochs, c.S2.Passes
		s2, err := asbm.NewStage2(cfg, u.EMA(), s, dataFn)
		if err != nil {
			return err
		}
		l, total = s2, cfg.Epochs
		finish = func() error {
			tr.st.final["s"] = s.State()
			tr.st.log = append(tr.st.log, fmt.Sprintf("stage2: %d epochs × %d couplings × %d passes, forward NFE %d", cfg.Epochs, cfg.Couplings, cfg.Passes, cfg.ForwardNFE))
			return nil
		}
	case "baseline":
		b, err := tr.newModel(4)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultBaseline()
		cfg.VP, cfg.Seed, cfg.Batch = c.baseVP(), c.Seed+2, c.Batch
		// The same network, batch, number of steps and of examples seen as stage 2 (asbm.md §6.1); the
		// baseline's examples are fresh data, which cost nothing to draw.
		cfg.Examples, cfg.Epochs = c.S2.Couplings*max(c.S2.Passes, 1), c.S2.Epochs
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
		gcfg := c.opt()
		gcfg.EMADecay = c.Distill.EMA
		g, err := tr.warmModel(s.EMAParams(), gcfg)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultDistill()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+3, c.Batch
		cfg.Samples, cfg.ODESteps, cfg.Epochs, cfg.Passes = c.Distill.Samples, c.Distill.ODESteps, c.Distill.Epochs, c.Distill.Passes
		d, err := asbm.NewDistill(cfg, s.EMA(), u.EMA(), g)
		if err != nil {
			return err
		}
		l, total = d, cfg.Epochs
		finish = func() error {
			tr.st.final["g"] = g.State()
			tr.st.log = append(tr.st.log, fmt.Sprintf("distill: %d epochs × %d pairs × %d passes, %d-step Heun teacher, EMA %g", cfg.Epochs, cfg.Samples, cfg.Passes, cfg.ODESteps, c.Distill.EMA))
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
