package server

// server_test.go runs the real server on a free port for every route and header the page and the
// widget rely on; one file keeps the shared fixture (a built site and weights folder) in one place.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"asbm/weights"

	"github.com/andybalholm/brotli"
)

// fixture is a temporary site and weights folder with a secret file beside them that no request
// may reach.
type fixture struct {
	dir, site, weights string
	secret             string
	appJS, wasm        []byte
	models             map[string][]byte // file name → bytes of the valid model files
}

// randomText returns n bytes of printable, compressible text that differs per call.
func randomText(r *rand.Rand, n int) []byte {
	words := []string{"const", "let", "points", "canvas", "draw", "seed", "nfe", "return", "await"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%s %d;\n", words[r.IntN(len(words))], r.IntN(1000))
	}
	return b.Bytes()[:n]
}

// modelBytes builds a small valid weights file (an MLP with Hidden 4) for the nets given.
func modelBytes(t *testing.T, r *rand.Rand, dataset string, nets ...string) []byte {
	t.Helper()
	f := &weights.File{Magic: weights.Magic, Version: weights.Version,
		Arch: weights.Arch{Kind: "mlp", Dim: 2, Hidden: 4, Layers: 1, Fourier: 1},
		Meta: map[string]any{"dataset": dataset, "beta0": 0.1, "beta1": 8.0, "sigma_v": 1.0}}
	vals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	for _, p := range nets {
		f.AddF32(p+"/l0.w", []int{4, 4}, vals(16))
		f.AddF32(p+"/l0.b", []int{4}, vals(4))
		f.AddF32(p+"/out.w", []int{4, 2}, vals(8))
		f.AddF32(p+"/out.b", []int{2}, vals(2))
	}
	var b bytes.Buffer
	if err := weights.Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	if _, err := weights.Decode(b.Bytes()); err != nil {
		t.Fatalf("fixture model does not decode: %v", err)
	}
	return b.Bytes()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	fx := &fixture{dir: t.TempDir(), models: map[string][]byte{}}
	fx.site = filepath.Join(fx.dir, "dist")
	fx.weights = filepath.Join(fx.dir, "weights")
	fx.secret = fmt.Sprintf("SECRET-%d", r.Uint64())
	fx.appJS = randomText(r, 8000)
	fx.wasm = append([]byte("\x00asm\x01\x00\x00\x00"), randomText(r, 5000)...)
	var gz, br bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, 9)
	zw.Write(fx.wasm)
	zw.Close()
	bw := brotli.NewWriterLevel(&br, 5) // the server sends the file as it is; the level is irrelevant
	bw.Write(fx.wasm)
	bw.Close()

	write := func(p string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(fx.dir, "secret.txt"), []byte(fx.secret))
	write(filepath.Join(fx.site, "index.html"), []byte("<!doctype html><title>ASBM</title>"))
	write(filepath.Join(fx.site, "app.js"), fx.appJS)
	write(filepath.Join(fx.site, "small.css"), []byte("body{margin:0}"))
	write(filepath.Join(fx.site, "asbm.wasm"), fx.wasm)
	write(filepath.Join(fx.site, "asbm.wasm.gz"), gz.Bytes())
	write(filepath.Join(fx.site, "asbm.wasm.br"), br.Bytes())
	write(filepath.Join(fx.site, "plain.wasm"), fx.wasm) // no .gz beside it
	write(filepath.Join(fx.site, "assets", "a.txt"), []byte("asset"))
	write(filepath.Join(fx.site, "embed", "index.html"), []byte("<!doctype html><title>embed</title>"))
	write(filepath.Join(fx.weights, "notes.txt"), []byte("not a model"))
	write(filepath.Join(fx.weights, "broken.msgpack"), []byte("\x93not msgpack at all"))
	if err := os.MkdirAll(filepath.Join(fx.weights, "dir.msgpack"), 0o755); err != nil {
		t.Fatal(err)
	}
	fx.models["8gaussians.msgpack"] = modelBytes(t, r, "8gaussians", "score", "control", "gen")
	fx.models["moons.msgpack"] = modelBytes(t, r, "moons", "score", "baseline")
	// A FID feature network: served as a file, but not a model the page may offer.
	fx.models["classifier-mnist.msgpack"] = modelBytes(t, r, "mnist:train", "features")
	for n, b := range fx.models {
		write(filepath.Join(fx.weights, n), b)
	}
	// A symlink inside the site pointing outside it must not be followed.
	if err := os.Symlink(filepath.Join(fx.dir, "secret.txt"), filepath.Join(fx.site, "link.txt")); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) server(t *testing.T) *httptest.Server {
	t.Helper()
	e, err := New(Config{Site: fx.site, Weights: fx.weights})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return ts
}

