// Package modelfile loads a model file written by `backend train` or `backend export`: its networks
// (score, control, distilled generator, baseline) on the CPU and both base SDEs.
package modelfile

import (
	"fmt"
	"os"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/cpu"
	"asbm/model"
	"asbm/weights"
)

// Network prefixes inside a model file.
const (
	Score    = "score/"
	Control  = "control/"
	Gen      = "gen/"
	Baseline = "baseline/"
)

// File is a loaded model file: the ASBM networks, the memoryless baseline, and both base SDEs.
type File struct {
	Path   string
	File   *weights.File
	VP     asbm.VP // the ASBM base (asbm.md §1.2)
	BaseVP asbm.VP // the memoryless baseline's base (β_1 = 20)
	Nets   map[string]*model.Net
	// SigmaScaled: the score-type networks (score, baseline, generator) output σ_t·s (meta
	// "score_scale": "sigma", `backend train --score-scale sigma`); Net and ScoreNet return them as
	// scores, and samplers on other engines set model.SampleOptions.SigmaScaled.
	SigmaScaled bool
	// CPUEngine makes Net return U-Nets on the gorgonia engine (backend/cpu: OpenBLAS convolutions,
	// all cores) instead of the plain-Go forward: the same function up to float32 rounding (their
	// tests hold them within 1e-4), about 10× faster, for sampling thousands of images.
	CPUEngine bool
}

// Load reads a model file and builds every network it holds.
func Load(path string) (*File, error) {
	if path == "" {
		return nil, cli.Usagef("--model is required (for example --model weights/8gaussians.msgpack)")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, cli.Usagef("model file %s: %v", path, err)
	}
	f, err := weights.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &File{Path: path, File: f, Nets: map[string]*model.Net{}}
	get := func(key string, def float64) float64 {
		if v, ok := f.MetaFloat(key); ok {
			return v
		}
		return def
	}
	m.VP = asbm.VP{Beta0: get("beta0", 0.1), Beta1: get("beta1", 4), SigmaV: get("sigma_v", 1)}
	m.BaseVP = asbm.VP{Beta0: get("beta0", 0.1), Beta1: get("baseline_beta1", 20), SigmaV: get("sigma_v", 1)}
	if m.SigmaScaled, err = model.SigmaScaledMeta(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range []string{Score, Control, Gen, Baseline} {
		if _, ok := f.Tensor(p + "out.w"); !ok {
			continue
		}
		mlp, err := model.NetFromFile(f, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m.Nets[p] = mlp
	}
	if m.Nets[Score] == nil {
		return nil, fmt.Errorf("%s holds no %q network: is it a model file written by `backend train` or `backend export`?", path, Score)
	}
	return m, nil
}

// Net returns the network under prefix as an asbm.Net on the CPU, or nil when the file lacks it: a
// score-type network as the score it stands for (ScoreNet). With CPUEngine each call returns a new
// engine network (one per goroutine: they are not safe for concurrent use).
func (m *File) Net(prefix string) asbm.Net {
	mlp := m.Nets[prefix]
	if mlp == nil {
		return nil
	}
	if m.CPUEngine && mlp.Arch.Kind == "unet" {
		if c, err := cpu.FromNet(mlp, cpu.DefaultConfig()); err == nil {
			return m.ScoreNet(prefix, c)
		}
	}
	return m.ScoreNet(prefix, mlp) // the plain-Go forward, rows split over the cores (model.Net.Eval)
}

// ScoreNet returns n, the network under prefix on any engine, as what the samplers and measures
// expect: for a SigmaScaled file, the score, baseline and generator divided by σ_t of their base
// (asbm.SigmaScaledNet; the baseline's base is BaseVP); otherwise n itself.
func (m *File) ScoreNet(prefix string, n asbm.Net) asbm.Net {
	if !m.SigmaScaled || n == nil {
		return n
	}
	switch prefix {
	case Score, Gen:
		return asbm.SigmaScaledNet(n, m.VP)
	case Baseline:
		return asbm.SigmaScaledNet(n, m.BaseVP)
	}
	return n
}

// Dataset returns the model's data set name from its metadata.
func (m *File) Dataset() string {
	s, _ := m.File.MetaString("dataset")
	return s
}
