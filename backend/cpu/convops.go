package cpu

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/backend/cpu/kern"
)

// The U-Net's convolution ops (unet.go's conv): forward, data gradient and weight gradient, each
// cut into tiles of im2col + one sgemm (kern.Gemm) per tile. The other U-Net ops are in unetops.go.

// convGeom is the geometry of a k×k convolution (k odd), stride 1, zero padding k/2, NCHW.
type convGeom struct {
	n, cin, cout, h, w, k int
}

func (g convGeom) hw() int { return g.h * g.w }

// kk is the patch length cin·k·k: the inner dimension of the convolution as a matrix product.
func (g convGeom) kk() int { return g.cin * g.k * g.k }

// convBlockBytes bounds the patch matrix of one sgemm. A convolution is cut into tiles, each one
// product: a band of rows of one image, or, where a whole image is smaller, a group of images side by
// side, so that im2col writes the patches into the L2 cache and OpenBLAS packs them from there. Whole
// 32×32 images at 288–1,152 patch rows (1.2–4.7 MB) spent more time in im2col and OpenBLAS's packing
// than in the multiply itself; the small levels need the grouping to make products wide enough.
var convBlockBytes = 256 << 10 // a var so tests can force row bands and groups on small shapes

// tile is one product of a convolution: images [i, i+gn), and when gn is 1 only the output rows
// [y0, y1) of image i.
type tile struct{ i, gn, y0, y1 int }

// pixels is the number of pixels (matrix columns) of the tile.
func (g convGeom) pixels(t tile) int { return t.gn * (t.y1 - t.y0) * g.w }

// forEachTile runs fn over the tiles of the n images split over the cores, each worker taking its
// own images in order (so an image's row bands run in order on one goroutine): fn gets the worker
// and the tile. It returns the number of workers used.
func (g convGeom) forEachTile(fn func(wk int, t tile)) int {
	target := max(g.w, convBlockBytes/(4*g.kk()))
	return parallelItems(g.n, g.cout*g.hw(), func(wk, i0, i1 int) {
		if g.hw() <= target {
			gs := min(i1-i0, max(1, target/g.hw()))
			for i := i0; i < i1; i += gs {
				fn(wk, tile{i, min(gs, i1-i), 0, g.h})
			}
			return
		}
		rb := max(1, target/g.w)
		for i := i0; i < i1; i++ {
			for y := 0; y < g.h; y += rb {
				fn(wk, tile{i, 1, y, min(g.h, y+rb)})
			}
		}
	})
}

// gather copies gn images of [rows, hw] values from src (contiguous) into a [rows, gn·hw] matrix,
// image j in the columns [j·hw, (j+1)·hw); scatter is its inverse.
func gather(src, dst []float32, gn, rows, hw int) {
	ld := gn * hw
	for j := 0; j < gn; j++ {
		for r := 0; r < rows; r++ {
			copy(dst[r*ld+j*hw:r*ld+(j+1)*hw], src[(j*rows+r)*hw:(j*rows+r+1)*hw])
		}
	}
}

func scatter(src, dst []float32, gn, rows, hw int) {
	ld := gn * hw
	for j := 0; j < gn; j++ {
		for r := 0; r < rows; r++ {
			copy(dst[(j*rows+r)*hw:(j*rows+r+1)*hw], src[r*ld+j*hw:r*ld+(j+1)*hw])
		}
	}
}

// patches returns the tile's patch matrix [kk, cols] and its leading dimension: a view of x itself
// for a 1×1 kernel on one image, else im2col into the worker's scratch.
func (g convGeom) patches(x []float32, t tile, bufs [][]float32, wk int) ([]float32, int) {
	hw, nc := g.hw(), g.pixels(t)
	if g.k == 1 && t.gn == 1 {
		return x[t.i*g.cin*hw+t.y0*g.w:], hw
	}
	cols := scratch(bufs, wk, g.kk()*nc)
	for j := 0; j < t.gn; j++ {
		kern.Im2Col(x[(t.i+j)*g.cin*hw:], cols[j*hw:], nc, g.cin, g.h, g.w, g.k, t.y0, t.y1)
	}
	return cols, nc
}

// asMatrix returns the tile's part of a [n, rows, h, w] tensor as a [rows, cols] matrix and its
// leading dimension: a view for one image, else gathered into the worker's scratch.
func (g convGeom) asMatrix(src []float32, rows int, t tile, bufs [][]float32, wk int) ([]float32, int) {
	hw := g.hw()
	if t.gn == 1 {
		return src[t.i*rows*hw+t.y0*g.w:], hw
	}
	m := scratch(bufs, wk, rows*t.gn*hw)
	gather(src[t.i*rows*hw:], m, t.gn, rows, hw)
	return m, t.gn * hw
}

