package imgdata

import "math"

// padCentre writes the c×h×w planar image src into the middle of the c×s×s image dst (s ≥ h, w)
// and fills the border with bg. An odd margin puts the extra row/column after the image.
func padCentre(dst, src []float32, c, h, w, s int, bg float32) {
	for i := range dst[:c*s*s] {
		dst[i] = bg
	}
	top, left := (s-h)/2, (s-w)/2
	for ch := range c {
		for y := range h {
			copy(dst[ch*s*s+(top+y)*s+left:][:w], src[ch*h*w+y*w:][:w])
		}
	}
}

// tap is one source index and its weight in an output sample.
type tap struct {
	i int
	w float32
}

// areaTaps returns, for each of the dst output samples along one axis of length src, the source
// samples it overlaps and their weights: output o covers [o·r, (o+1)·r) in source units (r =
// src/dst), and source sample i contributes |[i, i+1) ∩ that interval| / r. The weights of an
// output sum to 1 and those of a source sample sum to dst/src, so area resampling preserves the
// image mean exactly (up to rounding).
func areaTaps(src, dst int) [][]tap {
	r := float64(src) / float64(dst)
	taps := make([][]tap, dst)
	for o := range taps {
		lo, hi := float64(o)*r, float64(o+1)*r
		for i := int(math.Floor(lo)); i < src && float64(i) < hi; i++ {
			ov := math.Min(hi, float64(i+1)) - math.Max(lo, float64(i))
			if ov > 1e-12 {
				taps[o] = append(taps[o], tap{i, float32(ov / r)})
			}
		}
	}
	return taps
}

// resizeArea resamples the c×sh×sw planar image src to c×dh×dw in dst by area averaging (box
// filter with exact fractional overlaps, applied separably: rows first, then columns). It is the
// anti-aliased shrink the colour sets need (136 → 32 is not an integer factor); when enlarging
// it degenerates to nearest-neighbour with blended seams.
func resizeArea(dst, src []float32, c, sh, sw, dh, dw int) {
	ty, tx := areaTaps(sh, dh), areaTaps(sw, dw)
	tmp := make([]float32, dh*sw) // one channel resampled along y only
	for ch := range c {
		plane := src[ch*sh*sw : (ch+1)*sh*sw]
		for oy, taps := range ty {
			row := tmp[oy*sw : (oy+1)*sw]
			clear(row)
			for _, t := range taps {
				for x, v := range plane[t.i*sw : (t.i+1)*sw] {
					row[x] += t.w * v
				}
			}
		}
		out := dst[ch*dh*dw : (ch+1)*dh*dw]
		for oy := range dh {
			row := tmp[oy*sw : (oy+1)*sw]
			for ox, taps := range tx {
				var acc float32
				for _, t := range taps {
					acc += t.w * row[t.i]
				}
				out[oy*dw+ox] = acc
			}
		}
	}
}

// clampUnit clips x to [-1, 1] in place: resampling weights sum to 1 only up to float rounding,
// and Set promises values in [-1, 1].
func clampUnit(x []float32) {
	for i, v := range x {
		x[i] = min(max(v, -1), 1)
	}
}

// Resize resamples n planar c×sh×sw images to c×dh×dw by area averaging (resizeArea: the filter the
// loaders use, so images resized here match a set loaded at that size up to the order of the two
// resamplings).
func Resize(src []float32, n, c, sh, sw, dh, dw int) []float32 {
	dst := make([]float32, n*c*dh*dw)
	for i := range n {
		resizeArea(dst[i*c*dh*dw:(i+1)*c*dh*dw], src[i*c*sh*sw:(i+1)*c*sh*sw], c, sh, sw, dh, dw)
	}
	clampUnit(dst)
	return dst
}
