package cpu

import (
	"fmt"
	"hash"
	"runtime"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/backend/cpu/kern"
	"asbm/shaders"
)

// Custom gorgonia ops for the U-Net (unet.go), in the style of ops.go: each does its work in one pass
// over NCHW float32 tensors, split over the cores by image, into output buffers it owns (a graph is
// built for one batch size and runs one at a time; the Net copies out what it keeps). Gorgonia still
// does the autodiff: the forward ops implement SymDiff with the gradient ops below.
//
// Why not gorgonia's own (unet.go builds that graph too, with stockOps): besides the v0.9.18 bugs
// listed in unet.go, they are slow. G.Conv2d runs im2col into NHWC patches, one sgemm and a
// Transpose back to NCHW, and its backward a col2im; every Broadcast* materialises its repeat;
// Upsample2D walks the tensor with At/SetAt; and every op allocates its output on every run (a step
// at batch 16 allocated 414 MB). Measured on the default MNIST U-Net at batch 16 (cpu-ms/op, 2
// shared cores): a step ≈ 900 ms of CPU with the stock ops against ≈ 285 ms with these, a forward
// ≈ 265–390 ms against ≈ 110 ms (BenchmarkUNet{Step,Eval}{,Stock}).

// unetOp holds the methods every op here shares.
type unetOp struct{}

func (unetOp) ReturnsPtr() bool     { return false }
func (unetOp) CallsExtern() bool    { return false }
func (unetOp) OverwritesInput() int { return -1 }

// fnType returns the type of an op taking tensors of the given ranks and returning one of rank ret,
// all of one element type.
func fnType(ret int, args ...int) hm.Type {
	a := hm.TypeVariable('a')
	ts := make([]hm.Type, 0, len(args)+1)
	for _, d := range args {
		ts = append(ts, G.TensorType{Dims: d, Of: a})
	}
	ts = append(ts, G.TensorType{Dims: ret, Of: a})
	return hm.NewFnType(ts...)
}

// f32Of returns the data of a contiguous float32 tensor value holding as many values as shape want.
func f32Of(v G.Value, what string, want ...int) ([]float32, error) {
	d, ok := v.(*tensor.Dense)
	if !ok || d.Dtype() != tensor.Float32 {
		return nil, fmt.Errorf("%s: want a float32 tensor, got %T", what, v)
	}
	if !d.IsNativelyAccessible() || d.RequiresIterator() {
		return nil, fmt.Errorf("%s: tensor is not a plain contiguous array", what)
	}
	// Only the size is checked: InferShape checked the ranks when the graph was built, and some ops
	// view [n, c, h, w] as [n, c, h·w].
	if s := d.Shape(); s.TotalSize() != size(want) {
		return nil, fmt.Errorf("%s: want %v values, got shape %v", what, want, s)
	}
	return d.Float32s(), nil
}

// ownedT returns *buf, allocating it with the given shape on first use.
func ownedT(buf **tensor.Dense, shape ...int) *tensor.Dense {
	if *buf == nil || !(*buf).Shape().Eq(tensor.Shape(shape)) {
		*buf = tensor.New(tensor.WithShape(shape...), tensor.Of(tensor.Float32))
	}
	return *buf
}

func checkInputs(what string, in []G.Value, n int) error {
	if len(in) != n {
		return fmt.Errorf("%s: want %d inputs, got %d", what, n, len(in))
	}
	return nil
}

// shapeOf returns a DimSizer as a shape.
func shapeOf(what string, d G.DimSizer) (tensor.Shape, error) {
	s, ok := d.(tensor.Shape)
	if !ok {
		return nil, fmt.Errorf("%s: bad shape %v", what, d)
	}
	return s, nil
}

// parallelItems runs fn over [0, n) split into contiguous blocks, one per available core, passing
// the worker's index so it can use its own scratch. work is the number of values one item touches:
// below parallelMin in all it runs on one goroutine. It returns the number of workers used.
func parallelItems(n, work int, fn func(worker, i0, i1 int)) int {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 || n*work < parallelMin {
		fn(0, 0, n)
		return 1
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		i0, i1 := n*w/workers, n*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(w, i0, i1)
		}()
	}
	wg.Wait()
	return workers
}

