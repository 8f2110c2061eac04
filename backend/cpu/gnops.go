package cpu

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/backend/cpu/kern"
	"asbm/model"
)

// The U-Net's group norm + SiLU ops (unet.go's gnSiLU) and their gradients, over kern's vectorised
// loops. The other U-Net ops are in unetops.go and convops.go.

// gnSiLUOp is y = SiLU(GroupNorm(x; γ, β)) for x [n, c, h, w] with groups groups, biased variance
// and eps model.GroupNormEps (model.GroupNormCPU then SiLU): every group norm in the U-Net is
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
			mean, rstd := kern.GroupStats(x[lo:hi], model.GroupNormEps)
			var sig []float32 // nil: GNSiLU keeps no sigmoids
			if op.keep {
				op.mean[u], op.rstd[u] = mean, rstd
				sig = op.sig[lo:hi]
			}
			ch := (u % op.groups) * cg
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
