package train

import (
	"fmt"
	"strings"

	"asbm/backend/cli"
	"asbm/backend/cpu"
	"asbm/backend/modelfile"
)

// distillSource is the model file of --distill-from: a finished model whose generator is to be
// distilled again (more steps, other teacher settings) without retraining its other networks.
type distillSource struct {
	m    *modelfile.File
	args []string // the flags of the file's "command", which the command line's flags override
}

// loadDistillSource reads the --distill-from file named in args, or returns nil when there is none.
func loadDistillSource(args []string) (*distillSource, error) {
	path := cli.FlagValue(args, "distill-from")
	if path == "" {
		return nil, nil
	}
	m, err := modelfile.Load(path)
	if err != nil {
		return nil, err
	}
	if m.Nets[modelfile.Control] == nil {
		return nil, cli.Usagef("--distill-from %s: the file has no control network, which the teacher's PF-ODE needs", path)
	}
	cmd, _ := m.File.MetaString("command")
	rest, ok := strings.CutPrefix(cmd, "backend train ")
	if !ok {
		return nil, cli.Usagef("--distill-from %s: the file has no `backend train` command in its metadata (written by backend import or an old build?), so its configuration is unknown", path)
	}
	return &distillSource{m: m, args: strings.Fields(rest)}, nil
}

// startDistill puts a new run's state at the distillation phase with the source file's networks as
// the finished earlier phases: its score and control are the teacher (asbm.md §4.3(a)), its
// baseline is carried into the new file. With keep the generator continues from the file's own
// (--keep-weights) rather than from the teacher score. The file's f16 weights are exact in f32.
func (st *State) startDistill(src *distillSource, keep bool) error {
	m, c := src.m, st.Config
	if !m.File.Arch.Equal(c.Arch) {
		return cli.Usagef("--distill-from %s: its networks are %+v, but the configuration gives %+v: do not change the network flags", m.Path, m.File.Arch, c.Arch)
	}
	if m.SigmaScaled != c.sigmaScaled() {
		return cli.Usagef("--distill-from %s: its score networks are --score-scale %s, which cannot change here", m.Path, map[bool]string{false: "raw", true: "sigma"}[m.SigmaScaled])
	}
	keys := map[string]string{modelfile.Score: "s", modelfile.Control: "u", modelfile.Baseline: "b"}
	if keep {
		if m.Nets[modelfile.Gen] == nil {
			return cli.Usagef("--distill-from %s --keep-weights: the file has no generator to continue", m.Path)
		}
		keys[modelfile.Gen] = "g"
		st.Warm = map[string]bool{"g": true}
	}
	for prefix, key := range keys {
		if m.Nets[prefix] == nil {
			continue // only the baseline may be absent (checked above for the others)
		}
		e, err := cpu.FromNet(m.Nets[prefix], c.opt())
		if err != nil {
			return err
		}
		st.Final[key] = e.State()
	}
	// The history of the networks kept: the file's log lines before distillation.
	training, _ := m.File.MetaString("training")
	for _, l := range strings.Split(training, "\n") {
		if name, _, _ := strings.Cut(l, ":"); PhaseIndex(name) >= 0 && PhaseIndex(name) < PhaseIndex("distill") {
			st.Log = append(st.Log, l)
		}
	}
	st.Log = append(st.Log, fmt.Sprintf("networks of stage 1, stage 2 and the baseline taken from %s (--distill-from)", m.Path))
	st.Phase = "distill"
	return nil
}