// perWorker grows a per-worker scratch list to one entry per core; call it before parallelItems so
// that the workers only ever touch their own entry (scratch).
func perWorker[T any](bufs *[]T) {
	for len(*bufs) < runtime.GOMAXPROCS(0) {
		var zero T
		*bufs = append(*bufs, zero)
	}
}

// scratch returns bufs[w] with size values, allocating it on first use or growth; bufs must have
// been grown by perWorker.
func scratch(bufs [][]float32, w, size int) []float32 {
	if len(bufs[w]) < size {
		bufs[w] = make([]float32, size)
	}
	return bufs[w][:size]
}

// ---- convolution ----

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

// convOp is y = conv(x; w) + b for x [n, cin, h, w], w [cout, cin, k, k], b [cout] (shaders.ConvCPU):
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
	for wk := range op.partial {
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

// chanSumOp sums x [n, c, h, w] over h·w and, unless perImage, over n: into [c] (the gradient of a
// conv bias) or [n, c] (the gradient of the per-image time-embedding values added by chanAddOp).
// Sums are accumulated in float64.
type chanSumOp struct {
	unetOp
	perImage bool
	out      *tensor.Dense
}

func (op *chanSumOp) Arity() int { return 1 }
func (op *chanSumOp) Type() hm.Type {
	if op.perImage {
		return fnType(2, 4)
	}
	return fnType(1, 4)
}
func (op *chanSumOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 1 {
		return nil, fmt.Errorf("chanSum: want 1 shape, got %d", len(in))
	}
	s, err := shapeOf("chanSum", in[0])
	if err != nil || len(s) != 4 {
		return nil, fmt.Errorf("chanSum: want [n, c, h, w], got %v", in[0])
	}
	if op.perImage {
		return tensor.Shape{s[0], s[1]}, nil
	}
	return tensor.Shape{s[1]}, nil
}
func (op *chanSumOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("chanSum", in, 1); err != nil {
		return nil, err
	}
	s := in[0].Shape()
	if len(s) != 4 {
		return nil, fmt.Errorf("chanSum: want [n, c, h, w], got %v", s)
	}
	n, c, hw := s[0], s[1], s[2]*s[3]
	x, err := f32Of(in[0], "chanSum x", n, c, s[2], s[3])
	if err != nil {
		return nil, err
	}
	var out *tensor.Dense
	if op.perImage {
		out = ownedT(&op.out, n, c)
	} else {
		out = ownedT(&op.out, c)
	}
	o := out.Float32s()
	if op.perImage {
		parallelItems(len(o), hw, func(_, p0, p1 int) {
			for p := p0; p < p1; p++ {
				o[p] = float32(kern.Sum64(x[p*hw : (p+1)*hw]))
			}
		})
		return out, nil
	}
	parallelItems(c, n*hw, func(_, c0, c1 int) {
		for ch := c0; ch < c1; ch++ {
			var acc float64
			for i := 0; i < n; i++ {
				acc += kern.Sum64(x[(i*c+ch)*hw : (i*c+ch+1)*hw])
			}
			o[ch] = float32(acc)
		}
	})
	return out, nil
}
func (op *chanSumOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "chanSum%p", op) }
func (op *chanSumOp) Hashcode() uint32      { return opHash(op) }
func (op *chanSumOp) String() string        { return "Σhw" }

// addOp is y = a + b for two tensors of one shape (the residual sum of a block), split over the
// cores. gorgonia's Add clones its first input into a fresh tensor on every run and then adds on one
// core: about 0.15 s of a 1.1 s training step of the 32×32 base-32 U-Net at batch 64.
type addOp struct {
	unetOp
	out *tensor.Dense
}