// get performs a GET with the given Accept-Encoding ("" sends none; Go's transport would
// otherwise add gzip and decode transparently).
func get(t *testing.T, url, acceptEncoding string) (*http.Response, []byte) {
	t.Helper()
	return getWith(t, url, map[string]string{"Accept-Encoding": acceptEncoding})
}

// getWith performs a GET with the given headers (empty values are not sent) and no transparent
// decompression, and returns the response and its whole body.
func getWith(t *testing.T, url string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("body is not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSiteFilesAndHeaders(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)

	res, body := get(t, ts.URL+"/", "")
	if res.StatusCode != 200 || !strings.Contains(string(body), "<title>ASBM</title>") {
		t.Fatalf("GET / = %d %q", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type = %q", ct)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "SAMEORIGIN",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(ContentSecurityPolicy, "'wasm-unsafe-eval'") {
		t.Error("CSP must allow WebAssembly compilation")
	}

	res, body = get(t, ts.URL+"/app.js", "")
	if res.StatusCode != 200 || !bytes.Equal(body, fx.appJS) {
		t.Fatalf("GET /app.js = %d, %d bytes (want %d)", res.StatusCode, len(body), len(fx.appJS))
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
		t.Errorf("app.js Content-Type = %q", ct)
	}

	res, body = get(t, ts.URL+"/embed/", "")
	if res.StatusCode != 200 || !strings.Contains(string(body), "embed") {
		t.Errorf("GET /embed/ = %d %q, want its index.html", res.StatusCode, body)
	}
	res, _ = get(t, ts.URL+"/nope.js", "")
	if res.StatusCode != 404 {
		t.Errorf("GET /nope.js = %d, want 404", res.StatusCode)
	}
}

func TestNoDirectoryListing(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	for _, p := range []string{"/assets", "/assets/", "/assets/."} {
		res, body := get(t, ts.URL+p, "")
		if res.StatusCode != 404 || strings.Contains(string(body), "a.txt") {
			t.Errorf("GET %s = %d %q, want 404 without a listing", p, res.StatusCode, body)
		}
	}
	res, body := get(t, ts.URL+"/assets/a.txt", "")
	if res.StatusCode != 200 || string(body) != "asset" {
		t.Errorf("GET /assets/a.txt = %d %q", res.StatusCode, body)
	}
}

func TestWasmPrecompressed(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)

	res, body := get(t, ts.URL+"/asbm.wasm", "gzip, deflate")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", ce)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/wasm" {
		t.Errorf("Content-Type = %q, want application/wasm", ct)
	}
	if v := res.Header.Values("Vary"); !strings.Contains(strings.Join(v, ","), "Accept-Encoding") {
		t.Errorf("Vary = %v, want Accept-Encoding", v)
	}
	if got := gunzip(t, body); !bytes.Equal(got, fx.wasm) {
		t.Errorf("decoded wasm differs: %d bytes vs %d", len(got), len(fx.wasm))
	}
	if gzInfo, _ := os.Stat(filepath.Join(fx.site, "asbm.wasm.gz")); res.ContentLength != gzInfo.Size() {
		t.Errorf("Content-Length = %d, want the .gz size %d", res.ContentLength, gzInfo.Size())
	}
	if l := res.Header.Get("X-Decoded-Content-Length"); l != fmt.Sprint(len(fx.wasm)) {
		t.Errorf("X-Decoded-Content-Length = %q, want %d", l, len(fx.wasm))
	}
	// The pre-compressed file must be sent as it is, not compressed again.
	gzFile, _ := os.ReadFile(filepath.Join(fx.site, "asbm.wasm.gz"))
	if !bytes.Equal(body, gzFile) {
		t.Error("gzip body is not the pre-compressed file")
	}

	for _, ae := range []string{"", "identity", "gzip;q=0", "deflate", "br;q=0, gzip;q=0"} {
		res, body := get(t, ts.URL+"/asbm.wasm", ae)
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, fx.wasm) {
			t.Errorf("Accept-Encoding %q: status %d, Content-Encoding %q, raw body %v",
				ae, res.StatusCode, res.Header.Get("Content-Encoding"), bytes.Equal(body, fx.wasm))
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/wasm" {
			t.Errorf("Accept-Encoding %q: Content-Type %q", ae, ct)
		}
	}
	// A range request gets a range of the raw file, never of the gzip stream.
	if code, ce, rb := getRange(t, ts.URL+"/asbm.wasm", "gzip, br", 4, 99); code != http.StatusPartialContent || ce != "" || !bytes.Equal(rb, fx.wasm[4:100]) {
		t.Errorf("range: %d %q %d bytes", code, ce, len(rb))
	}
	// A conditional request is answered 304 without a body.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/asbm.wasm", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	cres, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	cres.Body.Close()
	if cres.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since in the future: %d, want 304", cres.StatusCode)
	}
	// No .gz beside it: the raw file, with the right type.
	res, body = get(t, ts.URL+"/plain.wasm", "gzip")
	if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, fx.wasm) ||
		res.Header.Get("Content-Type") != "application/wasm" {
		t.Errorf("plain.wasm: %d %q %q", res.StatusCode, res.Header.Get("Content-Encoding"), res.Header.Get("Content-Type"))
	}
}

