package kern

// Im2Col and Col2Im move the k×k patches (k odd, stride 1, zero padding k/2, NCHW) of the output
// rows [y0, y1) of one image to and from the columns of a patch matrix, for the convolutions of
// backend/cpu/unetops.go. cols is a [cin·k·k, ld] matrix whose columns [0, (y1−y0)·w) belong to
// these pixels (images of a group sit side by side at cols[j·h·w:]); row (ci·k + kh)·k + kw holds
// x[ci, y+kh−k/2, x+kw−k/2], the order of a [cout, cin, k, k] weight's row. Im2Col is Go (copy and clear per row were faster than a C loop);
// Col2Im is a vectorised C loop on the cgo build (Go's scalar adds were 2.7× slower), with Col2ImGo
// as the fallback and the reference.

// Im2Col writes the patches of the output rows [y0, y1) of x [cin, h, w] into cols.
func Im2Col(x, cols []float32, ld, cin, h, w, k, y0, y1 int) {
	checkIm2Col(x, cols, ld, cin, h, w, k, y0, y1)
	Im2ColGo(x, cols, ld, cin, h, w, k, y0, y1)
}

// Col2Im adds the patch gradients in cols of the output rows [y0, y1) into dx [cin, h, w] (the
// adjoint of Im2Col).
func Col2Im(cols, dx []float32, ld, cin, h, w, k, y0, y1 int) {
	checkIm2Col(dx, cols, ld, cin, h, w, k, y0, y1)
	if useC() {
		col2imC(cols, dx, ld, cin, h, w, k, y0, y1)
		return
	}
	Col2ImGo(cols, dx, ld, cin, h, w, k, y0, y1)
}

func checkIm2Col(x, cols []float32, ld, cin, h, w, k, y0, y1 int) {
	n := (y1 - y0) * w
	if k < 1 || k%2 != 1 || y0 < 0 || y1 > h || y0 >= y1 || ld < n || len(x) < cin*h*w || len(cols) < (cin*k*k-1)*ld+n {
		panic("kern: im2col: want x of cin·h·w values, 0 ≤ y0 < y1 ≤ h, cols of cin·k·k rows of ld ≥ (y1−y0)·w, k odd")
	}
}

// Im2ColGo is Im2Col without the size check. Each patch row is one shifted copy of the image's
// rows: the rows of the block that read inside the image are copied as one contiguous run (shifted by
// dy rows and dx columns), and then the dx columns that wrapped around from the neighbouring row are
// zeroed, with the rows that read above or below the image. One copy per patch row instead of one per
// image row made it about twice as fast at 32×32.
func Im2ColGo(x, cols []float32, ld, cin, h, w, k, y0, y1 int) {
	hw, pad, n := h*w, k/2, (y1-y0)*w
	for ci := 0; ci < cin; ci++ {
		plane := x[ci*hw : (ci+1)*hw]
		for kh := 0; kh < k; kh++ {
			dy := kh - pad
			ya, yb := max(y0, -dy), min(y1, h-dy) // the rows that read inside the image
			for kw := 0; kw < k; kw++ {
				dx := kw - pad
				row := cols[((ci*k+kh)*k+kw)*ld:][:n]
				if ya >= yb {
					clear(row)
					continue
				}
				clear(row[:(ya-y0)*w])
				clear(row[(yb-y0)*w:])
				dst := row[(ya-y0)*w : (yb-y0)*w]
				s0 := (ya+dy)*w + dx
				d0, d1 := max(0, -s0), min(len(dst), hw-s0)
				copy(dst[d0:d1], plane[s0+d0:s0+d1])
				// dst[:d0] and dst[d1:] lie in the wrapped columns zeroed here.
				switch {
				case dx < 0:
					for r := 0; r < len(dst); r += w {
						for c := 0; c < min(w, -dx); c++ {
							dst[r+c] = 0
						}
					}
				case dx > 0:
					for r := 0; r < len(dst); r += w {
						for c := max(0, w-dx); c < w; c++ {
							dst[r+c] = 0
						}
					}
				}
			}
		}
	}
}

// Col2ImGo is Col2Im in Go.
func Col2ImGo(cols, dx []float32, ld, cin, h, w, k, y0, y1 int) {
	hw, pad, n := h*w, k/2, (y1-y0)*w
	for ci := 0; ci < cin; ci++ {
		plane := dx[ci*hw : (ci+1)*hw]
		for kh := 0; kh < k; kh++ {
			dy := kh - pad
			for kw := 0; kw < k; kw++ {
				dxo := kw - pad
				row := cols[((ci*k+kh)*k+kw)*ld:][:n]
				x0, x1 := max(0, -dxo), min(w, w-dxo)
				for yy := max(y0, -dy); yy < min(y1, h-dy); yy++ {
					src := row[(yy-y0)*w+x0 : (yy-y0)*w+x1]
					dst := plane[(yy+dy)*w+x0+dxo : (yy+dy)*w+x1+dxo]
					for j, v := range src {
						dst[j] += v
					}
				}
			}
		}
	}
}