func (op *addOp) Arity() int    { return 2 }
func (op *addOp) Type() hm.Type { return fnType(4, 4, 4) }
func (op *addOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 2 {
		return nil, fmt.Errorf("add: want 2 shapes, got %d", len(in))
	}
	as, err1 := shapeOf("add", in[0])
	bs, err2 := shapeOf("add", in[1])
	if err1 != nil || err2 != nil || !as.Eq(bs) {
		return nil, fmt.Errorf("add: want two tensors of one shape, got %v and %v", in[0], in[1])
	}
	return as.Clone(), nil
}
func (op *addOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("add", in, 2); err != nil {
		return nil, err
	}
	s := in[0].Shape()
	a, err := f32Of(in[0], "add a", s...)
	if err != nil {
		return nil, err
	}
	b, err := f32Of(in[1], "add b", s...)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, s...)
	y := out.Float32s()
	const block = 4096
	parallelItems((len(y)+block-1)/block, block, func(_, i0, i1 int) {
		for j := i0 * block; j < min(len(y), i1*block); j++ {
			y[j] = a[j] + b[j]
		}
	})
	return out, nil
}
func (op *addOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "add%p", op) }
func (op *addOp) Hashcode() uint32      { return opHash(op) }
func (op *addOp) String() string        { return "a+b" }
func (op *addOp) DiffWRT(int) []bool    { return []bool{true, true} }
func (op *addOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	return G.Nodes{grad, grad}, nil
}

// chanAddOp is y = r + tb broadcast over h×w, r [n, c, h, w], tb [n, c]: the time-embedding term of
// a residual block (shaders/unet.go).
type chanAddOp struct {
	unetOp
	out *tensor.Dense
}

