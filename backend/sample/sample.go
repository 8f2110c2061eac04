// Package sample is `backend sample`: it draws points or images from a model file with the project's
// one sampler (model.Run) on the CPU or, through the WGSL kernels, on a native WebGPU adapter.
package sample

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"asbm/backend/asbm"
	"asbm/backend/cli"
	"asbm/backend/imgdata"
	"asbm/backend/modelfile"
	"asbm/backend/plot"
	"asbm/model"
	"asbm/shaders"
	"asbm/weights"
)

// SamplerNames lists the --sampler values: the backward SDE (Euler–Maruyama) and the
// probability-flow ODE (Heun), asbm.md §3.3, and the ancestral sampler (model.Run).
var SamplerNames = []string{"sde", "ode", "ancestral"}

// DenoiseUsage is the --denoise flag's help, shared by sample and eval.
const DenoiseUsage = "end the SDE and the ODE with Tweedie's x0 = (x + σ_t² s)/α_t at t = 1/N instead of the paper's Euler step " +
	"(removes the last interval's noise: a better SDE from 4 steps on, a worse ODE by FID; README \"Samplers at few steps\")"

// Request is one sampling call, shared by sample, eval and the tests.
type Request struct {
	Net     string // "asbm" or "baseline"
	Sampler string // "sde", "ode" or "ancestral"
	NFE     int    // 1 = the distilled generator (asbm); otherwise sampler steps
	N       int
	Seed    uint64
	// Denoise ends the SDE and the ODE with Tweedie's estimate of x_0 at t = 1/N instead of an
	// Euler step (model.SampleOptions.Denoise); it does not change the one-step generator.
	Denoise bool
}

func (r Request) Validate() error {
	if r.NFE < 1 || r.NFE > 1000 {
		return cli.Usagef("--nfe must be between 1 and 1000, got %d", r.NFE)
	}
	if r.N < 1 || r.N > 1_000_000 {
		return cli.Usagef("--n must be between 1 and 1000000, got %d", r.N)
	}
	if !slices.Contains(SamplerNames, r.Sampler) {
		return cli.Usagef("--sampler must be one of %s, got %q", strings.Join(SamplerNames, ", "), r.Sampler)
	}
	if r.Net != "asbm" && r.Net != "baseline" {
		return cli.Usagef("--net must be asbm or baseline, got %q", r.Net)
	}
	return nil
}

// Method returns the shaders/asbm sampler name: NFE 1 on the ASBM model is the one-step generator.
func (r Request) Method() string {
	if r.Net == "asbm" && r.NFE == 1 {
		return "gen"
	}
	return r.Sampler
}

// CPU draws r.N points with the reference samplers of backend/asbm. The noise stream is the
// project's convention (x1 first, then one draw per noisy SDE step), so the browser and the GPU
// sampler give the same points for the same seed.
func CPU(m *modelfile.File, r Request, cb asbm.Callback) ([]float32, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	d := m.Nets[modelfile.Score].Arch.Dim
	noise := asbm.NewNoise(r.Seed)
	x := make([]float32, r.N*d)
	noise.Fill(x)
	vp, score, control := m.VP, m.Net(modelfile.Score), m.Net(modelfile.Control)
	if r.Net == "baseline" {
		if m.Nets[modelfile.Baseline] == nil {
			return nil, fmt.Errorf("%s holds no memoryless baseline network", m.Path)
		}
		vp, score, control = m.BaseVP, m.Net(modelfile.Baseline), nil
	}
	switch r.Method() {
	case "gen":
		gen := m.Net(modelfile.Gen)
		if gen == nil {
			return nil, fmt.Errorf("%s holds no distilled generator: use --nfe 2 or more", m.Path)
		}
		return asbm.Generate(gen, vp, x)
	case "sde", "ancestral":
		return asbm.Sample(model.Nets{Score: score}, vp, x, asbm.SampleConfig{Method: r.Method(), Steps: r.NFE, Denoise: r.Denoise, Noise: noise, Cb: cb})
	default:
		if r.Net == "asbm" && control == nil {
			return nil, fmt.Errorf("%s holds no forward control network, which the PF-ODE needs: use --sampler sde", m.Path)
		}
		return asbm.Sample(model.Nets{Score: score, Control: control}, vp, x, asbm.SampleConfig{Method: "ode", Steps: r.NFE, Denoise: r.Denoise, Cb: cb})
	}
}

