package shaders

import (
	_ "embed"
	"fmt"
)

//go:embed linear_bwd.wgsl
var linearBwdWGSL string

//go:embed linear_bwd_bias.wgsl
var linearBwdBiasWGSL string

// bwdSource returns linear_bwd.wgsl with tile t's constants (the same variants as linear.wgsl).
func (t tile) bwdSource() string {
	wx, wy := t.bn/t.tn, t.bm/t.tm
	vals := map[string]int{"BM": t.bm, "BN": t.bn, "BK": t.bk, "TM": t.tm, "TN": t.tn,
		"WX": wx, "WY": wy, "NT": wx * wy, "A_LEN": t.bk * t.bm, "B_LEN": t.bk * t.bn, "ACC": t.tm * t.tn}
	return tileConst.ReplaceAllStringFunc(linearBwdWGSL, func(s string) string {
		name := tileConst.FindStringSubmatch(s)[1]
		return fmt.Sprintf("const %s: u32 = %du;", name, vals[name])
	})
}

// linearBwdOp records c (n×m) = A·B with A(i, l) = a[i·as0 + l·as1], B(l, j) = b[l·bs0 + j·bs1], l < k,
// multiplied elementwise by silu'(z) when z is not nil (z n×m). aLen and bLen are the values a and b
// must hold.
func (d *Device) linearBwdOp(c, a, b, z *Buffer, n, k, m, as0, as1, bs0, bs1, aLen, bLen int) (*op, error) {
	if n < 1 || k < 1 || m < 1 {
		return nil, fmt.Errorf("shaders: linear backward needs n, k, m ≥ 1; got %d, %d, %d", n, k, m)
	}
	checks := []struct {
		b    *Buffer
		name string
		n    int
	}{{c, "linear backward output", n * m}, {a, "linear backward A", aLen}, {b, "linear backward B", bLen}}
	act := 0
	if z != nil {
		act = 1
		checks = append(checks, struct {
			b    *Buffer
			name string
			n    int
		}{z, "linear backward pre-activation", n * m})
	} else {
		z = a // bound but unread
	}
	for _, ch := range checks {
		if err := d.check(ch.b, ch.name, ch.n); err != nil {
			return nil, err
		}
	}
	t := pickTile(n, m)
	kern, err := d.kernel("linbwd_"+t.name, t.bwdSource(), []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	grid, err := t.grid(n, m, "linear backward")
	if err != nil {
		return nil, err
	}
	u := uniform{}.u32(n).u32(k).u32(m).u32(act).u32(as0).u32(as1).u32(bs0).u32(bs1).bytes()
	return d.newOp(kern, u, []*Buffer{a, b, z, c}, grid)
}

// linearDXOp records dx (n×in) = dy (n×out) · wᵀ (w in×out), times silu'(z) elementwise when z
// (n×in, the pre-activation that produced the layer's input) is not nil.
func (d *Device) linearDXOp(dx, dy, w, z *Buffer, n, in, out int) (*op, error) {
	return d.linearBwdOp(dx, dy, w, z, n, out, in, out, 1, 1, out, n*out, in*out)
}

// linearDWOp records dw (in×out) = xᵀ (x n×in) · dy (n×out).
func (d *Device) linearDWOp(dw, x, dy *Buffer, n, in, out int) (*op, error) {
	return d.linearBwdOp(dw, x, dy, nil, in, n, out, 1, in, out, 1, n*in, n*out)
}

// linearDBOp records db (out) = Σ_rows dy (n×out).
func (d *Device) linearDBOp(db, dy *Buffer, n, out int) (*op, error) {
	if n < 1 || out < 1 {
		return nil, fmt.Errorf("shaders: bias gradient needs n, out ≥ 1; got %d, %d", n, out)
	}
	if err := d.check(db, "bias gradient output", out); err != nil {
		return nil, err
	}
	if err := d.check(dy, "bias gradient dY", n*out); err != nil {
		return nil, err
	}
	k, err := d.kernel("linbwd_bias", linearBwdBiasWGSL, []bindKind{bindUniform, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	g, err := grid1(out)
	if err != nil {
		return nil, err
	}
	return d.newOp(k, uniform{}.u32(n).u32(out).bytes(), []*Buffer{dy, db}, g)
}

// LinearBackward runs the backward pass of y = x·w + b (x n×in, w in×out, dy = ∂L/∂y n×out;
// asbm.md §6.1 layer): dw (in×out) = xᵀ·dy, db (out) = Σ_rows dy and, when dx is not nil,
// dx (n×in) = dy·wᵀ, multiplied elementwise by silu'(z) when z is not nil (z n×in: the
// pre-activation whose SiLU is x, so dx is then ∂L/∂z). Each output is summed in a fixed order, so
// the results are deterministic.
func (d *Device) LinearBackward(dx, dw, db, x, w, z, dy *Buffer, n, in, out int) error {
	return d.scoped("linear backward", func() error {
		var ops []*op
		defer func() {
			for _, o := range ops {
				o.release()
			}
		}()
		o, err := d.linearDWOp(dw, x, dy, n, in, out)
		if err != nil {
			return err
		}
		ops = append(ops, o)
		if o, err = d.linearDBOp(db, dy, n, out); err != nil {
			return err
		}
		ops = append(ops, o)
		if dx != nil {
			if o, err = d.linearDXOp(dx, dy, w, z, n, in, out); err != nil {
				return err
			}
			ops = append(ops, o)
		}
		b, err := d.begin()
		if err != nil {
			return err
		}
		for _, o := range ops {
			b.run(o)
		}
		return b.submit()
	})
}