func (op *chanAddOp) Arity() int    { return 2 }
func (op *chanAddOp) Type() hm.Type { return fnType(4, 4, 2) }
func (op *chanAddOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 2 {
		return nil, fmt.Errorf("chanAdd: want 2 shapes, got %d", len(in))
	}
	rs, err1 := shapeOf("chanAdd", in[0])
	ts, err2 := shapeOf("chanAdd", in[1])
	if err1 != nil || err2 != nil || len(rs) != 4 || len(ts) != 2 || ts[0] != rs[0] || ts[1] != rs[1] {
		return nil, fmt.Errorf("chanAdd: want r [n, c, h, w] and tb [n, c], got %v and %v", in[0], in[1])
	}
	return rs.Clone(), nil
}
func (op *chanAddOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("chanAdd", in, 2); err != nil {
		return nil, err
	}
	s := in[0].Shape()
	if len(s) != 4 {
		return nil, fmt.Errorf("chanAdd: want r [n, c, h, w], got %v", s)
	}
	r, err := f32Of(in[0], "chanAdd r", s...)
	if err != nil {
		return nil, err
	}
	tb, err := f32Of(in[1], "chanAdd tb", s[0], s[1])
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, s...)
	o := out.Float32s()
	hw := s[2] * s[3]
	parallelItems(len(tb), hw, func(_, p0, p1 int) {
		for p := p0; p < p1; p++ {
			v := tb[p]
			src, dst := r[p*hw:(p+1)*hw], o[p*hw:(p+1)*hw]
			for j, u := range src {
				dst[j] = u + v
			}
		}
	})
	return out, nil
}
func (op *chanAddOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "chanAdd%p", op) }
func (op *chanAddOp) Hashcode() uint32      { return opHash(op) }
func (op *chanAddOp) String() string        { return "r+tb[n,c]" }
func (op *chanAddOp) DiffWRT(int) []bool    { return []bool{true, true} }
func (op *chanAddOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dtb, err := G.ApplyOp(&chanSumOp{perImage: true}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{grad, dtb}, nil
}

// ---- group norm + SiLU ----

// gnSiLUOp is y = SiLU(GroupNorm(x; γ, β)) for x [n, c, h, w] with groups groups, biased variance
// and eps shaders.GroupNormEps (shaders.GroupNormCPU then SiLU): every group norm in the U-Net is
// followed by a SiLU, so the two are one op each way. Statistics are computed in float64 like the
// reference. When keep is set (training graphs) the forward pass stores the per-group mean and
// 1/std and the sigmoid of every pre-activation for the gradient op.
type gnSiLUOp struct {
	unetOp
	n, c, hw, groups int
	keep             bool
	out              *tensor.Dense
	mean, rstd       []float64 // [n·groups], when keep
	sig              []float32 // sigmoid(u), u = γ·x̂ + β, when keep
}

func newGNSiLUOp(xs tensor.Shape, groups int, keep bool) (*gnSiLUOp, error) {
	if len(xs) != 4 || groups < 1 || xs[1]%groups != 0 {
		return nil, fmt.Errorf("groupnorm: want x [n, c, h, w] with c divisible by %d groups, got %v", groups, xs)
	}
	return &gnSiLUOp{n: xs[0], c: xs[1], hw: xs[2] * xs[3], groups: groups, keep: keep}, nil
}

func (op *gnSiLUOp) Arity() int    { return 3 }
func (op *gnSiLUOp) Type() hm.Type { return fnType(4, 4, 1, 1) }
func (op *gnSiLUOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 3 {
		return nil, fmt.Errorf("groupnorm: want 3 shapes, got %d", len(in))
	}
	s, err := shapeOf("groupnorm", in[0])
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}

func (op *gnSiLUOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("groupnorm", in, 3); err != nil {
		return nil, err
	}
	x, err := f32Of(in[0], "groupnorm x", op.n, op.c, op.hw)
	if err != nil {
		return nil, err
	}
	gamma, err := f32Of(in[1], "groupnorm γ", op.c)
	if err != nil {
		return nil, err
	}
	beta, err := f32Of(in[2], "groupnorm β", op.c)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, in[0].Shape()...)
	y := out.Float32s()
	if op.keep && len(op.sig) != len(y) {
		op.sig = make([]float32, len(y))
		op.mean = make([]float64, op.n*op.groups)
		op.rstd = make([]float64, op.n*op.groups)
	}
	cg := op.c / op.groups
	parallelItems(op.n*op.groups, cg*op.hw, func(_, u0, u1 int) {
		for u := u0; u < u1; u++ { // u = image·groups + group: its channels are contiguous
			lo, hi := u*cg*op.hw, (u+1)*cg*op.hw
			mean, rstd := kern.GroupStats(x[lo:hi], shaders.GroupNormEps)
			if op.keep {
				op.mean[u], op.rstd[u] = mean, rstd
			}
			ch := (u % op.groups) * cg
			var sig []float32
			if op.keep {
				sig = op.sig[lo:hi]
			}
			kern.GNSiLU(x[lo:hi], y[lo:hi], sig, gamma[ch:ch+cg], beta[ch:ch+cg], op.hw, float32(mean), float32(rstd))
		}
	})
	return out, nil
}
func (op *gnSiLUOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "gnSiLU%p", op) }
func (op *gnSiLUOp) Hashcode() uint32      { return opHash(op) }
func (op *gnSiLUOp) String() string        { return fmt.Sprintf("SiLU(GN%d)", op.groups) }
func (op *gnSiLUOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (op *gnSiLUOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if !op.keep {
		return nil, fmt.Errorf("groupnorm: built without keep, so it has no gradient")
	}
	if len(inputs) != 3 {
		return nil, fmt.Errorf("groupnorm: want 3 inputs, got %d", len(inputs))
	}
	bwd := &gnSiLUGradOp{fwd: op}
	dx, err := G.ApplyOp(bwd, inputs[0], inputs[1], inputs[2], grad)
	if err != nil {
		return nil, err
	}
	dg, err := G.ApplyOp(&gnParamGradOp{bwd: bwd}, dx)
	if err != nil {
		return nil, err
	}
	db, err := G.ApplyOp(&gnParamGradOp{bwd: bwd, beta: true}, dx)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx, dg, db}, nil
}

// gnSiLUGradOp computes dx of gnSiLUOp, and with it dγ and dβ (handed out by gnParamGradOp), from the
// forward op's stored statistics and sigmoids. Inputs (x, γ, β, gy). Per group of M values, with
// x̂ = (x − μ)·rstd, u = γ·x̂ + β, s = sigmoid(u):
//
//	du = gy·s·(1 + u·(1 − s)),  dβ_c = Σ du,  dγ_c = Σ du·x̂,  dx̂ = du·γ
//	dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
type gnSiLUGradOp struct {
	unetOp
	fwd         *gnSiLUOp
	out         *tensor.Dense
	dgamma      []float32
	dbeta       []float32
	pg, pb      [][]float64 // per-worker partial sums of dγ, dβ
	dg, db      [][]float32 // per-worker scratch: one group's dγ, dβ
	workersUsed int
}

