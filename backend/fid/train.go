package fid

import (
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/backend/imgdata"
	"asbm/weights"
)

// TrainConfig sets up TrainClassifier.
type TrainConfig struct {
	// Base and Mults set the conv levels (Base·Mults[l] channels at level l; none when Mults is
	// empty). Hidden is the width of every fully connected hidden layer (and of the FID
	// features), Layers their number.
	Base           int
	Mults          []int
	Hidden, Layers int
	// Epochs over the training set, in mini-batches of Batch images (the last partial batch of
	// each shuffled epoch is dropped).
	Epochs, Batch int
	// LR is Adam's peak learning rate (β = 0.9, 0.999, ε = 1e-8), decayed to 0 over training on a
	// half-cosine.
	LR float64
	// Seed fixes the initial weights and the shuffling: training is deterministic given it.
	Seed uint64
	// Log receives one line per epoch when non-nil.
	Log io.Writer
}

// DefaultTrainConfig returns the settings the shipped classifiers were trained with: conv levels
// of 8 and 16 channels (1×28×28 → 8×14×14 → 16×7×7), one hidden layer of 128 (the features), 10
// epochs of batch 128, Adam at 1e-3 with cosine decay, seed 1.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{Base: 8, Mults: []int{1, 2}, Hidden: 128, Layers: 1, Epochs: 10, Batch: 128, LR: 1e-3, Seed: 1}
}

// TrainStats reports a training run.
type TrainStats struct {
	// Steps is the number of Adam steps taken.
	Steps int
	// LastEpochLoss is the mean cross-entropy over the mini-batches of the last epoch.
	LastEpochLoss float64
	// TrainAccuracy and TestAccuracy are measured with the plain-Go forward pass of the result
	// (the one that ships); TestAccuracy is NaN when no test set was given.
	TrainAccuracy, TestAccuracy float64
	// Seconds is the wall time of the whole run.
	Seconds float64
}

