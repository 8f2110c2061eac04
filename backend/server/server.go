// Package server serves the built site (the page, wasm_exec.js and the pre-compressed asbm.wasm),
// the model files and a small JSON API over HTTP with echo v4. It is what `backend serve` runs; any
// static host can serve dist/ and weights/ the same way, the API only saves the page from a
// hard-coded model list and lets it use long-lived caching.
//
// Routes:
//
//	GET /                      dist/index.html (directories serve their index.html, never a listing)
//	GET /<file>                a file under Config.Site
//	GET /asbm.wasm[?v=HASH]    the client; sent from asbm.wasm.br (Content-Encoding: br) or
//	                           asbm.wasm.gz (gzip) as Accept-Encoding allows, br first at equal q,
//	                           else raw; range requests always get the raw file. Any *.wasm alike.
//	GET /weights/<name>.msgpack[?v=HASH]
//	                           a model file from Config.Weights (not compressed: float bytes barely
//	                           compress and an intact Content-Length lets the page show progress);
//	                           ETag: its SHA-256 prefix
//	GET /weights/<name>.msgpack?nets=score[,control,…][&v=HASH]
//	                           the same file with only the named networks (arch and metadata kept),
//	                           so the page fetches what its sampler runs; 400 names the file's nets
//	                           when it lacks one. A static host ignores the query and sends the whole
//	                           file, which the page loads just the same.
//	GET /api/models            the *.msgpack files in Config.Weights: name, bytes, sha256 prefix, dataset
//	GET /api/build             {"wasm", "wasm_sha256", "wasm_bytes"}: the client's hash for ?v=
//	GET /embed                 dist/embed.html: the widget alone, for iframes on any site
//
// Caching: every response says Cache-Control: no-cache (file names carry no hash), except
// asbm.wasm and model files requested with ?v=HASH where HASH is 12 to 64 lowercase hex digits
// that begin the file's current SHA-256 (the sha256 of /api/models and the wasm_sha256 of
// /api/build are 16 of them): those say public, max-age=31536000, immutable. A wrong or stale
// HASH gets the current file with no-cache, never an error, so a page open across a redeploy
// still loads. Each file is hashed once per (size, modification time).
//
// Framing: every response says X-Frame-Options: SAMEORIGIN and frame-ancestors 'self', except
// /embed, which any page may frame (frame-ancestors *, no X-Frame-Options). CORS
// (Access-Control-Allow-Origin: *) is sent only for what the widget loads from another origin:
// widget.js and the modules it imports, wasm_exec.js, asbm.wasm, /api/models, /api/build and
// /weights/*.
//
// Every file is opened through an os.Root, so no request path can leave its folder, and paths with
// "..", backslashes or NUL bytes (raw or percent-encoded) are refused before that.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// Config says which folders the server reads.
type Config struct {
	// Site is the built site (dist/): index.html, app.js, style.css, wasm_exec.js, asbm.wasm(.br,
	// .gz).
	Site string
	// Weights is the folder of model files (*.msgpack) listed by /api/models.
	Weights string
}

// BodyLimit is the largest request body accepted. The server has no upload route, so anything
// bigger than a small form is refused before a handler reads it.
const BodyLimit = "64K"

// ContentSecurityPolicy lets the page run its own scripts and instantiate WebAssembly
// ('wasm-unsafe-eval' is what WebAssembly.instantiateStreaming needs) and nothing from elsewhere.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; " +
	"style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'self'"

// EmbedContentSecurityPolicy is ContentSecurityPolicy for /embed: the same, except that any page may
// frame it.
var EmbedContentSecurityPolicy = strings.Replace(ContentSecurityPolicy, "frame-ancestors 'self'", "frame-ancestors *", 1)

// EmbedPath is the route of the frameable widget page.
const EmbedPath = "/embed"

// corsFiles are the site files a page of another origin loads to run the widget: the module, the
// modules it imports, and the Go runtime. Only these (and the API, /weights/*) get CORS.
var corsFiles = map[string]bool{
	"/widget.js": true, "/plot.js": true, "/runtime.js": true, "/wasm_exec.js": true, "/asbm.wasm": true,
	"/asbm.wasm.gz": true, "/asbm.wasm.br": true,
}

// allowsCORS says whether a request path is one of the widget's cross-origin assets.
func allowsCORS(p string) bool {
	return corsFiles[p] || p == "/api/models" || p == "/api/build" || strings.HasPrefix(p, "/weights/")
}

// isEmbed says whether a request path is the frameable page.
func isEmbed(p string) bool { return p == EmbedPath }

