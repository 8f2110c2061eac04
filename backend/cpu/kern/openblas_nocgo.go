//go:build !cgo

package kern

import "errors"

// openBLAS cannot load anything without cgo.
func openBLAS() (string, error) {
	return "", errors.New("built without cgo, so OpenBLAS cannot be loaded")
}

func setThreads(int) {}

func gemmFast(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	GemmGo(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
