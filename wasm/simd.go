//go:build js && wasm

package main

// simd.go runs the CPU path's U-Nets on WebAssembly SIMD: the layers are the kernels of
// simd/kernels.wat (conv, group norm + SiLU, linear, pool, upsample, concat), a module of a few KB
// that build.sh assembles with wat2wasm and embeds in this client (simd_embed.go, build tag
// asbmsimd). The client validates and instantiates it itself with the page's WebAssembly object:
// WebAssembly.validate on the module is the feature test (a browser without wasm SIMD rejects it),
// and carrying it inside asbm.wasm keeps it in step with the client and needs no second file,
// request or CORS rule for widgets on other origins.
//
// The module owns its memory. Each network's weights are copied there once (the first time the CPU
// path runs the model), conv weights repacked for the kernel; a call copies the batch's inputs in,
// walks model.UNetOps with one kernel call per layer on offsets into that memory, and copies the
// output back: activations never cross into Go between layers. A simdNet is a model.Evaluator, so
// model.SampleCPU drives it exactly as it drives the plain-Go *model.Net.
//
// The kernels compute every value with the operations and the order of model/unet.go's plain-Go
// forward (kernels.wat says how), so the two paths give bit-identical results; the plain-Go path
// stays the reference, and the fallback where the module cannot run (no SIMD, or a client built
// without it), and a call may ask for it with {simd: false}.
//
// Each kernel call is one syscall/js round trip: measured under Node.js at about 0.2–1 µs, and a
// forward makes 51 of them for the shipped emoji U-Net (81 for the benchmark's larger one), under
// 0.1 ms beside the 3 ms or more the layers take.

import (
	"errors"
	"fmt"
	"syscall/js"
	"unsafe"

	"asbm/model"
)

// Names of the CPU path's kernels, as results and info() report them.
const (
	kernelsSIMD = "wasm SIMD"
	kernelsGo   = "Go"
)

const (
	// simdSlack is how many floats past its end every buffer in the module's memory keeps free:
	// the kernels' vector loops read up to 16 and write up to 3 past an end (kernels.wat).
	simdSlack = 32
	// simdPassBytes bounds the module memory one pass of the forward uses; a larger batch is
	// split into passes (rows are independent, so the split changes no value).
	simdPassBytes = 64 << 20
	// simdBase is where the module's allocations start (address 0 stays unused: the kernels read
	// a zero pointer as "no such input").
	simdBase = 1024
)

// simdModule is the instantiated kernel module and a bump allocator over its memory: weights from
// simdBase up to mark, each pass's activations above.
type simdModule struct {
	mem, u8                            js.Value // the WebAssembly.Memory; the Uint8Array constructor
	conv, gn, linear, pool, up, concat js.Value
	top, mark                          int // bytes: the next free byte; the end of the weights
	gen                                int // counts resetWeights calls: a simdNet is valid while it matches
}

// The client's module: instantiated once, on the first load (guarded by cl.mu). simdErr says why
// there is none.
var (
	simdMod   *simdModule
	simdErr   error
	simdTried bool
)

// uint8Array copies b into a new JS Uint8Array.
func uint8Array(b []byte) js.Value {
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}

// ensureSIMDModule instantiates the embedded kernels once; it returns nil (and sets simdErr) where
// they cannot run. Call it with cl.mu held, from a goroutine (it awaits a promise).
func ensureSIMDModule() *simdModule {
	if simdTried {
		return simdMod
	}
	simdTried = true
	simdMod, simdErr = newSIMDModule(simdWasm)
	return simdMod
}

