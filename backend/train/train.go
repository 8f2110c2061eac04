package train

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/cpu"
	"asbm/backend/data"
	"asbm/model"
	"asbm/weights"
)

// Command is `backend train`: it parses the flags (or the resumed run's stored configuration), runs
// the phases from the checkpoint onwards, and exports the model file at the end.
func Command(args []string, stdout io.Writer) error {
	src, err := loadInitSource(args)
	if err != nil {
		return err
	}
	if src != nil {
		// The file's configuration, then the command line's flags over it.
		args = append(append([]string(nil), src.args...), args...)
	}
	c, err := defaultsFor(args)
	if err != nil {
		return err
	}
	var o runOptions
	fs := trainFlagSet(&c, &o)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if o.device != "cpu" && o.device != "gpu" && o.device != "auto" {
		return cli.Usagef("--device must be cpu, gpu or auto, got %q", o.device)
	}
	if o.fromPhase != "" && ((!o.resume && o.initFrom == "") || !restartPhase(o.fromPhase)) {
		return cli.Usagef("--from-phase needs --resume or --init-from, and one of stage2, baseline, distill; got %q", o.fromPhase)
	}
	if o.keepWeights && o.fromPhase == "" && src == nil {
		return cli.Usagef("--keep-weights needs --from-phase, --init-from or --distill-from (the phase to train further)")
	}
	if src != nil && (o.resume || o.stopAfter != "") {
		return cli.Usagef("--%s starts a new run: it does not take --resume or --stop-after (resume it with --resume --run)", src.flag)
	}
	if o.stopAfter != "" && (PhaseIndex(o.stopAfter) < 0 || o.stopAfter == "done" || o.stopAfter == "distill") {
		return cli.Usagef("--stop-after must be one of stage1, stage2, baseline; got %q", o.stopAfter)
	}
	name := ""
	if !o.resume || c.Data != "" {
		var err error
		if name, err = DataName(c.Data); err != nil {
			return err
		}
	}
	if o.run == "" {
		if name == "" {
			return cli.Usagef("--resume needs --run (or --data to name the default run folder)")
		}
		o.run = filepath.Join("runs", name)
	}
	ckptPath := filepath.Join(o.run, CheckpointName)
	var st *State
	if o.resume {
		var err error
		if st, err = LoadState(ckptPath); err != nil {
			return err
		}
		if c.Data != "" && c.Data != st.Config.Data {
			return cli.Usagef("%s is a run on %s, not %s: drop --data or pick another --run", ckptPath, st.Config.Data, c.Data)
		}
		// Flags named on the command line override the stored configuration.
		wasScaled := st.Config.sigmaScaled()
		if err := cli.ParseFlags(trainFlagSet(&st.Config, &runOptions{}), args); err != nil {
			return err
		}
		if err := st.Config.validate(); err != nil {
			return err
		}
		if o.fromPhase != "" {
			if err := st.rewind(o.fromPhase, o.keepWeights); err != nil {
				return err
			}
		}
		if st.Config.sigmaScaled() != wasScaled && st.hasScoreNets() {
			return cli.Usagef("--score-scale: this run's score networks were trained with --score-scale %s; "+
				"to change it, retrain them: --from-phase stage2 (without --keep-weights)", map[bool]string{false: "raw", true: "sigma"}[wasScaled])
		}
		// The model file and its precision are the run's, as the first command named them: a resume
		// that does not name them again must not write an f32 file to the default path (which may
		// be a shipped model's).
		if !given["out"] {
			o.out = st.Out
		}
		if !given["f16"] {
			o.f16 = st.F16
		}
		fmt.Fprintf(os.Stderr, "resuming %s at phase %s\n", ckptPath, st.Phase)
	} else {
		if err := c.validate(); err != nil {
			return err
		}
		// Only new runs: a run that started with such a network may still be resumed.
		if err := checkGroupWidth(c.Arch); err != nil {
			return err
		}
		if _, err := os.Stat(ckptPath); err == nil {
			return cli.Usagef("%s exists: pass --resume to continue it, or a new --run folder", ckptPath)
		}
		if err := os.MkdirAll(o.run, 0o755); err != nil {
			return err
		}
		st = &State{Config: c, Phase: Phases[0], Final: map[string]map[string][]float32{}}
		if src != nil {
			if err := st.startFrom(src, o.keepWeights); err != nil {
				return err
			}
		}
	}
	if o.out == "" {
		n, err := DataName(st.Config.Data)
		if err != nil {
			return err
		}
		o.out = filepath.Join("weights", n+".msgpack")
	}
	st.Out, st.F16 = o.out, o.f16 // stored with every checkpoint
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
	fmt.Fprintf(tr.log, "engine: %s; data %s; arch %+v; run %s\n", engine, st.Config.Data, st.Config.Arch, o.run)
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

// DataName checks a --data value and returns the data set's short name (the default run folder
// and weights file name).
func DataName(spec string) (string, error) {
	if spec == "" {
		return "", cli.Usagef("--data is required: one of %s", strings.Join(dataSpecs(), ", "))
	}
	if path, ok := strings.CutPrefix(spec, "dir:"); ok {
		if path == "" {
			return "", cli.Usagef("--data dir: needs a folder, e.g. dir:./photos")
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
			return "", cli.Usagef("--data %s: train on the train split (%s or %s:train); the test split is for eval", spec, name, name)
		}
		return name, nil
	}
	return "", cli.Usagef("unknown data set %q: want one of %s", spec, strings.Join(dataSpecs(), ", "))
}

func dataSpecs() []string {
	var s []string
	for _, n := range data.Names() {
		s = append(s, "toy:"+n)
	}
	return append(s, "mnist", "fashion", "emoji", "emoji:faces", "dir:PATH")
}

func (c Config) validate() error {
	pos := map[string]int{"--batch": c.Batch,
		"--stage1-epochs": c.S1.MaxEpochs, "--am-epochs": c.S1.AMEpochs, "--cm-epochs": c.S1.CMEpochs,
		"--resample": c.S1.Resample, "--buffer": c.S1.Buffer, "--eval-samples": c.S1.EvalSamples,
		"--stage2-epochs": c.S2.Epochs, "--couplings": c.S2.Couplings, "--distill-epochs": c.Distill.Epochs,
		"--distill-samples": c.Distill.Samples, "--distill-ode-steps": c.Distill.ODESteps,
		"--stage2-passes": c.S2.Passes, "--distill-passes": c.Distill.Passes}
	for k, v := range pos {
		if v < 1 {
			return cli.Usagef("%s must be ≥ 1, got %d", k, v)
		}
	}
	if c.Arch.Fourier < 0 {
		return cli.Usagef("--fourier must be ≥ 0")
	}
	if c.Arch.Kind == "mlp" && (c.Arch.Hidden < 1 || c.Arch.Layers < 1) {
		return cli.Usagef("--hidden and --layers must be ≥ 1, got %d and %d", c.Arch.Hidden, c.Arch.Layers)
	}
	if err := model.CheckArch(c.Arch); err != nil {
		return cli.Usagef("%v", err)
	}
	if c.S1.ForwardNFE < 2 || c.S1.CMNFE < 2 || c.S2.ForwardNFE < 2 {
		return cli.Usagef("--forward-nfe, --cm-nfe and --stage2-nfe count time points and must be ≥ 2")
	}
	if !(c.LR > 0 && c.LR < 1) || !(c.EMA >= 0 && c.EMA < 1) || !(c.Distill.EMA >= 0 && c.Distill.EMA < 1) {
		return cli.Usagef("--lr must be in (0, 1), --ema and --distill-ema in [0, 1)")
	}
	if m := c.Distill.Method; m != "regress" && m != "dmd" {
		return cli.Usagef("--distill-method is regress or dmd, got %q", m)
	}
	if !(c.Distill.DMDLR >= 0 && c.Distill.DMDLR < 1) || c.Distill.FakeSteps < 0 {
		return cli.Usagef("--dmd-lr must be in [0, 1) and --dmd-fake-steps ≥ 0")
	}
	if !c.sigmaScaled() && c.ScoreScale != "" && c.ScoreScale != "raw" {
		return cli.Usagef("--score-scale is sigma or raw, got %q", c.ScoreScale)
	}
	for _, vp := range []asbm.VP{c.vp(), c.baseVP()} {
		if err := vp.Validate(); err != nil {
			return cli.Usagef("%v", err)
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
			return cli.Usagef("--base %d --mults %v --groups %d leaves %d channel(s) per group-norm group at level %d: "+
				"a group norm of one channel erases each image's channel means, which the score then cannot learn "+
				"(the memoryless baseline diverges on colour images); use --groups %d or fewer",
				a.Base, a.Mults, a.Groups, c/a.Groups, l, max(1, a.Base*slices.Min(a.Mults)/2))
		}
	}
	return nil
}

func (c Config) vp() asbm.VP { return asbm.VP{Beta0: c.Beta0, Beta1: c.Beta1, SigmaV: c.SigmaV} }
func (c Config) baseVP() asbm.VP {
	return asbm.VP{Beta0: c.Beta0, Beta1: c.BaseB1, SigmaV: c.SigmaV}
}

// sigmaScaled reports --score-scale sigma.
func (c Config) sigmaScaled() bool { return c.ScoreScale == "sigma" }

// scoreModel is m as the score-type model the asbm loops train under --score-scale (asbm.SigmaScaled
// on the base vp), or m itself.
func (c Config) scoreModel(m asbm.Model, vp asbm.VP) asbm.Model {
	if c.sigmaScaled() {
		return asbm.SigmaScaled(m, vp)
	}
	return m
}

// scoreNet is n as the score it stands for under --score-scale.
func (c Config) scoreNet(n asbm.Net, vp asbm.VP) asbm.Net {
	if c.sigmaScaled() {
		return asbm.SigmaScaledNet(n, vp)
	}
	return n
}

func (c Config) opt() cpu.Config {
	o := cpu.DefaultConfig()
	o.LR, o.EMADecay = c.LR, c.EMA
	return o
}
