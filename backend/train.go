package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// Default U-Net sizes for image data (issue 3): 16 base channels at full resolution, 32 at ½ and ¼,
// one residual block per level — 146k parameters and 47 MFLOP per 28×28 forward, so one training
// step of 64 images is ≈ 9 GFLOP (a few seconds on two CPU cores, milliseconds on a GPU), while
// the three-level, skip-connected shape of the paper's U-Net is kept (asbm.md §2.1 scaled down).
const (
	imageBase, imageResBlocks, imageGroups, imageTimeEmb, imageFourier = 16, 1, 8, 64, 16
)

var imageMults = []int{1, 2, 2}

// defaultImageConfig is the configuration for an image data set of c channels and size×size pixels.
// The math (β 0.1→4, baseline 0.1→20, AM/CM 15/5 epochs, EMA 0.999, forward NFE 20) is the paper's
// (asbm.md §2); sizes and epoch counts are scaled to a workstation and meant to be raised by flags.
func defaultImageConfig(spec string, c, size int) trainConfig {
	cfg := defaultTrainConfig()
	cfg.Data = spec
	cfg.Arch = weights.Arch{Kind: "unet", Dim: c * size * size, Channels: c, Height: size, Width: size,
		Base: imageBase, Mults: append([]int(nil), imageMults...), ResBlocks: imageResBlocks,
		Groups: imageGroups, TimeEmb: imageTimeEmb, Fourier: imageFourier}
	cfg.LR, cfg.Batch = 2e-4, 64
	cfg.S1 = s1Flags{MaxEpochs: 100, AMEpochs: 15, CMEpochs: 5, EvalStart: 40, EvalSamples: 1024,
		Resample: 1024, Buffer: 20000, ForwardNFE: 20, CMNFE: 20}
	cfg.S2 = s2Flags{Epochs: 40, Couplings: 2048, Passes: 2, ForwardNFE: 20}
	cfg.Distill = distillFlags{Epochs: 20, Samples: 1024, ODESteps: 16, Passes: 2, EMA: 0.99}
	return cfg
}

// multsFlag is --mults: comma-separated channel multipliers, one per U-Net level.
type multsFlag struct{ v *[]int }

