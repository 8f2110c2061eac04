package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/weights"
)

// State is the resumable state of a whole `backend train` run.
type State struct {
	Config Config
	Phase  string
	Loop   asbm.Checkpoint                 // the running phase's loop, at an epoch boundary
	Final  map[string]map[string][]float32 // model states of finished phases: "u", "s", "b", "g"
	Log    []string                        // one line per finished phase
	// Warm names the networks of Final that their phase, when it starts, continues from rather
	// than initialising afresh (--keep-weights); an entry is dropped when its phase finishes.
	Warm map[string]bool
	// Out and F16 are the model file the run writes at the end and whether its weights are f16: a
	// resume keeps them unless its command line names them again.
	Out string
	F16 bool
	// PhaseSeconds and PhaseSteps are the running phase's wall time (the sum of its epochs' times,
	// across resumes) and optimiser steps so far; its log line gets them when it finishes.
	PhaseSeconds float64
	PhaseSteps   int
}

// phaseNet is the key in State.final of the network each phase trains.
var phaseNet = map[string]string{"stage1": "u", "stage2": "s", "baseline": "b", "distill": "g"}

// hasScoreNets reports whether the run holds a score-type network (score, baseline or generator),
// finished or in the running phase's loop: --score-scale cannot change under it.
func (st *State) hasScoreNets() bool {
	for _, k := range []string{"s", "b", "g"} {
		if st.Final[k] != nil {
			return true
		}
	}
	return st.Loop.Tensors != nil && PhaseIndex(st.Phase) >= PhaseIndex("stage2")
}

// rewind restarts the run at phase, dropping the networks of that phase and the later ones, or with
// keep marking them as warm starts of their Phases (their log lines stay: the history is kept).
func (st *State) rewind(phase string, keep bool) error {
	i := PhaseIndex(phase)
	if i > PhaseIndex(st.Phase) {
		return cli.Usagef("--from-phase %s: the run has not reached it yet (it is at %s): resume without --from-phase", phase, st.Phase)
	}
	if keep {
		st.Warm = map[string]bool{}
		for _, p := range Phases[i:] {
			if k := phaseNet[p]; st.Final[k] != nil {
				st.Warm[k] = true
			}
		}
		st.Phase, st.Loop, st.PhaseSeconds, st.PhaseSteps = phase, asbm.Checkpoint{}, 0, 0
		return nil
	}
	for _, p := range Phases[i:] {
		delete(st.Final, phaseNet[p])
	}
	var kept []string
	for _, l := range st.Log {
		if name, _, _ := strings.Cut(l, ":"); PhaseIndex(name) < i {
			kept = append(kept, l)
		}
	}
	st.Phase, st.Log, st.Loop, st.PhaseSeconds, st.PhaseSteps = phase, kept, asbm.Checkpoint{}, 0, 0
	return nil
}

