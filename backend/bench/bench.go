// Package bench is `backend bench`: the U-Net's forward and training-step times on the CPU engine
// (and the WGSL engine with --device gpu) at three sizes, against each engine's measured matmul
// ceiling and PyTorch's step on the same network (backend/torchref).
package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"asbm/backend/cli"
	"asbm/backend/cpu"
	"asbm/backend/cpu/kern"
	"asbm/backend/gpu"
	"asbm/backend/torchref"
	"asbm/backend/train"
	"asbm/model"
	"asbm/shaders"
	"asbm/weights"
)

// benchArch is a U-Net `backend bench` knows by name, with a line that describes it.
type benchArch struct {
	name, what string
	arch       weights.Arch
}

// benchArchs are the U-Nets of `backend bench --arch`: the first wave's 16×16 colour model, the
// default 28×28 one of `backend train --data mnist`, and a 32×32 colour net of about a million
// parameters.
var benchArchs = []benchArch{
	{"small", "3×16×16, base 8, mults 1,2,2, 1 block (the first-wave emoji)", weights.Arch{Kind: "unet", Dim: 3 * 16 * 16,
		Channels: 3, Height: 16, Width: 16, Base: 8, Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}},
	{"mnist", "1×28×28, base 16, mults 1,2,2, 1 block (the image default)", train.DefaultImageConfig("mnist", 1, 28).Arch},
	{"large", "3×32×32, base 32, mults 1,2,2, 2 blocks", weights.Arch{Kind: "unet", Dim: 3 * 32 * 32,
		Channels: 3, Height: 32, Width: 32, Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 2, Groups: 8, TimeEmb: 64, Fourier: 16}},
	{"emoji", "3×32×32, base 16, mults 1,2,2, 1 block (the emoji default)", train.DefaultImageConfig("emoji", 3, 32).Arch},
}

// benchRow is one line of the engine table.
type benchRow struct {
	arch, engine  string
	batch         int
	fwdMS, stepMS float64 // medians
	fwdGF, stepGF float64 // achieved GFLOP/s
	convGF        float64 // the conv layers alone (CPU engine), GFLOP/s; 0 when not measured
	torchMS       float64 // PyTorch's step on the same arch and batch; 0 when not measured
}

