// Package train is `backend train` and `backend export`: the run's configuration and flags
// (config.go), the resumable checkpoint (state.go), the trainer that runs the phases on an engine
// (trainer.go: stage 1, stage 2, the baseline, distillation; the math is backend/asbm's), and the
// model file it exports (export.go).
package train

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"asbm/backend/cli"
	"asbm/backend/imgdata"
	"asbm/weights"
)

// Config is everything `backend train` needs; it is stored in the checkpoint so --resume
// continues the same run.
type Config struct {
	Data   string       `json:"data"`
	Seed   uint64       `json:"seed"`
	Arch   weights.Arch `json:"arch"`
	LR     float64      `json:"lr"`
	EMA    float64      `json:"ema"`
	Batch  int          `json:"batch"`
	Beta0  float64      `json:"beta0"`
	Beta1  float64      `json:"beta1"`
	BaseB1 float64      `json:"baseline_beta1"`
	SigmaV float64      `json:"sigma_v"`
	// ScoreScale is how the score-type networks (score, baseline, generator) are parametrised:
	// "sigma" (they output σ_t·s, asbm.SigmaScaled) or "raw" (they output s, the paper's). An
	// empty value (a checkpoint from before the flag) means raw.
	ScoreScale string       `json:"score_scale,omitempty"`
	S1         s1Flags      `json:"stage1"`
	S2         s2Flags      `json:"stage2"`
	Distill    distillFlags `json:"distill"`
}

type s1Flags struct {
	MaxEpochs, AMEpochs, CMEpochs, EvalStart, EvalSamples, Resample, Buffer, ForwardNFE, CMNFE int
}

type s2Flags struct{ Epochs, Couplings, Passes, ForwardNFE int }

type distillFlags struct {
	Epochs, Samples, ODESteps, Passes int
	EMA                               float64
	// Method is "regress" (PF-ODE pairs, asbm.md §4.3(a); empty in checkpoints from before the
	// flag) or "dmd" (distribution matching on the bridge, §4.2, asbm.DMD).
	Method    string  `json:",omitempty"`
	DMDLR     float64 `json:",omitempty"` // DMD learning rate of the generator and the fake score (0: --lr)
	FakeSteps int     `json:",omitempty"` // DMD fake-score steps per generator step (0: 5)
}

// The training Phases in order. Each finished phase leaves its network under "final/<net>/" in the
// checkpoint; the running phase's loop state lives under "loop/".
var Phases = []string{"stage1", "stage2", "baseline", "distill", "done"}

// CheckpointName is the checkpoint's file name inside --run.
const CheckpointName = "checkpoint.msgpack"

