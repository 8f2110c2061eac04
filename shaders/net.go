package shaders

import (
	"fmt"
	"math/rand/v2"

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
// C×H×W, channel-major), the result n×Dim. The parameters must match the arch (checkParams).
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
