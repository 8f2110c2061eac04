//go:build cgo

package kern

/*
#cgo CFLAGS: -O3
#include <string.h>

// col2im of im2col.go. Rows are short (8–32 values): a plain loop that GCC vectorises adds them
// 2.7× faster than Go's scalar loop (BenchmarkCol2Im). Same order of additions as the Go loop, so
// results are identical. (An im2col in C was slower than Go's copy and clear calls, so there is none.)

#define COL2IM_BODY(SUFFIX, ATTR) \
ATTR static void col2im_##SUFFIX(const float *cols, float *dxp, int ld, int cin, int h, int w, int k, \
	int r0, int r1) { \
	const int hw = h * w, pad = k / 2; \
	for (int ci = 0; ci < cin; ci++) { \
		float *plane = dxp + (size_t)ci * hw; \
		for (int kh = 0; kh < k; kh++) { \
			const int dy = kh - pad; \
			for (int kw = 0; kw < k; kw++) { \
				const int dx = kw - pad; \
				const float *row = cols + (size_t)((ci * k + kh) * k + kw) * ld; \
				const int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? w - dx : w; \
				const int y0 = dy < 0 && -dy > r0 ? -dy : r0, y1 = h - dy < r1 ? h - dy : r1; \
				for (int yy = y0; yy < y1; yy++) { \
					const float *src = row + (yy - r0) * w; \
					float *dst = plane + (yy + dy) * w + dx; \
					for (int j = x0; j < x1; j++) dst[j] += src[j]; \
				} \
			} \
		} \
	} \
}

COL2IM_BODY(avx512, __attribute__((target("avx512f,avx512vl"))))
COL2IM_BODY(avx2, __attribute__((target("avx2"))))
COL2IM_BODY(base, )

static int col2im_level = -1;

static void asbm_col2im(const float *cols, float *dxp, int ld, int cin, int h, int w, int k, int r0, int r1) {
	if (col2im_level < 0) {
		__builtin_cpu_init();
		col2im_level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") ? 2 :
			__builtin_cpu_supports("avx2") ? 1 : 0;
	}
	if (col2im_level == 2) col2im_avx512(cols, dxp, ld, cin, h, w, k, r0, r1);
	else if (col2im_level == 1) col2im_avx2(cols, dxp, ld, cin, h, w, k, r0, r1);
	else col2im_base(cols, dxp, ld, cin, h, w, k, r0, r1);
}
*/
import "C"

func col2imC(cols, dx []float32, ld, cin, h, w, k, y0, y1 int) {
	C.asbm_col2im(fp(cols), fp(dx), C.int(ld), C.int(cin), C.int(h), C.int(w), C.int(k), C.int(y0), C.int(y1))
}
