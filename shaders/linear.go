package shaders

import (
	"fmt"
	"regexp"
)

// tile is one variant of linear.wgsl: a BM×BN block of Y per workgroup, BK along k per step, TM×TN
// outputs per invocation ((BN/TN)·(BM/TM) = 256 invocations, WebGPU's default maximum).
type tile struct {
	name               string
	bm, bn, bk, tm, tn int
}

// tiles are the variants linear picks from (pickTile). Wide layers use square tiles; the output
// layer (m = Dim, 2 for the toys) uses a narrow one so few invocations idle.
var tiles = []tile{
	{"linear64x64", 64, 64, 16, 4, 4},
	{"linear32x32", 32, 32, 16, 2, 2},
	{"linear128x4", 128, 4, 16, 2, 1},
}

// pickTile chooses the variant for an n×m output: the narrow tile for m ≤ 8, 32×32 for small
// batches (n < 64, less padding), else 64×64. On lavapipe 64×64 ran a 2000×128×128 layer about twice
// as fast as 32×32 (53 vs 120 ms, same run); on a real GPU either finishes in microseconds at these
// sizes, where dispatch overhead dominates.
// grid is the dispatch of a tiled n×m product: one workgroup per tile, columns along x and the
// row tiles folded over y and z so that no dimension exceeds the per-dimension limit.
func (t tile) grid(n, m int, what string) ([3]uint32, error) {
	cols := (m + t.bn - 1) / t.bn
	rows := (n + t.bm - 1) / t.bm
	if cols > maxGroupsPerDim {
		return [3]uint32{}, fmt.Errorf("shaders: %s output width %d needs %d column tiles, above the dispatch limit", what, m, cols)
	}
	ry := min(rows, maxGroupsPerDim)
	rz := (rows + ry - 1) / ry
	if rz > maxGroupsPerDim {
		return [3]uint32{}, fmt.Errorf("shaders: %s with %d rows exceeds the dispatch limit", what, n)
	}
	return [3]uint32{uint32(cols), uint32(ry), uint32(rz)}, nil
}

func pickTile(n, m int) tile {
	switch {
	case m <= 8:
		return tiles[2]
	case n < 64:
		return tiles[1]
	default:
		return tiles[0]
	}
}

var tileConst = regexp.MustCompile(`(?m)^const (BM|BN|BK|TM|TN|WX|WY|NT|A_LEN|B_LEN|ACC): u32 = \d+u;$`)

// source returns linear.wgsl with this tile's constants.
func (t tile) source() string {
	wx, wy := t.bn/t.tn, t.bm/t.tm
	vals := map[string]int{"BM": t.bm, "BN": t.bn, "BK": t.bk, "TM": t.tm, "TN": t.tn,
		"WX": wx, "WY": wy, "NT": wx * wy, "A_LEN": t.bk * t.bm, "B_LEN": t.bk * t.bn, "ACC": t.tm * t.tn}
	return tileConst.ReplaceAllStringFunc(linearWGSL, func(s string) string {
		name := tileConst.FindStringSubmatch(s)[1]
		return fmt.Sprintf("const %s: u32 = %du;", name, vals[name])
	})
}

// linearOp records dst = x·w + b (SiLU when silu) with x n×in, w in×out, b out, dst n×out; w may
// hold f16 values (the f16-weight variant of the tile's kernel runs, weightf16.go).
func (d *Device) linearOp(t tile, dst, x, w, b *Buffer, n, in, out int, silu bool) (*op, error) {
	if n < 1 || in < 1 || out < 1 {
		return nil, fmt.Errorf("shaders: linear needs n, in, out ≥ 1; got %d, %d, %d", n, in, out)
	}
	for _, c := range []struct {
		b    *Buffer
		name string
		n    int
	}{{dst, "linear output", n * out}, {x, "linear x", n * in}, {b, "linear bias", out}} {
		if err := d.check(c.b, c.name, c.n); err != nil {
			return nil, err
		}
	}
	if err := d.checkWeight(w, "linear weight", in*out); err != nil {
		return nil, err
	}
	k, err := d.weightKernel(t.name, t.source(), w, []bindKind{bindUniform, bindRead, bindRead, bindRead, bindWrite})
	if err != nil {
		return nil, err
	}
	grid, err := t.grid(n, out, "linear")
	if err != nil {
		return nil, err
	}
	act := 0
	if silu {
		act = 1
	}
	u := uniform{}.u32(n).u32(in).u32(out).u32(act).bytes()
	return d.newOp(k, u, []*Buffer{x, w, b, dst}, grid)
}

// Linear runs linear.wgsl: dst (n×out) = x (n×in) · w (in×out) + b (out), followed by SiLU when
// silu, row-major like model.Net.ForwardCPU.
func (d *Device) Linear(dst, x, w, b *Buffer, n, in, out int, silu bool) error {
	return d.scoped("linear", func() error {
		o, err := d.linearOp(pickTile(n, out), dst, x, w, b, n, in, out, silu)
		if err != nil {
			return err
		}
		return d.runOne(o)
	})
}