// LoadState reads a checkpoint written by saveTrainState.
func LoadState(path string) (*State, error) {
	f, err := weights.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, cli.Usagef("no checkpoint at %s to resume", path)
		}
		return nil, err
	}
	st := &State{Final: map[string]map[string][]float32{}, Loop: asbm.Checkpoint{Tensors: map[string][]float32{}, Scalars: map[string]float64{}}}
	cfgJSON, _ := f.MetaString("config")
	if err := json.Unmarshal([]byte(cfgJSON), &st.Config); err != nil {
		return nil, fmt.Errorf("%s: unreadable training config: %v", path, err)
	}
	// Settings added after a checkpoint was written take the values those runs used.
	if st.Config.S2.ForwardNFE == 0 {
		st.Config.S2.ForwardNFE = st.Config.S1.ForwardNFE
	}
	if st.Config.Distill.EMA == 0 {
		st.Config.Distill.EMA = st.Config.EMA
	}
	if st.Config.Distill.Method == "" {
		st.Config.Distill.Method = "regress"
	}
	st.Phase, _ = f.MetaString("phase")
	st.Out, _ = f.MetaString("out") // "" in checkpoints from before it was stored: the default path
	if s, _ := f.MetaString("f16"); s == "true" {
		st.F16 = true
	}
	if PhaseIndex(st.Phase) < 0 {
		return nil, fmt.Errorf("%s: unknown phase %q", path, st.Phase)
	}
	st.PhaseSeconds, _ = f.MetaFloat("phase_seconds") // 0 in checkpoints from before they were kept
	if v, ok := f.MetaFloat("phase_steps"); ok {
		st.PhaseSteps = int(v)
	}
	if s, ok := f.MetaString("scalars"); ok && s != "" {
		if err := json.Unmarshal([]byte(s), &st.Loop.Scalars); err != nil {
			return nil, fmt.Errorf("%s: unreadable loop scalars: %v", path, err)
		}
	}
	if s, ok := f.MetaString("log"); ok && s != "" {
		st.Log = strings.Split(s, "\n")
	}
	if s, ok := f.MetaString("warm"); ok && s != "" {
		st.Warm = map[string]bool{}
		for _, k := range strings.Split(s, ",") {
			st.Warm[k] = true
		}
	}
	for _, t := range f.Tensors {
		v, _, err := f.Float32(t.Name)
		if err != nil {
			return nil, err
		}
		if k, ok := strings.CutPrefix(t.Name, "loop/"); ok {
			st.Loop.Tensors[k] = v
		} else if k, ok := strings.CutPrefix(t.Name, "final/"); ok {
			net, param, _ := strings.Cut(k, "/")
			if st.Final[net] == nil {
				st.Final[net] = map[string][]float32{}
			}
			st.Final[net][param] = v
		}
	}
	if s, ok := f.MetaString("empty"); ok && s != "" {
		for _, k := range strings.Split(s, "\n") {
			st.Loop.Tensors[k] = []float32{}
		}
	}
	if len(st.Loop.Tensors) == 0 {
		st.Loop = asbm.Checkpoint{}
	}
	return st, nil
}

// saveTrainState writes the checkpoint atomically (weights.WriteFile: temp file, fsync, rename), so a
// kill at any moment leaves the previous or the new checkpoint, never a torn one.
func saveTrainState(path string, st *State) error {
	f := weights.New(st.Config.Arch)
	cfgJSON, _ := json.Marshal(st.Config)
	f.Meta["config"] = string(cfgJSON)
	f.Meta["phase"] = st.Phase
	f.Meta["log"] = strings.Join(st.Log, "\n")
	f.Meta["warm"] = strings.Join(cli.SortedKeys(st.Warm), ",")
	f.Meta["out"] = st.Out
	f.Meta["f16"] = fmt.Sprint(st.F16)
	f.Meta["phase_seconds"] = st.PhaseSeconds
	f.Meta["phase_steps"] = int64(st.PhaseSteps)
	if st.Loop.Scalars != nil {
		s, err := json.Marshal(st.Loop.Scalars)
		if err != nil {
			return err
		}
		f.Meta["scalars"] = string(s)
	}
	// The format has no zero-length tensors (a dimension 0 is rejected as corrupt), so empty arrays
	// (an emptied replay buffer) are listed by name in the metadata instead.
	var empty []string
	for _, k := range cli.SortedKeys(st.Loop.Tensors) {
		v := st.Loop.Tensors[k]
		if len(v) == 0 {
			empty = append(empty, k)
			continue
		}
		f.AddF32("loop/"+k, []int{len(v)}, v)
	}
	f.Meta["empty"] = strings.Join(empty, "\n")
	for _, net := range cli.SortedKeys(st.Final) {
		for _, k := range cli.SortedKeys(st.Final[net]) {
			v := st.Final[net][k]
			f.AddF32("final/"+net+"/"+k, []int{len(v)}, v)
		}
	}
	return weights.WriteFile(path, f)
}

// restartPhase reports whether a run may restart at phase p (--from-phase, with --resume or
// --init-from): any phase after stage 1 but "done".
func restartPhase(p string) bool { return PhaseIndex(p) >= 1 && p != "done" }

// PhaseIndex is the position of phase p in Phases, or −1.
func PhaseIndex(p string) int {
	for i, q := range Phases {
		if q == p {
			return i
		}
	}
	return -1
}
