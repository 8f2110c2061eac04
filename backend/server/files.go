package server

import (
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// handler holds the opened folders; see New.
type handler struct {
	site    *os.Root
	weights *os.Root
	models  *modelCache
}

// errBadPath is returned for request paths that try to leave their folder or that no file name
// can have; it maps to 400 so probes are visible in logs as such rather than as missing files.
var errBadPath = echo.NewHTTPError(http.StatusBadRequest, "bad path")

// cleanRel turns a decoded URL path into a slash-separated path relative to a served folder.
// It refuses, rather than normalises, anything that names a parent ("..") or could be read as a
// separator or drive on another OS (backslash, colon), and NUL bytes. The empty result means the
// folder itself.
func cleanRel(p string) (string, error) {
	if strings.ContainsAny(p, "\\\x00:") {
		return "", errBadPath
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", errBadPath
		}
	}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "." {
		rel = ""
	}
	return rel, nil
}

// requestPath is the decoded request path made relative by cleanRel. Go has already decoded
// percent escapes in URL.Path (so "%2e%2e%2f" arrives as "../" and is refused); it is never
// decoded a second time, so a double-encoded probe stays a literal, non-existent name.
func requestPath(c echo.Context) (string, error) {
	return cleanRel(c.Request().URL.Path)
}

// serveSite serves a file of the built site; directories serve their index.html.
func (h *handler) serveSite(c echo.Context) error {
	rel, err := requestPath(c)
	if err != nil {
		return err
	}
	name := rel
	if name == "" {
		name = "index.html"
	}
	st, err := h.site.Stat(name)
	if err != nil {
		return notFound(err)
	}
	if st.IsDir() {
		// No listings: a folder is served only through its index.html.
		name = path.Join(name, "index.html")
		if st, err = h.site.Stat(name); err != nil || st.IsDir() {
			return echo.ErrNotFound
		}
	}
	if strings.HasSuffix(name, ".wasm") {
		// The gzip middleware skips .wasm (see skipGzip), so say here that the body depends on it.
		c.Response().Header().Add("Vary", "Accept-Encoding")
	}
	// Range requests get the raw file: a byte range of the gzip stream is of no use to anyone.
	if strings.HasSuffix(name, ".wasm") && c.Request().Header.Get("Range") == "" &&
		acceptsGzip(c.Request().Header.Get("Accept-Encoding")) {
		if gz, err := h.site.Stat(name + ".gz"); err == nil && gz.Mode().IsRegular() {
			hd := c.Response().Header()
			hd.Set("Content-Encoding", "gzip")
			// http.ServeContent leaves Content-Length out once Content-Encoding is set; a
			// download progress bar wants it (the compressed size), and the decoded size too.
			hd.Set("Content-Length", strconv.FormatInt(gz.Size(), 10))
			hd.Set("X-Decoded-Content-Length", strconv.FormatInt(st.Size(), 10))
			return h.serveFile(c, h.site, name+".gz", "application/wasm")
		}
	}
	return h.serveFile(c, h.site, name, "")
}

// serveEmbed serves the frameable widget page (embed.html) at /embed.
func (h *handler) serveEmbed(c echo.Context) error {
	return h.serveFile(c, h.site, "embed.html", "text/html; charset=utf-8")
}

// serveWeights serves one model file by name.
func (h *handler) serveWeights(c echo.Context) error {
	rel, err := requestPath(c)
	if err != nil {
		return err
	}
	name, ok := strings.CutPrefix(rel, "weights/")
	if !ok || !validModelName(name) {
		return echo.ErrNotFound
	}
	if e, err := h.models.entry(h.weights, name); err == nil && e.SHA256 != "" {
		c.Response().Header().Set("ETag", `"`+e.SHA256+`"`)
	}
	return h.serveFile(c, h.weights, name, "application/octet-stream")
}

// validModelName accepts plain file names ending in .msgpack: letters, digits, '.', '_', '-',
// not starting with '.'.
func validModelName(name string) bool {
	base, ok := strings.CutSuffix(name, ".msgpack")
	if !ok || base == "" || base[0] == '.' {
		return false
	}
	for _, r := range base {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// serveFile sends one regular file from root with http.ServeContent (conditional and range
// requests). ctype overrides the type guessed from the extension.
func (h *handler) serveFile(c echo.Context, root *os.Root, name, ctype string) error {
	f, err := root.Open(name)
	if err != nil {
		return notFound(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return notFound(err)
	}
	if !st.Mode().IsRegular() {
		return echo.ErrNotFound
	}
	if ctype == "" {
		ctype = mime.TypeByExtension(path.Ext(name))
	}
	hd := c.Response().Header()
	if ctype != "" {
		hd.Set("Content-Type", ctype)
	}
	// Revalidate every time: file names carry no content hash, and a stale asbm.wasm next to a
	// fresh wasm_exec.js breaks the page.
	hd.Set("Cache-Control", "no-cache")
	http.ServeContent(c.Response(), c.Request(), name, st.ModTime(), f)
	return nil
}

// notFound maps file errors to 404 (missing), 400 (a path os.Root refuses) or 500.
func notFound(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return echo.ErrNotFound
	case strings.Contains(err.Error(), "escapes") || errors.Is(err, fs.ErrInvalid):
		return errBadPath
	case errors.Is(err, fs.ErrPermission):
		return echo.ErrForbidden
	}
	return echo.ErrNotFound
}

// acceptsGzip parses Accept-Encoding properly: "gzip;q=0" is a refusal, "*" an acceptance.
func acceptsGzip(h string) bool {
	star := false
	for _, part := range strings.Split(h, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch coding {
		case "gzip", "x-gzip":
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}
