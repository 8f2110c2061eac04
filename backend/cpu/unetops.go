package cpu

import (
	"fmt"
	"hash"
	"math"
	"runtime"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"gonum.org/v1/gonum/blas/blas32"

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

// im2col writes the patches of one image x [cin, h, w] as cols [cin·k·k, h·w], row (ci·k + kh)·k + kw
// holding x[ci, y+kh−k/2, x+kw−k/2] (zero outside), the order of a [cout, cin, k, k] weight's row.
func (g convGeom) im2col(x, cols []float32) {
	hw, pad := g.hw(), g.k/2
	for ci := 0; ci < g.cin; ci++ {
		plane := x[ci*hw : (ci+1)*hw]
		for kh := 0; kh < g.k; kh++ {
			dy := kh - pad
			for kw := 0; kw < g.k; kw++ {
				dx := kw - pad
				row := cols[((ci*g.k+kh)*g.k+kw)*hw:][:hw]
				x0, x1 := max(0, -dx), min(g.w, g.w-dx)
				for yy := 0; yy < g.h; yy++ {
					out := row[yy*g.w : (yy+1)*g.w]
					sy := yy + dy
					if sy < 0 || sy >= g.h || x0 >= x1 {
						clear(out)
						continue
					}
					clear(out[:x0])
					copy(out[x0:x1], plane[sy*g.w+x0+dx:sy*g.w+x1+dx])
					clear(out[x1:])
				}
			}
		}
	}
}

// col2im adds the patch gradients dcols [cin·k·k, h·w] into dx [cin, h, w] (the adjoint of im2col).
func (g convGeom) col2im(dcols, dx []float32) {
	hw, pad := g.hw(), g.k/2
	for ci := 0; ci < g.cin; ci++ {
		plane := dx[ci*hw : (ci+1)*hw]
		for kh := 0; kh < g.k; kh++ {
			dy := kh - pad
			for kw := 0; kw < g.k; kw++ {
				dx := kw - pad
				row := dcols[((ci*g.k+kh)*g.k+kw)*hw:][:hw]
				x0, x1 := max(0, -dx), min(g.w, g.w-dx)
				y0, y1 := max(0, -dy), min(g.h, g.h-dy)
				for yy := y0; yy < y1; yy++ {
					src := row[yy*g.w+x0 : yy*g.w+x1]
					dst := plane[(yy+dy)*g.w+x0+dx : (yy+dy)*g.w+x1+dx]
					for j, v := range src {
						dst[j] += v
					}
				}
			}
		}
	}
}

// The three matrix products of a convolution, per image, with W [cout, kk] (kk = cin·k·k), the
// patches cols [kk, hw] and the output (gradient) g [cout, hw]. They are written as loops of
// full-row axpys and dots (gonum's SSE kernels) rather than calls to its sgemm, which cuts every row
// into 64-wide blocks and spends nearly as long on the loops around those short vectors as on the
// arithmetic at these shapes (cout 16–64, hw up to 784): on the default MNIST U-Net at batch 128 a
// step went from ≈3.3 to ≈2.2 s of CPU and a forward from ≈1.26 to ≈0.86 s (BenchmarkUNetStep,
// BenchmarkUNetEval, cpu-ms/op, 2 shared cores). The kk loop is blocked so that kkBlock rows of cols
// and all of g stay in the L2 cache.
const kkBlock = 64

// gemmWCols adds W·cols to y [cout, hw] (the forward pass; y holds the bias).
func gemmWCols(w, cols, y []float32, cout, kk, hw int) {
	for k0 := 0; k0 < kk; k0 += kkBlock {
		k1 := min(kk, k0+kkBlock)
		for co := 0; co < cout; co++ {
			yr := blas32.Vector{N: hw, Inc: 1, Data: y[co*hw : (co+1)*hw]}
			for k := k0; k < k1; k++ {
				blas32.Axpy(w[co*kk+k], blas32.Vector{N: hw, Inc: 1, Data: cols[k*hw : (k+1)*hw]}, yr)
			}
		}
	}
}

// gemmWTGrad writes Wᵀ·g into dcols [kk, hw] (the gradient with respect to the patches).
func gemmWTGrad(w, g, dcols []float32, cout, kk, hw int) {
	for k := 0; k < kk; k++ {
		row := dcols[k*hw : (k+1)*hw]
		clear(row)
		rv := blas32.Vector{N: hw, Inc: 1, Data: row}
		for co := 0; co < cout; co++ {
			blas32.Axpy(w[co*kk+k], blas32.Vector{N: hw, Inc: 1, Data: g[co*hw : (co+1)*hw]}, rv)
		}
	}
}

// gemmGradCols adds g·colsᵀ to dw [cout, kk] (the gradient with respect to the weights).
func gemmGradCols(g, cols, dw []float32, cout, kk, hw int) {
	for k0 := 0; k0 < kk; k0 += kkBlock {
		k1 := min(kk, k0+kkBlock)
		for co := 0; co < cout; co++ {
			gr := blas32.Vector{N: hw, Inc: 1, Data: g[co*hw : (co+1)*hw]}
			for k := k0; k < k1; k++ {
				dw[co*kk+k] += blas32.Dot(gr, blas32.Vector{N: hw, Inc: 1, Data: cols[k*hw : (k+1)*hw]})
			}
		}
	}
}

// convOp is y = conv(x; w) + b for x [n, cin, h, w], w [cout, cin, k, k], b [cout] (shaders.ConvCPU):
// per image, y_i [cout, h·w] = W [cout, cin·k·k] · im2col(x_i) with gonum's sgemm, straight into
// NCHW (no transpose).
type convOp struct {
	unetOp
	convGeom
	out  *tensor.Dense
	cols [][]float32 // per-worker im2col scratch
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
	parallelItems(op.n, op.cout*hw, func(wk, i0, i1 int) {
		var cols []float32
		if op.k > 1 {
			cols = scratch(op.cols, wk, kk*hw)
		}
		for i := i0; i < i1; i++ {
			xi := x[i*op.cin*hw : (i+1)*op.cin*hw]
			yi := y[i*op.cout*hw : (i+1)*op.cout*hw]
			for co, bv := range b {
				row := yi[co*hw : (co+1)*hw]
				for j := range row {
					row[j] = bv
				}
			}
			if op.k > 1 {
				op.im2col(xi, cols)
			} else {
				cols = xi
			}
			gemmWCols(w, cols, yi, op.cout, kk, hw)
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

// convDataGradOp is dx = convᵀ(gy; w): per image dcols = Wᵀ · gy_i, then col2im. Inputs (w, gy).
type convDataGradOp struct {
	unetOp
	convGeom
	out   *tensor.Dense
	dcols [][]float32
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
	perWorker(&op.dcols)
	parallelItems(op.n, op.cout*hw, func(wk, i0, i1 int) {
		for i := i0; i < i1; i++ {
			gi := gy[i*op.cout*hw : (i+1)*op.cout*hw]
			dxi := dx[i*op.cin*hw : (i+1)*op.cin*hw]
			if op.k == 1 {
				gemmWTGrad(w, gi, dxi, op.cout, kk, hw)
				continue
			}
			dc := scratch(op.dcols, wk, kk*hw)
			gemmWTGrad(w, gi, dc, op.cout, kk, hw)
			clear(dxi)
			op.col2im(dc, dxi)
		}
	})
	return out, nil
}
func (op *convDataGradOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "convDataGrad%p", op) }
func (op *convDataGradOp) Hashcode() uint32      { return opHash(op) }
func (op *convDataGradOp) String() string        { return "convᵀ(gy; w)" }

// convWeightGradOp is dw = Σ_i gy_i · im2col(x_i)ᵀ. Inputs (x, gy). Each worker sums its images into
// its own partial, added up at the end.
type convWeightGradOp struct {
	unetOp
	convGeom
	out     *tensor.Dense
	cols    [][]float32
	partial [][]float32
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
	hw, kk := op.hw(), op.kk()
	perWorker(&op.cols)
	perWorker(&op.partial)
	workers := parallelItems(op.n, op.cout*hw, func(wk, i0, i1 int) {
		acc := dw
		if wk > 0 {
			acc = scratch(op.partial, wk, len(dw))
		}
		clear(acc)
		var cols []float32
		if op.k > 1 {
			cols = scratch(op.cols, wk, kk*hw)
		}
		for i := i0; i < i1; i++ {
			xi := x[i*op.cin*hw : (i+1)*op.cin*hw]
			if op.k > 1 {
				op.im2col(xi, cols)
			} else {
				cols = xi
			}
			gemmGradCols(gy[i*op.cout*hw:(i+1)*op.cout*hw], cols, acc, op.cout, kk, hw)
		}
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
		for p := range o {
			var acc float64
			for _, v := range x[p*hw : (p+1)*hw] {
				acc += float64(v)
			}
			o[p] = float32(acc)
		}
		return out, nil
	}
	for ch := 0; ch < c; ch++ {
		var acc float64
		for i := 0; i < n; i++ {
			for _, v := range x[(i*c+ch)*hw : (i*c+ch+1)*hw] {
				acc += float64(v)
			}
		}
		o[ch] = float32(acc)
	}
	return out, nil
}
func (op *chanSumOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "chanSum%p", op) }
func (op *chanSumOp) Hashcode() uint32      { return opHash(op) }
func (op *chanSumOp) String() string        { return "Σhw" }

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
	for p, v := range tb {
		src, dst := r[p*hw:(p+1)*hw], o[p*hw:(p+1)*hw]
		for j, u := range src {
			dst[j] = u + v
		}
	}
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

// groupStats returns the mean and 1/√(var + eps) of one group's values (two passes, float64).
func groupStats(seg []float32) (mean, rstd float64) {
	var s float64
	for _, v := range seg {
		s += float64(v)
	}
	mean = s / float64(len(seg))
	var s2 float64
	for _, v := range seg {
		d := float64(v) - mean
		s2 += d * d
	}
	return mean, 1 / math.Sqrt(s2/float64(len(seg))+shaders.GroupNormEps)
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
			mean, rstd := groupStats(x[lo:hi])
			if op.keep {
				op.mean[u], op.rstd[u] = mean, rstd
			}
			for k := 0; k < cg; k++ {
				ch := (u%op.groups)*cg + k
				g, b := gamma[ch], beta[ch]
				off := lo + k*op.hw
				for j := off; j < off+op.hw; j++ {
					// As GroupNormCPU: normalise in float64, round, then the float32 affine map.
					v := float32((float64(x[j])-mean)*rstd)*g + b
					s := float32(1 / (1 + math.Exp(-float64(v))))
					if op.keep {
						op.sig[j] = s
					}
					y[j] = v * s
				}
			}
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
	for wk := range op.pg {
		if len(op.pg[wk]) != f.c {
			op.pg[wk], op.pb[wk] = make([]float64, f.c), make([]float64, f.c)
		}
	}
	op.workersUsed = parallelItems(f.n*f.groups, cg*f.hw, func(wk, u0, u1 int) {
		pg, pb := op.pg[wk], op.pb[wk]
		clear(pg)
		clear(pb)
		for u := u0; u < u1; u++ {
			lo := u * cg * f.hw
			mean, rstd := f.mean[u], f.rstd[u]
			var sumD, sumDX float64 // Σ dx̂, Σ dx̂·x̂ over the group
			for k := 0; k < cg; k++ {
				ch := (u%f.groups)*cg + k
				g, b := gamma[ch], beta[ch]
				var sg, sb float64
				off := lo + k*f.hw
				for j := off; j < off+f.hw; j++ {
					xh := float32((float64(x[j]) - mean) * rstd)
					v := xh*g + b
					s := f.sig[j]
					du := gy[j] * s * (1 + v*(1-s))
					sb += float64(du)
					sg += float64(du) * float64(xh)
					d := du * g
					dx[j] = d // dx̂ for now
					sumD += float64(d)
					sumDX += float64(d) * float64(xh)
				}
				pg[ch] += sg
				pb[ch] += sb
			}
			m := float64(cg * f.hw)
			a, c := sumD/m, sumDX/m
			for j := lo; j < lo+cg*f.hw; j++ {
				xh := (float64(x[j]) - mean) * rstd
				dx[j] = float32(rstd * (float64(dx[j]) - a - xh*c))
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
	if op.up {
		h, w := s[2], s[3]
		for p := 0; p < planes; p++ {
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
		return out, nil
	}
	h, w := s[2], s[3]
	oh, ow := h/2, w/2
	for p := 0; p < planes; p++ {
		src, dst := x[p*h*w:(p+1)*h*w], y[p*oh*ow:(p+1)*oh*ow]
		for i := 0; i < oh; i++ {
			r0, r1 := src[2*i*w:(2*i+1)*w], src[(2*i+1)*w:(2*i+2)*w]
			for j := 0; j < ow; j++ {
				dst[i*ow+j] = sc * (r0[2*j] + r0[2*j+1] + r1[2*j] + r1[2*j+1])
			}
		}
	}
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
	for i := 0; i < as[0]; i++ {
		copy(y[i*(la+lb):], a[i*la:(i+1)*la])
		copy(y[i*(la+lb)+la:], b[i*lb:(i+1)*lb])
	}
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
	for i := 0; i < s[0]; i++ {
		copy(y[i*op.c*hw:(i+1)*op.c*hw], x[(i*s[1]+op.from)*hw:(i*s[1]+op.from+op.c)*hw])
	}
	return out, nil
}
func (op *splitOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "split%p", op) }
func (op *splitOp) Hashcode() uint32      { return opHash(op) }
func (op *splitOp) String() string        { return fmt.Sprintf("channels[%d:%d]", op.from, op.from+op.c) }
