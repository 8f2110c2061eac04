package eval

import (
	"fmt"
	"strings"

	"asbm/backend/asbm"
	"asbm/backend/modelfile"
	"asbm/shaders"
)

// gpuEvalNet is a GPU network as an asbm.Net. asbm.Net cannot fail, so the first error is kept in
// *err (shared by the networks of one device) and later calls do nothing; check it after each use.
type gpuEvalNet struct {
	g   *shaders.GPUNet
	err *error
}

func (n gpuEvalNet) Dim() int { return n.g.Arch().Dim }

func (n gpuEvalNet) Eval(t, x, out []float32) {
	if *n.err != nil {
		return
	}
	y, err := n.g.Forward(t, x)
	if err != nil {
		*n.err = err
		return
	}
	copy(out, y)
}

// evalNets are the networks of the path, loss-floor and inversion measures on the chosen device (nil
// where the file lacks one), and a check for a GPU failure.
type evalNets struct {
	score, control, baseline asbm.Net
	check                    func() error
	close                    func()
	adapter                  string
}

func openEvalNets(m *modelfile.File, device string) (*evalNets, error) {
	if device != "gpu" {
		// m.Net: an engine network with CPUEngine (which uses every core itself), else the plain-Go
		// network (model.Net.Eval splits rows over the cores); nil where the file lacks one.
		return &evalNets{score: m.Net(modelfile.Score), control: m.Net(modelfile.Control), baseline: m.Net(modelfile.Baseline),
			check: func() error { return nil }, close: func() {}}, nil
	}
	dev, err := shaders.NewDevice()
	if err != nil {
		return nil, err
	}
	var gerr error
	var nets []*shaders.GPUNet
	en := &evalNets{adapter: dev.AdapterInfo(), check: func() error { return gerr }, close: func() {
		for _, g := range nets {
			g.Close()
		}
		dev.Close()
	}}
	for _, p := range []struct {
		prefix string
		dst    *asbm.Net
	}{{modelfile.Score, &en.score}, {modelfile.Control, &en.control}, {modelfile.Baseline, &en.baseline}} {
		if m.Nets[p.prefix] == nil {
			continue
		}
		g, err := shaders.NewGPUNet(dev, m.Nets[p.prefix])
		if err != nil {
			en.close()
			return nil, err
		}
		nets = append(nets, g)
		*p.dst = m.ScoreNet(p.prefix, gpuEvalNet{g, &gerr})
	}
	return en, nil
}

// methodMissing says which networks a method of evalMethods needs and the file lacks, as the "skipped" reason ("" when it has them all).
func methodMissing(m *modelfile.File, method string) string {
	need := map[string][]string{
		"asbm-sde": {modelfile.Score}, "asbm-ode": {modelfile.Score, modelfile.Control}, "distilled": {modelfile.Gen},
		"asbm-ancestral": {modelfile.Score}, "baseline-sde": {modelfile.Baseline}, "baseline-ode": {modelfile.Baseline},
		"baseline-ancestral": {modelfile.Baseline},
	}[method]
	var miss []string
	for _, p := range need {
		if m.Nets[p] == nil {
			miss = append(miss, strings.TrimSuffix(p, "/"))
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return fmt.Sprintf("the model file has no %s network", strings.Join(miss, " or "))
}
