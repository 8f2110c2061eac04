package cpu

import (
	"gonum.org/v1/gonum/blas/blas32"
	G "gorgonia.org/gorgonia"

	"asbm/backend/cpu/kern"
)

// Every matrix product of the engine goes through kern.Gemm (OpenBLAS when it loads, else the pure-Go
// loops): the convolutions call it directly, and gorgonia's own products (the U-Net's time-embedding
// linears, the MLP's layers) and gonum's blas32 (the MLP's plain forward) are pointed at it here.
func init() {
	G.Use(kern.Implementation{})
	blas32.Use(kern.Implementation{})
}

// BLAS names the matrix multiply the engine runs on, for logs ("OpenBLAS …" or "pure Go …").
func BLAS() string { return kern.Name() }

// BLASHint is one line telling how to get the fast matrix multiply, or "" when it is in use.
func BLASHint() string { return kern.Hint() }
