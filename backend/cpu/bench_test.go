package cpu

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"asbm/model"
	"asbm/weights"
)

// toyArch is the default 2-D toy architecture (asbm.md §6.1, common notes).
var toyArch = weights.Arch{Kind: "mlp", Dim: 2, Hidden: 128, Layers: 3, Fourier: 8}

// cpuTime is the user+system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs f b.N times and also reports the process CPU time per op ("cpu-ms/op"): on a machine
// shared with other jobs wall time swings by 2-3×, while the CPU time of the work stays comparable.
func loop(b *testing.B, f func()) {
	b.ReportAllocs()
	c0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		f()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-c0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

func randBatch(r *rand.Rand, n, d int) (t, x, w, y []float32) {
	t = make([]float32, n)
	x = make([]float32, n*d)
	w = make([]float32, n)
	y = make([]float32, n*d)
	for i := range t {
		t[i] = r.Float32()
		w[i] = 0.5 + r.Float32()
	}
	for i := range x {
		x[i] = float32(r.NormFloat64())
		y[i] = float32(r.NormFloat64())
	}
	return
}

// BenchmarkStep measures one training step (forward, gradient, AdamW, EMA) at batch 512 on the toy
// architecture.
func BenchmarkStep(b *testing.B) {
	m, err := New(toyArch, DefaultConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	t, x, w, y := randBatch(rand.New(rand.NewPCG(1, 2)), 512, toyArch.Dim)
	m.Step(t, x, w, y) // compile the graph outside the timing
	loop(b, func() {
		m.Step(t, x, w, y)
	})
}

// BenchmarkEval measures a gorgonia forward of 4096 rows (the simulation batch).
func BenchmarkEval(b *testing.B) {
	m, err := New(toyArch, DefaultConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	t, x, _, _ := randBatch(rand.New(rand.NewPCG(1, 2)), 4096, toyArch.Dim)
	out := make([]float32, len(x))
	m.Eval(t, x, out)
	loop(b, func() {
		m.Eval(t, x, out)
	})
}

// BenchmarkEMAEvalGorgonia measures a gorgonia forward graph bound to the EMA parameters on 4096
// rows: the alternative EMA().Eval was measured against.
func BenchmarkEMAEvalGorgonia(b *testing.B) {
	m, err := New(toyArch, DefaultConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	t, x, _, _ := randBatch(rand.New(rand.NewPCG(1, 2)), 4096, toyArch.Dim)
	out := make([]float32, len(x))
	ng, err := buildGraph(m.arch, m.ema, 4096, false)
	if err != nil {
		b.Fatal(err)
	}
	loop(b, func() {
		m.fillInput(ng.x, t, x)
		ng.run()
		copy(out, f32(ng.pred))
	})
}

// BenchmarkEMAEval measures EMA().Eval (the plain-Go forward) of 4096 rows.
func BenchmarkEMAEval(b *testing.B) {
	m, err := New(toyArch, DefaultConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	t, x, _, _ := randBatch(rand.New(rand.NewPCG(1, 2)), 4096, toyArch.Dim)
	out := make([]float32, len(x))
	e := m.EMA()
	e.Eval(t, x, out)
	loop(b, func() {
		e.Eval(t, x, out)
	})
}

// BenchmarkStepStockOps is BenchmarkStep with the layers built from gorgonia's stock ops
// (BroadcastAdd, Sigmoid, HadamardProd) instead of the fused ones: what fusing saves.
func BenchmarkStepStockOps(b *testing.B) {
	m, err := New(toyArch, DefaultConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	ng, err := buildGraphWith(m.arch, m.p, 512, true, true)
	if err != nil {
		b.Fatal(err)
	}
	m.train.m[512], m.train.order = ng, append(m.train.order, 512)
	t, x, w, y := randBatch(rand.New(rand.NewPCG(1, 2)), 512, toyArch.Dim)
	m.Step(t, x, w, y)
	loop(b, func() {
		m.Step(t, x, w, y)
	})
}

// unetBench runs one U-Net benchmark per batch size: a training step (Step: forward, gradient,
// AdamW, EMA) or a forward (Eval), with the fused ops or, when stock is set, gorgonia's own ops. Next
// to ns/op and cpu-ms/op it reports ms/op, images/s and the arithmetic rate per wall second
// (GFLOP/s) and per second of process CPU time (GFLOP/cpu-s, steadier on a shared machine), counting
// model.UNetFLOPs per image for a forward and three times that for a step (the backward pass
// computes a data and a weight gradient for every conv and linear layer).
func unetBench(b *testing.B, a weights.Arch, train, stock bool, batches ...int) {
	for _, n := range batches {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			m, err := New(a, DefaultConfig(), 1)
			if err != nil {
				b.Fatal(err)
			}
			if stock {
				ng, err := buildGraphWith(a, m.p, n, train, true)
				if err != nil {
					b.Fatal(err)
				}
				cache := m.fwd
				if train {
					cache = m.train
				}
				cache.m[n], cache.order = ng, append(cache.order, n)
			}
			t, x, w, y := randBatch(rand.New(rand.NewPCG(1, 2)), n, a.Dim)
			out := make([]float32, len(x))
			run := func() { m.Eval(t, x, out) }
			flops := float64(model.UNetFLOPs(a)) * float64(n)
			if train {
				run = func() { m.Step(t, x, w, y) }
				flops *= 3
			}
			run() // compile the graph outside the timing
			start, c0 := time.Now(), cpuTime()
			loop(b, run)
			per := time.Since(start).Seconds() / float64(b.N)
			cpu := (cpuTime() - c0).Seconds() / float64(b.N)
			b.ReportMetric(per*1e3, "ms/op")
			b.ReportMetric(float64(n)/per, "images/s")
			b.ReportMetric(flops/per/1e9, "GFLOP/s")
			b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
		})
	}
}

// BenchmarkUNetStep measures a training step of the default MNIST U-Net (fused ops).
func BenchmarkUNetStep(b *testing.B) { unetBench(b, mnistUNet, true, false, 1, 16, 128) }

// BenchmarkUNetEval measures a forward of the default MNIST U-Net (fused ops).
func BenchmarkUNetEval(b *testing.B) { unetBench(b, mnistUNet, false, false, 1, 16, 128) }

// BenchmarkUNetStepStock is BenchmarkUNetStep with gorgonia's own ops (G.Conv2d, ...): what the
// fused ops save.
func BenchmarkUNetStepStock(b *testing.B) { unetBench(b, mnistUNet, true, true, 1, 16) }

// BenchmarkUNetEvalStock is BenchmarkUNetEval with gorgonia's own ops.
func BenchmarkUNetEvalStock(b *testing.B) { unetBench(b, mnistUNet, false, true, 1, 16) }
