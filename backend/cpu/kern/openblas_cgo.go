//go:build cgo

package kern

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// The CBLAS prototypes are declared here rather than included, so the build needs no OpenBLAS
// headers: the library is found at run time.
typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
	const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*set_threads_fn)(int);
typedef char *(*config_fn)(void);

static sgemm_fn asbm_sgemm_p;
static set_threads_fn asbm_set_threads_p;
static config_fn asbm_config_p;

// asbm_open loads the first library of names that has cblas_sgemm; it returns NULL on success or
// the loader's last message.
static const char *asbm_open(void) {
	const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
	const char *err = "no library name tried";
	for (int i = 0; i < 2; i++) {
		void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		if (!h) { err = dlerror(); continue; }
		asbm_sgemm_p = (sgemm_fn)dlsym(h, "cblas_sgemm");
		asbm_set_threads_p = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
		asbm_config_p = (config_fn)dlsym(h, "openblas_get_config");
		if (asbm_sgemm_p && asbm_set_threads_p) return NULL;
		err = "the library has no cblas_sgemm or openblas_set_num_threads";
	}
	return err;
}

static void asbm_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
	const float *b, int ldb, float beta, float *c, int ldc) {
	// 101 = CblasRowMajor, 111 = CblasNoTrans, 112 = CblasTrans.
	asbm_sgemm_p(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void asbm_set_threads(int n) { asbm_set_threads_p(n); }
static const char *asbm_config(void) { return asbm_config_p ? asbm_config_p() : ""; }
*/
import "C"

import (
	"errors"
	"strings"
)

// openBLAS loads OpenBLAS and sets it to one thread (see the package comment).
func openBLAS() (string, error) {
	if msg := C.asbm_open(); msg != nil {
		return "", errors.New("OpenBLAS not loadable: " + C.GoString(msg))
	}
	C.asbm_set_threads(1)
	name := "OpenBLAS"
	if cfg := strings.TrimSpace(C.GoString(C.asbm_config())); strings.HasPrefix(cfg, "OpenBLAS") {
		name = cfg // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64": version and kernel
	}
	return name, nil
}

func setThreads(n int) { C.asbm_set_threads(C.int(n)) }

func b2i(v bool) C.int {
	if v {
		return 1
	}
	return 0
}

func gemmFast(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if k == 0 { // only C's scaling is left, and OpenBLAS would still want A's and B's pointers
		GemmGo(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	C.asbm_sgemm(b2i(tA), b2i(tB), C.int(m), C.int(n), C.int(k), C.float(alpha), (*C.float)(&a[0]), C.int(lda),
		(*C.float)(&b[0]), C.int(ldb), C.float(beta), (*C.float)(&c[0]), C.int(ldc))
}
