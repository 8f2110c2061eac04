package cpu

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"asbm/model"
	"asbm/weights"
)

// ConvLayerRate times the convolutions of the U-Net a alone, as a training step runs them: every
// conv layer's forward, data gradient and weight gradient on a batch of n random images, called
// directly (no graph). It returns the FLOPs of one pass over all layers (3× the forward's conv
// FLOPs) and the median seconds over reps passes after one untimed pass. `backend bench` divides
// the two and compares the rate with the machine's sgemm rate: the share of the matrix-multiply
// ceiling the convolutions reach, apart from the rest of the step.
func ConvLayerRate(a weights.Arch, n, reps int) (flops, seconds float64, err error) {
	if err := model.CheckArch(a); err != nil {
		return 0, 0, err
	}
	if a.Kind != "unet" {
		return 0, 0, fmt.Errorf("cpu: ConvLayerRate wants a U-Net, got %q", a.Kind)
	}
	if n < 1 || reps < 1 {
		return 0, 0, fmt.Errorf("cpu: ConvLayerRate wants n, reps ≥ 1, got %d, %d", n, reps)
	}
	type layer struct {
		fwd   *convOp
		dData *convDataGradOp
		dW    *convWeightGradOp
		in    []G.Value // x, w, b, gy
	}
	r := rand.New(rand.NewPCG(3, 5))
	randT := func(shape ...int) *tensor.Dense {
		d := make([]float32, size(shape))
		for i := range d {
			d[i] = float32(r.NormFloat64())
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
	}
	var layers []layer
	for _, c := range model.UNetConvs(a) {
		op, err := newConvOp(tensor.Shape{n, c.In, c.H, c.W}, tensor.Shape{c.Out, c.In, c.K, c.K})
		if err != nil {
			return 0, 0, err
		}
		layers = append(layers, layer{fwd: op, dData: &convDataGradOp{convGeom: op.convGeom},
			dW: &convWeightGradOp{convGeom: op.convGeom},
			in: []G.Value{randT(n, c.In, c.H, c.W), randT(c.Out, c.In, c.K, c.K), randT(c.Out), randT(n, c.Out, c.H, c.W)}})
		flops += 3 * float64(n) * float64(c.FLOPs())
	}
	pass := func() error {
		for _, l := range layers {
			if _, err := l.fwd.Do(l.in[0], l.in[1], l.in[2]); err != nil {
				return err
			}
			if _, err := l.dData.Do(l.in[1], l.in[3]); err != nil {
				return err
			}
			if _, err := l.dW.Do(l.in[0], l.in[3]); err != nil {
				return err
			}
		}
		return nil
	}
	if err := pass(); err != nil {
		return 0, 0, err
	}
	ts := make([]float64, 0, reps)
	for i := 0; i < reps; i++ {
		s := time.Now()
		if err := pass(); err != nil {
			return 0, 0, err
		}
		ts = append(ts, time.Since(s).Seconds())
	}
	slices.Sort(ts)
	return flops, ts[len(ts)/2], nil
}