// GPU draws the same points as CPU through the WGSL kernels on a native WebGPU adapter.
func GPU(m *modelfile.File, r Request) ([]float32, string, error) {
	if err := r.Validate(); err != nil {
		return nil, "", err
	}
	dev, err := shaders.NewDevice()
	if err != nil {
		return nil, "", err
	}
	defer dev.Close()
	var nets shaders.Nets
	up := func(prefix string) (*shaders.GPUNet, error) {
		if m.Nets[prefix] == nil {
			return nil, nil
		}
		return shaders.NewGPUNet(dev, m.Nets[prefix])
	}
	vp := m.VP
	if r.Net == "baseline" {
		vp = m.BaseVP
		if nets.Score, err = up(modelfile.Baseline); err != nil {
			return nil, "", err
		}
	} else {
		if nets.Score, err = up(modelfile.Score); err != nil {
			return nil, "", err
		}
		if nets.Control, err = up(modelfile.Control); err != nil {
			return nil, "", err
		}
		if nets.Gen, err = up(modelfile.Gen); err != nil {
			return nil, "", err
		}
	}
	pts, err := shaders.SampleGPU(dev, nets, model.SampleOptions{
		Points: r.N, Steps: r.NFE, Method: r.Method(), Seed: r.Seed,
		Beta0: vp.Beta0, Beta1: vp.Beta1, SigmaV: vp.SigmaV, SigmaScaled: m.SigmaScaled, Denoise: r.Denoise,
	}, model.SampleHooks{})
	return pts, dev.AdapterInfo(), err
}

