package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"asbm/backend/cpu"
	"asbm/backend/gpu"
	"asbm/shaders"
	"asbm/weights"
)

// benchArch returns the U-Net `backend train` uses for the named data set's shape.
func benchArch(name string) (weights.Arch, error) {
	switch name {
	case "mnist":
		return defaultImageConfig("mnist", 1, 28).Arch, nil
	case "emoji":
		return defaultImageConfig("emoji", 3, 32).Arch, nil
	}
	return weights.Arch{}, usagef("--arch must be mnist or emoji, got %q", name)
}

// benchRow is one line of the engine table.
type benchRow struct {
	engine         string
	batch          int
	fwdMS, stepMS  float64 // medians
	fwdGF, stepGF  float64 // achieved GFLOP/s
	ceiling        float64 // the engine's matmul ceiling, GFLOP/s
	ceilingComment string
}

func runBench(args []string, stdout io.Writer) error {
	fs := newFlags("bench")
	archName := fs.String("arch", "mnist", "U-Net to time: mnist (1×28×28) or emoji (3×32×32), the default sizes of `backend train`")
	batchList := fs.String("batches", "1,16,128", "comma-separated batch sizes")
	reps := fs.Int("reps", 3, "timed repetitions per measurement (the median is reported; one untimed warm-up precedes them)")
	devices := fs.String("device", "cpu,gpu", "engines to time: cpu (gorgonia), gpu (WGSL on native WebGPU), or both")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	arch, err := benchArch(*archName)
	if err != nil {
		return err
	}
	var batches []int
	for _, f := range strings.Split(*batchList, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || b < 1 || b > 4096 {
			return usagef("--batches wants integers in [1, 4096] such as 1,16,128; got %q", *batchList)
		}
		batches = append(batches, b)
	}
	if *reps < 1 || *reps > 1000 {
		return usagef("--reps must be in [1, 1000], got %d", *reps)
	}
	engines := strings.Split(*devices, ",")
	for _, e := range engines {
		if e != "cpu" && e != "gpu" {
			return usagef("--device wants cpu, gpu or cpu,gpu; got %q", *devices)
		}
	}
	flops := float64(shaders.UNetFLOPs(arch))
	fmt.Fprintf(stdout, "U-Net %s: %d×%d×%d, base %d, mults %v, %d res blocks; %.1f MFLOP per forward per image (a training step counts 3×: forward, backward-data, backward-weights)\n",
		*archName, arch.Channels, arch.Height, arch.Width, arch.Base, arch.Mults, arch.ResBlocks, flops/1e6)

	var rows []benchRow
	for _, e := range engines {
		var (
			newModel func() (engineModel, error)
			ceil     float64
			note     string
			err      error
		)
		cfg := cpu.DefaultConfig()
		switch e {
		case "cpu":
			newModel = func() (engineModel, error) { return cpu.New(arch, cfg, 1) }
			if ceil, err = sgemmGFLOPs(1024, *reps); err != nil {
				return err
			}
			note = "gonum sgemm 1024³"
		case "gpu":
			var dev *shaders.Device
			dev, err = gpu.Device()
			if err != nil {
				fmt.Fprintf(stdout, "gpu: skipped: %v\n", err)
				continue
			}
			fmt.Fprintf(stdout, "gpu adapter: %s\n", dev.AdapterInfo())
			if ceil, err = gpuMatmulGFLOPs(dev, 1024, *reps); err != nil {
				return err
			}
			note = "linear.wgsl 1024³"
			newModel = func() (engineModel, error) { return gpu.New(arch, cfg, 1) }
		}
		for _, b := range batches {
			m, err := newModel()
			if err != nil {
				return err
			}
			fwd, step, err := timeModel(m, arch, b, *reps)
			if c, ok := m.(interface{ Close() }); ok {
				c.Close()
			}
			if err != nil {
				return err
			}
			rows = append(rows, benchRow{engine: e, batch: b, fwdMS: fwd * 1e3, stepMS: step * 1e3,
				fwdGF: flops * float64(b) / fwd / 1e9, stepGF: 3 * flops * float64(b) / step / 1e9,
				ceiling: ceil, ceilingComment: note})
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "engine\tbatch\tforward ms\tforward GFLOP/s\tstep ms\tstep GFLOP/s\tmatmul ceiling GFLOP/s\tstep / ceiling\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f (%s)\t%.0f%%\t\n", r.engine, r.batch, r.fwdMS, r.fwdGF,
			r.stepMS, r.stepGF, r.ceiling, r.ceilingComment, 100*r.stepGF/r.ceiling)
	}
	return tw.Flush()
}

// timeModel returns the median seconds of one forward (Eval) and one training step (Step) of m on
// a batch of b random images, after one untimed call of each.
func timeModel(m engineModel, a weights.Arch, b, reps int) (fwd, step float64, err error) {
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
		f()
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

// sgemmGFLOPs measures gonum's float32 matrix multiply (the BLAS gorgonia's matmuls and
// convolutions call) on n×n matrices: the CPU engine's ceiling.
func sgemmGFLOPs(n, reps int) (float64, error) {
	mk := func() blas32.General {
		g := blas32.General{Rows: n, Cols: n, Stride: n, Data: make([]float32, n*n)}
		for i := range g.Data {
			g.Data[i] = float32(i%13) * 0.01
		}
		return g
	}
	a, b, c := mk(), mk(), mk()
	return matmulRate(n, reps, func() error { blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, a, b, 0, c); return nil })
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
