package cpu

// unetops.go holds the U-Net's custom gorgonia ops (residual add, time bias, channel sums, concat and
// split, resampling), each with its forward Do and its SymDiff; they share the op boilerplate and the
// parallel helpers at the top, so they stay in one file a little over 500 lines.

import (
	"fmt"
	"hash"
	"runtime"
	"sync"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/backend/cpu/kern"
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
// ≈ 265–390 ms against ≈ 110 ms (BenchmarkUNet{Step,Eval}{,Stock}). Since then the convolutions
// moved from axpy/dot loops to tiles of im2col + OpenBLAS sgemm and the element-wise loops to
// vectorised C (package kern): 3.4–5.7× faster steps again (README, "CPU training speed").

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
// a residual block (model/unet.go).
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

// ---- resampling and concatenation ----

// resampleOp is a 2× resampling of every h×w plane: up, y[2i+a, 2j+b] = scale·x[i, j] (nearest
// neighbour, model.Upsample2xCPU with scale 1); down, y[i, j] = scale·Σ_{a,b} x[2i+a, 2j+b]
// (model.AvgPool2xCPU with scale ¼). Each is the other's adjoint, which gives the gradients.
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

// concatOp stacks a [n, ca, h, w] and b [n, cb, h, w] on channels, a first (model.ConcatCPU).
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