func TestGzipCompressible(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)

	res, body := get(t, ts.URL+"/app.js", "gzip")
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("app.js (%d bytes) not gzipped: Content-Encoding %q", len(fx.appJS), res.Header.Get("Content-Encoding"))
	}
	if got := gunzip(t, body); !bytes.Equal(got, fx.appJS) {
		t.Error("gunzipped app.js differs")
	}
	if len(body) >= len(fx.appJS) {
		t.Errorf("gzip did not shrink app.js: %d ≥ %d", len(body), len(fx.appJS))
	}
	// Below the threshold: sent as is.
	res, body = get(t, ts.URL+"/small.css", "gzip")
	if res.Header.Get("Content-Encoding") != "" || string(body) != "body{margin:0}" {
		t.Errorf("small.css: Content-Encoding %q body %q", res.Header.Get("Content-Encoding"), body)
	}
	res, body = get(t, ts.URL+"/api/models", "gzip")
	if res.StatusCode != 200 {
		t.Fatalf("api: %d", res.StatusCode)
	}
	if res.Header.Get("Content-Encoding") == "gzip" {
		body = gunzip(t, body)
	}
	var ms []Model
	if err := json.Unmarshal(body, &ms); err != nil {
		t.Errorf("api body: %v", err)
	}
}

func TestAPIModels(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	res, body := get(t, ts.URL+"/api/models", "")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/models = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var ms []Model
	if err := json.Unmarshal(body, &ms); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	want := []struct {
		name, dataset string
		nets          []string
	}{
		{"8gaussians", "8gaussians", []string{"control", "gen", "score"}},
		{"broken", "", []string{}},
		{"moons", "moons", []string{"baseline", "score"}},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d models %+v, want %d (no notes.txt, no directory, no classifier)", len(ms), ms, len(want))
	}
	for i, w := range want {
		m := ms[i]
		if m.Name != w.name || m.URL != "/weights/"+w.name+".msgpack" || m.Dataset != w.dataset ||
			fmt.Sprint(m.Nets) != fmt.Sprint(w.nets) {
			t.Errorf("model %d = %+v, want name %s dataset %s nets %v", i, m, w.name, w.dataset, w.nets)
		}
		raw, err := os.ReadFile(filepath.Join(fx.weights, w.name+".msgpack"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		if m.Bytes != int64(len(raw)) || m.SHA256 != hex.EncodeToString(sum[:])[:16] {
			t.Errorf("%s: bytes %d sha %s, want %d %s", w.name, m.Bytes, m.SHA256, len(raw), hex.EncodeToString(sum[:])[:16])
		}
		if (w.name == "broken") != (m.Error != "") {
			t.Errorf("%s: error %q", w.name, m.Error)
		}
	}

	// A replaced file is described afresh (the cache keys on size and mtime).
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	nb := modelBytes(t, r, "checkerboard", "gen", "score")
	p := filepath.Join(fx.weights, "moons.msgpack")
	if err := os.WriteFile(p, nb, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	_, body = get(t, ts.URL+"/api/models", "")
	ms = nil
	json.Unmarshal(body, &ms)
	if len(ms) != 3 || ms[2].Dataset != "checkerboard" || fmt.Sprint(ms[2].Nets) != "[gen score]" {
		t.Errorf("after rewrite: %+v", ms)
	}
}

func TestWeightsServe(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	for name, want := range fx.models {
		res, body := get(t, ts.URL+"/weights/"+name, "gzip")
		if res.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("GET /weights/%s = %d, %d bytes (want %d)", name, res.StatusCode, len(body), len(want))
		}
		if ce := res.Header.Get("Content-Encoding"); ce != "" {
			t.Errorf("%s: Content-Encoding %q; model files keep their Content-Length", name, ce)
		}
		if res.ContentLength != int64(len(want)) {
			t.Errorf("%s: Content-Length %d, want %d", name, res.ContentLength, len(want))
		}
		sum := sha256.Sum256(want)
		if et := res.Header.Get("ETag"); et != `"`+hex.EncodeToString(sum[:])[:16]+`"` {
			t.Errorf("%s: ETag %q", name, et)
		}
	}
	for _, p := range []string{"/weights/missing.msgpack", "/weights/notes.txt", "/weights/", "/weights/dir.msgpack",
		"/weights/.hidden.msgpack", "/weights/a/b.msgpack"} {
		res, _ := get(t, ts.URL+p, "")
		if res.StatusCode != 404 {
			t.Errorf("GET %s = %d, want 404", p, res.StatusCode)
		}
	}
}

// rawGet sends a request line exactly as given, so neither client nor test normalises the path.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestPathTraversal(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	addr := strings.TrimPrefix(ts.URL, "http://")
	targets := []string{
		"/../secret.txt", "/../../secret.txt", "/./../secret.txt", "/assets/../../secret.txt",
		"/%2e%2e/secret.txt", "/%2e%2e%2fsecret.txt", "/%2E%2E%2Fsecret.txt", "/..%2fsecret.txt",
		"/.%2e/secret.txt", "/%2e./secret.txt", "/assets/..%2f..%2fsecret.txt",
		"/..%5csecret.txt", "/%2e%2e%5csecret.txt", "/..\\secret.txt", "/assets\\..\\..\\secret.txt",
		"/%252e%252e%252fsecret.txt", "/..%252fsecret.txt",
		"/weights/../../secret.txt", "/weights/..%2f..%2fsecret.txt", "/weights/%2e%2e%2f%2e%2e%2fsecret.txt",
		"/weights/..%5c..%5csecret.txt", "/weights/%2e%2e/secret.txt",
		"/link.txt", "/%00", "/index.html%00.js", "/C:/secret.txt", "/c:%5csecret.txt",
	}
	for _, target := range targets {
		code, body := rawGet(t, addr, target)
		if code == 200 || strings.Contains(body, fx.secret) {
			t.Errorf("GET %s = %d %q: reached outside the folder", target, code, body)
		}
		if code != 400 && code != 404 {
			t.Errorf("GET %s = %d, want 400 or 404", target, code)
		}
	}
	// Sanity: the same raw client does fetch a legitimate file, so the refusals above mean something.
	if code, body := rawGet(t, addr, "/assets/a.txt"); code != 200 || body != "asset" {
		t.Fatalf("raw GET /assets/a.txt = %d %q", code, body)
	}
	if code, _ := rawGet(t, addr, "/assets/%2e/a.txt"); code != 200 {
		t.Errorf("raw GET /assets/%%2e/a.txt = %d, want 200 (a '.' segment is harmless)", code)
	}
}

func FuzzCleanRel(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a/./b", "a\\b", "/..", "//x//y/", "/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, err := cleanRel(p)
		if err != nil {
			return
		}
		if strings.HasPrefix(rel, "/") || strings.ContainsAny(rel, "\\\x00:") {
			t.Fatalf("cleanRel(%q) = %q", p, rel)
		}
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." || (rel != "" && (seg == "" || seg == ".")) {
				t.Fatalf("cleanRel(%q) = %q has segment %q", p, rel, seg)
			}
		}
		if !filepath.IsLocal(filepath.FromSlash(rel)) && rel != "" {
			t.Fatalf("cleanRel(%q) = %q is not local", p, rel)
		}
	})
}