func (op *gnSiLUGradOp) Arity() int    { return 4 }
func (op *gnSiLUGradOp) Type() hm.Type { return fnType(4, 4, 1, 1, 4) }
func (op *gnSiLUGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 4 {
		return nil, fmt.Errorf("groupnormGrad: want 4 shapes, got %d", len(in))
	}
	s, err := shapeOf("groupnormGrad", in[0])
	if err != nil {
		return nil, err
	}
	return s.Clone(), nil
}
func (op *gnSiLUGradOp) Do(in ...G.Value) (G.Value, error) {
	f := op.fwd
	if err := checkInputs("groupnormGrad", in, 4); err != nil {
		return nil, err
	}
	x, err := f32Of(in[0], "groupnormGrad x", f.n, f.c, f.hw)
	if err != nil {
		return nil, err
	}
	gamma, err := f32Of(in[1], "groupnormGrad γ", f.c)
	if err != nil {
		return nil, err
	}
	beta, err := f32Of(in[2], "groupnormGrad β", f.c)
	if err != nil {
		return nil, err
	}
	gy, err := f32Of(in[3], "groupnormGrad gy", f.n, f.c, f.hw)
	if err != nil {
		return nil, err
	}
	if len(f.sig) != len(x) {
		return nil, fmt.Errorf("groupnormGrad: the forward op has stored %d sigmoids, want %d", len(f.sig), len(x))
	}
	out := ownedT(&op.out, in[0].Shape()...)
	dx := out.Float32s()
	cg := f.c / f.groups
	perWorker(&op.pg)
	perWorker(&op.pb)
	perWorker(&op.dg)
	perWorker(&op.db)
	for wk := range op.pg {
		if len(op.pg[wk]) != f.c {
			op.pg[wk], op.pb[wk] = make([]float64, f.c), make([]float64, f.c)
			op.dg[wk], op.db[wk] = make([]float32, cg), make([]float32, cg)
		}
	}
	op.workersUsed = parallelItems(f.n*f.groups, cg*f.hw, func(wk, u0, u1 int) {
		pg, pb := op.pg[wk], op.pb[wk]
		clear(pg)
		clear(pb)
		for u := u0; u < u1; u++ {
			lo := u * cg * f.hw
			ch := (u % f.groups) * cg
			dg, db := op.dg[wk][:cg], op.db[wk][:cg]
			kern.GNSiLUGrad(x[lo:lo+cg*f.hw], f.sig[lo:lo+cg*f.hw], gy[lo:lo+cg*f.hw], dx[lo:lo+cg*f.hw],
				gamma[ch:ch+cg], beta[ch:ch+cg], f.hw, float32(f.mean[u]), float32(f.rstd[u]), dg, db)
			for k := 0; k < cg; k++ {
				pg[ch+k] += float64(dg[k])
				pb[ch+k] += float64(db[k])
			}
		}
	})
	if len(op.dgamma) != f.c {
		op.dgamma = make([]float32, f.c)
		op.dbeta = make([]float32, f.c)
	}
	for ch := 0; ch < f.c; ch++ {
		var sg, sb float64
		for wk := 0; wk < op.workersUsed; wk++ {
			sg += op.pg[wk][ch]
			sb += op.pb[wk][ch]
		}
		op.dgamma[ch], op.dbeta[ch] = float32(sg), float32(sb)
	}
	return out, nil
}
func (op *gnSiLUGradOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "gnSiLUGrad%p", op) }
func (op *gnSiLUGradOp) Hashcode() uint32      { return opHash(op) }
func (op *gnSiLUGradOp) String() string        { return "d SiLU(GN)" }

// gnParamGradOp hands out the dγ (or dβ) that its gnSiLUGradOp computed along with dx. Its input is
// that dx, only so that gorgonia schedules it after the gradient op has run.
type gnParamGradOp struct {
	unetOp
	bwd  *gnSiLUGradOp
	beta bool
	out  *tensor.Dense
}