// TrainClassifier trains a Classifier (softmax cross-entropy, Adam) on the labelled set train and
// measures its accuracy on train and on test (which may be nil). Gorgonia computes the gradient;
// Adam, the shuffling and the accuracy are plain Go. The number of classes is the largest label
// plus one. The returned classifier's metadata records the data set, the settings and the
// accuracies.
func TrainClassifier(train, test *imgdata.Set, cfg TrainConfig) (*Classifier, TrainStats, error) {
	start := time.Now()
	var st TrainStats
	if err := checkLabelled(train, "training"); err != nil {
		return nil, st, err
	}
	if test != nil {
		if err := checkLabelled(test, "test"); err != nil {
			return nil, st, err
		}
		if test.C != train.C || test.H != train.H || test.W != train.W {
			return nil, st, fmt.Errorf("fid: test images are %d×%d×%d, training images %d×%d×%d", test.C, test.H, test.W, train.C, train.H, train.W)
		}
	}
	if cfg.Epochs < 1 || cfg.Batch < 1 || !(cfg.LR > 0) || math.IsInf(cfg.LR, 0) {
		return nil, st, fmt.Errorf("fid: train config needs epochs ≥ 1, batch ≥ 1 and a finite lr > 0; got %+v", cfg)
	}
	if cfg.Batch > train.N {
		return nil, st, fmt.Errorf("fid: batch %d is larger than the training set (%d images)", cfg.Batch, train.N)
	}
	classes := 0
	for _, l := range train.Labels {
		classes = max(classes, l+1)
	}
	arch := weights.Arch{Kind: KindClassifier, Dim: train.Dim(), Hidden: cfg.Hidden, Layers: cfg.Layers,
		Channels: train.C, Height: train.H, Width: train.W, Base: cfg.Base, Mults: cfg.Mults}
	r := rand.New(rand.NewPCG(cfg.Seed, 0x464944)) // "FID"
	c, err := newClassifier(arch, classes, r.NormFloat64)
	if err != nil {
		return nil, st, err
	}
	params := c.params()
	tg, err := buildTrainGraph(arch, classes, params, cfg.Batch)
	if err != nil {
		return nil, st, err
	}
	adam := newAdam(params)
	perEpoch := train.N / cfg.Batch
	total := cfg.Epochs * perEpoch
	d := train.Dim()
	for ep := range cfg.Epochs {
		perm := r.Perm(train.N)
		var sum float64
		for b := range perEpoch {
			for i, idx := range perm[b*cfg.Batch : (b+1)*cfg.Batch] {
				for j, v := range train.Pixels[idx*d : (idx+1)*d] {
					tg.x[i*d+j] = min(max(v, -1), 1) // as the inference forward does
				}
				row := tg.y[i*classes : (i+1)*classes]
				clear(row)
				row[train.Labels[idx]] = -1 / float32(cfg.Batch)
			}
			loss, err := tg.run()
			if err != nil {
				return nil, st, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, st, fmt.Errorf("fid: training diverged at epoch %d, step %d (loss %v): lower the learning rate", ep+1, b+1, loss)
			}
			sum += loss
			lr := cfg.LR * 0.5 * (1 + math.Cos(math.Pi*float64(st.Steps)/float64(total)))
			adam.step(params, tg.gradients(), lr)
			st.Steps++
		}
		st.LastEpochLoss = sum / float64(perEpoch)
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "fid: epoch %d/%d: mean cross-entropy %.4f (%.0f s)\n", ep+1, cfg.Epochs, st.LastEpochLoss, time.Since(start).Seconds())
		}
	}
	if st.TrainAccuracy, err = c.Accuracy(train.Pixels, train.Labels, train.N); err != nil {
		return nil, st, err
	}
	st.TestAccuracy = math.NaN()
	if test != nil {
		if st.TestAccuracy, err = c.Accuracy(test.Pixels, test.Labels, test.N); err != nil {
			return nil, st, err
		}
		c.meta["test_set"] = test.Name
		c.meta["test_accuracy"] = st.TestAccuracy
	}
	st.Seconds = time.Since(start).Seconds()
	c.meta["dataset"] = train.Name
	c.meta["classes"] = classes
	c.meta["train_accuracy"] = st.TrainAccuracy
	c.meta["epochs"] = cfg.Epochs
	c.meta["batch"] = cfg.Batch
	c.meta["lr"] = cfg.LR
	c.meta["seed"] = cfg.Seed
	c.meta["feature_layer"] = fmt.Sprintf("relu(l%d): the %d ReLU outputs of the last hidden fully connected layer (penultimate)", cfg.Layers-1, cfg.Hidden)
	return c, st, nil
}

// checkLabelled reports a set TrainClassifier cannot use.
func checkLabelled(s *imgdata.Set, what string) error {
	if s == nil {
		return fmt.Errorf("fid: no %s set", what)
	}
	if s.N < 1 || len(s.Pixels) != s.N*s.Dim() {
		return fmt.Errorf("fid: %s set %q has %d images and %d pixel values", what, s.Name, s.N, len(s.Pixels))
	}
	if len(s.Labels) != s.N {
		return fmt.Errorf("fid: %s set %q has %d labels for %d images (a classifier needs a labelled set)", what, s.Name, len(s.Labels), s.N)
	}
	for i, l := range s.Labels {
		if l < 0 || l >= 1<<16 {
			return fmt.Errorf("fid: %s set %q: label %d is %d", what, s.Name, i, l)
		}
	}
	return nil
}

// trainGraph is the compiled gorgonia program of one training step for a fixed batch: the
// forward pass, the cross-entropy and its gradient. Its parameter nodes are bound to the
// classifier's own slices, so Adam's in-place updates are seen by the next run; x and y are
// buffers refilled before each run.
type trainGraph struct {
	g     *G.ExprGraph
	vm    G.VM
	x     []float32 // [batch, Dim]
	y     []float32 // [batch, classes]: −1/batch at each row's label, 0 elsewhere
	loss  *G.Node
	grads G.Nodes // in params order
}