// convOp is y = conv(x; w) + b for x [n, cin, h, w], w [cout, cin, k, k], b [cout] (model.ConvCPU):
// per tile (forEachTile), Y [cout, pixels] = W [cout, cin·k·k] · im2col(x) with one sgemm
// (kern.Gemm: OpenBLAS or the pure-Go loops), straight into NCHW within one image.
type convOp struct {
	unetOp
	convGeom
	out       *tensor.Dense
	cols, tmp [][]float32 // per-worker scratch: patches, the product of a group
}

func newConvOp(xs, ws tensor.Shape) (*convOp, error) {
	if len(xs) != 4 || len(ws) != 4 || ws[1] != xs[1] || ws[2] != ws[3] || ws[2]%2 != 1 {
		return nil, fmt.Errorf("conv: want x [n, cin, h, w] and w [cout, cin, k, k] with k odd, got %v and %v", xs, ws)
	}
	return &convOp{convGeom: convGeom{n: xs[0], cin: xs[1], cout: ws[0], h: xs[2], w: xs[3], k: ws[2]}}, nil
}

func (op *convOp) Arity() int    { return 3 }
func (op *convOp) Type() hm.Type { return fnType(4, 4, 4, 1) }
func (op *convOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.n, op.cout, op.h, op.w}, nil
}
func (op *convOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("conv", in, 3); err != nil {
		return nil, err
	}
	x, err := f32Of(in[0], "conv x", op.n, op.cin, op.h, op.w)
	if err != nil {
		return nil, err
	}
	w, err := f32Of(in[1], "conv w", op.cout, op.cin, op.k, op.k)
	if err != nil {
		return nil, err
	}
	b, err := f32Of(in[2], "conv b", op.cout)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, op.n, op.cout, op.h, op.w)
	y := out.Float32s()
	hw, kk := op.hw(), op.kk()
	perWorker(&op.cols)
	perWorker(&op.tmp)
	op.forEachTile(func(wk int, t tile) {
		nc := op.pixels(t)
		cols, ldc := op.patches(x, t, op.cols, wk)
		if t.gn == 1 { // straight into the image's rows [y0, y1), a submatrix of y_i [cout, hw]
			yi := y[t.i*op.cout*hw+t.y0*op.w:]
			kern.Gemm(false, false, op.cout, nc, kk, 1, w, kk, cols, ldc, 0, yi, hw)
			for co, bv := range b {
				row := yi[co*hw : co*hw+nc]
				for j := range row {
					row[j] += bv
				}
			}
			return
		}
		prod := scratch(op.tmp, wk, op.cout*nc)
		kern.Gemm(false, false, op.cout, nc, kk, 1, w, kk, cols, ldc, 0, prod, nc)
		yi := y[t.i*op.cout*hw : (t.i+t.gn)*op.cout*hw]
		scatter(prod, yi, t.gn, op.cout, hw)
		for p := 0; p < t.gn*op.cout; p++ {
			bv := b[p%op.cout]
			for j := range yi[p*hw : (p+1)*hw] {
				yi[p*hw+j] += bv
			}
		}
	})
	return out, nil
}
func (op *convOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "conv%p", op) }
func (op *convOp) Hashcode() uint32      { return opHash(op) }
func (op *convOp) String() string        { return fmt.Sprintf("conv%dx%d", op.k, op.k) }
func (op *convOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (op *convOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if len(inputs) != 3 {
		return nil, fmt.Errorf("conv: want 3 inputs, got %d", len(inputs))
	}
	dx, err := G.ApplyOp(&convDataGradOp{convGeom: op.convGeom}, inputs[1], grad)
	if err != nil {
		return nil, err
	}
	dw, err := G.ApplyOp(&convWeightGradOp{convGeom: op.convGeom}, inputs[0], grad)
	if err != nil {
		return nil, err
	}
	db, err := G.ApplyOp(&chanSumOp{}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dw, db}, nil
}

// convDataGradOp is dx = convᵀ(gy; w): per tile dcols = Wᵀ · gy (one sgemm), then col2im. Inputs
// (w, gy).
type convDataGradOp struct {
	unetOp
	convGeom
	out        *tensor.Dense
	gys, dcols [][]float32
}

func (op *convDataGradOp) Arity() int    { return 2 }
func (op *convDataGradOp) Type() hm.Type { return fnType(4, 4, 4) }
func (op *convDataGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.n, op.cin, op.h, op.w}, nil
}
func (op *convDataGradOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("convDataGrad", in, 2); err != nil {
		return nil, err
	}
	w, err := f32Of(in[0], "convDataGrad w", op.cout, op.cin, op.k, op.k)
	if err != nil {
		return nil, err
	}
	gy, err := f32Of(in[1], "convDataGrad gy", op.n, op.cout, op.h, op.w)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, op.n, op.cin, op.h, op.w)
	dx := out.Float32s()
	hw, kk := op.hw(), op.kk()
	perWorker(&op.gys)
	perWorker(&op.dcols)
	op.forEachTile(func(wk int, t tile) {
		nc := op.pixels(t)
		g, ldg := op.asMatrix(gy, op.cout, t, op.gys, wk)
		dxi := dx[t.i*op.cin*hw : (t.i+t.gn)*op.cin*hw]
		if op.k == 1 && t.gn == 1 { // straight into the rows [y0, y1) of dx_i [cin, hw]
			kern.Gemm(true, false, kk, nc, op.cout, 1, w, kk, g, ldg, 0, dxi[t.y0*op.w:], hw)
			return
		}
		dc := scratch(op.dcols, wk, kk*nc)
		kern.Gemm(true, false, kk, nc, op.cout, 1, w, kk, g, ldg, 0, dc, nc)
		if op.k == 1 {
			scatter(dc, dxi, t.gn, op.cin, hw)
			return
		}
		if t.y0 == 0 { // an image's bands run in order on this goroutine: clear it at the first
			clear(dxi)
		}
		for j := 0; j < t.gn; j++ {
			kern.Col2Im(dc[j*hw:], dxi[j*op.cin*hw:], nc, op.cin, op.h, op.w, op.k, t.y0, t.y1)
		}
	})
	return out, nil
}
func (op *convDataGradOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "convDataGrad%p", op) }
func (op *convDataGradOp) Hashcode() uint32      { return opHash(op) }
func (op *convDataGradOp) String() string        { return "convᵀ(gy; w)" }

