//go:build js && wasm

// These tests run under Node.js (no WebGPU there):
//
//	GOOS=js GOARCH=wasm go test -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./wasm
//
// The browser test (site/test) covers the GPU path end to end.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"syscall/js"
	"testing"
	"time"

	"asbm/model"
	"asbm/weights"
)

func newRand() *rand.Rand {
	s := uint64(time.Now().UnixNano())
	return rand.New(rand.NewPCG(s, s>>7))
}

func TestParseRequestAccepts(t *testing.T) {
	r := newRand()
	for i := 0; i < 50; i++ {
		nfe, pts, seed := 1+r.IntN(maxNFE), 1+r.IntN(maxPoints), r.Uint64N(maxSeed+1)
		sampler := []string{"sde", "ode", "ancestral"}[r.IntN(3)]
		dev := []string{"gpu", "cpu"}[r.IntN(2)]
		denoise := r.IntN(2) == 0
		o := js.ValueOf(map[string]any{"nfe": nfe, "points": pts, "seed": float64(seed), "sampler": sampler, "device": dev, "denoise": denoise})
		req, err := parseRequest([]js.Value{o})
		if err != nil {
			t.Fatalf("parseRequest(nfe %d points %d seed %d): %v", nfe, pts, seed, err)
		}
		if req.nfe != nfe || req.points != pts || req.seed != seed || req.sampler != sampler || req.device != dev || req.denoise != denoise {
			t.Fatalf("parsed %+v, want nfe %d points %d seed %d sampler %s device %s denoise %v", req, nfe, pts, seed, sampler, dev, denoise)
		}
	}
	// Defaults.
	req, err := parseRequest([]js.Value{js.ValueOf(map[string]any{})})
	if err != nil || req.nfe != 1 || req.points != 2000 || req.seed != 0 || req.sampler != "sde" || req.device != "" || req.denoise {
		t.Errorf("defaults: %+v, %v", req, err)
	}
}