// buildTrainGraph builds the step graph: conv levels h = ReLU(conv_s2(h, K_l) + c_l), flatten,
// h_{k+1} = ReLU(h_k·W_k + b_k), logits = h·W_out + b_out, and
// loss = Σ y ⊙ logSoftmax(logits) = −(1/batch)·Σ_i log p_i[label_i]. params are in
// classifierShapes order.
func buildTrainGraph(a weights.Arch, classes int, params [][]float32, batch int) (tg *trainGraph, err error) {
	// Gorgonia reports some construction errors by panicking.
	defer func() {
		if r := recover(); r != nil {
			tg, err = nil, fmt.Errorf("fid: building the gorgonia graph: %v", r)
		}
	}()
	names, shapes := classifierShapes(a, classes)
	if len(params) != len(names) {
		return nil, fmt.Errorf("fid: %d parameter tensors, the arch needs %d", len(params), len(names))
	}
	g := G.NewGraph()
	tg = &trainGraph{g: g, x: make([]float32, batch*a.Dim), y: make([]float32, batch*classes)}
	bind := func(name string, sh []int, v []float32) *G.Node {
		return G.NewTensor(g, G.Float32, len(sh), G.WithShape(sh...), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(sh...), tensor.WithBacking(v))))
	}
	nConv := len(a.Mults)
	pn := make(G.Nodes, len(names))
	for i, name := range names {
		sh := shapes[i]
		switch {
		case len(sh) == 1 && i < 2*nConv:
			sh = []int{1, sh[0], 1, 1} // conv biases broadcast over batch, rows and columns
		case len(sh) == 1:
			sh = []int{1, sh[0]} // biases are [1, out] rows, broadcast over the batch
		}
		pn[i] = bind(name, sh, params[i])
	}
	y := bind("y", []int{batch, classes}, tg.y)
	var h *G.Node
	if nConv == 0 {
		h = bind("x", []int{batch, a.Dim}, tg.x)
	} else {
		h = bind("x", []int{batch, a.Channels, a.Height, a.Width}, tg.x)
		for l := range nConv {
			z, err := G.Conv2d(h, pn[2*l], tensor.Shape{3, 3}, []int{1, 1}, []int{2, 2}, []int{1, 1})
			if err != nil {
				return nil, err
			}
			if z, err = G.BroadcastAdd(z, pn[2*l+1], nil, []byte{0, 2, 3}); err != nil {
				return nil, err
			}
			if h, err = G.Rectify(z); err != nil {
				return nil, err
			}
		}
		c, oh, ow := convOut(a)
		if h, err = G.Reshape(h, tensor.Shape{batch, c * oh * ow}); err != nil {
			return nil, err
		}
	}
	for l := 0; l <= a.Layers; l++ {
		p := 2 * (nConv + l)
		z, err := G.Mul(h, pn[p])
		if err != nil {
			return nil, err
		}
		if z, err = G.BroadcastAdd(z, pn[p+1], nil, []byte{0}); err != nil {
			return nil, err
		}
		if l == a.Layers {
			h = z
			break
		}
		if h, err = G.Rectify(z); err != nil {
			return nil, err
		}
	}
	ls, err := G.ApplyOp(&logSoftmaxOp{}, h)
	if err != nil {
		return nil, err
	}
	prod, err := G.HadamardProd(ls, y)
	if err != nil {
		return nil, err
	}
	if tg.loss, err = G.Sum(prod); err != nil {
		return nil, err
	}
	if tg.grads, err = G.Grad(tg.loss, pn...); err != nil {
		return nil, err
	}
	tg.vm = G.NewTapeMachine(g)
	return tg, nil
}

