//go:build js && wasm

// These tests run under Node.js (no WebGPU there):
//
//	GOOS=js GOARCH=wasm go test -exec="$(go env GOROOT)/lib/wasm/go_js_wasm_exec" ./wasm
//
// The browser test (site/test) covers the GPU path end to end.
package main

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"syscall/js"
	"testing"
	"time"
)

func newRand() *rand.Rand {
	s := uint64(time.Now().UnixNano())
	return rand.New(rand.NewPCG(s, s>>7))
}

func TestParseRequestAccepts(t *testing.T) {
	r := newRand()
	for i := 0; i < 50; i++ {
		nfe, pts, seed := 1+r.IntN(maxNFE), 1+r.IntN(maxPoints), r.Uint64N(maxSeed+1)
		sampler := []string{"sde", "ode"}[r.IntN(2)]
		dev := []string{"gpu", "cpu"}[r.IntN(2)]
		o := js.ValueOf(map[string]any{"nfe": nfe, "points": pts, "seed": float64(seed), "sampler": sampler, "device": dev})
		req, err := parseRequest([]js.Value{o})
		if err != nil {
			t.Fatalf("parseRequest(nfe %d points %d seed %d): %v", nfe, pts, seed, err)
		}
		if req.nfe != nfe || req.points != pts || req.seed != seed || req.sampler != sampler || req.device != dev {
			t.Fatalf("parsed %+v, want nfe %d points %d seed %d sampler %s device %s", req, nfe, pts, seed, sampler, dev)
		}
	}
	// Defaults.
	req, err := parseRequest([]js.Value{js.ValueOf(map[string]any{})})
	if err != nil || req.nfe != 1 || req.points != 2000 || req.seed != 0 || req.sampler != "sde" || req.device != "" {
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