func Command(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("bench")
	names := make([]string, len(benchArchs))
	for i, b := range benchArchs {
		names[i] = b.name
	}
	archList := fs.String("arch", "small,mnist,large", "comma-separated U-Nets to time: "+strings.Join(names, ", "))
	batchList := fs.String("batches", "16,64", "comma-separated batch sizes")
	reps := fs.Int("reps", 5, "timed repetitions per measurement (the median is reported)")
	warmup := fs.Int("warmup", 2, "untimed calls before each measurement (PyTorch's first calls at a shape are slow)")
	devices := fs.String("device", "cpu", "engines to time: cpu (gorgonia + OpenBLAS), gpu (WGSL on native WebGPU), or cpu,gpu")
	torchMode := fs.String("torch", "auto", "time PyTorch's training step on the same arch and batch: auto (when python3-torch is installed), on (fail without it), off")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	var archs []int
	for _, f := range strings.Split(*archList, ",") {
		i := slices.IndexFunc(benchArchs, func(b benchArch) bool { return b.name == strings.TrimSpace(f) })
		if i < 0 {
			return cli.Usagef("--arch wants names from %s; got %q", strings.Join(names, ", "), f)
		}
		archs = append(archs, i)
	}
	var batches []int
	for _, f := range strings.Split(*batchList, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || b < 1 || b > 4096 {
			return cli.Usagef("--batches wants integers in [1, 4096] such as 16,64; got %q", *batchList)
		}
		batches = append(batches, b)
	}
	if *reps < 1 || *reps > 1000 {
		return cli.Usagef("--reps must be in [1, 1000], got %d", *reps)
	}
	if *warmup < 0 || *warmup > 100 {
		return cli.Usagef("--warmup must be in [0, 100], got %d", *warmup)
	}
	engines := strings.Split(*devices, ",")
	for _, e := range engines {
		if e != "cpu" && e != "gpu" {
			return cli.Usagef("--device wants cpu, gpu or cpu,gpu; got %q", *devices)
		}
	}
	if *torchMode != "auto" && *torchMode != "on" && *torchMode != "off" {
		return cli.Usagef("--torch wants auto, on or off; got %q", *torchMode)
	}

	// The ceilings, measured first in the same run.
	threads := runtime.NumCPU()
	cpuCeil, err := sgemmGFLOPs(1024, *reps, threads)
	if err != nil {
		return err
	}
	on := fmt.Sprintf("on %d threads", threads)
	if !kern.Fast() {
		on = "on one goroutine"
	}
	fmt.Fprintf(stdout, "CPU matrix multiply: %s; sgemm 1024³ %s: %.1f GFLOP/s (the CPU ceiling below)\n", kern.Name(), on, cpuCeil)
	if h := kern.Hint(); h != "" {
		fmt.Fprintln(stdout, h)
	}
	torchOK := false
	if *torchMode != "off" {
		py, err := torchref.Python()
		switch {
		case err == nil:
			torchOK = true
			fmt.Fprintf(stdout, "PyTorch reference: %s, torch.set_num_threads(%d)\n", py, threads)
		case *torchMode == "on":
			return err
		default:
			fmt.Fprintf(stdout, "PyTorch reference: skipped: %v\n", err)
		}
	}
	var dev *shaders.Device
	var gpuCeil float64
	if slices.Contains(engines, "gpu") {
		if dev, err = gpu.Device(); err != nil {
			fmt.Fprintf(stdout, "gpu: skipped: %v\n", err)
			engines = slices.DeleteFunc(engines, func(e string) bool { return e == "gpu" })
		} else {
			if gpuCeil, err = gpuMatmulGFLOPs(dev, 1024, *reps); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "GPU adapter: %s; linear.wgsl 1024³: %.1f GFLOP/s (the GPU ceiling below)\n", dev.AdapterInfo(), gpuCeil)
		}
	}

	var rows []benchRow
	for _, ai := range archs {
		ba := benchArchs[ai]
		arch := ba.arch
		flops := float64(model.UNetFLOPs(arch))
		fmt.Fprintf(stdout, "U-Net %s: %s; %d parameters, %.1f MFLOP per image forward (a training step counts 3×)\n",
			ba.name, ba.what, model.ParamCount(arch), flops/1e6)
		for _, b := range batches {
			var torchMS float64
			if torchOK {
				res, err := torchref.BenchStep(arch, b, *warmup, *reps, threads)
				if err != nil {
					return fmt.Errorf("PyTorch reference on %s at batch %d: %w", ba.name, b, err)
				}
				torchMS = res.StepMS
			}
			for _, e := range engines {
				cfg := cpu.DefaultConfig()
				var m train.EngineModel
				if e == "cpu" {
					m, err = cpu.New(arch, cfg, 1)
				} else {
					m, err = gpu.New(arch, cfg, 1)
				}
				if err != nil {
					return err
				}
				fwd, step, err := timeModel(m, arch, b, *warmup, *reps)
				if c, ok := m.(interface{ Close() }); ok {
					c.Close()
				}
				if err != nil {
					return err
				}
				row := benchRow{arch: ba.name, engine: e, batch: b, fwdMS: fwd * 1e3, stepMS: step * 1e3,
					fwdGF: flops * float64(b) / fwd / 1e9, stepGF: 3 * flops * float64(b) / step / 1e9, torchMS: torchMS}
				if e == "cpu" {
					cf, cs, err := cpu.ConvLayerRate(arch, b, *reps)
					if err != nil {
						return err
					}
					row.convGF = cf / cs / 1e9
				}
				rows = append(rows, row)
			}
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "arch\tengine\tbatch\tforward ms\tforward GFLOP/s\tstep ms\tstep GFLOP/s\tstep / ceiling\tconv GFLOP/s\tconv / ceiling\tPyTorch step ms\tPyTorch / ours\t")
	for _, r := range rows {
		ceil := cpuCeil
		if r.engine == "gpu" {
			ceil = gpuCeil
		}
		conv, convFrac, torch, ratio := "-", "-", "-", "-"
		if r.convGF > 0 {
			conv, convFrac = fmt.Sprintf("%.1f", r.convGF), fmt.Sprintf("%.0f%%", 100*r.convGF/ceil)
		}
		if r.torchMS > 0 {
			torch, ratio = fmt.Sprintf("%.1f", r.torchMS), fmt.Sprintf("%.2f", r.torchMS/r.stepMS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f%%\t%s\t%s\t%s\t%s\t\n", r.arch, r.engine, r.batch,
			r.fwdMS, r.fwdGF, r.stepMS, r.stepGF, 100*r.stepGF/ceil, conv, convFrac, torch, ratio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "PyTorch / ours > 1: this engine's step is faster. conv: every conv layer's forward and both gradients alone (cpu.ConvLayerRate).")
	return nil
}

// timeModel returns the median seconds of one forward (Eval) and one training step (Step) of m on
// a batch of b random images, after warmup untimed calls of each (the first builds the graph).
func timeModel(m train.EngineModel, a weights.Arch, b, warmup, reps int) (fwd, step float64, err error) {
	r := rand.New(rand.NewPCG(1, 2))
	t := make([]float32, b)
	x := make([]float32, b*a.Dim)
	y := make([]float32, b*a.Dim)
	for i := range t {
		t[i] = r.Float32()
	}
	for i := range x {
		x[i], y[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	out := make([]float32, len(x))
	med := func(f func()) float64 {
		for range max(1, warmup) {
			f()
		}
		var ts []float64
		for i := 0; i < reps; i++ {
			s := time.Now()
			f()
			ts = append(ts, time.Since(s).Seconds())
		}
		slices.Sort(ts)
		return ts[len(ts)/2]
	}
	defer func() {
		if p := recover(); p != nil { // the engines panic on device errors (asbm.Model has no error returns)
			err = fmt.Errorf("%v", p)
		}
	}()
	fwd = med(func() { m.Eval(t, x, out) })
	step = med(func() { m.Step(t, x, nil, y) })
	return fwd, step, nil
}

// sgemmGFLOPs measures the CPU engine's matrix multiply (kern.Gemm: OpenBLAS, or the pure-Go
// loops) on n×n matrices with OpenBLAS allowed the given number of threads: the machine's sgemm
// rate, the CPU engine's ceiling. The engine itself calls Gemm single-threaded from one goroutine per
// core, which reaches about the same total.
func sgemmGFLOPs(n, reps, threads int) (float64, error) {
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%13)*0.01, float32(i%7)*0.01
	}
	kern.SetThreads(threads)
	defer kern.SetThreads(1)
	return matmulRate(n, reps, func() error { kern.Gemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n); return nil })
}

// matmulRate returns the GFLOP/s of an n×n×n matrix multiply f at its median time over reps calls,
// after one untimed call.
func matmulRate(n, reps int, f func() error) (float64, error) {
	var ts []float64
	for i := 0; i <= reps; i++ {
		s := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		if i > 0 {
			ts = append(ts, time.Since(s).Seconds())
		}
	}
	slices.Sort(ts)
	return 2 * float64(n) * float64(n) * float64(n) / ts[len(ts)/2] / 1e9, nil
}

// gpuMatmulGFLOPs measures the project's tiled matmul kernel (linear.wgsl) on n×n matrices,
// including one submit and wait per call: the GPU engine's ceiling on this adapter.
func gpuMatmulGFLOPs(d *shaders.Device, n, reps int) (float64, error) {
	bufs := make([]*shaders.Buffer, 4)
	for i, size := range []int{n * n, n * n, n, n * n} {
		b, err := d.NewBuffer(size)
		if err != nil {
			return 0, err
		}
		defer b.Destroy()
		bufs[i] = b
	}
	return matmulRate(n, reps, func() error { return d.Linear(bufs[3], bufs[0], bufs[1], bufs[2], n, n, n, false) })
}