// run executes one step and returns the loss.
func (tg *trainGraph) run() (float64, error) {
	tg.vm.Reset()
	if err := tg.vm.RunAll(); err != nil {
		return 0, fmt.Errorf("fid: gorgonia run: %w", err)
	}
	switch v := tg.loss.Value().Data().(type) {
	case float32:
		return float64(v), nil
	case []float32:
		return float64(v[0]), nil
	}
	return 0, fmt.Errorf("fid: loss node holds %T", tg.loss.Value().Data())
}

// gradients returns the gradient values of the last run, in params order.
func (tg *trainGraph) gradients() [][]float32 {
	out := make([][]float32, len(tg.grads))
	for i, n := range tg.grads {
		out[i] = n.Value().Data().([]float32)
	}
	return out
}

// adam is Adam (Kingma & Ba) with bias correction, in plain Go over the parameter slices.
type adam struct {
	m, v [][]float32
	t    int
}

func newAdam(params [][]float32) *adam {
	a := &adam{}
	for _, p := range params {
		a.m = append(a.m, make([]float32, len(p)))
		a.v = append(a.v, make([]float32, len(p)))
	}
	return a
}

// step applies one Adam update with learning rate lr (β1 0.9, β2 0.999, ε 1e-8).
func (a *adam) step(params, grads [][]float32, lr float64) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	for i, p := range params {
		m, v, g := a.m[i], a.v[i], grads[i]
		for j := range p {
			m[j] = b1*m[j] + (1-b1)*g[j]
			v[j] = b2*v[j] + (1-b2)*g[j]*g[j]
			mh := float64(m[j]) / c1
			vh := float64(v[j]) / c2
			p[j] -= float32(lr * mh / (math.Sqrt(vh) + eps))
		}
	}
}

// logSoftmaxOp computes z − logΣexp(z) per row of a [n, K] matrix, shifted by the row maximum so
// it cannot overflow. Gorgonia v0.9.18's LogSumExp mixes shapes and adds the maximum inside the
// log, so the row-wise log-softmax is this small op; it keeps the softmax for its gradient.
type logSoftmaxOp struct {
	out *tensor.Dense
	p   []float32 // softmax of the last forward run
}

// logSoftmaxGradOp computes dz = g − p·Σ_k g_k per row, with p the stored softmax. Its inputs are
// (z, g); z only orders it after the forward op.
type logSoftmaxGradOp struct {
	fwd *logSoftmaxOp
	out *tensor.Dense
}

// denseF32 returns the data and shape of a rank-2 contiguous float32 value.
func denseF32(v G.Value, what string) ([]float32, int, int, error) {
	d, ok := v.(*tensor.Dense)
	if !ok || d.Dtype() != tensor.Float32 || d.Dims() != 2 || !d.IsNativelyAccessible() || d.RequiresIterator() {
		return nil, 0, 0, fmt.Errorf("%s: want a contiguous float32 matrix, got %T", what, v)
	}
	s := d.Shape()
	return d.Float32s(), s[0], s[1], nil
}

// outDense returns *buf, allocating it on first use or when the shape changed.
func outDense(buf **tensor.Dense, rows, cols int) *tensor.Dense {
	if *buf == nil || (*buf).Shape()[0] != rows || (*buf).Shape()[1] != cols {
		*buf = tensor.New(tensor.WithShape(rows, cols), tensor.Of(tensor.Float32))
	}
	return *buf
}

