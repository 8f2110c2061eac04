package model

import (
	"fmt"
	"math/rand/v2"
)

// NoiseStream is the PCG stream (increment) of every noise generator of the project: "ASBM" in ASCII.
// The browser reproduces `backend sample` because both draw from rand.NewPCG(seed, NoiseStream).
const NoiseStream uint64 = 0x4153424D

// Noise is the project's seeded noise source: rand.New(rand.NewPCG(seed, NoiseStream)), standard
// normal values drawn one at a time as float32(r.NormFloat64()), row-major. The training loops also take
// their uniform times, data batches and shuffles from it, so one seed fixes a whole run and its state
// (MarshalBinary) is all a checkpoint needs to resume the stream.
type Noise struct {
	src *rand.PCG
	rng *rand.Rand
}

// NewNoise returns the generator for seed.
func NewNoise(seed uint64) *Noise {
	src := rand.NewPCG(seed, NoiseStream)
	return &Noise{src: src, rng: rand.New(src)}
}

// Fill overwrites dst with standard normal values, in index order.
func (n *Noise) Fill(dst []float32) {
	for i := range dst {
		dst[i] = float32(n.rng.NormFloat64())
	}
}

// Normal returns count fresh standard normal values.
func (n *Noise) Normal(count int) []float32 {
	v := make([]float32, count)
	n.Fill(v)
	return v
}

// Rand is the underlying generator, for uniforms, permutations and data sampling. math/rand/v2's Rand
// keeps no state of its own beyond the PCG, so MarshalBinary captures it too.
func (n *Noise) Rand() *rand.Rand { return n.rng }

// MarshalBinary encodes the generator's state (PCG's own encoding).
func (n *Noise) MarshalBinary() ([]byte, error) { return n.src.MarshalBinary() }

// UnmarshalBinary restores a state written by MarshalBinary.
func (n *Noise) UnmarshalBinary(b []byte) error {
	if err := n.src.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("noise state: %w", err)
	}
	return nil
}