func TestParseRequestRejects(t *testing.T) {
	for _, c := range []struct {
		opt  any
		want string
	}{
		{map[string]any{"nfe": 0}, "nfe must be an integer in [1, 100]"},
		{map[string]any{"nfe": 101}, "nfe must be an integer in [1, 100]"},
		{map[string]any{"nfe": 2.5}, "nfe must be an integer"},
		{map[string]any{"nfe": math.NaN()}, "nfe must be an integer"},
		{map[string]any{"nfe": "4"}, "nfe must be a number"},
		{map[string]any{"seed": -1}, "seed must be an integer in [0, "},
		{map[string]any{"seed": math.Pow(2, 53)}, "seed must be an integer in [0, "},
		{map[string]any{"seed": math.Inf(1)}, "seed must be an integer"},
		{map[string]any{"points": 0}, "points must be an integer in [1, 10000]"},
		{map[string]any{"points": 10001}, "points must be an integer in [1, 10000]"},
		{map[string]any{"sampler": "euler"}, `sampler must be "sde"`},
		{map[string]any{"sampler": 3}, `sampler must be "sde"`},
		{map[string]any{"denoise": "yes"}, "denoise must be true or false"},
		{map[string]any{"device": "tpu"}, `device must be "gpu" or "cpu"`},
		{nil, "options must be an object"},
		{"nfe=4", "options must be an object"},
	} {
		_, err := parseRequest([]js.Value{js.ValueOf(c.opt)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseRequest(%v) = %v, want an error containing %q", c.opt, err, c.want)
		}
	}
	if _, err := parseRequest(nil); err == nil {
		t.Error("parseRequest() without options accepted")
	}
}

func TestFloat32ArrayRoundTrip(t *testing.T) {
	r := newRand()
	v := make([]float32, 1+r.IntN(5000))
	for i := range v {
		v[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
	}
	v[0] = float32(math.Copysign(0, -1))
	arr := float32Array(v)
	if arr.Get("constructor").Get("name").String() != "Float32Array" || arr.Length() != len(v) {
		t.Fatalf("got %s of length %d, want Float32Array of %d", arr.Get("constructor").Get("name"), arr.Length(), len(v))
	}
	b := make([]byte, 4*len(v))
	js.CopyBytesToGo(b, js.Global().Get("Uint8Array").New(arr.Get("buffer")))
	for i := range v {
		if got := binary.LittleEndian.Uint32(b[4*i:]); got != math.Float32bits(v[i]) {
			t.Fatalf("element %d: bits %08x, want %08x", i, got, math.Float32bits(v[i]))
		}
		if f := arr.Index(i).Float(); float32(f) != v[i] {
			t.Fatalf("element %d read by JS as %v, want %v", i, f, v[i])
		}
	}
}

// withGlobals sets globalThis properties for one test and restores them.
func withGlobals(t *testing.T, kv map[string]any) {
	t.Helper()
	g := js.Global()
	desc := js.Global().Get("Object")
	for k, v := range kv {
		old := desc.Call("getOwnPropertyDescriptor", g, k)
		desc.Call("defineProperty", g, k, map[string]any{"value": v, "configurable": true, "writable": true})
		t.Cleanup(func() {
			if old.IsUndefined() {
				g.Delete(k)
			} else {
				desc.Call("defineProperty", g, k, old)
			}
		})
	}
}

func TestNoWebGPUMessage(t *testing.T) {
	withGlobals(t, map[string]any{"navigator": map[string]any{}, "isSecureContext": false})
	msg := noWebGPUMessage()
	if !strings.Contains(msg, "navigator.gpu is missing") || !strings.Contains(msg, "WebGPU needs a secure context (HTTPS or localhost)") {
		t.Errorf("insecure, no gpu: %q", msg)
	}
	withGlobals(t, map[string]any{"isSecureContext": true})
	msg = noWebGPUMessage()
	if !strings.Contains(msg, "navigator.gpu is missing") || strings.Contains(msg, "secure context") {
		t.Errorf("secure, no gpu: %q", msg)
	}
	withGlobals(t, map[string]any{"navigator": map[string]any{"gpu": map[string]any{}}})
	if msg := noWebGPUMessage(); msg != "" {
		t.Errorf("with navigator.gpu: %q", msg)
	}
}

func TestLoadRejectsWithoutWebGPU(t *testing.T) {
	withGlobals(t, map[string]any{"navigator": map[string]any{}, "isSecureContext": true})
	_, err := load([]js.Value{js.ValueOf("/weights/8gaussians.msgpack")})
	if err == nil || !strings.Contains(err.Error(), "WebGPU is not available") {
		t.Errorf("load without WebGPU = %v", err)
	}
	for _, bad := range []any{nil, "", "  ", 3} {
		if _, err := load([]js.Value{js.ValueOf(bad)}); err == nil || !strings.Contains(err.Error(), "url must be a non-empty string") {
			t.Errorf("load(%v) = %v", bad, err)
		}
	}
	_, err = load([]js.Value{js.ValueOf("/x.msgpack"), js.ValueOf(map[string]any{"device": "tpu"})})
	if err == nil || !strings.Contains(err.Error(), `device must be "gpu" or "cpu"`) {
		t.Errorf("load with a bad device = %v", err)
	}
	if _, err := generate([]js.Value{js.ValueOf(map[string]any{"nfe": 1})}); err == nil || !strings.Contains(err.Error(), "no model loaded") {
		t.Errorf("generate before load = %v", err)
	}
}

func TestPromise(t *testing.T) {
	want := newRand().Float64()
	v, err := await(promise(func() (any, error) { return want, nil }))
	if err != nil || v.Float() != want {
		t.Errorf("resolved %v, %v; want %v", v, err, want)
	}
	_, err = await(promise(func() (any, error) { return nil, errTest }))
	if err == nil || err.Error() != errTest.Error() {
		t.Errorf("rejected with %v, want %v", err, errTest)
	}
	_, err = await(promise(func() (any, error) { panic("boom") }))
	if err == nil || !strings.Contains(err.Error(), "internal error: boom") {
		t.Errorf("panic gave %v", err)
	}
}

type testError struct{}

func (testError) Error() string { return "test failure: nfe out of range" }

var errTest = testError{}

func TestParseRequestCountPreviewCallback(t *testing.T) {
	r := newRand()
	n := 1 + r.IntN(maxPoints)
	req, err := parseRequest([]js.Value{js.ValueOf(map[string]any{"n": n, "preview": 3})})
	if err != nil || req.points != n || !req.nSet || req.preview != 3 {
		t.Errorf("n %d preview 3: %+v, %v", n, req, err)
	}
	req, err = parseRequest([]js.Value{js.ValueOf(map[string]any{"n": n, "points": n})})
	if err != nil || req.points != n || !req.nSet {
		t.Errorf("equal n and points: %+v, %v", req, err)
	}
	if req, _ := parseRequest([]js.Value{js.ValueOf(map[string]any{})}); req.nSet || req.preview != 0 {
		t.Errorf("defaults: nSet %v preview %d", req.nSet, req.preview)
	}
	cb := js.FuncOf(func(js.Value, []js.Value) any { return nil })
	defer cb.Release()
	req, err = parseRequest([]js.Value{js.ValueOf(map[string]any{"onProgress": cb})})
	if err != nil || req.onProgress.Type() != js.TypeFunction {
		t.Errorf("onProgress function: %v, %v", req.onProgress.Type(), err)
	}
	for _, c := range []struct {
		opt  map[string]any
		want string
	}{
		{map[string]any{"n": 0}, "n must be an integer in [1, 10000]"},
		{map[string]any{"n": 2, "points": 3}, "n (2) and points (3) disagree"},
		{map[string]any{"preview": -1}, "preview must be an integer in [0, 100]"},
		{map[string]any{"preview": 1.5}, "preview must be an integer"},
		{map[string]any{"onProgress": "log"}, "onProgress must be a function"},
	} {
		if _, err := parseRequest([]js.Value{js.ValueOf(c.opt)}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseRequest(%v) = %v, want %q", c.opt, err, c.want)
		}
	}
}

// tinyUNetFile is a model file with random U-Net networks (output layers included, so samples
// depend on them) under score/, control/ and gen/, with the given score_scale metadata ("" for none).
func tinyUNetFile(t *testing.T, r *rand.Rand, scoreScale string) (*weights.File, []byte) {
	t.Helper()
	a := weights.Arch{Kind: "unet", Dim: 3 * 4 * 4, Channels: 3, Height: 4, Width: 4, Base: 4, Mults: []int{1, 2},
		ResBlocks: 1, Groups: 2, TimeEmb: 8, Fourier: 3}
	f := weights.New(a)
	names, shapes := model.ParamShapes(a)
	for _, prefix := range []string{"score/", "control/", "gen/"} {
		m, err := model.NewNet(a, r.Uint64())
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range names {
			p := m.Params[name]
			if strings.HasPrefix(name, "out.") {
				for j := range p {
					p[j] = float32(0.3 * (2*r.Float64() - 1))
				}
			}
			f.AddF32(prefix+name, shapes[i], p)
		}
	}
	f.Meta["dataset"] = "tiny"
	f.Meta["beta0"], f.Meta["beta1"], f.Meta["sigma_v"] = 0.1, 4.0, 1.0
	if scoreScale != "" {
		f.Meta["score_scale"] = scoreScale
	}
	var b bytes.Buffer
	if err := weights.Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	return f, b.Bytes()
}

func jsBytes(b []byte) js.Value {
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}

func goFloats(v js.Value) []float32 {
	b := make([]byte, 4*v.Length())
	js.CopyBytesToGo(b, js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), 4*v.Length()))
	out := make([]float32, v.Length())
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestGenerateImagesCPU loads an image model on the CPU path and checks info, warm-up, the result's
// shape, bit-equality with model.SampleCPU for every method, previews through onProgress (which
// calls asbm.info() while generate holds the client: it must not deadlock), and the image limit. The
// file is σ-scaled (score_scale "sigma"), so the client must pass SampleOptions.SigmaScaled on.
func TestGenerateImagesCPU(t *testing.T) {
	install()
	r := newRand()
	f, data := tinyUNetFile(t, r, "sigma")
	v, err := load([]js.Value{jsBytes(data), js.ValueOf(map[string]any{"device": "cpu", "name": "tiny.msgpack"})})
	if err != nil {
		t.Fatal(err)
	}
	info := js.ValueOf(v)
	if !info.Get("image").Bool() || info.Get("arch").Get("kind").String() != "unet" || info.Get("url").String() != "tiny.msgpack" {
		t.Errorf("info: image %v kind %v url %v", info.Get("image"), info.Get("arch").Get("kind"), info.Get("url"))
	}
	if s := info.Get("shape"); s.Length() != 3 || s.Index(0).Int() != 3 || s.Index(1).Int() != 4 || s.Index(2).Int() != 4 {
		t.Errorf("info.shape = %v", jsString(s))
	}
	if sc := info.Get("scoreScale").String(); sc != "sigma" {
		t.Errorf("info.scoreScale = %q, want sigma", sc)
	}
	if info.Get("maxN").Int() != maxImages || info.Get("weights").String() != "f32" || info.Get("precision").String() != "f32" {
		t.Errorf("info maxN %v weights %v precision %v", info.Get("maxN"), info.Get("weights"), info.Get("precision"))
	}
	if w, err := warmup([]js.Value{js.ValueOf(map[string]any{"device": "cpu"})}); err != nil || js.ValueOf(w).Get("device").String() != "cpu" {
		t.Errorf("warmup: %v, %v", w, err)
	}
	var cpu model.CPUNets
	for _, p := range []struct {
		prefix string
		dst    **model.Net
	}{{"score/", &cpu.Score}, {"control/", &cpu.Control}, {"gen/", &cpu.Gen}} {
		if *p.dst, err = model.NetFromFile(f, p.prefix); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		nfe     int
		sampler string
		method  string
		denoise bool
	}{{1, "sde", "gen", true}, {2 + r.IntN(5), "sde", "sde", true}, {2 + r.IntN(5), "ode", "ode", true},
		{2 + r.IntN(5), "sde", "sde", false}, {2 + r.IntN(5), "ode", "ode", false}, {2 + r.IntN(5), "ancestral", "ancestral", true}} {
		n, seed, every := 1+r.IntN(5), r.Uint64N(1<<40), 1+r.IntN(3)
		var steps, previews []int
		infoSeen := false
		cb := js.FuncOf(func(this js.Value, args []js.Value) any {
			steps = append(steps, args[0].Int())
			if args[1].Int() != map[bool]int{true: 1, false: c.nfe}[c.nfe == 1] {
				t.Errorf("%s: total %d", c.method, args[1].Int())
			}
			if len(args) > 2 && args[2].Type() == js.TypeObject {
				pv := args[2]
				previews = append(previews, pv.Get("step").Int())
				if pv.Get("images").Length() != n*f.Arch.Dim || pv.Get("shape").Index(0).Int() != n {
					t.Errorf("%s: preview of %d values, shape %s", c.method, pv.Get("images").Length(), jsString(pv.Get("shape")))
				}
			}
			// Re-entering the API from the callback must not wait for the generate in flight.
			infoSeen = js.Global().Get("asbm").Call("info").Get("image").Bool()
			return nil
		})
		res, err := generate([]js.Value{js.ValueOf(map[string]any{"nfe": c.nfe, "sampler": c.sampler, "seed": float64(seed),
			"n": n, "device": "cpu", "preview": every, "onProgress": cb, "denoise": c.denoise})})
		cb.Release()
		if err != nil {
			t.Fatalf("%s: %v", c.method, err)
		}
		rv := js.ValueOf(res)
		if rv.Get("method").String() != c.method || rv.Get("device").String() != "cpu" || rv.Get("first").Bool() != (i == 0) {
			t.Errorf("%s: method %v device %v first %v", c.method, rv.Get("method"), rv.Get("device"), rv.Get("first"))
		}
		if k := rv.Get("kernels").String(); k != wantKernels() {
			t.Errorf("%s: kernels %q, want %q", c.method, k, wantKernels())
		}
		if sh := rv.Get("shape"); jsString(sh) != fmt.Sprintf("%d,3,4,4", n) {
			t.Errorf("%s: shape %s", c.method, jsString(sh))
		}
		if rv.Get("points").Type() != js.TypeUndefined {
			t.Errorf("%s: an image model returned points", c.method)
		}
		got := goFloats(rv.Get("images"))
		want, err := model.SampleCPU(cpu.Nets(), model.SampleOptions{Points: n, Steps: c.nfe, Method: c.method, Seed: seed,
			Beta0: 0.1, Beta1: 4, SigmaV: 1, SigmaScaled: true, Denoise: c.denoise}, model.SampleHooks{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", c.method, len(got), len(want))
		}
		for j := range want {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("%s: value %d = %v, model.SampleCPU %v", c.method, j, got[j], want[j])
			}
		}
		total := 1
		if c.method != "gen" {
			total = c.nfe
		}
		if len(steps) != total+1 || steps[0] != 0 || steps[total] != total {
			t.Errorf("%s: progress steps %v, want 0 … %d", c.method, steps, total)
		}
		var wantPv []int
		for s := 0; s < total; s += every {
			wantPv = append(wantPv, s)
		}
		if fmt.Sprint(previews) != fmt.Sprint(wantPv) {
			t.Errorf("%s: previews at %v, want %v", c.method, previews, wantPv)
		}
		if !infoSeen {
			t.Errorf("%s: asbm.info() inside onProgress did not describe the image model", c.method)
		}
	}
	if _, err := generate([]js.Value{js.ValueOf(map[string]any{"n": maxImages + 1, "device": "cpu"})}); err == nil ||
		!strings.Contains(err.Error(), fmt.Sprintf("n must be an integer in [1, %d] for an image model", maxImages)) {
		t.Errorf("n > maxImages: %v", err)
	}
	// Without n an image model draws one image.
	res, err := generate([]js.Value{js.ValueOf(map[string]any{"device": "cpu"})})
	if err != nil || js.ValueOf(res).Get("images").Length() != f.Arch.Dim {
		t.Errorf("default n: %v", err)
	}
}

// wantKernels is the CPU path's kernels for an image model in this test binary: the SIMD ones
// where they are built in (-tags asbmsimd) and the engine runs them, else plain Go.
func wantKernels() string {
	if ensureSIMDModule() != nil {
		return kernelsSIMD
	}
	return kernelsGo
}

// TestForwardAndParamsCPU: asbm.forward on the CPU path is the network's ForwardCPU on the given
// rows, asbm.params returns its parameters, and bad arguments are refused with a clear message.
func TestForwardAndParamsCPU(t *testing.T) {
	install()
	r := newRand()
	f, data := tinyUNetFile(t, r, "")
	if _, err := load([]js.Value{jsBytes(data), js.ValueOf(map[string]any{"device": "cpu", "name": "tiny.msgpack"})}); err != nil {
		t.Fatal(err)
	}
	n := 1 + r.IntN(4)
	tv, x := make([]float32, n), make([]float32, n*f.Arch.Dim)
	for i := range tv {
		tv[i] = r.Float32()
	}
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, name := range []string{"score", "control", "gen"} {
		net, err := model.NetFromFile(f, name+"/")
		if err != nil {
			t.Fatal(err)
		}
		res, err := forward([]js.Value{js.ValueOf(map[string]any{"net": name, "t": float32Array(tv), "x": float32Array(x), "device": "cpu"})})
		if err != nil {
			t.Fatal(err)
		}
		got, want := goFloats(js.ValueOf(res).Get("out")), net.ForwardCPU(tv, x)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: forward value %d = %v, ForwardCPU %v", name, i, got[i], want[i])
			}
		}
		if k := js.ValueOf(res).Get("kernels").String(); k != wantKernels() {
			t.Errorf("%s: kernels %q, want %q", name, k, wantKernels())
		}
		// {simd: false}: the plain-Go kernels, the same values.
		res, err = forward([]js.Value{js.ValueOf(map[string]any{"net": name, "t": float32Array(tv), "x": float32Array(x), "device": "cpu", "simd": false})})
		if err != nil {
			t.Fatal(err)
		}
		if k := js.ValueOf(res).Get("kernels").String(); k != kernelsGo {
			t.Errorf("%s, simd: false: kernels %q", name, k)
		}
		if g := goFloats(js.ValueOf(res).Get("out")); fmt.Sprint(g) != fmt.Sprint(want) {
			t.Errorf("%s, simd: false: differs from ForwardCPU", name)
		}
		ps, err := params([]js.Value{js.ValueOf(name)})
		if err != nil {
			t.Fatal(err)
		}
		pv := js.ValueOf(ps)
		for k, v := range net.Params {
			if g := goFloats(pv.Get(k)); len(g) != len(v) || g[len(g)-1] != v[len(v)-1] || g[0] != v[0] {
				t.Errorf("%s: params[%s] differs", name, k)
			}
		}
	}
	for _, c := range []struct {
		opt  map[string]any
		want string
	}{
		{map[string]any{"net": "critic", "t": float32Array(tv), "x": float32Array(x)}, `net must be "score", "control" or "gen"`},
		{map[string]any{"t": []any{1}, "x": float32Array(x)}, "t must be a Float32Array"},
		{map[string]any{"t": float32Array(tv), "x": float32Array(x[1:])}, "values of x"},
		{map[string]any{"t": float32Array(tv), "x": float32Array(x), "device": "tpu"}, `device must be "gpu" or "cpu"`},
		{map[string]any{"t": float32Array(tv), "x": float32Array(x), "device": "cpu", "simd": "no"}, "simd must be true or false"},
	} {
		if _, err := forward([]js.Value{js.ValueOf(c.opt)}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("forward(%v): %v, want %q", c.opt, err, c.want)
		}
	}
}