func (op *logSoftmaxOp) Arity() int { return 1 }
func (op *logSoftmaxOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a)
}
func (op *logSoftmaxOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 1 {
		return nil, fmt.Errorf("logSoftmax: want 1 shape, got %d", len(in))
	}
	s, ok := in[0].(tensor.Shape)
	if !ok || len(s) != 2 {
		return nil, fmt.Errorf("logSoftmax: want a matrix, got %v", in[0])
	}
	return s.Clone(), nil
}
func (op *logSoftmaxOp) Do(in ...G.Value) (G.Value, error) {
	if len(in) != 1 {
		return nil, errors.New("logSoftmax: want 1 input")
	}
	z, n, k, err := denseF32(in[0], "logSoftmax")
	if err != nil {
		return nil, err
	}
	out := outDense(&op.out, n, k)
	o := out.Float32s()
	if len(op.p) != n*k {
		op.p = make([]float32, n*k)
	}
	for r := range n {
		zr, or, pr := z[r*k:(r+1)*k], o[r*k:(r+1)*k], op.p[r*k:(r+1)*k]
		m := zr[0]
		for _, v := range zr {
			m = max(m, v)
		}
		var s float64
		for _, v := range zr {
			s += math.Exp(float64(v - m))
		}
		lse := float64(m) + math.Log(s)
		for j, v := range zr {
			or[j] = float32(float64(v) - lse)
			pr[j] = float32(math.Exp(float64(v) - lse))
		}
	}
	return out, nil
}
func (op *logSoftmaxOp) ReturnsPtr() bool      { return false }
func (op *logSoftmaxOp) CallsExtern() bool     { return false }
func (op *logSoftmaxOp) OverwritesInput() int  { return -1 }
func (op *logSoftmaxOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "logSoftmax%p", op) }
func (op *logSoftmaxOp) Hashcode() uint32      { return hashOf(op) }
func (op *logSoftmaxOp) String() string        { return "logSoftmax" }
func (op *logSoftmaxOp) DiffWRT(int) []bool    { return []bool{true} }
func (op *logSoftmaxOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if len(inputs) != 1 {
		return nil, errors.New("logSoftmax: want 1 input")
	}
	dz, err := G.ApplyOp(&logSoftmaxGradOp{fwd: op}, inputs[0], grad)
	if err != nil {
		return nil, err
	}
	return G.Nodes{dz}, nil
}

func (op *logSoftmaxGradOp) Arity() int { return 2 }
func (op *logSoftmaxGradOp) Type() hm.Type {
	a := hm.TypeVariable('a')
	return hm.NewFnType(a, a, a)
}
func (op *logSoftmaxGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	if len(in) != 2 {
		return nil, fmt.Errorf("logSoftmaxGrad: want 2 shapes, got %d", len(in))
	}
	s, ok := in[0].(tensor.Shape)
	if !ok || len(s) != 2 {
		return nil, fmt.Errorf("logSoftmaxGrad: want a matrix, got %v", in[0])
	}
	return s.Clone(), nil
}
func (op *logSoftmaxGradOp) Do(in ...G.Value) (G.Value, error) {
	if len(in) != 2 {
		return nil, errors.New("logSoftmaxGrad: want 2 inputs")
	}
	g, n, k, err := denseF32(in[1], "logSoftmaxGrad g")
	if err != nil {
		return nil, err
	}
	p := op.fwd.p
	if len(p) != n*k {
		return nil, fmt.Errorf("logSoftmaxGrad: gradient [%d %d] but %d stored softmax values", n, k, len(p))
	}
	out := outDense(&op.out, n, k)
	o := out.Float32s()
	for r := range n {
		gr, pr, or := g[r*k:(r+1)*k], p[r*k:(r+1)*k], o[r*k:(r+1)*k]
		var s float32
		for _, v := range gr {
			s += v
		}
		for j := range or {
			or[j] = gr[j] - pr[j]*s
		}
	}
	return out, nil
}
func (op *logSoftmaxGradOp) ReturnsPtr() bool      { return false }
func (op *logSoftmaxGradOp) CallsExtern() bool     { return false }
func (op *logSoftmaxGradOp) OverwritesInput() int  { return -1 }
func (op *logSoftmaxGradOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "logSoftmaxGrad%p", op.fwd) }
func (op *logSoftmaxGradOp) Hashcode() uint32      { return hashOf(op) }
func (op *logSoftmaxGradOp) String() string        { return "logSoftmax'" }

// hashOf hashes an op by its WriteHash.
func hashOf(op G.Op) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}
