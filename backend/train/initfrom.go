package train

import (
	"fmt"
	"strings"

	"asbm/backend/cli"
	"asbm/backend/cpu"
	"asbm/backend/modelfile"
)

// initSource is the model file of --init-from (or --distill-from): a finished model whose networks
// start a new run at a later phase, so that phase and the later ones are trained again (or further,
// with --keep-weights) without retraining the earlier ones.
type initSource struct {
	m     *modelfile.File
	args  []string // the flags of the file's "command", which the command line's flags override
	flag  string   // the flag that named the file, for messages: "init-from" or "distill-from"
	phase string   // the phase the new run starts at: stage2, baseline or distill
}

// phaseWords are the phases as a log line names them.
var phaseWords = map[string]string{"stage1": "stage 1", "stage2": "stage 2", "baseline": "the baseline", "distill": "distillation"}

// loadInitSource reads the --init-from (with --from-phase, default stage2) or --distill-from file
// named in args, or returns nil when there is none.
func loadInitSource(args []string) (*initSource, error) {
	src := &initSource{flag: "init-from", phase: cli.FlagValue(args, "from-phase")}
	path := cli.FlagValue(args, "init-from")
	if d := cli.FlagValue(args, "distill-from"); d != "" {
		if path != "" || src.phase != "" {
			return nil, cli.Usagef("--distill-from FILE is --init-from FILE --from-phase distill: give one form, not both")
		}
		src.flag, path, src.phase = "distill-from", d, "distill"
	}
	if path == "" {
		return nil, nil
	}
	if src.phase == "" {
		src.phase = "stage2"
	}
	if !restartPhase(src.phase) {
		return nil, cli.Usagef("--from-phase must be one of stage2, baseline, distill; got %q", src.phase)
	}
	m, err := modelfile.Load(path)
	if err != nil {
		return nil, err
	}
	// The networks the new run takes as finished: every earlier phase's but the baseline's, which
	// no later phase uses (a file without one starts a run whose model file has none either).
	for _, p := range Phases[:PhaseIndex(src.phase)] {
		if name := netPrefix(phaseNet[p]); p != "baseline" && m.Nets[name] == nil {
			return nil, cli.Usagef("--%s %s: the file has no %s network, which a run from %s needs", src.flag, path, name, src.phase)
		}
	}
	cmd, _ := m.File.MetaString("command")
	rest, ok := strings.CutPrefix(cmd, "backend train ")
	if !ok {
		return nil, cli.Usagef("--%s %s: the file has no `backend train` command in its metadata (written by backend import or an old build?), so its configuration is unknown", src.flag, path)
	}
	src.m, src.args = m, strings.Fields(rest)
	return src, nil
}

// startFrom puts a new run's state at the source's phase with the file's networks as the finished
// earlier phases: for distillation its score and control are the teacher (asbm.md §4.3(a)); for
// stage 2 its control draws the couplings (§3.1). The file's networks of that phase and the later
// ones are dropped (trained afresh) or, with keep (--keep-weights), continued: fresh optimizer
// moments, the file's (EMA) weights as both weights and EMA, a new noise stream. The file's f16
// weights are exact in f32.
func (st *State) startFrom(src *initSource, keep bool) error {
	m, c := src.m, st.Config
	if !m.File.Arch.Equal(c.Arch) {
		return cli.Usagef("--%s %s: its networks are %+v, but the configuration gives %+v: do not change the network flags", src.flag, m.Path, m.File.Arch, c.Arch)
	}
	if m.SigmaScaled != c.sigmaScaled() {
		return cli.Usagef("--%s %s: its score networks are --score-scale %s, which cannot change here", src.flag, m.Path, map[bool]string{false: "raw", true: "sigma"}[m.SigmaScaled])
	}
	if name := netPrefix(phaseNet[src.phase]); keep && m.Nets[name] == nil {
		return cli.Usagef("--%s %s --keep-weights: the file has no %s network to continue", src.flag, m.Path, name)
	}
	for _, n := range exportNets {
		if m.Nets[n.prefix] == nil {
			continue
		}
		e, err := cpu.FromNet(m.Nets[n.prefix], c.opt())
		if err != nil {
			return err
		}
		st.Final[n.key] = e.State()
	}
	// The file's history, as if this run had made it; rewind then drops (or, with keep, marks as
	// continued) the networks and log lines of the phases trained here.
	training, _ := m.File.MetaString("training")
	for _, l := range strings.Split(training, "\n") {
		if l != "" {
			st.Log = append(st.Log, l)
		}
	}
	st.Phase = "done"
	if err := st.rewind(src.phase, keep); err != nil {
		return err
	}
	var taken []string
	for _, p := range Phases[:PhaseIndex(src.phase)] {
		if p != "baseline" || st.Final["b"] != nil {
			taken = append(taken, phaseWords[p])
		}
	}
	list := taken[0]
	if n := len(taken); n > 1 {
		list = strings.Join(taken[:n-1], ", ") + " and " + taken[n-1]
	}
	// The flags that made this run, beside its `command` (the configuration): together they redo it.
	how := "--" + src.flag + " " + m.Path
	if src.flag == "init-from" {
		how += " --from-phase " + src.phase
	}
	line := fmt.Sprintf("networks of %s taken from %s (%s)", list, m.Path, how)
	if keep {
		line = fmt.Sprintf("networks of %s taken from %s, and its later ones continued (%s --keep-weights)", list, m.Path, how)
	}
	st.Log = append(st.Log, line)
	return nil
}

// netPrefix is the model file's name of the network under the State.Final key.
func netPrefix(key string) string {
	for _, n := range exportNets {
		if n.key == key {
			return n.prefix
		}
	}
	return key
}