func (m multsFlag) String() string {
	if m.v == nil {
		return ""
	}
	s := make([]string, len(*m.v))
	for i, x := range *m.v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func (m multsFlag) Set(s string) error {
	var out []int
	for _, f := range strings.Split(s, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || x < 1 {
			return fmt.Errorf("--mults wants comma-separated integers ≥ 1 such as 1,2,2; got %q", s)
		}
		out = append(out, x)
	}
	*m.v = out
	return nil
}

// bindTrainFlags defines the configuration flags on fs with c's current values as defaults, so
// binding a resumed run's stored configuration changes only what the command line names.
func bindTrainFlags(fs *flag.FlagSet, c *trainConfig) {
	fs.StringVar(&c.Data, "data", c.Data, "data set: toy:8gaussians, toy:moons, toy:checkerboard, mnist, fashion, emoji, emoji:faces or dir:PATH (a folder of PNG/JPEG images)")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of initialisation, data and noise (asbm.md §3.3)")
	fs.IntVar(&c.Arch.Hidden, "hidden", c.Arch.Hidden, "MLP width (toys)")
	fs.IntVar(&c.Arch.Layers, "layers", c.Arch.Layers, "MLP hidden layers (toys)")
	fs.IntVar(&c.Arch.Fourier, "fourier", c.Arch.Fourier, "Fourier time frequencies")
	fs.IntVar(&c.Arch.Base, "base", c.Arch.Base, "U-Net channels at full resolution (images)")
	fs.Var(multsFlag{&c.Arch.Mults}, "mults", "U-Net channel multipliers per level, e.g. 1,2,2 (images)")
	fs.IntVar(&c.Arch.ResBlocks, "res-blocks", c.Arch.ResBlocks, "U-Net residual blocks per level (images)")
	fs.IntVar(&c.Arch.Groups, "groups", c.Arch.Groups, "U-Net group-norm groups (images)")
	fs.IntVar(&c.Arch.TimeEmb, "time-emb", c.Arch.TimeEmb, "U-Net time-embedding width (images)")
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
	fs.BoolVar(&o.keepWeights, "keep-weights", false, "with --from-phase: start that phase and the later ones from their finished networks "+
		"(weights, EMA, optimizer moments) instead of fresh ones, on a new noise stream: trains them for more epochs")
	fs.StringVar(&o.device, "device", "cpu", "training engine: cpu (gorgonia), gpu or auto")
	fs.BoolVar(&o.f16, "f16", false, "store the exported weights as f16")
	fs.IntVar(&o.size, "size", 0, "image side length in pixels (default 28 for mnist and fashion, 32 otherwise)")
	fs.StringVar(&o.stopAfter, "stop-after", "", "stop after this phase (stage1, stage2, baseline), checkpoint kept; --resume continues")
	return fs
}

// runOptions are the train flags that are not part of the stored configuration.
type runOptions struct {
	out, run, fromPhase, device, stopAfter string
	resume, f16, keepWeights               bool
	size                                   int
}

// defaultsFor returns the default configuration for the --data named in args: the toys' for toy
// data, defaultImageConfig for image data (its shape from the data set and --size).
func defaultsFor(args []string) (trainConfig, error) {
	scratch := defaultTrainConfig()
	var o runOptions
	fs := trainFlagSet(&scratch, &o)
	_ = fs.Parse(args) // errors are reported by the real parse
	if !isImageSpec(scratch.Data) {
		return defaultTrainConfig(), nil
	}
	c, size, err := imageShape(scratch.Data, o.size)
	if err != nil {
		return trainConfig{}, err
	}
	return defaultImageConfig(scratch.Data, c, size), nil
}

// isImageSpec reports whether a --data value names an image set rather than a toy.
func isImageSpec(spec string) bool { return spec != "" && !strings.HasPrefix(spec, "toy:") }

// imageShape returns the channels and side length an image --data spec trains at: the digit sets
// are gray 28×28, the others colour 32×32, unless --size says otherwise.
func imageShape(spec string, size int) (channels, side int, err error) {
	name, _, _ := strings.Cut(spec, ":")
	channels, side = 3, 32
	if name == "mnist" || name == "fashion" {
		channels, side = 1, 28
	}
	if size != 0 {
		side = size
	}
	if side < 4 || side > imgdata.MaxSize {
		return 0, 0, usagef("--size must be between 4 and %d, got %d", imgdata.MaxSize, side)
	}
	return channels, side, nil
}

func runTrain(args []string, stdout io.Writer) error {
	c, err := defaultsFor(args)
	if err != nil {
		return err
	}
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
	if o.keepWeights && o.fromPhase == "" {
		return usagef("--keep-weights needs --from-phase (the phase to train further)")
	}
	if o.stopAfter != "" && (phaseIndex(o.stopAfter) < 0 || o.stopAfter == "done" || o.stopAfter == "distill") {
		return usagef("--stop-after must be one of stage1, stage2, baseline; got %q", o.stopAfter)
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
			if err := st.rewind(o.fromPhase, o.keepWeights); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "resuming %s at phase %s\n", ckptPath, st.phase)
	} else {
		if err := c.validate(); err != nil {
			return err
		}
		// Only new runs: a run that started with such a network may still be resumed.
		if err := checkGroupWidth(c.Arch); err != nil {
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
	tr := &trainer{st: st, ckpt: ckptPath, log: io.MultiWriter(os.Stderr, logf), stopAfter: o.stopAfter}
	engine, err := tr.chooseEngine(o.device)
	if err != nil {
		return err
	}
	fmt.Fprintf(tr.log, "engine: %s; data %s; arch %+v; run %s\n", engine, st.cfg.Data, st.cfg.Arch, o.run)
	if err := tr.run(); errors.Is(err, errStopped) {
		fmt.Fprintf(tr.log, "stopped after %s as --stop-after asked; continue with: backend train --resume --run %s\n", o.stopAfter, o.run)
		return nil
	} else if err != nil {
		return err
	}
	if err := writeModel(st, o.f16, o.out); err != nil {
		return err
	}
	fmt.Fprintf(tr.log, "wrote %s\n", o.out)
	return nil
}

// dataName checks a --data value and returns the data set's short name (the default run folder
// and weights file name).
func dataName(spec string) (string, error) {
	if spec == "" {
		return "", usagef("--data is required: one of %s", strings.Join(dataSpecs(), ", "))
	}
	if path, ok := strings.CutPrefix(spec, "dir:"); ok {
		if path == "" {
			return "", usagef("--data dir: needs a folder, e.g. dir:./photos")
		}
		return filepath.Base(filepath.Clean(path)), nil
	}
	if name, ok := strings.CutPrefix(spec, "toy:"); ok {
		if _, err := data.Toy(name); err == nil {
			return name, nil
		}
	}
	if spec == "emoji:faces" {
		return "emoji-faces", nil
	}
	if name, split, _ := strings.Cut(spec, ":"); name == "mnist" || name == "fashion" || (name == "emoji" && split == "") {
		if split != "" && split != "train" {
			return "", usagef("--data %s: train on the train split (%s or %s:train); the test split is for eval", spec, name, name)
		}
		return name, nil
	}
	return "", usagef("unknown data set %q: want one of %s", spec, strings.Join(dataSpecs(), ", "))
}

func dataSpecs() []string {
	var s []string
	for _, n := range data.Names() {
		s = append(s, "toy:"+n)
	}
	return append(s, "mnist", "fashion", "emoji", "emoji:faces", "dir:PATH")
}

func (c trainConfig) validate() error {
	pos := map[string]int{"--batch": c.Batch,
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
	if c.Arch.Kind == "mlp" && (c.Arch.Hidden < 1 || c.Arch.Layers < 1) {
		return usagef("--hidden and --layers must be ≥ 1, got %d and %d", c.Arch.Hidden, c.Arch.Layers)
	}
	if err := model.CheckArch(c.Arch); err != nil {
		return usagef("%v", err)
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

// checkGroupWidth rejects a U-Net with fewer than two channels per group-norm group at some level.
// One channel per group makes every group norm an instance norm, which erases each image's
// per-channel mean: the score network then never learns that part of the score, and the memoryless
// baseline's backward SDE (β up to 20) blows the channel means up, which is how its emoji samples
// became flat saturated squares (TestBaselineColourNeedsChannelsPerGroup).
func checkGroupWidth(a weights.Arch) error {
	if a.Kind != "unet" {
		return nil
	}
	for l, m := range a.Mults {
		if c := a.Base * m; c/a.Groups < 2 {
			return usagef("--base %d --mults %v --groups %d leaves %d channel(s) per group-norm group at level %d: "+
				"a group norm of one channel erases each image's channel means, which the score then cannot learn "+
				"(the memoryless baseline diverges on colour images); use --groups %d or fewer",
				a.Base, a.Mults, a.Groups, c/a.Groups, l, max(1, a.Base*slices.Min(a.Mults)/2))
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
	// warm names the networks of final that their phase, when it starts, continues from rather
	// than initialising afresh (--keep-weights); an entry is dropped when its phase finishes.
	warm map[string]bool
}

// phaseNet is the key in trainState.final of the network each phase trains.
var phaseNet = map[string]string{"stage1": "u", "stage2": "s", "baseline": "b", "distill": "g"}

// rewind restarts the run at phase, dropping the networks of that phase and the later ones, or with
// keep marking them as warm starts of their phases (their log lines stay: the history is kept).
func (st *trainState) rewind(phase string, keep bool) error {
	i := phaseIndex(phase)
	if i > phaseIndex(st.phase) {
		return usagef("--from-phase %s: the run has not reached it yet (it is at %s): resume without --from-phase", phase, st.phase)
	}
	if keep {
		st.warm = map[string]bool{}
		for _, p := range phases[i:] {
			if k := phaseNet[p]; st.final[k] != nil {
				st.warm[k] = true
			}
		}
		st.phase, st.loop = phase, asbm.Checkpoint{}
		return nil
	}
	for _, p := range phases[i:] {
		delete(st.final, phaseNet[p])
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
	if s, ok := f.MetaString("warm"); ok && s != "" {
		st.warm = map[string]bool{}
		for _, k := range strings.Split(s, ",") {
			st.warm[k] = true
		}
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
	f.Meta["warm"] = strings.Join(sortedKeys(st.warm), ",")
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
	st        *trainState
	ckpt      string
	log       io.Writer
	gpu       bool         // train on the WGSL engine (backend/gpu) instead of gorgonia
	images    *imgdata.Set // the loaded image set, for image data
	stopAfter string       // --stop-after
	epochs    int          // epochs run by this process
}

// engineModel is what the trainer needs of an engine's network: a trainable asbm.Model whose EMA
// parameters can be exported. backend/cpu and backend/gpu share state keys, so a checkpoint written
// by one resumes on the other.
type engineModel interface {
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

// ckptEvery bounds how often a checkpoint is written inside a phase; phase ends always write one.
var ckptEvery = 15 * time.Second

// testStopAfter, when positive, makes a run stop with errTestStop after that many epochs, having
// written its checkpoint as a kill right after a checkpoint would leave it (the resume test).
var testStopAfter int

var errTestStop = errors.New("stopped for the resume test")

// errStopped ends a run that --stop-after stopped; its checkpoint is complete.
var errStopped = errors.New("stopped by --stop-after")

func (tr *trainer) run() error {
	for tr.st.phase != "done" {
		done := tr.st.phase
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
	c := tr.st.cfg
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
func (tr *trainer) newModel(role uint64) (engineModel, error) {
	if tr.gpu {
		return gpu.New(tr.st.cfg.Arch, tr.st.cfg.opt(), tr.st.cfg.Seed*16+role)
	}
	return cpu.New(tr.st.cfg.Arch, tr.st.cfg.opt(), tr.st.cfg.Seed*16+role)
}

// warmModel returns a network on the chosen engine starting from m's parameters.
func (tr *trainer) warmModel(m *model.Net, cfg cpu.Config) (engineModel, error) {
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

// warmStart continues m from the finished network key when --keep-weights marked it (else leaves
// m fresh), and returns the seed offset of the phase's loop: a continued phase draws a new noise
// stream (one per earlier run of the phase) rather than replaying the one it has already seen.
func (tr *trainer) warmStart(key string, m engineModel) (uint64, error) {
	if !tr.st.warm[key] || tr.st.final[key] == nil {
		return 0, nil
	}
	if err := m.SetState(tr.st.final[key]); err != nil {
		return 0, fmt.Errorf("--keep-weights: network %q: %w", key, err)
	}
	runs := 0
	for _, l := range tr.st.log {
		if name, _, _ := strings.Cut(l, ":"); name == tr.st.phase {
			runs++
		}
	}
	return uint64(runs) * 0x9E3779B9, nil
}

// finishWarm ends the warm start of key and marks the phase's log line as a continuation.
func (tr *trainer) finishWarm(key, line string) {
	if tr.st.warm[key] {
		delete(tr.st.warm, key)
		line += " (continued from the previous networks, --keep-weights)"
	}
	tr.st.log = append(tr.st.log, line)
}

func (tr *trainer) runPhase() error {
	c := tr.st.cfg
	dataFn, err := tr.dataFunc()
	if err != nil {
		return err
	}
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
		off, err := tr.warmStart("s", s)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultStage2()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+1+off, c.Batch
		cfg.Couplings, cfg.ForwardNFE, cfg.Epochs, cfg.Passes = c.S2.Couplings, c.S2.ForwardNFE, c.S2.Epochs, c.S2.Passes
		s2, err := asbm.NewStage2(cfg, u.EMA(), s, dataFn)
		if err != nil {
			return err
		}
		l, total = s2, cfg.Epochs
		finish = func() error {
			tr.st.final["s"] = s.State()
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
		bl, err := asbm.NewBaseline(cfg, b, dataFn)
		if err != nil {
			return err
		}
		l, total = bl, cfg.Epochs
		finish = func() error {
			tr.st.final["b"] = b.State()
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
		gcfg.EMADecay = c.Distill.EMA
		g, err := tr.warmModel(s.EMAParams(), gcfg)
		if err != nil {
			return err
		}
		off, err := tr.warmStart("g", g)
		if err != nil {
			return err
		}
		cfg := asbm.DefaultDistill()
		cfg.VP, cfg.Seed, cfg.Batch = c.vp(), c.Seed+3+off, c.Batch
		cfg.Samples, cfg.ODESteps, cfg.Epochs, cfg.Passes = c.Distill.Samples, c.Distill.ODESteps, c.Distill.Epochs, c.Distill.Passes
		d, err := asbm.NewDistill(cfg, s.EMA(), u.EMA(), g)
		if err != nil {
			return err
		}
		l, total = d, cfg.Epochs
		finish = func() error {
			tr.st.final["g"] = g.State()
			tr.finishWarm("g", fmt.Sprintf("distill: %d epochs × %d pairs × %d passes, %d-step Heun teacher, EMA %g", cfg.Epochs, cfg.Samples, cfg.Passes, cfg.ODESteps, c.Distill.EMA))
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
		epochStart := time.Now()
		stats, err := l.RunEpoch()
		if err != nil {
			if errors.Is(err, asbm.ErrNonFinite) {
				return fmt.Errorf("%w; the last good checkpoint is %s (resume with --resume)", err, tr.ckpt)
			}
			return err
		}
		bar.Set(stats.Epoch + 1)
		bar.Describe(fmt.Sprintf("%s %s loss %.4g", tr.st.phase, stats.Phase, stats.Loss))
		if stats.Terminal != nil || stats.Switched || stats.Epoch%10 == 0 || stats.Done || time.Since(epochStart) > 5*time.Second {
			// One line per stage switch, terminal check, tenth epoch and slow epoch (image runs): the
			// per-stage log.
			bar.Clear()
			fmt.Fprintf(tr.log, "%s epoch %d %s loss %.5g steps %d buffer %d time %s%s\n", tr.st.phase, stats.Epoch, stats.Phase,
				stats.Loss, stats.Steps, stats.BufferLen, time.Since(epochStart).Round(100*time.Millisecond), terminalNote(stats.Terminal))
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
