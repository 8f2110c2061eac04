package cpu

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/model"
	"asbm/weights"
)

// netGraph is one compiled gorgonia program of the network for a fixed batch size n. Gorgonia graphs
// have static shapes, so the Net keeps one per batch size it has seen (see graphCache).
//
// Every input node is bound to a tensor backed by a Go slice the Net owns: the parameter nodes to the
// parameter (or EMA) slices themselves, so the optimiser updates them in place and the next run sees
// the new values without re-binding; x (and y, wy when training) to buffers refilled before each run.
type netGraph struct {
	n    int
	g    *G.ExprGraph
	vm   G.VM
	x    []float32 // MLP: [n, InputWidth], the data then the 2F time features (asbm.md §6.1); U-Net: [n, C, H, W]
	tf   []float32 // U-Net only: [n, 2F] time features (model.TimeFeatures)
	pred *G.Node   // [n, Dim] (MLP) or [n, C, H, W] (U-Net)

	// Training graphs only.
	wy    []float32 // n·Dim, pred's shape: the row weight w_i repeated over the row
	y     []float32 // n·Dim, pred's shape: the target
	loss  *G.Node   // mean_{i,j} (w_i·f_ij − y_ij)²
	grads G.Nodes   // ∂loss/∂p for every parameter, in ParamShapes order
}

// buildGraph compiles the forward pass for n rows with the parameter nodes bound to params (in
// ParamShapes order) and, when train is set, the weighted squared loss and its gradient.
func buildGraph(a weights.Arch, params [][]float32, n int, train bool) (*netGraph, error) {
	return buildGraphWith(a, params, n, train, false)
}

// buildGraphWith is buildGraph with a choice of layer ops: the fused ops (ops.go, unetops.go), or,
// when stockOps is set, gorgonia's own ops only, kept to cross-check the fused ops' gradients against
// gorgonia's and to measure what fusing saves. It dispatches on a.Kind: the MLP here, the U-Net in
// unet.go; the weighted loss is common to both.
func buildGraphWith(a weights.Arch, params [][]float32, n int, train, stockOps bool) (ng *netGraph, err error) {
	// Gorgonia reports some construction errors by panicking, and the U-Net builder turns every
	// error into a panic (unet.go); turn them back into errors here.
	defer func() {
		if r := recover(); r != nil {
			ng, err = nil, fmt.Errorf("cpu: building the gorgonia graph for batch %d: %v", n, r)
		}
	}()
	names, _ := model.ParamShapes(a)
	if len(names) == 0 {
		return nil, fmt.Errorf("cpu: arch %+v has no parameters", a)
	}
	if len(params) != len(names) {
		return nil, fmt.Errorf("cpu: %d parameter tensors, the arch needs %d", len(params), len(names))
	}
	var pnodes G.Nodes
	if a.Kind == "unet" {
		ng, pnodes = buildUNetForward(a, params, n, train, stockOps)
	} else if ng, pnodes, err = buildMLPForward(a, params, n, stockOps); err != nil {
		return nil, err
	}
	if !train {
		ng.vm = G.NewTapeMachine(ng.g)
		return ng, nil
	}
	if err := ng.addLoss(a.Dim, pnodes); err != nil {
		return nil, err
	}
	ng.vm = G.NewTapeMachine(ng.g)
	return ng, nil
}

// buildMLPForward builds the MLP's forward pass (asbm.md §6.1) for n rows; it returns the graph and
// the parameter nodes in ParamShapes order.
func buildMLPForward(a weights.Arch, params [][]float32, n int, stockOps bool) (*netGraph, G.Nodes, error) {
	names, shapes := model.ParamShapes(a)
	in := model.InputWidth(a)
	g := G.NewGraph()
	ng := &netGraph{n: n, g: g, x: make([]float32, n*in)}
	x := G.NewMatrix(g, G.Float32, G.WithShape(n, in), G.WithName("x"),
		G.WithValue(tensor.New(tensor.WithShape(n, in), tensor.WithBacking(ng.x))))

	pnodes := make(G.Nodes, len(names))
	for i, name := range names {
		sh := shapes[i]
		if len(sh) == 1 {
			// Biases are [1, H] matrices, repeated over the n rows by biasAct.
			sh = []int{1, sh[0]}
		}
		pnodes[i] = G.NewMatrix(g, G.Float32, G.WithShape(sh...), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(sh...), tensor.WithBacking(params[i]))))
	}

	// y = x·W + b per layer, SiLU on the hidden layers (asbm.md §6.1); the bias and the activation are
	// one fused op (ops.go).
	h := x
	for l := 0; l <= a.Layers; l++ {
		z, err := G.Mul(h, pnodes[2*l])
		if err != nil {
			return nil, nil, err
		}
		if !stockOps {
			if h, err = biasAct(z, pnodes[2*l+1], l < a.Layers); err != nil {
				return nil, nil, err
			}
			continue
		}
		if z, err = G.BroadcastAdd(z, pnodes[2*l+1], nil, []byte{0}); err != nil {
			return nil, nil, err
		}
		if l == a.Layers {
			h = z
			continue
		}
		s, err := G.Sigmoid(z)
		if err != nil {
			return nil, nil, err
		}
		if h, err = G.HadamardProd(z, s); err != nil {
			return nil, nil, err
		}
	}
	ng.pred = h
	return ng, pnodes, nil
}