// newSIMDModule validates and instantiates the module in bytes b.
func newSIMDModule(b []byte) (*simdModule, error) {
	if len(b) == 0 {
		return nil, errors.New("this client was built without the SIMD kernels (./build.sh build adds them)")
	}
	wa := js.Global().Get("WebAssembly")
	if wa.Type() != js.TypeObject {
		return nil, errors.New("this browser has no WebAssembly object")
	}
	u := uint8Array(b)
	if !wa.Call("validate", u).Bool() {
		return nil, errors.New("this browser's WebAssembly has no SIMD: the CPU path runs plain Go")
	}
	res, err := await(wa.Call("instantiate", u))
	if err != nil {
		return nil, fmt.Errorf("instantiate the SIMD kernels: %v", err)
	}
	ex := res.Get("instance").Get("exports")
	m := &simdModule{mem: ex.Get("mem"), u8: js.Global().Get("Uint8Array"), top: simdBase, mark: simdBase}
	for _, f := range []struct {
		name string
		dst  *js.Value
	}{{"conv", &m.conv}, {"gn", &m.gn}, {"linear", &m.linear}, {"pool", &m.pool}, {"up", &m.up}, {"concat", &m.concat}} {
		if *f.dst = ex.Get(f.name); f.dst.Type() != js.TypeFunction {
			return nil, fmt.Errorf("the SIMD kernels lack the export %q", f.name)
		}
	}
	return m, nil
}

// simdAlloc returns the size in bytes a buffer of n floats takes: the floats, the slack, and
// padding to 16 bytes (aligned vectors load fastest).
func simdAlloc(n int) int { return ((n+simdSlack)*4 + 15) &^ 15 }

// resetWeights frees every weight and activation: the networks placed before are invalid.
func (m *simdModule) resetWeights() {
	m.top, m.mark = simdBase, simdBase
	m.gen++
}

// ensure grows the memory to at least n bytes.
func (m *simdModule) ensure(n int) {
	if have := m.mem.Get("buffer").Get("byteLength").Int(); n > have {
		m.mem.Call("grow", (n-have+65535)/65536)
	}
}

// put places v in the weights region and returns its offset.
func (m *simdModule) put(v []float32) int {
	p := m.top
	m.top += simdAlloc(len(v))
	m.mark = m.top
	m.ensure(m.top)
	m.write(p, v)
	return p
}

// write copies v into the module's memory at byte offset off. Go on WebAssembly and JS typed arrays
// are both little-endian, so the floats' bytes are copied as they lie in Go's memory.
func (m *simdModule) write(off int, v []float32) {
	if len(v) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	js.CopyBytesToJS(m.u8.New(m.mem.Get("buffer"), off, len(b)), b)
}

