package kern

import (
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// refGemm is C = alpha·op(A)·op(B) + beta·C in float64 with plain loops: the reference.
func refGemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += float64(elem(a, lda, i, p, tA)) * float64(elem(b, ldb, p, j, tB))
			}
			out[i*n+j] = float64(alpha)*s + float64(beta)*float64(c[i*ldc+j])
		}
	}
	return out
}

// elem is op(M)[i, j] of a row-major matrix M with leading dimension ld, transposed when tr.
func elem(s []float32, ld, i, j int, tr bool) float32 {
	if tr {
		return s[j*ld+i]
	}
	return s[i*ld+j]
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

type gemmFunc func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// checkAgainstRef runs f on fresh random matrices of every transpose combination and a range of
// shapes (with leading dimensions wider than the rows, and alpha, beta ∉ {0, 1}), and compares with
// refGemm: the worst |f − ref| / (|alpha|·Σ_p |a||b| + |beta·c|) must stay under 1e-5 (float32
// summation of up to 300 terms).
func checkAgainstRef(t *testing.T, f gemmFunc) {
	r := rand.New(rand.NewPCG(7, uint64(len(t.Name()))))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {16, 33, 9}, {32, 100, 288}, {70, 3, 130}, {5, 64, 1}}
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, ab := range [][2]float32{{1, 0}, {1, 1}, {-0.7, 0.3}} {
					alpha, beta := ab[0], ab[1]
					lda := k + 3
					if tA {
						lda = m + 2
					}
					ldb := n + 1
					if tB {
						ldb = k + 4
					}
					ldc := n + 5
					ar, br := m, k
					if tA {
						ar = k
					}
					if tB {
						br = n
					}
					a, b, c := randSlice(r, ar*lda), randSlice(r, br*ldb), randSlice(r, m*ldc)
					want := refGemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
					got := append([]float32(nil), c...)
					f(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc)
					worst := 0.0
					for i := 0; i < m; i++ {
						for j := 0; j < n; j++ {
							var scale float64
							for p := 0; p < k; p++ {
								scale += math.Abs(float64(elem(a, lda, i, p, tA)) * float64(elem(b, ldb, p, j, tB)))
							}
							scale = math.Abs(float64(alpha))*scale + math.Abs(float64(beta)*float64(c[i*ldc+j])) + 1e-30
							worst = max(worst, math.Abs(float64(got[i*ldc+j])-want[i*n+j])/scale)
						}
						// Padding columns of C must be left alone.
						for j := n; j < ldc && i*ldc+j < len(c); j++ {
							if got[i*ldc+j] != c[i*ldc+j] {
								t.Fatalf("m,n,k=%d,%d,%d tA=%v tB=%v: C[%d, %d] beyond n was written", m, n, k, tA, tB, i, j)
							}
						}
					}
					if worst > 1e-5 {
						t.Errorf("m,n,k=%d,%d,%d tA=%v tB=%v alpha=%g beta=%g: worst relative error %.3g > 1e-5", m, n, k, tA, tB, alpha, beta, worst)
					}
				}
			}
		}
	}
}

// TestGemmGo checks the pure-Go path against the float64 reference.
func TestGemmGo(t *testing.T) { checkAgainstRef(t, GemmGo) }

// TestGemm checks Gemm (OpenBLAS where it loads) against the float64 reference. With
// ASBM_REQUIRE_OPENBLAS=1 (set by build.sh test, which installs it) a missing OpenBLAS fails.
func TestGemm(t *testing.T) {
	t.Logf("implementation: %s", Name())
	if !Fast() {
		if os.Getenv("ASBM_REQUIRE_OPENBLAS") == "1" {
			t.Fatalf("ASBM_REQUIRE_OPENBLAS=1 but %s", Hint())
		}
		t.Logf("%s", Hint())
	}
	checkAgainstRef(t, Gemm)
	if Fast() && (Hint() != "" || !strings.Contains(Name(), "OpenBLAS")) {
		t.Errorf("fast path loaded, but Name %q / Hint %q disagree", Name(), Hint())
	}
}

// TestGemmConcurrent runs Gemm from several goroutines at once (the engine's use: one per core) and
// checks each result against GemmGo.
func TestGemmConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m, n, k, workers = 48, 200, 96, 4
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	want := make([]float32, m*n)
	GemmGo(false, false, m, n, k, 1, a, k, b, n, 0, want, n)
	errs := make(chan float64, workers)
	for w := 0; w < workers; w++ {
		go func() {
			got := make([]float32, m*n)
			worst := 0.0
			for rep := 0; rep < 50; rep++ {
				Gemm(false, false, m, n, k, 1, a, k, b, n, 0, got, n)
				for i := range got {
					worst = max(worst, math.Abs(float64(got[i]-want[i]))/(1+math.Abs(float64(want[i]))))
				}
			}
			errs <- worst
		}()
	}
	for w := 0; w < workers; w++ {
		if e := <-errs; e > 1e-4 {
			t.Errorf("concurrent Gemm differs from GemmGo by %.3g", e)
		}
	}
}

// TestImplementation checks that the gonum adapter routes blas32.Gemm through Gemm.
func TestImplementation(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const m, n, k = 9, 11, 13
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	c := make([]float32, m*n)
	was := blas32.Implementation()
	blas32.Use(Implementation{})
	defer blas32.Use(was)
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, blas32.General{Rows: m, Cols: k, Stride: k, Data: a},
		blas32.General{Rows: k, Cols: n, Stride: n, Data: b}, 0, blas32.General{Rows: m, Cols: n, Stride: n, Data: c})
	want := refGemm(false, false, m, n, k, 1, a, k, b, n, 0, make([]float32, m*n), n)
	for i := range c {
		if math.Abs(float64(c[i])-want[i]) > 1e-4*(1+math.Abs(want[i])) {
			t.Fatalf("c[%d] = %g, want %g", i, c[i], want[i])
		}
	}
}

// TestShortSlicePanics checks that a slice too short for its matrix panics in Go, before C reads it.
func TestShortSlicePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "has 5 values") {
			t.Fatalf("want a panic naming the short slice, got %v", r)
		}
	}()
	Gemm(false, false, 2, 3, 4, 1, make([]float32, 5), 4, make([]float32, 12), 3, 0, make([]float32, 6), 3)
}
