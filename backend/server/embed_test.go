package server

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// embedFixture adds the widget's files (random contents) and embed.html to a fixture.
func embedFixture(t *testing.T) (*fixture, map[string][]byte) {
	t.Helper()
	fx := newFixture(t)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	files := map[string][]byte{}
	for _, n := range []string{"widget.js", "plot.js", "runtime.js", "wasm_exec.js", "embed.js", "blog.html"} {
		files[n] = randomText(r, 100+r.IntN(3000))
	}
	files["embed.html"] = append([]byte("<!doctype html><title>embed page</title>"), randomText(r, 50)...)
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(fx.site, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fx, files
}

func TestEmbedFraming(t *testing.T) {
	fx, files := embedFixture(t)
	ts := fx.server(t)

	res, body := get(t, ts.URL+"/embed?model=moons&nfe=3", "")
	if res.StatusCode != 200 || !bytes.Equal(body, files["embed.html"]) {
		t.Fatalf("GET /embed = %d %q, want embed.html", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/embed Content-Type = %q", ct)
	}
	if v, ok := res.Header["X-Frame-Options"]; ok {
		t.Errorf("/embed sends X-Frame-Options %q; it must be frameable", v)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors *") || strings.Contains(csp, "frame-ancestors 'self'") {
		t.Errorf("/embed CSP %q must say frame-ancestors *", csp)
	}
	// Apart from framing, /embed keeps the site's policy.
	if want := strings.Replace(ContentSecurityPolicy, "frame-ancestors 'self'", "frame-ancestors *", 1); csp != want {
		t.Errorf("/embed CSP = %q, want %q", csp, want)
	}
	if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("/embed X-Content-Type-Options = %q", got)
	}

	// Everything else, the embed page's own files and /embed.html by its file name included,
	// stays SAMEORIGIN.
	for _, p := range []string{"/", "/embed.html", "/embed.js", "/embed/", "/blog.html", "/widget.js", "/api/models",
		"/weights/8gaussians.msgpack", "/nope.js"} {
		res, _ := get(t, ts.URL+p, "")
		if got := res.Header.Get("X-Frame-Options"); got != "SAMEORIGIN" {
			t.Errorf("GET %s: X-Frame-Options = %q, want SAMEORIGIN", p, got)
		}
		if got := res.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
			t.Errorf("GET %s: CSP = %q, want the site's", p, got)
		}
	}
	// HEAD is answered like GET.
	req, _ := http.NewRequest(http.MethodHead, ts.URL+"/embed", nil)
	hres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	if hres.StatusCode != 200 || hres.Header.Get("X-Frame-Options") != "" {
		t.Errorf("HEAD /embed = %d, X-Frame-Options %q", hres.StatusCode, hres.Header.Get("X-Frame-Options"))
	}
}

func TestEmbedMissingPage(t *testing.T) {
	fx := newFixture(t) // no embed.html
	ts := fx.server(t)
	res, _ := get(t, ts.URL+"/embed", "")
	if res.StatusCode != 404 {
		t.Errorf("GET /embed without embed.html = %d, want 404", res.StatusCode)
	}
}

func TestCORSOnlyForWidgetAssets(t *testing.T) {
	fx, files := embedFixture(t)
	ts := fx.server(t)

	allowed := []string{"/widget.js", "/plot.js", "/runtime.js", "/wasm_exec.js", "/asbm.wasm", "/asbm.wasm.gz", "/api/models",
		"/weights/8gaussians.msgpack", "/weights/moons.msgpack", "/weights/missing.msgpack"}
	for _, p := range allowed {
		for _, ae := range []string{"", "gzip"} {
			res, body := get(t, ts.URL+p, ae)
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("GET %s (Accept-Encoding %q) = %d: Access-Control-Allow-Origin %q, want *", p, ae, res.StatusCode, got)
			}
			exp := res.Header.Get("Access-Control-Expose-Headers")
			for _, h := range []string{"Content-Length", "Content-Encoding", "X-Decoded-Content-Length"} {
				if !strings.Contains(exp, h) {
					t.Errorf("GET %s: Access-Control-Expose-Headers %q lacks %s", p, exp, h)
				}
			}
			if want, ok := files[strings.TrimPrefix(p, "/")]; ok && ae == "" && !bytes.Equal(body, want) {
				t.Errorf("GET %s: body differs from the file", p)
			}
		}
	}
	// The wasm's decoded size is exposed so a progress bar can use it under gzip.
	res, _ := get(t, ts.URL+"/asbm.wasm", "gzip")
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("X-Decoded-Content-Length") == "" {
		t.Errorf("asbm.wasm with gzip: Content-Encoding %q X-Decoded-Content-Length %q",
			res.Header.Get("Content-Encoding"), res.Header.Get("X-Decoded-Content-Length"))
	}

	for _, p := range []string{"/", "/index.html", "/app.js", "/embed", "/embed.html", "/embed.js", "/blog.html",
		"/small.css", "/plain.wasm", "/assets/a.txt", "/nope.js", "/widget.js.map", "/xwidget.js"} {
		res, _ := get(t, ts.URL+p, "")
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q, want none", p, got)
		}
	}
}