// read copies len(v) floats at byte offset off out of the module's memory into v.
func (m *simdModule) read(off int, v []float32) {
	if len(v) == 0 {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
	js.CopyBytesToGo(b, m.u8.New(m.mem.Get("buffer"), off, len(b)))
}

// simdNet is a U-Net whose weights sit in the module: a model.Evaluator equal, bit for bit, to
// net.ForwardCPU.
type simdNet struct {
	m    *simdModule
	gen  int // m.gen when the weights were placed
	net  *model.Net
	ops  []model.UNetOp
	off  map[string]int // parameter name → byte offset (conv weights and biases packed, see packConv)
	rows int            // rows per pass (simdPassBytes)
}

// newSIMDNet places net's parameters in m (after m's current weights) and plans its passes.
func newSIMDNet(m *simdModule, net *model.Net) (*simdNet, error) {
	if net.Arch.Kind != "unet" {
		return nil, fmt.Errorf("the SIMD kernels run U-Nets, not %q networks", net.Arch.Kind)
	}
	if err := net.Check(); err != nil {
		return nil, err
	}
	s := &simdNet{m: m, gen: m.gen, net: net, ops: model.UNetOps(net.Arch), off: map[string]int{}}
	names, shapes := model.ParamShapes(net.Arch)
	for i, name := range names {
		p := net.Params[name]
		if sh := shapes[i]; len(sh) == 4 { // a conv weight [cout, cin, k, k]; its bias follows
			w, b := packConv(p, net.Params[names[i+1]], sh[0], sh[1], sh[2])
			s.off[name] = m.put(w)
			s.off[names[i+1]] = m.put(b)
			continue
		}
		if _, done := s.off[name]; !done {
			s.off[name] = m.put(p)
		}
	}
	// Peak memory of a pass is affine in its rows (every buffer is rows × a fixed size, plus the
	// conv scratch of one image): two dry runs give the slope.
	p1, p2 := s.walk(nil, 1, nil, nil, nil), s.walk(nil, 2, nil, nil, nil)
	s.rows = max(1, (simdPassBytes-p1)/max(1, p2-p1)+1)
	return s, nil
}

// packConv lays out a conv's weights w [cout, cin, k, k] for the kernel: tiles of 4 output
// channels (the last filled with zeros), in each, for each input channel and tap, the 4 channels'
// weights side by side, so one tile's weights are read in order. The bias is zero-filled to a
// multiple of 4.
func packConv(w, b []float32, cout, cin, k int) (wp, bp []float32) {
	tiles, taps := (cout+3)/4, k*k
	wp = make([]float32, tiles*cin*taps*4)
	bp = make([]float32, tiles*4)
	for co := 0; co < cout; co++ {
		bp[co] = b[co]
		for ci := 0; ci < cin; ci++ {
			for t := 0; t < taps; t++ {
				wp[((co/4*cin+ci)*taps+t)*4+co%4] = w[(co*cin+ci)*taps+t]
			}
		}
	}
	return wp, bp
}

// convScratch is the scratch in bytes the conv kernel needs for one image (kernels.wat): a 3×3
// conv's zero-bordered copy of the input and the tiles' rows.
func convScratch(cin, cout, h, w, k int) int {
	pw := w
	pad := 0
	if k == 3 {
		pw = w + 2
		pad = 4*cin*(h+2)*pw + 80
	}
	rows := (h*pw + 7) &^ 7
	return pad + 4*4*((cout+3)/4)*rows + 64
}

// Dim is the data dimension of a row (model.Evaluator).
func (s *simdNet) Dim() int { return s.net.Arch.Dim }

// Eval writes the network's output for the rows (t, x) into out (model.Evaluator), in passes of
// at most s.rows rows.
func (s *simdNet) Eval(t, x, out []float32) {
	if s.gen != s.m.gen {
		panic("simd: the network's weights were freed (another model was loaded)")
	}
	d := s.net.Arch.Dim
	for lo := 0; lo < len(t); lo += s.rows {
		hi := min(len(t), lo+s.rows)
		n := hi - lo
		s.m.ensure(s.m.mark + s.walk(nil, n, nil, nil, nil))
		s.walk(s.m, n, t[lo:hi], x[lo*d:hi*d], out[lo*d:hi*d])
	}
}

// simdPass allocates a pass's buffers above the weights and calls the kernels; with a nil module
// it only counts the bytes (a dry run).
type simdPass struct {
	m         *simdModule
	top, peak int // bytes above the weights
}

func (p *simdPass) alloc(floats int) int {
	off := p.top
	p.top += simdAlloc(floats)
	p.peak = max(p.peak, p.top)
	if p.m == nil {
		return 0
	}
	return p.m.mark + off
}

func (p *simdPass) call(f func(*simdModule) js.Value, args ...any) {
	if p.m != nil {
		f(p.m).Invoke(args...)
	}
}

func kConv(m *simdModule) js.Value   { return m.conv }
func kGN(m *simdModule) js.Value     { return m.gn }
func kLinear(m *simdModule) js.Value { return m.linear }
func kPool(m *simdModule) js.Value   { return m.pool }
func kUp(m *simdModule) js.Value     { return m.up }
func kConcat(m *simdModule) js.Value { return m.concat }

// walk runs the forward pass on n rows, layer for layer as model's forwardUNet, and returns the
// peak bytes it allocated; with m nil it is a dry run that only counts (t, x and out unused).
// A residual block's temporaries are freed when it ends (its output is allocated first).
func (s *simdNet) walk(m *simdModule, n int, t, x, out []float32) int {
	a := s.net.Arch
	o := s.off
	p := &simdPass{m: m}
	G, T, F := a.Groups, a.TimeEmb, a.Fourier

	// One conv scratch for the whole pass, the size of the largest conv's.
	scratch := 0
	for _, c := range model.UNetConvs(a) {
		scratch = max(scratch, convScratch(c.In, c.Out, c.H, c.W, c.K))
	}
	sc := p.alloc((scratch + 3) / 4)
	// conv: y = conv(x; name.w, name.b) (+ tadd) (+ radd), k×k on h×w images.
	conv := func(x int, name string, y, cin, cout, h, w, k, tadd, radd int) {
		p.call(kConv, x, o[name+".w"], o[name+".b"], y, sc, n, cin, cout, h, w, k, tadd, radd)
	}
	// gnSiLU: y = SiLU(GroupNorm(x; name.g, name.b)).
	gnSiLU := func(x int, name string, y, c, hw int) {
		p.call(kGN, x, y, o[name+".g"], o[name+".b"], n, c, hw, G, 1)
	}

	// Time embedding: e = SiLU(SiLU(feat(t)·l1.w + l1.b)·l2.w + l2.b), n×T.
	feat := p.alloc(n * 2 * F)
	if m != nil {
		f := make([]float32, n*2*F)
		for i, ti := range t {
			model.TimeFeatures(ti, F, f[i*2*F:(i+1)*2*F])
		}
		m.write(feat, f)
	}
	e1, e := p.alloc(n*T), p.alloc(n*T)
	p.call(kLinear, feat, o["temb.l1.w"], o["temb.l1.b"], e1, n, 2*F, T, 1)
	p.call(kLinear, e1, o["temb.l2.w"], o["temb.l2.b"], e, n, T, T, 1)

	h := p.alloc(n * a.Dim)
	if m != nil {
		m.write(h, x)
	}
	var skips []int
	for _, op := range s.ops {
		hw := op.H * op.W
		switch op.Kind {
		case model.OpConvIn:
			y := p.alloc(n * op.Out * hw)
			conv(h, "in", y, op.In, op.Out, op.H, op.W, 3, 0, 0)
			h = y
		case model.OpRes:
			// r = conv1(SiLU(GN1(h))) + temb(e); y = skip(h) + conv2(SiLU(GN2(r))).
			b := op.Block + "."
			y := p.alloc(n * op.Out * hw)
			mark := p.top
			r1 := p.alloc(n * op.In * hw)
			gnSiLU(h, b+"gn1", r1, op.In, hw)
			tb := p.alloc(n * op.Out)
			p.call(kLinear, e, o[b+"temb.w"], o[b+"temb.b"], tb, n, T, op.Out, 0)
			c1 := p.alloc(n * op.Out * hw)
			conv(r1, b+"conv1", c1, op.In, op.Out, op.H, op.W, 3, tb, 0)
			r2 := p.alloc(n * op.Out * hw)
			gnSiLU(c1, b+"gn2", r2, op.Out, hw)
			skip := h
			if op.In != op.Out {
				skip = p.alloc(n * op.Out * hw)
				conv(h, b+"skip", skip, op.In, op.Out, op.H, op.W, 1, 0, 0)
			}
			conv(r2, b+"conv2", y, op.Out, op.Out, op.H, op.W, 3, 0, skip)
			p.top = mark
			h = y
		case model.OpPush:
			skips = append(skips, h)
		case model.OpPool:
			y := p.alloc(n * op.In * hw / 4)
			p.call(kPool, h, y, n*op.In, op.H, op.W)
			h = y
		case model.OpUp:
			y := p.alloc(n * op.In * hw * 4)
			p.call(kUp, h, y, n*op.In, op.H, op.W)
			h = y
		case model.OpConcat:
			sk := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			y := p.alloc(n * (op.In + op.Skip) * hw)
			p.call(kConcat, h, sk, y, n, op.In, op.Skip, hw)
			h = y
		case model.OpOut:
			y := p.alloc(n * op.Out * hw)
			mark := p.top
			g := p.alloc(n * op.In * hw)
			gnSiLU(h, "out.gn", g, op.In, hw)
			conv(g, "out", y, op.In, op.Out, op.H, op.W, 3, 0, 0)
			p.top = mark
			h = y
		}
	}
	if m != nil {
		m.read(h, out)
	}
	return p.peak
}

// simdNets are a loaded model's networks on the SIMD kernels (nil where the file lacks one), built
// the first time the CPU path runs the model.
type simdNets struct {
	Score, Control, Gen *simdNet
	gen                 int   // the module's gen they were placed in
	err                 error // why they could not be built (then the CPU path runs plain Go)
	built               bool
}

// buildSIMDNets frees the module's previous weights (the client holds one model at a time) and
// places c's networks.
func buildSIMDNets(mod *simdModule, c model.CPUNets) simdNets {
	mod.resetWeights()
	s := simdNets{gen: mod.gen, built: true}
	for _, p := range []struct {
		src *model.Net
		dst **simdNet
	}{{c.Score, &s.Score}, {c.Control, &s.Control}, {c.Gen, &s.Gen}} {
		if p.src == nil {
			continue
		}
		if *p.dst, s.err = newSIMDNet(mod, p.src); s.err != nil {
			mod.resetWeights()
			return simdNets{gen: mod.gen, built: true, err: s.err}
		}
	}
	return s
}

// cpuEvaluators returns what the CPU path evaluates m's networks with and the kernels' name: the
// SIMD twins of an image model's U-Nets where the module runs here and useSIMD, else the plain-Go
// networks (2-D models' small MLPs always: there is little to gain). Call it with cl.mu held.
func cpuEvaluators(m *loaded, useSIMD bool) (model.Nets, string) {
	if !useSIMD || !m.image {
		return m.cpu.Nets(), kernelsGo
	}
	mod := ensureSIMDModule()
	if mod == nil {
		return m.cpu.Nets(), kernelsGo
	}
	if !m.simd.built || m.simd.gen != mod.gen {
		m.simd = buildSIMDNets(mod, m.cpu)
		if m.simd.err != nil {
			js.Global().Get("console").Call("warn", "asbm: the SIMD kernels cannot run this model, using plain Go: "+m.simd.err.Error())
			cl.refresh() // info().cpuKernels is "Go" now
		}
	}
	if m.simd.err != nil {
		return m.cpu.Nets(), kernelsGo
	}
	var n model.Nets
	for _, p := range []struct {
		src *simdNet
		dst *model.Evaluator
	}{{m.simd.Score, &n.Score}, {m.simd.Control, &n.Control}, {m.simd.Gen, &n.Gen}} {
		if p.src != nil {
			*p.dst = p.src
		}
	}
	return n, kernelsSIMD
}

// cpuKernels names the kernels the CPU path would run m with by default (for info()).
func cpuKernels(m *loaded) string {
	if m.image && simdMod != nil && m.simd.err == nil {
		return kernelsSIMD
	}
	return kernelsGo
}

// simdOption reads {simd: true|false} from an options object: false runs the CPU path on the
// plain-Go kernels (the reference) even where the SIMD ones run. Absent means true.
func simdOption(o js.Value) (bool, error) {
	if o.Type() != js.TypeObject {
		return true, nil
	}
	v := o.Get("simd")
	switch v.Type() {
	case js.TypeUndefined:
		return true, nil
	case js.TypeBoolean:
		return v.Bool(), nil
	}
	return true, fmt.Errorf("simd must be true or false, got %s", jsString(v))
}
