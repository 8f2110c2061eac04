package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"asbm/backend/asbm"
	"asbm/model"
	"asbm/shaders"
)

// samplerNames lists the --sampler values: the backward SDE (Euler–Maruyama) and the
// probability-flow ODE (Heun), asbm.md §3.3.
var samplerNames = []string{"sde", "ode"}

// request is one sampling call, shared by sample, eval and the tests.
type request struct {
	net     string // "asbm" or "baseline"
	sampler string // "sde" or "ode"
	nfe     int    // 1 = the distilled generator (asbm); otherwise sampler steps
	n       int
	seed    uint64
}

func (r request) validate() error {
	if r.nfe < 1 || r.nfe > 1000 {
		return usagef("--nfe must be between 1 and 1000, got %d", r.nfe)
	}
	if r.n < 1 || r.n > 1_000_000 {
		return usagef("--n must be between 1 and 1000000, got %d", r.n)
	}
	if r.sampler != "sde" && r.sampler != "ode" {
		return usagef("--sampler must be one of %s, got %q", strings.Join(samplerNames, ", "), r.sampler)
	}
	if r.net != "asbm" && r.net != "baseline" {
		return usagef("--net must be asbm or baseline, got %q", r.net)
	}
	return nil
}

// method returns the shaders/asbm sampler name: NFE 1 on the ASBM model is the one-step generator.
func (r request) method() string {
	if r.net == "asbm" && r.nfe == 1 {
		return "gen"
	}
	return r.sampler
}

// sampleCPU draws r.n points with the reference samplers of backend/asbm. The noise stream is the
// project's convention (x1 first, then one draw per noisy SDE step), so the browser and the GPU
// sampler give the same points for the same seed.
func sampleCPU(m *modelFile, r request, cb asbm.Callback) ([]float32, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	d := m.nets[netScore].Arch.Dim
	noise := asbm.NewNoise(r.seed)
	x := make([]float32, r.n*d)
	noise.Fill(x)
	vp, score, control := m.vp, m.net(netScore), m.net(netControl)
	if r.net == "baseline" {
		if m.nets[netBaseline] == nil {
			return nil, fmt.Errorf("%s holds no memoryless baseline network", m.path)
		}
		vp, score, control = m.baseVP, m.net(netBaseline), nil
	}
	switch r.method() {
	case "gen":
		gen := m.net(netGen)
		if gen == nil {
			return nil, fmt.Errorf("%s holds no distilled generator: use --nfe 2 or more", m.path)
		}
		return asbm.Generate(gen, vp, x)
	case "sde":
		return asbm.SampleSDE(score, vp, x, r.nfe, noise, cb)
	default:
		if r.net == "asbm" && control == nil {
			return nil, fmt.Errorf("%s holds no forward control network, which the PF-ODE needs: use --sampler sde", m.path)
		}
		return asbm.SampleODE(score, control, vp, x, r.nfe, cb)
	}
}

// sampleGPU draws the same points as sampleCPU through the WGSL kernels on a native WebGPU adapter.
func sampleGPU(m *modelFile, r request) ([]float32, string, error) {
	if err := r.validate(); err != nil {
		return nil, "", err
	}
	dev, err := shaders.NewDevice()
	if err != nil {
		return nil, "", err
	}
	defer dev.Close()
	var nets shaders.Nets
	up := func(prefix string) (*shaders.GPUNet, error) {
		if m.nets[prefix] == nil {
			return nil, nil
		}
		return shaders.NewGPUNet(dev, m.nets[prefix])
	}
	vp := m.vp
	if r.net == "baseline" {
		vp = m.baseVP
		if nets.Score, err = up(netBaseline); err != nil {
			return nil, "", err
		}
	} else {
		if nets.Score, err = up(netScore); err != nil {
			return nil, "", err
		}
		if nets.Control, err = up(netControl); err != nil {
			return nil, "", err
		}
		if nets.Gen, err = up(netGen); err != nil {
			return nil, "", err
		}
	}
	pts, err := shaders.SampleGPU(dev, nets, model.SampleOptions{
		Points: r.n, Steps: r.nfe, Method: r.method(), Seed: r.seed,
		Beta0: vp.Beta0, Beta1: vp.Beta1, SigmaV: vp.SigmaV,
	}, model.SampleHooks{})
	return pts, dev.AdapterInfo(), err
}

func runSample(args []string, stdout io.Writer) error {
	fs := newFlags("sample")
	path := fs.String("model", "", "model file written by `backend train` or `backend export`")
	var r request
	fs.StringVar(&r.net, "net", "asbm", "asbm or baseline (the memoryless DSM model in the same file)")
	fs.StringVar(&r.sampler, "sampler", "sde", "sde (backward Euler–Maruyama) or ode (Heun PF-ODE)")
	fs.IntVar(&r.nfe, "nfe", 8, "steps; 1 with --net asbm is the distilled one-step generator")
	fs.IntVar(&r.n, "n", 0, "number of samples (default 2000 points for 2-D models, 16 images for image models)")
	fs.Uint64Var(&r.seed, "seed", 0, "noise seed (the browser gives the same points for the same seed)")
	out := fs.String("out", "-", "output: a .csv or .png path (a scatter for 2-D models, an image grid for image models), or - for CSV on stdout")
	device := fs.String("device", "cpu", "cpu (reference) or gpu (WGSL kernels on native WebGPU)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pre := r // --n 0 means "the default for the model", known once it is loaded
	if pre.n == 0 {
		pre.n = 1
	}
	if err := pre.validate(); err != nil {
		return err
	}
	ext := strings.ToLower(filepath.Ext(*out))
	if *out != "-" && ext != ".csv" && ext != ".png" {
		return usagef("--out must end in .csv or .png (or be -), got %q", *out)
	}
	if *device != "cpu" && *device != "gpu" {
		return usagef("--device must be cpu or gpu, got %q", *device)
	}
	m, err := loadModel(*path)
	if err != nil {
		return err
	}
	arch := m.nets[netScore].Arch
	if r.n == 0 {
		r.n = 2000
		if arch.Kind == "unet" {
			r.n = 16
		}
	}
	var pts []float32
	if *device == "gpu" {
		var adapter string
		pts, adapter, err = sampleGPU(m, r)
		if err == nil {
			fmt.Fprintf(os.Stderr, "adapter: %s\n", adapter)
		}
	} else {
		pts, err = sampleCPU(m, r, nil)
	}
	if err != nil {
		return err
	}
	d := m.nets[netScore].Arch.Dim
	switch {
	case *out == "-":
		return writeCSV(stdout, pts, d)
	case ext == ".png" && arch.Kind == "unet":
		return writeImageGridPNG(*out, pts, arch)
	case ext == ".png":
		return writeScatterPNG(*out, pts, d)
	default:
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		if err := writeCSV(w, pts, d); err != nil {
			f.Close()
			return err
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}

// writeCSV writes one point per line with a header x,y (x0,x1,… for d > 2).
func writeCSV(w io.Writer, pts []float32, d int) error {
	cols := []string{"x", "y"}
	if d != 2 {
		cols = cols[:0]
		for j := 0; j < d; j++ {
			cols = append(cols, fmt.Sprintf("x%d", j))
		}
	}
	if _, err := fmt.Fprintln(w, strings.Join(cols, ",")); err != nil {
		return err
	}
	for i := 0; i+d <= len(pts); i += d {
		var b strings.Builder
		for j := 0; j < d; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%.7g", pts[i+j])
		}
		if _, err := fmt.Fprintln(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}