// addLoss adds the weighted squared loss mean_{i,j} (w_i·f_ij − y_ij)² on the prediction (asbm.Model)
// and its gradient with respect to pnodes. wy and y get pred's shape (rows of d values either way).
func (ng *netGraph) addLoss(d int, pnodes G.Nodes) error {
	g, n := ng.g, ng.n
	sh := ng.pred.Shape().Clone()
	ng.wy = make([]float32, n*d)
	ng.y = make([]float32, n*d)
	wy := G.NewTensor(g, G.Float32, sh.Dims(), G.WithShape(sh...), G.WithName("wy"),
		G.WithValue(tensor.New(tensor.WithShape(sh...), tensor.WithBacking(ng.wy))))
	y := G.NewTensor(g, G.Float32, sh.Dims(), G.WithShape(sh...), G.WithName("y"),
		G.WithValue(tensor.New(tensor.WithShape(sh...), tensor.WithBacking(ng.y))))
	wf, err := G.HadamardProd(ng.pred, wy)
	if err != nil {
		return err
	}
	diff, err := G.Sub(wf, y)
	if err != nil {
		return err
	}
	sq, err := G.Square(diff)
	if err != nil {
		return err
	}
	if ng.loss, err = G.Mean(sq); err != nil {
		return err
	}
	ng.grads, err = G.Grad(ng.loss, pnodes...)
	return err
}

// run executes the compiled program once.
func (ng *netGraph) run() {
	ng.vm.Reset()
	if err := ng.vm.RunAll(); err != nil {
		// The shapes are fixed at build time and every input is bound, so this is an internal error.
		panic(fmt.Sprintf("cpu: gorgonia run (batch %d): %v", ng.n, err))
	}
}

// f32 returns the float32 data of a node's value after a run.
func f32(n *G.Node) []float32 {
	return n.Value().Data().([]float32)
}

// scalarF32 returns the value of a scalar node after a run.
func scalarF32(n *G.Node) float32 {
	switch v := n.Value().Data().(type) {
	case float32:
		return v
	case []float32:
		return v[0]
	}
	panic(fmt.Sprintf("cpu: node %v holds %T, not a float32 scalar", n, n.Value().Data()))
}

// graphCache keeps the most recently used compiled graphs by batch size. The trainer uses a handful
// of sizes (512 for steps, 4096 or 512 for simulation, a final partial batch), so a small bound keeps
// every size it cycles through while stopping odd one-off sizes from piling up.
type graphCache struct {
	max   int
	order []int // batch sizes, most recent last
	m     map[int]*netGraph
}

func newGraphCache(max int) *graphCache {
	return &graphCache{max: max, m: map[int]*netGraph{}}
}

// get returns the graph for n rows, building it with build on a miss.
func (c *graphCache) get(n int, build func(n int) (*netGraph, error)) *netGraph {
	if ng, ok := c.m[n]; ok {
		c.touch(n)
		return ng
	}
	ng, err := build(n)
	if err != nil {
		panic(err.Error()) // the arch was validated at construction, so this is an internal error
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = append(c.order[:0], c.order[1:]...)
	}
	c.m[n] = ng
	c.order = append(c.order, n)
	return ng
}

func (c *graphCache) touch(n int) {
	for i, v := range c.order {
		if v == n {
			copy(c.order[i:], c.order[i+1:])
			c.order[len(c.order)-1] = n
			return
		}
	}
}

func (c *graphCache) clear() {
	c.order = c.order[:0]
	clear(c.m)
}