// DefaultConfig is the toys' configuration (asbm.md §6.1; the paper's numbers where they apply).
func DefaultConfig() Config {
	return Config{
		Seed: 917, Arch: weights.Arch{Kind: "mlp", Dim: 2, Hidden: 128, Layers: 3, Fourier: 8},
		LR: 1e-3, EMA: 0.999, Batch: 512, Beta0: 0.1, Beta1: 4, BaseB1: 20, SigmaV: 1, ScoreScale: "raw",
		S1: s1Flags{MaxEpochs: 200, AMEpochs: 15, CMEpochs: 5, EvalStart: 60, EvalSamples: 8192,
			Resample: 4096, Buffer: 20000, ForwardNFE: 50, CMNFE: 100},
		S2:      s2Flags{Epochs: 200, Couplings: 8192, Passes: 4, ForwardNFE: 20},
		Distill: distillFlags{Epochs: 40, Samples: 4096, ODESteps: 32, Passes: 4, EMA: 0.99, Method: "regress"},
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

// DefaultImageConfig is the configuration for an image data set of c channels and size×size pixels.
// The math (β 0.1→4, baseline 0.1→20, AM/CM 15/5 epochs, EMA 0.999, forward NFE 20) is the paper's
// (asbm.md §2); sizes and epoch counts are scaled to a workstation and meant to be raised by flags.
func DefaultImageConfig(spec string, c, size int) Config {
	cfg := DefaultConfig()
	cfg.Data = spec
	cfg.Arch = weights.Arch{Kind: "unet", Dim: c * size * size, Channels: c, Height: size, Width: size,
		Base: imageBase, Mults: append([]int(nil), imageMults...), ResBlocks: imageResBlocks,
		Groups: imageGroups, TimeEmb: imageTimeEmb, Fourier: imageFourier}
	cfg.LR, cfg.Batch = 2e-4, 64
	// Images: the score networks output σ_t·s (asbm.SigmaScaled). At small t the raw network must
	// output values of size 1/σ_t, which a small U-Net cannot, and the noise it leaves is the grain
	// of the raw emoji samples (README, "σ-scaled score networks").
	cfg.ScoreScale = "sigma"
	cfg.S1 = s1Flags{MaxEpochs: 100, AMEpochs: 15, CMEpochs: 5, EvalStart: 40, EvalSamples: 1024,
		Resample: 1024, Buffer: 20000, ForwardNFE: 20, CMNFE: 20}
	cfg.S2 = s2Flags{Epochs: 40, Couplings: 2048, Passes: 2, ForwardNFE: 20}
	cfg.Distill = distillFlags{Epochs: 20, Samples: 1024, ODESteps: 16, Passes: 2, EMA: 0.99, Method: "regress"}
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
func bindTrainFlags(fs *flag.FlagSet, c *Config) {
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
	fs.StringVar(&c.ScoreScale, "score-scale", c.ScoreScale, "score networks' output: sigma (σ_t·s, the regression target's scale: "+
		"better images from small networks) or raw (s itself, the paper's)")
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
	fs.StringVar(&c.Distill.Method, "distill-method", c.Distill.Method, "regress (on PF-ODE pairs) or dmd (distribution matching "+
		"against the score network, the official code's scheme: no PF-ODE, whose plateau the regression inherits; "+
		"--distill-samples is then the generator's examples per epoch)")
	fs.Float64Var(&c.Distill.DMDLR, "dmd-lr", c.Distill.DMDLR, "dmd: learning rate of the generator and the fake score (0: --lr)")
	fs.IntVar(&c.Distill.FakeSteps, "dmd-fake-steps", c.Distill.FakeSteps, "dmd: fake-score steps per generator step (0: 5, the code's)")
}

// trainFlagSet returns the train verb's flags bound to c and to the run options.
func trainFlagSet(c *Config, o *runOptions) *flag.FlagSet {
	fs := cli.NewFlags("train")
	bindTrainFlags(fs, c)
	fs.StringVar(&o.out, "out", "", "model file to write at the end (default weights/<data set>.msgpack)")
	fs.StringVar(&o.run, "run", "", "folder for the checkpoint and log (default runs/<data set>)")
	fs.BoolVar(&o.resume, "resume", false, "continue the run in --run from its checkpoint; flags given with it override the stored ones")
	fs.StringVar(&o.fromPhase, "from-phase", "", "with --resume: restart at this phase (stage2, baseline or distill), keeping the earlier phases' networks; "+
		"with --init-from: the phase the new run starts at (default stage2)")
	fs.BoolVar(&o.keepWeights, "keep-weights", false, "with --from-phase (or --init-from, --distill-from): start that phase and the later ones from their finished networks "+
		"(weights, EMA, optimizer moments; from a model file its weights as both weights and EMA, fresh moments) instead of fresh ones, "+
		"on a new noise stream: trains them for more epochs")
	fs.StringVar(&o.device, "device", "cpu", "training engine: cpu (gorgonia), gpu or auto")
	fs.BoolVar(&o.f16, "f16", false, "store the exported weights as f16")
	fs.IntVar(&o.size, "size", 0, "image side length in pixels (default 28 for mnist and fashion, 32 otherwise)")
	fs.StringVar(&o.stopAfter, "stop-after", "", "stop after this phase (stage1, stage2, baseline), checkpoint kept; --resume continues")
	fs.StringVar(&o.distillFrom, "distill-from", "", "start a new run at distillation with the networks of this model file (its command's "+
		"configuration, overridden by the flags given): a new one-step generator without retraining the rest; "+
		"with --keep-weights the file's generator is trained further (the same as --init-from FILE --from-phase distill)")
	fs.StringVar(&o.initFrom, "init-from", "", "start a new run at --from-phase (default stage2) with the networks of this model file "+
		"as the earlier phases' (its command's configuration, overridden by the flags given): that phase and the later ones are "+
		"trained again, or further from the file's networks with --keep-weights")
	return fs
}

// runOptions are the train flags that are not part of the stored configuration.
type runOptions struct {
	out, run, fromPhase, device, stopAfter, distillFrom, initFrom string
	resume, f16, keepWeights                                      bool
	size                                                          int
}

// defaultsFor returns the default configuration for the --data named in args: the toys' for toy
// data, DefaultImageConfig for image data (its shape from the data set and --size).
func defaultsFor(args []string) (Config, error) {
	scratch := DefaultConfig()
	var o runOptions
	fs := trainFlagSet(&scratch, &o)
	_ = fs.Parse(args) // errors are reported by the real parse
	if !isImageSpec(scratch.Data) {
		return DefaultConfig(), nil
	}
	c, size, err := imageShape(scratch.Data, o.size)
	if err != nil {
		return Config{}, err
	}
	return DefaultImageConfig(scratch.Data, c, size), nil
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
		return 0, 0, cli.Usagef("--size must be between 4 and %d, got %d", imgdata.MaxSize, side)
	}
	return channels, side, nil
}
