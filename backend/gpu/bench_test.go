package gpu

import (
	"math/rand/v2"
	"testing"

	"asbm/backend/asbm"
	"asbm/backend/cpu"
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