func TestBodyLimitAndMethods(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	big := bytes.Repeat([]byte("x"), 100<<10)
	res, err := http.Post(ts.URL+"/api/models", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("100 KiB POST = %d, want 413", res.StatusCode)
	}
	for _, p := range []string{"/asbm.wasm", "/weights/8gaussians.msgpack", "/"} {
		req, _ := http.NewRequest(http.MethodHead, ts.URL+p, nil)
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(b) != 0 || res.ContentLength <= 0 {
			t.Errorf("HEAD %s = %d, %d body bytes, Content-Length %d", p, res.StatusCode, len(b), res.ContentLength)
		}
	}
	res, err = http.Post(ts.URL+"/api/models", "text/plain", strings.NewReader("hi"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("small POST /api/models = %d, want 405", res.StatusCode)
	}
}

func TestNewErrors(t *testing.T) {
	fx := newFixture(t)
	noIndex := t.TempDir()
	file := filepath.Join(fx.dir, "secret.txt")
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Site: "", Weights: fx.weights}, "no site folder"},
		{Config{Site: filepath.Join(fx.dir, "missing"), Weights: fx.weights}, "site folder"},
		{Config{Site: file, Weights: fx.weights}, "not a directory"},
		{Config{Site: noIndex, Weights: fx.weights}, "no index.html"},
		{Config{Site: fx.site, Weights: filepath.Join(fx.dir, "missing")}, "weights folder"},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

