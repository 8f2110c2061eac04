package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"asbm/weights"
)

// Net is one network held on the CPU: its architecture and its parameters by name. Arch.Kind picks
// the family: "mlp" (the 2-D network of asbm.md §6.1, mlp.go) or "unet" (the image network,
// unet.go). Net.ForwardCPU is the plain-Go reference that every engine (gorgonia, WGSL) is tested
// against, and the browser's CPU path.
type Net struct {
	Arch   weights.Arch
	Params map[string][]float32
}

// ParamShapes lists every parameter of a network of arch a, in a fixed order, with its shape. It
// returns nothing for an arch that CheckArch rejects.
func ParamShapes(a weights.Arch) (names []string, shapes [][]int) {
	switch a.Kind {
	case "mlp":
		return mlpParamShapes(a)
	case "unet":
		if checkUNetArch(a) != nil {
			return nil, nil
		}
		return unetParamShapes(a)
	}
	return nil, nil
}

// CheckArch reports whether a is an architecture this package can build.
func CheckArch(a weights.Arch) error {
	switch a.Kind {
	case "mlp":
		return checkMLPArch(a)
	case "unet":
		return checkUNetArch(a)
	}
	return fmt.Errorf("arch kind %q is neither \"mlp\" nor \"unet\"", a.Kind)
}

// NewNet returns a network of arch a initialised from seed (PyTorch-style uniform fan-in bounds; the
// output layer is zero so the network starts identically zero, asbm.md §2.1).
func NewNet(a weights.Arch, seed uint64) (*Net, error) {
	if err := CheckArch(a); err != nil {
		return nil, err
	}
	m := &Net{Arch: a, Params: map[string][]float32{}}
	if a.Kind == "mlp" {
		initMLP(m, rand.New(rand.NewPCG(seed, 0x4d4c50)))
	} else {
		initUNet(m, rand.New(rand.NewPCG(seed, 0x554e4554)))
	}
	return m, nil
}

// NetFromFile builds the network stored under prefix (for example "score/") in f.
func NetFromFile(f *weights.File, prefix string) (*Net, error) {
	if err := CheckArch(f.Arch); err != nil {
		return nil, err
	}
	m := &Net{Arch: f.Arch, Params: map[string][]float32{}}
	names, shapes := ParamShapes(f.Arch)
	for i, name := range names {
		data, shape, err := f.Float32(prefix + name)
		if err != nil {
			return nil, err
		}
		if fmt.Sprint(shape) != fmt.Sprint(shapes[i]) {
			return nil, fmt.Errorf("tensor %s%s has shape %v, the arch needs %v", prefix, name, shape, shapes[i])
		}
		m.Params[name] = data
	}
	return m, nil
}

// ForwardCPU evaluates the network on n = len(t) rows with plain Go: x is n×Dim (an image row is
// C×H×W, channel-major), the result n×Dim. The parameters must match the arch (Check).
func (m *Net) ForwardCPU(t, x []float32) []float32 {
	if m.Arch.Kind == "unet" {
		return m.forwardUNet(t, x)
	}
	return m.forwardMLP(t, x)
}

// ParamCount is the number of parameter values of a network of arch a (the sum over ParamShapes).
func ParamCount(a weights.Arch) int {
	_, shapes := ParamShapes(a)
	n := 0
	for _, sh := range shapes {
		n += numel(sh)
	}
	return n
}

// numel is the number of values of a tensor of shape sh.
func numel(sh []int) int {
	n := 1
	for _, s := range sh {
		n *= s
	}
	return n
}

// Dim is the data dimension of a row (Evaluator).
func (m *Net) Dim() int { return m.Arch.Dim }

// Eval writes ForwardCPU(t, x) into out (Evaluator): rows split among goroutines (one per core, at
// least 64 rows each), each goroutine's rows in chunks of at most EvalChunkRows, so a large image
// batch never holds every layer's activations for all rows at once. Rows are independent (group
// norm is per image), so the result does not depend on the split: it equals one ForwardCPU call.
func (m *Net) Eval(t, x, out []float32) {
	rows, d := len(t), m.Arch.Dim
	workers := min(runtime.GOMAXPROCS(0), (rows+63)/64)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := rows*w/workers, rows*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := lo; a < hi; a += EvalChunkRows {
				b := min(a+EvalChunkRows, hi)
				copy(out[a*d:b*d], m.ForwardCPU(t[a:b], x[a*d:b*d]))
			}
		}()
	}
	wg.Wait()
}

// EvalChunkRows bounds the rows of one plain-Go forward pass inside Eval.
const EvalChunkRows = 256

// Check reports a network whose parameters do not match its arch (missing, wrong length, NaN or
// Inf), so the forward passes never index out of range on bad input.
func (m *Net) Check() error {
	if m == nil {
		return fmt.Errorf("model: nil network")
	}
	if err := CheckArch(m.Arch); err != nil {
		return err
	}
	names, shapes := ParamShapes(m.Arch)
	for i, name := range names {
		want := 1
		for _, s := range shapes[i] {
			want *= s
		}
		p, ok := m.Params[name]
		if !ok {
			return fmt.Errorf("model: network has no parameter %s", name)
		}
		if len(p) != want {
			return fmt.Errorf("model: parameter %s has %d values, shape %v needs %d", name, len(p), shapes[i], want)
		}
		for _, v := range p {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("model: parameter %s holds NaN or Inf", name)
			}
		}
	}
	return nil
}
