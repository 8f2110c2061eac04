package gpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"asbm/backend/asbm"
	"asbm/backend/cpu"
	"asbm/model"
	"asbm/weights"
)

// BenchmarkStep compares one training step of the default toy arch on a batch of 1024 on the GPU
// engine (whatever adapter the host has; lavapipe on a machine without a GPU) and the gorgonia one.
func BenchmarkStep(b *testing.B) {
	cfg := cpu.DefaultConfig()
	r := rand.New(rand.NewPCG(1, 2))
	tv, x, w, y := batch(r, 1024, true)
	for _, e := range []struct {
		name string
		new  func() (asbm.Model, error)
	}{
		{"gpu", func() (asbm.Model, error) {
			if _, err := Device(); err != nil {
				b.Skip(err)
			}
			return New(toyArch, cfg, 1)
		}},
		{"cpu", func() (asbm.Model, error) { return cpu.New(toyArch, cfg, 1) }},
	} {
		b.Run(e.name, func(b *testing.B) {
			m, err := e.new()
			if err != nil {
				b.Fatal(err)
			}
			if g, ok := m.(*Net); ok {
				defer g.Close()
			}
			m.Step(tv, x, w, y)
			b.ResetTimer()
			for range b.N {
				m.Step(tv, x, w, y)
			}
		})
	}
}

// mnistUNet is the default MNIST U-Net (145,697 parameters, 47 MFLOP per forward pass).
var mnistUNet = weights.Arch{Kind: "unet", Dim: 784, Channels: 1, Height: 28, Width: 28, Base: 16,
	Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}

// BenchmarkUNet times one training step (forward, loss, backward, AdamW + EMA, loss readback) and one
// forward pass (Eval: upload, forward, readback) of the default MNIST U-Net on the GPU engine at
// batch 1, 16 and 128, on whatever adapter the host has (lavapipe on a machine without a GPU: expect
// seconds per step at batch 128). Run with
//
//	go test ./backend/gpu -run XXX -bench UNet -benchtime 3x
//
// Besides ns/op it reports ms per call, images/s and the arithmetic rate (a step counted as three
// forward passes' FLOPs, model.UNetFLOPs).
func BenchmarkUNet(b *testing.B) {
	if _, err := Device(); err != nil {
		b.Skip(err)
	}
	g, err := New(mnistUNet, cpu.DefaultConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	flops := float64(model.UNetFLOPs(mnistUNet))
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 16, 128} {
		tv, x, w, y := imageBatch(r, n, mnistUNet.Dim, true)
		out := make([]float32, len(x))
		for _, c := range []struct {
			name   string
			passes float64
			run    func()
		}{
			{"step", 3, func() { g.Step(tv, x, w, y) }},
			{"forward", 1, func() { g.Eval(tv, x, out) }},
		} {
			b.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(b *testing.B) {
				c.run() // records the plan and compiles the kernels
				b.ResetTimer()
				for range b.N {
					c.run()
				}
				s := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(1e3*s, "ms/call")
				b.ReportMetric(float64(n)/s, "images/s")
				b.ReportMetric(c.passes*flops*float64(n)/s/1e9, "GFLOP/s")
			})
		}
	}
}
