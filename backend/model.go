package main

import (
	"fmt"
	"os"

	"asbm/backend/asbm"
	"asbm/model"
	"asbm/weights"
)

// Network prefixes inside a model file.
const (
	netScore    = "score/"
	netControl  = "control/"
	netGen      = "gen/"
	netBaseline = "baseline/"
)

// modelFile is a loaded model file: the ASBM networks, the memoryless baseline, and both base SDEs.
type modelFile struct {
	path   string
	file   *weights.File
	vp     asbm.VP // the ASBM base (asbm.md §1.2)
	baseVP asbm.VP // the memoryless baseline's base (β_1 = 20)
	nets   map[string]*model.Net
}

// loadModel reads a model file and builds every network it holds.
func loadModel(path string) (*modelFile, error) {
	if path == "" {
		return nil, usagef("--model is required (for example --model weights/8gaussians.msgpack)")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, usagef("model file %s: %v", path, err)
	}
	f, err := weights.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := &modelFile{path: path, file: f, nets: map[string]*model.Net{}}
	get := func(key string, def float64) float64 {
		if v, ok := f.MetaFloat(key); ok {
			return v
		}
		return def
	}
	m.vp = asbm.VP{Beta0: get("beta0", 0.1), Beta1: get("beta1", 4), SigmaV: get("sigma_v", 1)}
	m.baseVP = asbm.VP{Beta0: get("beta0", 0.1), Beta1: get("baseline_beta1", 20), SigmaV: get("sigma_v", 1)}
	for _, p := range []string{netScore, netControl, netGen, netBaseline} {
		if _, ok := f.Tensor(p + "out.w"); !ok {
			continue
		}
		mlp, err := model.NetFromFile(f, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m.nets[p] = mlp
	}
	if m.nets[netScore] == nil {
		return nil, fmt.Errorf("%s holds no %q network: is it a model file written by `backend train` or `backend export`?", path, netScore)
	}
	return m, nil
}

// net returns the network under prefix as an asbm.Net on the CPU, or nil when the file lacks it.
func (m *modelFile) net(prefix string) asbm.Net {
	if mlp := m.nets[prefix]; mlp != nil {
		return cpuNet{mlp}
	}
	return nil
}

// dataset returns the model's data set name from its metadata.
func (m *modelFile) dataset() string {
	s, _ := m.file.MetaString("dataset")
	return s
}

// cpuNet evaluates a plain-Go MLP (the reference forward of shaders/mlp.go).
type cpuNet struct{ m *model.Net }

func (c cpuNet) Dim() int { return c.m.Arch.Dim }

// Eval runs ForwardCPU on chunks of at most cpuChunkRows rows, so a large image batch does not hold
// every layer's activations for all rows at once (rows are independent: the result is the same).
func (c cpuNet) Eval(t, x, out []float32) {
	d := c.m.Arch.Dim
	for lo := 0; lo < len(t); lo += cpuChunkRows {
		hi := min(lo+cpuChunkRows, len(t))
		copy(out[lo*d:hi*d], c.m.ForwardCPU(t[lo:hi], x[lo*d:hi*d]))
	}
}

// cpuChunkRows bounds the rows of one plain-Go forward pass.
const cpuChunkRows = 256