func (op *gnParamGradOp) Arity() int    { return 1 }
func (op *gnParamGradOp) Type() hm.Type { return fnType(1, 4) }
func (op *gnParamGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.bwd.fwd.c}, nil
}
func (op *gnParamGradOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("groupnormParamGrad", in, 1); err != nil {
		return nil, err
	}
	src := op.bwd.dgamma
	if op.beta {
		src = op.bwd.dbeta
	}
	if len(src) != op.bwd.fwd.c {
		return nil, fmt.Errorf("groupnormParamGrad: the gradient op has not run")
	}
	out := ownedT(&op.out, op.bwd.fwd.c)
	copy(out.Float32s(), src)
	return out, nil
}
func (op *gnParamGradOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "gnParamGrad%p", op) }
func (op *gnParamGradOp) Hashcode() uint32      { return opHash(op) }
func (op *gnParamGradOp) String() string {
	if op.beta {
		return "dβ"
	}
	return "dγ"
}

// ---- resampling and concatenation ----

// resampleOp is a 2× resampling of every h×w plane: up, y[2i+a, 2j+b] = scale·x[i, j] (nearest
// neighbour, shaders.Upsample2xCPU with scale 1); down, y[i, j] = scale·Σ_{a,b} x[2i+a, 2j+b]
// (shaders.AvgPool2xCPU with scale ¼). Each is the other's adjoint, which gives the gradients.
type resampleOp struct {
	unetOp
	up    bool
	scale float32
	out   *tensor.Dense
}

func (op *resampleOp) Arity() int    { return 1 }
func (op *resampleOp) Type() hm.Type { return fnType(4, 4) }
func (op *resampleOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 1 {
		return nil, fmt.Errorf("resample: want 1 shape, got %d", len(in))
	}
	s, err := shapeOf("resample", in[0])
	if err != nil || len(s) != 4 {
		return nil, fmt.Errorf("resample: want [n, c, h, w], got %v", in[0])
	}
	if op.up {
		return tensor.Shape{s[0], s[1], 2 * s[2], 2 * s[3]}, nil
	}
	if s[2]%2 != 0 || s[3]%2 != 0 {
		return nil, fmt.Errorf("resample: cannot pool odd size %v", s)
	}
	return tensor.Shape{s[0], s[1], s[2] / 2, s[3] / 2}, nil
}
func (op *resampleOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("resample", in, 1); err != nil {
		return nil, err
	}
	s := in[0].Shape()
	os, err := op.InferShape(s)
	if err != nil {
		return nil, err
	}
	x, err := f32Of(in[0], "resample x", s...)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, os...)
	y := out.Float32s()
	planes := s[0] * s[1]
	sc := op.scale
	h, w := s[2], s[3]
	if op.up {
		parallelItems(planes, 4*h*w, func(_, p0, p1 int) {
			for p := p0; p < p1; p++ {
				src, dst := x[p*h*w:(p+1)*h*w], y[p*4*h*w:(p+1)*4*h*w]
				for i := 0; i < h; i++ {
					r0, r1 := dst[2*i*2*w:(2*i+1)*2*w], dst[(2*i+1)*2*w:(2*i+2)*2*w]
					for j, v := range src[i*w : (i+1)*w] {
						v *= sc
						r0[2*j], r0[2*j+1] = v, v
					}
					copy(r1, r0)
				}
			}
		})
		return out, nil
	}
	oh, ow := h/2, w/2
	parallelItems(planes, h*w, func(_, p0, p1 int) {
		for p := p0; p < p1; p++ {
			src, dst := x[p*h*w:(p+1)*h*w], y[p*oh*ow:(p+1)*oh*ow]
			for i := 0; i < oh; i++ {
				r0, r1 := src[2*i*w:(2*i+1)*w], src[(2*i+1)*w:(2*i+2)*w]
				for j := 0; j < ow; j++ {
					dst[i*ow+j] = sc * (r0[2*j] + r0[2*j+1] + r1[2*j] + r1[2*j+1])
				}
			}
		}
	})
	return out, nil
}
func (op *resampleOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "resample%p", op) }
func (op *resampleOp) Hashcode() uint32      { return opHash(op) }
func (op *resampleOp) String() string {
	if op.up {
		return fmt.Sprintf("up2x·%g", op.scale)
	}
	return fmt.Sprintf("down2x·%g", op.scale)
}
func (op *resampleOp) DiffWRT(int) []bool { return []bool{true} }
func (op *resampleOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	dx, err := G.ApplyOp(&resampleOp{up: !op.up, scale: op.scale}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dx}, nil
}