// New checks cfg and returns the configured echo instance, ready for Start or httptest.
func New(cfg Config) (*echo.Echo, error) {
	site, err := openDir("site", cfg.Site)
	if err != nil {
		return nil, err
	}
	if _, err := site.Stat("index.html"); err != nil {
		site.Close()
		return nil, fmt.Errorf("site folder %s has no index.html: build it first (./build.sh build)", cfg.Site)
	}
	wts, err := openDir("weights", cfg.Weights)
	if err != nil {
		site.Close()
		return nil, err
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Server.ReadHeaderTimeout = 10 * time.Second
	e.Server.ReadTimeout = 30 * time.Second
	e.Server.IdleTimeout = 120 * time.Second
	e.Server.MaxHeaderBytes = 64 << 10

	e.Use(middleware.Recover())
	e.Use(middleware.BodyLimit(BodyLimit))
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		Skipper:               func(c echo.Context) bool { return isEmbed(c.Request().URL.Path) },
		XSSProtection:         "0", // the legacy XSS auditor is gone; CSP does the job
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "SAMEORIGIN",
		ContentSecurityPolicy: ContentSecurityPolicy,
		ReferrerPolicy:        "no-referrer",
	}))
	// /embed is meant to be framed by other sites: no X-Frame-Options (it has no "allow all"
	// value), and frame-ancestors * in its CSP.
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		Skipper:               func(c echo.Context) bool { return !isEmbed(c.Request().URL.Path) },
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		ContentSecurityPolicy: EmbedContentSecurityPolicy,
		ReferrerPolicy:        "no-referrer",
	}))
	e.Use(corsForWidget)
	e.Use(middleware.GzipWithConfig(middleware.GzipConfig{
		Level:     6,
		MinLength: 1024,
		Skipper:   skipGzip,
	}))

	h := &handler{site: site, weights: wts, files: newFileCache(), subsets: newSubsetCache()}
	// HEAD is answered like GET (http.ServeContent sends no body), so curl -I and link checkers work.
	get := []string{http.MethodGet, http.MethodHead}
	e.Match(get, "/api/models", h.listModels)
	e.Match(get, "/api/build", h.buildInfo)
	e.Match(get, "/weights/*", h.serveWeights)
	e.Match(get, EmbedPath, h.serveEmbed)
	e.Match(get, "/*", h.serveSite)
	// The roots stay open for the life of the process: echo has no close hook and the server
	// lives until the command exits.
	return e, nil
}

// Run serves cfg on addr until ctx is cancelled, then shuts down gracefully (in-flight requests
// get up to 10 s). It prints the page's URL on stdout. An addr with port 0 picks a free port, and
// the URL printed is the real one.
func Run(ctx context.Context, addr string, cfg Config) error {
	return run(ctx, addr, cfg, os.Stdout)
}

func run(ctx context.Context, addr string, cfg Config, out io.Writer) error {
	e, err := New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	e.Listener = ln
	fmt.Fprintf(out, "serving %s on %s\n", cfg.Site, pageURL(ln.Addr()))
	if !isLoopback(ln.Addr()) {
		fmt.Fprintln(out, "note: WebGPU needs a secure context: open the page via localhost or put HTTPS in front")
	}

	errc := make(chan error, 1)
	go func() { errc <- e.Start("") }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// pageURL is the URL to open for a listener address; an unspecified host becomes localhost, which
// browsers treat as a secure context.
func pageURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String() + "/"
	}
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(ta.Port)) + "/"
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && (ta.IP.IsLoopback() || ta.IP.IsUnspecified())
}

func openDir(what, dir string) (*os.Root, error) {
	if dir == "" {
		return nil, fmt.Errorf("no %s folder given", what)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%s folder: %w", what, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s folder %s is not a directory", what, dir)
	}
	return os.OpenRoot(dir)
}

// skipGzip leaves out responses that are compressed already (the wasm is pre-compressed, images),
// the model files (see the package comment) and range requests (a gzipped range is meaningless).
func skipGzip(c echo.Context) bool {
	r := c.Request()
	if r.Header.Get("Range") != "" {
		return true
	}
	p := strings.ToLower(r.URL.Path)
	for _, ext := range []string{".wasm", ".gz", ".br", ".msgpack", ".png", ".jpg", ".jpeg", ".webp", ".ico"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// corsForWidget lets pages of any origin read the widget's assets (module scripts and fetches are
// CORS requests). They are public, need no credentials, and the widget sends no custom headers,
// so GET/HEAD with a wildcard origin is all it takes; no preflight is ever needed. The exposed
// headers let the widget's progress bar tell the decoded size from the compressed one.
func corsForWidget(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if allowsCORS(c.Request().URL.Path) {
			h := c.Response().Header()
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Encoding, X-Decoded-Content-Length, ETag")
			// A cross-origin module needs this if the embedding page uses COEP: require-corp.
			h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		}
		return next(c)
	}
}
