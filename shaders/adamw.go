package shaders

import (
	_ "embed"
	"fmt"
	"math"

	"asbm/model"
)

//go:embed adamw.wgsl
var adamwWGSL string

// AdamW is model.AdamW, the optimiser and EMA settings of a Trainer (asbm.md §2.5).
type AdamW = model.AdamW

// adamwUniform is the kernel's parameters for AdamW step number step (≥ 1): the bias corrections are
// computed here in float64 once per step, like backend/cpu.
func adamwUniform(n int, c AdamW, step int) []byte {
	bc1 := 1 - math.Pow(c.Beta1, float64(step))
	sbc2 := math.Sqrt(1 - math.Pow(c.Beta2, float64(step)))
	return uniform{}.u32(n).f32(float32(c.Beta1)).f32(float32(c.Beta2)).f32(float32(c.Eps)).
		f32(float32(c.LR / bc1)).f32(float32(sbc2)).f32(float32(1 - c.LR*c.WeightDecay)).
		f32(float32(c.EMADecay)).bytes()
}

// adamwOp records one AdamW + EMA update of n values of p, m, v, ema in place from gradient g scaled
// by scale[0]; its uniform is written for step 1 and rewritten by the caller per step.
func (d *Device) adamwOp(g, scale, p, m, v, ema *Buffer, n int, c AdamW) (*op, error) {
	if n < 1 {
		return nil, fmt.Errorf("shaders: AdamW of %d values", n)
	}
	for _, ch := range []struct {
		b    *Buffer
		name string
		n    int
	}{{g, "AdamW gradient", n}, {scale, "AdamW scale", 1}, {p, "AdamW parameter", n}, {m, "AdamW first moment", n},
		{v, "AdamW second moment", n}, {ema, "AdamW EMA", n}} {
		if err := d.check(ch.b, ch.name, ch.n); err != nil {
			return nil, err
		}
	}
	bufs := []*Buffer{p, m, v, ema}
	for i := range bufs {
		for j := range i {
			if bufs[i] == bufs[j] {
				return nil, fmt.Errorf("shaders: AdamW parameter, moments and EMA must be distinct buffers")
			}
		}
		if bufs[i] == g || bufs[i] == scale {
			return nil, fmt.Errorf("shaders: AdamW gradient and scale may not alias the updated buffers")
		}
	}
	k, err := d.kernel("adamw", adamwWGSL, []bindKind{bindUniform, bindRead, bindRead, bindWrite, bindWrite, bindWrite, bindWrite})
	if err != nil {
		return nil, err
	}
	gr, err := grid1((n + elementwiseWG - 1) / elementwiseWG)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, adamwUniform(n, c, 1), []*Buffer{g, scale, p, m, v, ema}, gr)
}

// AdamWStep runs adamw.wgsl once: AdamW step number step (≥ 1, for the bias correction) with
// decoupled weight decay on the n = p.Len() values of p, moments m and v and EMA ema, all updated in
// place, from gradient g multiplied by scale[0] (the global-norm clip factor), then
// ema ← d·ema + (1−d)·p (asbm.md §2.5).
func (d *Device) AdamWStep(g, scale, p, m, v, ema *Buffer, c AdamW, step int) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if step < 1 {
		return fmt.Errorf("shaders: AdamW step %d: steps count from 1", step)
	}
	if err := d.check(p, "AdamW parameter", 0); err != nil {
		return err
	}
	return d.scoped("adamw", func() error {
		o, err := d.adamwOp(g, scale, p, m, v, ema, p.n, c)
		if err != nil {
			return err
		}
		if err := o.setUniform(adamwUniform(p.n, c, step)); err != nil {
			o.release()
			return err
		}
		return d.runOne(o)
	})
}