// concatOp stacks a [n, ca, h, w] and b [n, cb, h, w] on channels, a first (shaders.ConcatCPU).
type concatOp struct {
	unetOp
	out *tensor.Dense
}

func (op *concatOp) Arity() int    { return 2 }
func (op *concatOp) Type() hm.Type { return fnType(4, 4, 4) }
func (op *concatOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 2 {
		return nil, fmt.Errorf("concat: want 2 shapes, got %d", len(in))
	}
	as, err1 := shapeOf("concat", in[0])
	bs, err2 := shapeOf("concat", in[1])
	if err1 != nil || err2 != nil || len(as) != 4 || len(bs) != 4 || as[0] != bs[0] || as[2] != bs[2] || as[3] != bs[3] {
		return nil, fmt.Errorf("concat: want [n, ca, h, w] and [n, cb, h, w], got %v and %v", in[0], in[1])
	}
	return tensor.Shape{as[0], as[1] + bs[1], as[2], as[3]}, nil
}
func (op *concatOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("concat", in, 2); err != nil {
		return nil, err
	}
	as, bs := in[0].Shape(), in[1].Shape()
	os, err := op.InferShape(as, bs)
	if err != nil {
		return nil, err
	}
	a, err := f32Of(in[0], "concat a", as...)
	if err != nil {
		return nil, err
	}
	b, err := f32Of(in[1], "concat b", bs...)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, os...)
	y := out.Float32s()
	la, lb := as[1]*as[2]*as[3], bs[1]*bs[2]*bs[3]
	parallelItems(as[0], la+lb, func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			copy(y[i*(la+lb):], a[i*la:(i+1)*la])
			copy(y[i*(la+lb)+la:], b[i*lb:(i+1)*lb])
		}
	})
	return out, nil
}
func (op *concatOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "concat%p", op) }
func (op *concatOp) Hashcode() uint32      { return opHash(op) }
func (op *concatOp) String() string        { return "concat(c)" }
func (op *concatOp) DiffWRT(int) []bool    { return []bool{true, true} }
func (op *concatOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if len(inputs) != 2 {
		return nil, fmt.Errorf("concat: want 2 inputs, got %d", len(inputs))
	}
	as, bs := inputs[0].Shape(), inputs[1].Shape()
	da, err := G.ApplyOp(&splitOp{from: 0, c: as[1]}, grad)
	if err != nil {
		return nil, err
	}
	db, err := G.ApplyOp(&splitOp{from: as[1], c: bs[1]}, grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{da, db}, nil
}

// splitOp copies channels [from, from+c) of x [n, C, h, w]: the gradient of concatOp.
type splitOp struct {
	unetOp
	from, c int
	out     *tensor.Dense
}

func (op *splitOp) Arity() int    { return 1 }
func (op *splitOp) Type() hm.Type { return fnType(4, 4) }
func (op *splitOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 1 {
		return nil, fmt.Errorf("split: want 1 shape, got %d", len(in))
	}
	s, err := shapeOf("split", in[0])
	if err != nil || len(s) != 4 || op.from+op.c > s[1] {
		return nil, fmt.Errorf("split: channels [%d, %d) of %v", op.from, op.from+op.c, in[0])
	}
	return tensor.Shape{s[0], op.c, s[2], s[3]}, nil
}
func (op *splitOp) Do(in ...G.Value) (G.Value, error) {
	if err := checkInputs("split", in, 1); err != nil {
		return nil, err
	}
	s := in[0].Shape()
	os, err := op.InferShape(s)
	if err != nil {
		return nil, err
	}
	x, err := f32Of(in[0], "split x", s...)
	if err != nil {
		return nil, err
	}
	out := ownedT(&op.out, os...)
	y := out.Float32s()
	hw := s[2] * s[3]
	parallelItems(s[0], op.c*hw, func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			copy(y[i*op.c*hw:(i+1)*op.c*hw], x[(i*s[1]+op.from)*hw:(i*s[1]+op.from+op.c)*hw])
		}
	})
	return out, nil
}
func (op *splitOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "split%p", op) }
func (op *splitOp) Hashcode() uint32      { return opHash(op) }
func (op *splitOp) String() string        { return fmt.Sprintf("channels[%d:%d]", op.from, op.from+op.c) }