// Command is `backend sample`: points (CSV or a scatter) or an image grid from a model file, or with
// --data a grid of real images.
func Command(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("sample")
	path := fs.String("model", "", "model file written by `backend train` or `backend export`")
	var r Request
	fs.StringVar(&r.Net, "net", "asbm", "asbm or baseline (the memoryless DSM model in the same file)")
	fs.StringVar(&r.Sampler, "sampler", "sde", "sde (backward Euler–Maruyama), ode (Heun PF-ODE) or ancestral (the bridge posterior at Tweedie's x0; one score call a step)")
	fs.IntVar(&r.NFE, "nfe", 8, "steps; 1 with --net asbm is the distilled one-step generator")
	fs.IntVar(&r.N, "n", 0, "number of samples (default 2000 points for 2-D models, 16 images for image models)")
	fs.Uint64Var(&r.Seed, "seed", 0, "noise seed (the browser gives the same points for the same seed)")
	fs.BoolVar(&r.Denoise, "denoise", false, DenoiseUsage)
	out := fs.String("out", "-", "output: a .csv or .png path (a scatter for 2-D models, an image grid for image models), or - for CSV on stdout")
	device := fs.String("device", "cpu", "cpu (reference) or gpu (WGSL kernels on native WebGPU)")
	dataSpec := fs.String("data", "", "instead of --model: draw --n random real images of this image data set "+
		"(mnist, fashion, emoji, emoji:faces, dir:PATH; training split) at --size, as a PNG grid to set beside a model's samples, "+
		"or with --out ending .npy the whole set (--n 0) as float32 [N, C, H, W] in [−1, 1], for torch/asbm_train.py --data npy:PATH")
	size := fs.Int("size", 0, "with --data: image side in pixels (default the data set's own: 28 for mnist and fashion, 32 otherwise)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *dataSpec != "" {
		if *path != "" {
			return cli.Usagef("--data draws real images; it does not take --model")
		}
		return realGrid(*dataSpec, *size, r.N, r.Seed, *out)
	}
	pre := r // --n 0 means "the default for the model", known once it is loaded
	if pre.N == 0 {
		pre.N = 1
	}
	if err := pre.Validate(); err != nil {
		return err
	}
	ext := strings.ToLower(filepath.Ext(*out))
	if *out != "-" && ext != ".csv" && ext != ".png" {
		return cli.Usagef("--out must end in .csv or .png (or be -), got %q", *out)
	}
	if *device != "cpu" && *device != "gpu" {
		return cli.Usagef("--device must be cpu or gpu, got %q", *device)
	}
	m, err := modelfile.Load(*path)
	if err != nil {
		return err
	}
	arch := m.Nets[modelfile.Score].Arch
	if r.N == 0 {
		r.N = 2000
		if arch.Kind == "unet" {
			r.N = 16
		}
	}
	var pts []float32
	if *device == "gpu" {
		var adapter string
		pts, adapter, err = GPU(m, r)
		if err == nil {
			fmt.Fprintf(os.Stderr, "adapter: %s\n", adapter)
		}
	} else {
		pts, err = CPU(m, r, nil)
	}
	if err != nil {
		return err
	}
	d := m.Nets[modelfile.Score].Arch.Dim
	switch {
	case *out == "-":
		return writeCSV(stdout, pts, d)
	case ext == ".png" && arch.Kind == "unet":
		return plot.WriteImageGridPNG(*out, pts, arch)
	case ext == ".png":
		return plot.WriteScatterPNG(*out, pts, d)
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

// realGrid writes n random training images of the data set spec (size×size; 0 = its own size) as
// a PNG grid, chosen without replacement (all of them when the set is smaller) by seed; with out
// ending .npy it writes them as a NumPy array instead, the whole set in its order when n is 0 (the
// PyTorch trainer cannot read the emoji font, so this is how the emoji sets reach it).
func realGrid(spec string, size, n int, seed uint64, out string) error {
	npy := strings.HasSuffix(strings.ToLower(out), ".npy")
	if !npy && !strings.HasSuffix(strings.ToLower(out), ".png") {
		return cli.Usagef("--data writes a PNG grid or a .npy array: --out must end in .png or .npy, got %q", out)
	}
	if n == 0 && !npy {
		n = 64
	}
	if n < 0 || n > 4096 {
		return cli.Usagef("--n must be between 1 and 4096 with --data (0 with a .npy: the whole set), got %d", n)
	}
	if size == 0 {
		size = 32
		if s := strings.SplitN(spec, ":", 2)[0]; s == "mnist" || s == "fashion" {
			size = 28
		}
	}
	if size < 4 || size > imgdata.MaxSize {
		return cli.Usagef("--size must be between 4 and %d, got %d", imgdata.MaxSize, size)
	}
	if spec == "mnist" || spec == "fashion" {
		spec += ":train"
	}
	set, err := imgdata.Load(spec, size)
	if err != nil {
		return err
	}
	d := set.C * set.H * set.W
	imgs := set.Pixels[:set.N*d]
	if n > 0 {
		idx := rand.New(rand.NewPCG(seed, 0x5245414c)).Perm(set.N)[:min(n, set.N)] // "REAL"
		imgs = make([]float32, 0, len(idx)*d)
		for _, i := range idx {
			imgs = append(imgs, set.Pixels[i*d:(i+1)*d]...)
		}
	}
	if npy {
		return writeNPY(out, imgs, []int{len(imgs) / d, set.C, set.H, set.W})
	}
	return plot.WriteImageGridPNG(out, imgs, weights.Arch{Kind: "unet", Dim: d, Channels: set.C, Height: set.H, Width: set.W})
}

// writeNPY writes v as a little-endian float32 C-order array of shape in NumPy's .npy format
// (version 1.0: magic, header length, a Python-literal header padded to 64 bytes, the data).
func writeNPY(path string, v []float32, shape []int) error {
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = strconv.Itoa(s)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += "," // a Python 1-tuple
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	pad := 64 - (10+len(header)+1)%64
	header += strings.Repeat(" ", pad%64) + "\n"
	buf := make([]byte, 0, 10+len(header)+4*len(v))
	buf = append(buf, "\x93NUMPY\x01\x00"...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)))
	buf = append(buf, header...)
	for _, x := range v {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
	}
	return os.WriteFile(path, buf, 0o644)
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
