package eval

import (
	"fmt"
	"strings"
	"sync"

	"asbm/backend/asbm"
	"asbm/backend/modelfile"
	"asbm/shaders"
)

// rowSplitNet evaluates a network on parallel slices of its rows. The U-Net treats every image on its
// own (group norm is per image), so the result equals one call on all rows; it only uses the cores.
type rowSplitNet struct {
	net     asbm.Net
	workers int
}

func (s rowSplitNet) Dim() int { return s.net.Dim() }

func (s rowSplitNet) Eval(t, x, out []float32) {
	n, d := len(t), s.net.Dim()
	w := min(s.workers, n)
	if w <= 1 {
		s.net.Eval(t, x, out)
		return
	}
	var wg sync.WaitGroup
	for k := 0; k < w; k++ {
		lo, hi := k*n/w, (k+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.net.Eval(t[lo:hi], x[lo*d:hi*d], out[lo*d:hi*d])
		}()
	}
	wg.Wait()
}

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
		wrap := func(p string) asbm.Net {
			n := m.Net(p)
			if _, plain := n.(modelfile.CPUNet); plain {
				return rowSplitNet{n, 2} // this project's machines have 2 cores (see parallel)
			}
			return n // nil, or an engine network, which uses every core itself
		}
		return &evalNets{score: wrap(modelfile.Score), control: wrap(modelfile.Control), baseline: wrap(modelfile.Baseline),
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
		*p.dst = gpuEvalNet{g, &gerr}
	}
	return en, nil
}

// methodMissing says which networks a method of evalMethods needs and the file lacks, as the "skipped" reason ("" when it has them all).
func methodMissing(m *modelfile.File, method string) string {
	need := map[string][]string{
		"asbm-sde": {modelfile.Score}, "asbm-ode": {modelfile.Score, modelfile.Control}, "distilled": {modelfile.Gen},
		"baseline-sde": {modelfile.Baseline}, "baseline-ode": {modelfile.Baseline},
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
