package shaders

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"asbm/model"
	"asbm/weights"
)

// BenchmarkMLPForward times one forward pass of the default toy MLP (2-128-128-128-2, 8 Fourier
// frequencies) on 2000 points: on the adapter with upload and readback (Forward), on the adapter with
// the data already resident (the samplers' path), and ForwardCPU on one goroutine. The ms/forward
// column is the number to quote; compare on one machine and run only.
func BenchmarkMLPForward(b *testing.B) {
	const n = 2000
	a := testArchs[0]
	m := randomMLP(b, a, 1, 1)
	r := rand.New(rand.NewPCG(2, 3))
	tv := uniforms(r, n, 0, 1)
	x := normals(r, n*a.Dim, 1)
	report := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1e3/float64(b.N), "ms/forward")
	}
	b.Run("gpu-forward", func(b *testing.B) {
		d := gpu(b)
		g, err := NewGPUNet(d, m)
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		if _, err := g.Forward(tv, x); err != nil { // compile and allocate outside the timing
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := g.Forward(tv, x); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("gpu-resident", func(b *testing.B) {
		d := gpu(b)
		xb, tb := upload(b, d, x), upload(b, d, tv)
		run := planRunner(b, d, NewGPUNet, m, n, xb, tb)
		run()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			run()
		}
		report(b)
	})
	b.Run("cpu", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			m.ForwardCPU(tv, x)
		}
		report(b)
	})
}

// BenchmarkUNetForwardF16 times the device-resident forward pass (the samplers' path) of a 16×16
// base-8 U-Net on 16 images with f32 weights (NewGPUNet) and with f16 weights (NewGPUNetF16). Each
// iteration runs one pass of each, alternating which goes first, so that a shared machine's
// changing load hits both alike; it reports each one's median over the b.N iterations
// (f32-median-ms, f16-median-ms). No assertion: run it with -benchtime=15x and compare within one
// run on one machine.
func BenchmarkUNetForwardF16(b *testing.B) {
	const n = 16
	a := weights.Arch{Kind: "unet", Dim: 256, Channels: 1, Height: 16, Width: 16, Base: 8, Mults: []int{1, 2, 2},
		ResBlocks: 1, Groups: 8, TimeEmb: 64, Fourier: 16}
	m := randomUNet(b, a, 1)
	r := rand.New(rand.NewPCG(2, 3))
	tv := uniforms(r, n, 0, 1)
	x := normals(r, n*a.Dim, 1)
	d := gpu(b)
	xb, tb := upload(b, d, x), upload(b, d, tv)
	var runs [2]func()
	for i, mk := range []func(*Device, *model.Net) (*GPUNet, error){NewGPUNet, NewGPUNetF16} {
		runs[i] = planRunner(b, d, mk, m, n, xb, tb)
		runs[i]() // compile and allocate outside the timing
	}
	var ms [2][]float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range 2 {
			j := (i + k) % 2
			t0 := time.Now()
			runs[j]()
			ms[j] = append(ms[j], float64(time.Since(t0).Microseconds())/1e3)
		}
	}
	for j, name := range []string{"f32", "f16"} {
		slices.Sort(ms[j])
		b.ReportMetric(ms[j][len(ms[j])/2], name+"-median-ms")
	}
}

// planRunner builds m on d with mk and records its forward plan for n rows (both freed when b
// ends), and returns a function that runs the plan on x and t and waits for it.
func planRunner(b *testing.B, d *Device, mk func(*Device, *model.Net) (*GPUNet, error), m *model.Net, n int, xb, tb *Buffer) func() {
	g, err := mk(d, m)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Close)
	p, err := g.newPlan(n)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.release)
	return func() {
		bt, err := d.begin()
		if err != nil {
			b.Fatal(err)
		}
		if err := p.encode(bt, xb, tb, 1, 0); err != nil {
			b.Fatal(err)
		}
		if err := bt.submit(); err != nil {
			b.Fatal(err)
		}
		if err := d.wait(); err != nil {
			b.Fatal(err)
		}
	}
}
