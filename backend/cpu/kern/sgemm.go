// Package kern holds the CPU engine's hot loops: the float32 matrix multiply (Gemm, this file), group
// norm + SiLU and its statistics (gn.go), im2col/col2im (im2col.go) and float64 sums (sum.go). Each
// has a Go twin (…Go) that is the fallback and the reference its tests compare with.
//
// Gemm is OpenBLAS's cblas_sgemm when the shared library can be loaded (cgo, dlopen of
// libopenblas.so.0 at start-up, so `go build` needs a C compiler but neither OpenBLAS nor its
// headers), else a pure-Go fallback of blocked axpy/dot loops over gonum's SSE kernels (the CPU
// engine's convolutions before this package existed). The other loops are C that GCC vectorises,
// with AVX-512, AVX2 or baseline bodies picked at run time.
//
// Measured on the 2-core AMD EPYC build machine (`go run ./backend bench`): OpenBLAS 0.3.21 reaches
// about 190 GFLOP/s on 1024³ with two threads and about 100 with one with its AVX2 kernels (the
// OPENBLAS_CORETYPE=Haswell these machines set), 320–360 and 200 with its AVX-512 ones; the pure-Go
// loops about 16 on one goroutine.
//
// Gemm runs on the calling goroutine's thread: OpenBLAS is set to one thread of its own at load,
// because the engine splits its work over the cores itself (one goroutine per core, each with its
// own images), and OpenBLAS's worker threads busy-wait after each call, which would steal those
// cores. SetThreads changes that for callers (benchmarks, a single large product) that want
// OpenBLAS's threading.
package kern

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

var (
	loadOnce sync.Once
	loadErr  error // why OpenBLAS is not used (nil when it is)
	fastName string
	pureGo   atomic.Bool // ASBM_BLAS=go or SetPureGo: every kernel takes its Go loop
)

// load tries OpenBLAS once, unless ASBM_BLAS=go asks for the pure-Go path (of every kernel here: the
// way to time or check the fallback on a machine that has OpenBLAS).
func load() {
	loadOnce.Do(func() {
		if os.Getenv("ASBM_BLAS") == "go" {
			pureGo.Store(true)
			loadErr = fmt.Errorf("ASBM_BLAS=go asks for the pure-Go path")
			return
		}
		fastName, loadErr = openBLAS()
	})
}

// Fast reports whether Gemm runs on OpenBLAS.
func Fast() bool {
	load()
	return loadErr == nil && !pureGo.Load()
}

// SetPureGo switches every kernel of the package to its Go loop (on) or back to the fast path where
// it loaded (off): how tests check that the two paths agree, and that a run moves between them. It
// is safe to call at any time; calls in flight finish on the path they started on.
func SetPureGo(on bool) {
	load()
	pureGo.Store(on || os.Getenv("ASBM_BLAS") == "go")
}

// Name describes the implementation Gemm runs on, for logs and benchmark tables.
func Name() string {
	if Fast() {
		return fastName
	}
	return "pure Go (gonum asm axpy/dot loops)"
}

// Hint is one line telling how to get the fast path, or "" when Gemm already runs on it.
func Hint() string {
	load()
	if loadErr == nil {
		return ""
	}
	return fmt.Sprintf("slow pure-Go matrix multiply (%v): for ~10× faster CPU training install OpenBLAS "+
		"(Debian/Ubuntu: apt-get install libopenblas-dev) and build with cgo (a C compiler; CGO_ENABLED=1)", loadErr)
}

// SetThreads sets how many threads OpenBLAS may use per call (1 at load; see the package comment).
// It does nothing on the pure-Go path.
func SetThreads(n int) {
	if Fast() && n >= 1 {
		setThreads(n)
	}
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices: op(A) is m×k (A is k×m with
// leading dimension lda when tA), op(B) is k×n, C is m×n with leading dimension ldc. Slices must hold
// their matrices; short ones panic.
func Gemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if Fast() {
		gemmFast(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	GemmGo(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGemm panics with the offending sizes when a slice is too short for its matrix, before any C
// code could read past it.
func checkGemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	need := func(what string, s []float32, rows, cols, ld int) {
		if rows == 0 || cols == 0 {
			return
		}
		if ld < cols || len(s) < (rows-1)*ld+cols {
			panic(fmt.Sprintf("sgemm: %s is %d×%d with leading dimension %d, but has %d values", what, rows, cols, ld, len(s)))
		}
	}
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	need("A", a, ar, ac, lda)
	need("B", b, br, bc, ldb)
	need("C", c, m, n, ldc)
}

// kBlock is the number of rows of B (NN, TN) or of inner-dimension columns (NT) the pure-Go loops
// stream per pass over C, so those rows and C's rows stay in the L2 cache together.
const kBlock = 64

// GemmGo is Gemm on the pure-Go path whatever is loaded: the reference the fast path is tested
// against, and the fallback. NN and TN are loops of full-row axpys, NT of dots (gonum's SSE kernels);
// gonum's own sgemm cuts rows into 64-wide blocks and spent nearly as long on the loops around them
// as on the arithmetic at the convolutions' shapes (cout 16–64, rows of up to 1024 pixels). TT, which
// the engine never uses, goes to gonum.
func GemmGo(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if tA && tB {
		gonum.Implementation{}.Sgemm(blas.Trans, blas.Trans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
	if alpha == 0 || k == 0 {
		return
	}
	at := func(i, p int) float32 { // op(A)[i, p]
		if tA {
			return a[p*lda+i]
		}
		return a[i*lda+p]
	}
	// gonum's own kernels, not the blas32 globals: those may be pointed at this package.
	impl := gonum.Implementation{}
	for p0 := 0; p0 < k; p0 += kBlock {
		p1 := min(k, p0+kBlock)
		for i := 0; i < m; i++ {
			cr := c[i*ldc : i*ldc+n]
			if tB { // C[i, j] += alpha·Σ_p A[i, p]·B[j, p]
				ar := a[i*lda+p0 : i*lda+p1]
				for j := 0; j < n; j++ {
					cr[j] += alpha * impl.Sdot(p1-p0, ar, 1, b[j*ldb+p0:j*ldb+p1], 1)
				}
				continue
			}
			for p := p0; p < p1; p++ { // C[i, :] += alpha·op(A)[i, p]·B[p, :]
				if v := at(i, p); v != 0 {
					impl.Saxpy(n, alpha*v, b[p*ldb:p*ldb+n], 1, cr, 1)
				}
			}
		}
	}
}

// Implementation is a gonum BLAS whose Sgemm is Gemm (all else is gonum's), for blas32.Use and
// gorgonia.Use, so gorgonia's matrix products and gonum's blas32.Gemm take the fast path too.
type Implementation struct{ gonum.Implementation }

// Sgemm is Gemm behind gonum's signature.
func (Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Gemm(tA != blas.NoTrans, tB != blas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
