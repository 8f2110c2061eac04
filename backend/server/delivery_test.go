package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

func unbrotli(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(brotli.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("body is not brotli: %v", err)
	}
	return out
}

// decode undoes a response's Content-Encoding ("" is identity).
func decode(t *testing.T, coding string, b []byte) []byte {
	t.Helper()
	switch coding {
	case "":
		return b
	case "gzip":
		return gunzip(t, b)
	case "br":
		return unbrotli(t, b)
	}
	t.Fatalf("unexpected Content-Encoding %q", coding)
	return nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAcceptedCodings(t *testing.T) {
	for h, want := range map[string]string{
		"":                                   "",
		"gzip":                               "gzip",
		"GZIP":                               "gzip",
		"x-gzip":                             "gzip",
		"deflate, gzip;q=0.5":                "gzip",
		"gzip;q=0":                           "",
		"gzip; q=0.0":                        "",
		"br":                                 "br",
		"BR;Q=0.3":                           "br",
		"gzip, deflate, br":                  "br gzip", // equal q: br first
		"br, gzip":                           "br gzip",
		"gzip, deflate, br, zstd":            "br gzip", // what Chromium sends over HTTPS
		"gzip;q=1, br;q=0.9":                 "gzip br",
		"br;q=1, gzip ; q=0.001":             "br gzip",
		"br;q=0, gzip":                       "gzip",
		"br;q=0, gzip;q=0":                   "",
		"*":                                  "br gzip",
		"*;q=0":                              "",
		"*;q=0, gzip":                        "gzip",
		"gzip;q=0.2, *;q=0.5":                "br gzip", // br is rated by *, above gzip
		"br;q=0, *":                          "gzip",
		"identity":                           "",
		"identity, br;q=0.5":                 "", // the client prefers the raw file
		"identity;q=0.5, br":                 "br",
		"identity;q=0.5, br;q=0.5, gzip;q=1": "gzip br",
		"gzip;q=0, gzip":                     "", // the first entry counts
		"gzip;q=abc":                         "gzip",
		"gzip;q=NaN":                         "",
		"gzip;q=-1":                          "",
		"gzip;q=7":                           "gzip",
		" , ;q=1, br":                        "br",
		"brotli, gz":                         "", // not coding names
	} {
		if got := strings.Join(acceptedCodings(h), " "); got != want {
			t.Errorf("acceptedCodings(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestWasmEncodings checks the negotiation end to end: the coding sent, that the body is the
// pre-compressed file as it is and decodes to the exact wasm, and the headers the page relies on.
func TestWasmEncodings(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	files := map[string][]byte{}
	for coding, ext := range map[string]string{"br": ".br", "gzip": ".gz", "": ""} {
		b, err := os.ReadFile(filepath.Join(fx.site, "asbm.wasm"+ext))
		if err != nil {
			t.Fatal(err)
		}
		files[coding] = b
	}
	for ae, want := range map[string]string{
		"gzip, deflate, br": "br", "br": "br", "gzip": "gzip", "br;q=0, gzip": "gzip", "br;q=0.5, gzip": "gzip",
		"gzip;q=0.1, br;q=0.1": "br", "*": "br", "": "", "identity": "", "br;q=0, gzip;q=0": "", "deflate": "",
		"identity;q=1, br;q=0.9": "",
	} {
		res, body := get(t, ts.URL+"/asbm.wasm", ae)
		ce := res.Header.Get("Content-Encoding")
		if res.StatusCode != 200 || ce != want {
			t.Errorf("Accept-Encoding %q: %d, Content-Encoding %q, want %q", ae, res.StatusCode, ce, want)
			continue
		}
		if !bytes.Equal(body, files[want]) {
			t.Errorf("Accept-Encoding %q: body is not asbm.wasm%s as stored", ae, map[string]string{"br": ".br", "gzip": ".gz"}[want])
		}
		if got := decode(t, ce, body); !bytes.Equal(got, fx.wasm) {
			t.Errorf("Accept-Encoding %q: decoded body has %d bytes, differs from the %d-byte wasm", ae, len(got), len(fx.wasm))
		}
		if res.ContentLength != int64(len(files[want])) {
			t.Errorf("Accept-Encoding %q: Content-Length %d, want %d", ae, res.ContentLength, len(files[want]))
		}
		if want != "" && res.Header.Get("X-Decoded-Content-Length") != fmt.Sprint(len(fx.wasm)) {
			t.Errorf("Accept-Encoding %q: X-Decoded-Content-Length %q, want %d", ae, res.Header.Get("X-Decoded-Content-Length"), len(fx.wasm))
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/wasm" {
			t.Errorf("Accept-Encoding %q: Content-Type %q", ae, ct)
		}
		if v := strings.Join(res.Header.Values("Vary"), ","); !strings.Contains(v, "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: Vary %q", ae, v)
		}
		if cc := res.Header.Get("Cache-Control"); cc != NoCache {
			t.Errorf("Accept-Encoding %q, no ?v: Cache-Control %q, want %q", ae, cc, NoCache)
		}
	}
	// A range request gets the raw file even from a client that prefers br.
	if code, ce, rb := getRange(t, ts.URL+"/asbm.wasm", "br", 10, 49); code != http.StatusPartialContent || ce != "" || !bytes.Equal(rb, fx.wasm[10:50]) {
		t.Errorf("range with br: %d %q %d bytes", code, ce, len(rb))
	}
	// The .br is a CORS asset like the .gz (the widget never asks for it by name, but may).
	res, _ := get(t, ts.URL+"/asbm.wasm.br", "")
	if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET /asbm.wasm.br = %d, ACAO %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestWasmMissingOrStaleBrotli: a dist/ built before build.sh wrote .br (or with a .br left from an
// older build) falls back to gzip, or to the raw file, without an error.
func TestWasmMissingOrStaleBrotli(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	br := filepath.Join(fx.site, "asbm.wasm.br")
	gz := filepath.Join(fx.site, "asbm.wasm.gz")

	check := func(what, ae, want string) {
		t.Helper()
		res, body := get(t, ts.URL+"/asbm.wasm", ae)
		ce := res.Header.Get("Content-Encoding")
		if res.StatusCode != 200 || ce != want {
			t.Errorf("%s, Accept-Encoding %q: %d, Content-Encoding %q, want %q", what, ae, res.StatusCode, ce, want)
			return
		}
		if got := decode(t, ce, body); !bytes.Equal(got, fx.wasm) {
			t.Errorf("%s, Accept-Encoding %q: decoded body differs from the wasm", what, ae)
		}
	}
	check("both", "gzip, br", "br")

	// An older .br (a leftover the build did not refresh) is ignored.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(br, old, old); err != nil {
		t.Fatal(err)
	}
	check("stale .br", "gzip, br", "gzip")
	check("stale .br", "br", "")

	if err := os.Remove(br); err != nil {
		t.Fatal(err)
	}
	check("no .br", "gzip, br", "gzip")
	check("no .br", "br", "")
	if err := os.Remove(gz); err != nil {
		t.Fatal(err)
	}
	check("no .br or .gz", "gzip, br", "")
	// A directory in the .br's place is not a file to send.
	if err := os.Mkdir(br, 0o755); err != nil {
		t.Fatal(err)
	}
	check(".br is a directory", "br", "")
}

// apiBuild reads /api/build.
func apiBuild(t *testing.T, base string) Build {
	t.Helper()
	res, body := get(t, base+"/api/build", "")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/build = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Cache-Control") != NoCache {
		t.Errorf("/api/build: ACAO %q, Cache-Control %q", res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Cache-Control"))
	}
	var b Build
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("/api/build body %q: %v", body, err)
	}
	return b
}

func TestVersionedWasm(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	full := sha256Hex(fx.wasm)
	b := apiBuild(t, ts.URL)
	if b.Wasm != "/asbm.wasm" || b.WasmSHA256 != full[:ShortHashLen] || b.WasmBytes != int64(len(fx.wasm)) {
		t.Fatalf("/api/build = %+v, want sha %s bytes %d", b, full[:ShortHashLen], len(fx.wasm))
	}
	// The wrong hash: the right length, one digit changed.
	flip := func(s string) string {
		c := "0"
		if s[len(s)-1] == '0' {
			c = "1"
		}
		return s[:len(s)-1] + c
	}
	cases := []struct {
		query, want string
	}{
		{"?v=" + b.WasmSHA256, Immutable},
		{"?v=" + full, Immutable},
		{"?v=" + full[:MinVersionLen], Immutable},
		{"?v=" + full[:MinVersionLen] + "&x=1", Immutable},
		{"", NoCache},
		{"?v=", NoCache},
		{"?v=" + full[:MinVersionLen-1], NoCache},                // too short to trust
		{"?v=" + strings.ToUpper(b.WasmSHA256), NoCache},         // not the canonical spelling
		{"?v=" + flip(b.WasmSHA256), NoCache},                    // stale
		{"?v=" + full + "0", NoCache},                            // longer than a SHA-256
		{"?v=" + b.WasmSHA256[:12] + "xyz", NoCache},             // not hex
		{"?v=" + b.WasmSHA256[:12] + "%00", NoCache},             // not hex
		{"?v=" + flip(b.WasmSHA256) + "&v=" + full, NoCache},     // the first v counts
		{"?V=" + b.WasmSHA256, NoCache},                          // not the parameter
		{"?version=" + b.WasmSHA256, NoCache},                    // not the parameter
		{"?v=" + strings.Repeat("0", ShortHashLen), NoCache},     // valid-looking, wrong
		{"?v=" + b.WasmSHA256 + "%20", NoCache},                  // trailing junk
		{"?v=%20" + b.WasmSHA256, NoCache},                       // leading junk
		{"?v=" + full[:ShortHashLen] + "&v=" + "zz", Immutable},  // the first v counts
		{"?v=" + flip(full[:MinVersionLen]) + "ab", NoCache},     // wrong in the middle
		{"?v=" + b.WasmSHA256 + "#frag", Immutable},              // fragments never reach the server
		{"?v=" + strings.Repeat(b.WasmSHA256, 4)[:64], NoCache},  // 64 digits, not the hash
		{"?v=" + b.WasmSHA256[:MinVersionLen] + "-", NoCache},    // not hex
		{"?v=" + "g" + b.WasmSHA256[1:], NoCache},                // not hex
		{"?v=" + b.WasmSHA256[:ShortHashLen-1] + "%", NoCache},   // bad escape: echo's parse fails
		{"?v=" + strings.ToLower(b.WasmSHA256), Immutable},       // lowercase is the spelling
		{"?v=" + b.WasmSHA256 + "&v=" + b.WasmSHA256, Immutable}, // repeated, consistent
	}
	for _, c := range cases {
		for _, ae := range []string{"br", "gzip", ""} {
			res, body := get(t, ts.URL+"/asbm.wasm"+c.query, ae)
			if res.StatusCode != 200 {
				t.Errorf("GET /asbm.wasm%s (%q) = %d, want 200", c.query, ae, res.StatusCode)
				continue
			}
			if cc := res.Header.Get("Cache-Control"); cc != c.want {
				t.Errorf("GET /asbm.wasm%s (%q): Cache-Control %q, want %q", c.query, ae, cc, c.want)
			}
			if ce := res.Header.Get("Content-Encoding"); ce != ae {
				t.Errorf("GET /asbm.wasm%s: Content-Encoding %q, want %q", c.query, ce, ae)
			}
			if got := decode(t, res.Header.Get("Content-Encoding"), body); !bytes.Equal(got, fx.wasm) {
				t.Errorf("GET /asbm.wasm%s (%q): body differs from the wasm", c.query, ae)
			}
		}
	}
	// HEAD and a range request with the right v are immutable too.
	req, _ := http.NewRequest(http.MethodHead, ts.URL+"/asbm.wasm?v="+b.WasmSHA256, nil)
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Cache-Control") != Immutable {
		t.Errorf("HEAD ?v=: %d %q", res.StatusCode, res.Header.Get("Cache-Control"))
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/asbm.wasm?v="+b.WasmSHA256, nil)
	req.Header.Set("Range", "bytes=0-7")
	res, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusPartialContent || !bytes.Equal(rb, fx.wasm[:8]) || res.Header.Get("Cache-Control") != Immutable {
		t.Errorf("range ?v=: %d %q %q", res.StatusCode, rb, res.Header.Get("Cache-Control"))
	}
	// Other files ignore v: only content-hashed files may be cached for a year.
	for _, p := range []string{"/app.js", "/index.html", "/"} {
		res, _ := get(t, ts.URL+p+"?v="+full, "")
		if res.StatusCode != 200 || res.Header.Get("Cache-Control") != NoCache {
			t.Errorf("GET %s?v=: %d, Cache-Control %q, want %q", p, res.StatusCode, res.Header.Get("Cache-Control"), NoCache)
		}
	}

	// A redeploy: a new wasm (and its compressed copies). The old hash is stale, the new one listed.
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	nw := append([]byte("\x00asm\x01\x00\x00\x00"), randomText(r, 6000)...)
	var br bytes.Buffer
	bw := brotli.NewWriterLevel(&br, 5)
	bw.Write(nw)
	bw.Close()
	later := time.Now().Add(time.Minute)
	for name, data := range map[string][]byte{"asbm.wasm": nw, "asbm.wasm.br": br.Bytes()} {
		p := filepath.Join(fx.site, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, later, later)
	}
	os.Remove(filepath.Join(fx.site, "asbm.wasm.gz"))
	nb := apiBuild(t, ts.URL)
	if nb.WasmSHA256 != sha256Hex(nw)[:ShortHashLen] || nb.WasmBytes != int64(len(nw)) {
		t.Fatalf("/api/build after the redeploy = %+v, want sha %s", nb, sha256Hex(nw)[:ShortHashLen])
	}
	for _, ae := range []string{"br", "gzip", ""} {
		res, body := get(t, ts.URL+"/asbm.wasm?v="+b.WasmSHA256, ae)
		if res.StatusCode != 200 || res.Header.Get("Cache-Control") != NoCache ||
			!bytes.Equal(decode(t, res.Header.Get("Content-Encoding"), body), nw) {
			t.Errorf("old ?v= after the redeploy (%q): %d %q, want the new file with no-cache", ae, res.StatusCode, res.Header.Get("Cache-Control"))
		}
		res, body = get(t, ts.URL+"/asbm.wasm?v="+nb.WasmSHA256, ae)
		if res.StatusCode != 200 || res.Header.Get("Cache-Control") != Immutable ||
			!bytes.Equal(decode(t, res.Header.Get("Content-Encoding"), body), nw) {
			t.Errorf("new ?v= (%q): %d %q", ae, res.StatusCode, res.Header.Get("Cache-Control"))
		}
	}
	// No wasm at all: /api/build still answers, with no hash.
	os.Remove(filepath.Join(fx.site, "asbm.wasm"))
	if nb := apiBuild(t, ts.URL); nb.WasmSHA256 != "" || nb.WasmBytes != 0 {
		t.Errorf("/api/build without asbm.wasm = %+v", nb)
	}
}

func TestVersionedWeights(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	_, body := get(t, ts.URL+"/api/models", "")
	var ms []Model
	if err := json.Unmarshal(body, &ms); err != nil {
		t.Fatal(err)
	}
	// The FID network is not listed but is served, and versionable, all the same.
	names := []string{"classifier-mnist.msgpack"}
	for _, m := range ms {
		if m.Error == "" {
			names = append(names, m.Name+".msgpack")
		}
	}
	if len(names) != 3 {
		t.Fatalf("models %+v", ms)
	}
	for _, name := range names {
		want := fx.models[name]
		full := sha256Hex(want)
		for _, m := range ms {
			if m.Name+".msgpack" == name && m.SHA256 != full[:ShortHashLen] {
				t.Errorf("%s: /api/models sha256 %s, want %s", name, m.SHA256, full[:ShortHashLen])
			}
		}
		for q, cc := range map[string]string{
			"?v=" + full[:ShortHashLen]:          Immutable,
			"?v=" + full:                         Immutable,
			"?v=" + full[:MinVersionLen]:         Immutable,
			"":                                   NoCache,
			"?v=" + full[:MinVersionLen-1]:       NoCache,
			"?v=" + strings.Repeat("a", 16):      NoCache,
			"?v=" + full[1:ShortHashLen+1]:       NoCache,
			"?v=" + full[:ShortHashLen-1] + "z":  NoCache,
			"?v=../../secret.txt":                NoCache,
			"?v=" + strings.ToUpper(full[:16]):   NoCache,
			"?v=" + sha256Hex(fx.wasm)[:16]:      NoCache, // another file's hash
			"?v=" + full[:ShortHashLen] + "&v=0": Immutable,
		} {
			res, body := get(t, ts.URL+"/weights/"+name+q, "gzip, br")
			if res.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Errorf("GET /weights/%s%s = %d, %d bytes (want %d)", name, q, res.StatusCode, len(body), len(want))
				continue
			}
			if got := res.Header.Get("Cache-Control"); got != cc {
				t.Errorf("GET /weights/%s%s: Cache-Control %q, want %q", name, q, got, cc)
			}
			if ce := res.Header.Get("Content-Encoding"); ce != "" || res.ContentLength != int64(len(want)) {
				t.Errorf("GET /weights/%s%s: Content-Encoding %q, Content-Length %d", name, q, ce, res.ContentLength)
			}
			if et := res.Header.Get("ETag"); et != `"`+full[:ShortHashLen]+`"` {
				t.Errorf("GET /weights/%s%s: ETag %q", name, q, et)
			}
		}
	}
	// A retrained model: the old v now gets the new file, uncached.
	name := "moons.msgpack"
	oldSum := sha256Hex(fx.models[name])
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	nb := modelBytes(t, r, "moons", "score", "gen")
	p := filepath.Join(fx.weights, name)
	if err := os.WriteFile(p, nb, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	os.Chtimes(p, later, later)
	res, body := get(t, ts.URL+"/weights/"+name+"?v="+oldSum[:ShortHashLen], "")
	if res.StatusCode != 200 || !bytes.Equal(body, nb) || res.Header.Get("Cache-Control") != NoCache {
		t.Errorf("stale v: %d, new body %v, Cache-Control %q", res.StatusCode, bytes.Equal(body, nb), res.Header.Get("Cache-Control"))
	}
	res, body = get(t, ts.URL+"/weights/"+name+"?v="+sha256Hex(nb)[:ShortHashLen], "")
	if res.StatusCode != 200 || !bytes.Equal(body, nb) || res.Header.Get("Cache-Control") != Immutable {
		t.Errorf("new v: %d, new body %v, Cache-Control %q", res.StatusCode, bytes.Equal(body, nb), res.Header.Get("Cache-Control"))
	}
	// Missing and invalid names stay 404 whatever v says.
	for _, p := range []string{"/weights/missing.msgpack", "/weights/notes.txt", "/weights/dir.msgpack"} {
		if res, _ := get(t, ts.URL+p+"?v="+oldSum, ""); res.StatusCode != 404 {
			t.Errorf("GET %s?v= = %d, want 404", p, res.StatusCode)
		}
	}
}

// TestPathTraversalVersioned repeats probes of TestPathTraversal with a v that is the secret's own
// hash: a query must change nothing about which files can be reached.
func TestPathTraversalVersioned(t *testing.T) {
	fx := newFixture(t)
	ts := fx.server(t)
	addr := strings.TrimPrefix(ts.URL, "http://")
	v := "?v=" + sha256Hex([]byte(fx.secret))
	for _, target := range []string{"/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/link.txt",
		"/weights/../../secret.txt", "/weights/..%2f..%2fsecret.txt", "/weights/%2e%2e/secret.txt",
		"/../secret.txt.wasm", "/..%2fasbm.wasm", "/weights/..%2f..%2fdist/asbm.wasm"} {
		code, body := rawGet(t, addr, target+v)
		if code == 200 || strings.Contains(body, fx.secret) {
			t.Errorf("GET %s%s = %d %q: reached outside the folder", target, v, code, body)
		}
		if code != 400 && code != 404 {
			t.Errorf("GET %s%s = %d, want 400 or 404", target, v, code)
		}
	}
	if code, _ := rawGet(t, addr, "/asbm.wasm"+v); code != 200 {
		t.Errorf("raw GET /asbm.wasm with a wrong v = %d, want 200", code)
	}
}

// TestFileCacheHashesOncePerModification shows the hash is keyed by size and modification time:
// content changed behind the cache's back (same size, mtime restored) is not re-hashed, and a new
// mtime is.
func TestFileCacheHashesOncePerModification(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))
	a := randomText(r, 3000)
	p := filepath.Join(dir, "f.bin")
	if err := os.WriteFile(p, a, 0o644); err != nil {
		t.Fatal(err)
	}
	fc := newFileCache()
	sumOf := func() string {
		t.Helper()
		f, st, err := openRegular(root, "f.bin")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s, err := fc.sum("x/f.bin", f, st)
		if err != nil {
			t.Fatal(err)
		}
		// The offset is back at the start: the file can be served right after.
		if rest, _ := io.ReadAll(f); !bytes.Equal(rest, func() []byte { b, _ := os.ReadFile(p); return b }()) {
			t.Error("sum left the file offset away from the start")
		}
		return s
	}
	if s := sumOf(); s != sha256Hex(a) {
		t.Fatalf("sum = %s, want %s", s, sha256Hex(a))
	}
	st, _ := os.Stat(p)
	b := slices.Clone(a)
	b[0] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, st.ModTime(), st.ModTime())
	if s := sumOf(); s != sha256Hex(a) {
		t.Errorf("same size and mtime: sum = %s, want the cached %s (no re-hash)", s, sha256Hex(a))
	}
	later := st.ModTime().Add(time.Second)
	os.Chtimes(p, later, later)
	if s := sumOf(); s != sha256Hex(b) {
		t.Errorf("new mtime: sum = %s, want %s", s, sha256Hex(b))
	}
	// The model description reuses the hash entry rather than hashing again.
	mdir := t.TempDir()
	mroot, _ := os.OpenRoot(mdir)
	defer mroot.Close()
	mb := modelBytes(t, r, "moons", "score")
	os.WriteFile(filepath.Join(mdir, "m.msgpack"), mb, 0o644)
	m, err := fc.model(mroot, "m.msgpack")
	if err != nil || m.SHA256 != sha256Hex(mb)[:ShortHashLen] || m.Dataset != "moons" {
		t.Fatalf("model = %+v, %v", m, err)
	}
	c, ok := fc.m[weightsKey("m.msgpack")]
	if !ok || c.sum != sha256Hex(mb) || c.model == nil {
		t.Errorf("cache entry %+v, want the full hash and the description", c)
	}
}

func TestValidVersion(t *testing.T) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 23))
	const digits = "0123456789abcdef"
	for range 200 {
		n := r.IntN(70)
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[r.IntN(16)]
		}
		want := n >= MinVersionLen && n <= 64
		if n > 0 && r.IntN(2) == 0 {
			// One character outside lowercase hex anywhere makes it invalid.
			const bad = "gzGZ-_. %/\x00ABCDEF"
			b[r.IntN(n)] = bad[r.IntN(len(bad))]
			want = false
		}
		if got := validVersion(string(b)); got != want {
			t.Errorf("validVersion(%q) = %v, want %v", b, got, want)
		}
	}
}