// convWeightGradOp is dw = Σ_i gy_i · im2col(x_i)ᵀ: per tile one sgemm with the tile's pixels as
// the inner dimension. Inputs (x, gy). Each worker sums its images into its own partial,
// added up at the end.
type convWeightGradOp struct {
	unetOp
	convGeom
	out                *tensor.Dense
	cols, gys, partial [][]float32
}

func (op *convWeightGradOp) Arity() int    { return 2 }
func (op *convWeightGradOp) Type() hm.Type { return fnType(4, 4, 4) }
func (op *convWeightGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.cout, op.cin, op.k, op.k}, nil
}
func (op *convWeightGradOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("convWeightGrad", in, 2); err != nil {
		return nil, err
	}
	x, err := f32Of(in[0], "convWeightGrad x", op.n, op.cin, op.h, op.w)
	if err != nil {
		return nil, err
	}
	gy, err := f32Of(in[1], "convWeightGrad gy", op.n, op.cout, op.h, op.w)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, op.cout, op.cin, op.k, op.k)
	dw := out.Float32s()
	kk := op.kk()
	perWorker(&op.cols)
	perWorker(&op.gys)
	perWorker(&op.partial)
	for wk := 1; wk < len(op.partial); wk++ { // worker 0 sums into dw itself
		clear(scratch(op.partial, wk, len(dw)))
	}
	clear(dw)
	workers := op.forEachTile(func(wk int, t tile) {
		acc := dw
		if wk > 0 {
			acc = op.partial[wk][:len(dw)]
		}
		cols, ldc := op.patches(x, t, op.cols, wk)
		g, ldg := op.asMatrix(gy, op.cout, t, op.gys, wk)
		kern.Gemm(false, true, op.cout, kk, op.pixels(t), 1, g, ldg, cols, ldc, 1, acc, kk)
	})
	for wk := 1; wk < workers; wk++ {
		for j, v := range op.partial[wk][:len(dw)] {
			dw[j] += v
		}
	}
	return out, nil
}
func (op *convWeightGradOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "convWeightGrad%p", op) }
func (op *convWeightGradOp) Hashcode() uint32      { return opHash(op) }
func (op *convWeightGradOp) String() string        { return "Σ gy·im2col(x)ᵀ" }