// lineWriter hands each written chunk to a channel so the test can wait for the URL line.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) { w <- string(p); return len(p), nil }

func TestRunGracefulShutdown(t *testing.T) {
	fx := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := make(lineWriter, 8)
	done := make(chan error, 1)
	go func() { done <- run(ctx, "127.0.0.1:0", Config{Site: fx.site, Weights: fx.weights}, lines) }()

	var url string
	select {
	case l := <-lines:
		i := strings.Index(l, "http://")
		if i < 0 {
			t.Fatalf("first line %q has no URL", l)
		}
		url = strings.TrimSpace(l[i:])
	case err := <-done:
		t.Fatalf("run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no URL printed")
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0/") {
		t.Fatalf("printed URL %q is not the bound loopback address", url)
	}
	res, body := get(t, url, "")
	if res.StatusCode != 200 || !strings.Contains(string(body), "ASBM") {
		t.Fatalf("GET %s = %d", url, res.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after ctx was cancelled")
	}
	if _, err := net.DialTimeout("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"), time.Second); err == nil {
		t.Error("still accepting connections after shutdown")
	}

	// A busy address is a clear error, not a hang.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), ln.Addr().String(), Config{Site: fx.site, Weights: fx.weights}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("run on a busy port = %v", err)
	}
}

// getRange requests bytes lo–hi (inclusive) of url with Accept-Encoding ae and returns the
// status, Content-Encoding and body.
func getRange(t *testing.T, url, ae string, lo, hi int) (int, string, []byte) {
	t.Helper()
	res, b := getWith(t, url, map[string]string{"Accept-Encoding": ae, "Range": fmt.Sprintf("bytes=%d-%d", lo, hi)})
	return res.StatusCode, res.Header.Get("Content-Encoding"), b
}
