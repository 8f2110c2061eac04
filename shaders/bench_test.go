package shaders

import (
	"math/rand/v2"
	"testing"
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
		g, err := NewGPUNet(d, m)
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		p, err := g.newPlan(n)
		if err != nil {
			b.Fatal(err)
		}
		defer p.release()
		xb, tb := upload(b, d, x), upload(b, d, tv)
		run := func() {
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
