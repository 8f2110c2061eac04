package server

import (
	"cmp"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// handler holds the opened folders; see New.
type handler struct {
	site    *os.Root
	weights *os.Root
	files   *fileCache
	subsets *subsetCache
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

// serveSite serves a file of the built site; directories serve their index.html, and *.wasm goes
// through serveWasm.
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
		return h.serveWasm(c, name)
	}
	f, st, err := openRegular(h.site, name)
	if err != nil {
		return notFound(err)
	}
	defer f.Close()
	serveOpen(c, f, st, "", NoCache)
	return nil
}

// serveWasm sends a WebAssembly file, or its pre-compressed name.br / name.gz beside it when the
// client accepts that coding (br before gzip at equal q). A ?v= naming the raw file's hash makes
// any of the three immutable (see versionedCacheControl).
func (h *handler) serveWasm(c echo.Context, name string) error {
	// The gzip middleware skips .wasm (see skipGzip), so say here that the body depends on it.
	c.Response().Header().Add("Vary", "Accept-Encoding")
	raw, st, err := openRegular(h.site, name)
	if err != nil {
		return notFound(err)
	}
	defer raw.Close()
	cc := h.versionedCacheControl(c, siteKey(name), raw, st)
	// Range requests get the raw file: a byte range of a compressed stream is of no use to anyone.
	if c.Request().Header.Get("Range") == "" {
		for _, coding := range acceptedCodings(c.Request().Header.Get("Accept-Encoding")) {
			f, cst, ok := h.precompressed(name, coding, st)
			if !ok {
				continue // not built (an older build.sh): the next coding, or the raw file
			}
			defer f.Close()
			hd := c.Response().Header()
			hd.Set("Content-Encoding", coding)
			// http.ServeContent leaves Content-Length out once Content-Encoding is set; a
			// download progress bar wants it (the compressed size), and the decoded size too.
			hd.Set("Content-Length", strconv.FormatInt(cst.Size(), 10))
			hd.Set("X-Decoded-Content-Length", strconv.FormatInt(st.Size(), 10))
			serveOpen(c, f, cst, "application/wasm", cc)
			return nil
		}
	}
	serveOpen(c, raw, st, "application/wasm", cc)
	return nil
}

// precompressed opens the pre-compressed copy of the site file name for coding, if there is one
// that is a regular file no older than the raw file (rawSt): a copy older than the file it
// compresses was left by an earlier build, and sending it, perhaps as immutable, would ship stale
// code.
func (h *handler) precompressed(name, coding string, rawSt fs.FileInfo) (*os.File, fs.FileInfo, bool) {
	ext, ok := codingExt[coding]
	if !ok {
		return nil, nil, false
	}
	f, st, err := openRegular(h.site, name+ext)
	if err != nil {
		return nil, nil, false
	}
	if st.ModTime().Before(rawSt.ModTime()) {
		f.Close()
		return nil, nil, false
	}
	return f, st, true
}

// serveEmbed serves the frameable widget page (embed.html) at /embed.
func (h *handler) serveEmbed(c echo.Context) error {
	f, st, err := openRegular(h.site, "embed.html")
	if err != nil {
		return notFound(err)
	}
	defer f.Close()
	serveOpen(c, f, st, "text/html; charset=utf-8", NoCache)
	return nil
}

// serveWeights serves one model file by name, with its hash prefix as ETag and, for a ?v= naming
// that hash, a year of caching; with ?nets= only those networks of it (serveSubset).
func (h *handler) serveWeights(c echo.Context) error {
	rel, err := requestPath(c)
	if err != nil {
		return err
	}
	name, ok := strings.CutPrefix(rel, "weights/")
	if !ok || !validModelName(name) {
		return echo.ErrNotFound
	}
	f, st, err := openRegular(h.weights, name)
	if err != nil {
		return notFound(err)
	}
	defer f.Close()
	if c.QueryParams().Has("nets") {
		return h.serveSubset(c, name, f, st)
	}
	cc := NoCache
	if sum, err := h.files.sum(weightsKey(name), f, st); err == nil {
		c.Response().Header().Set("ETag", `"`+sum[:ShortHashLen]+`"`)
		cc = cacheControlFor(c.QueryParam("v"), sum)
	}
	serveOpen(c, f, st, "application/octet-stream", cc)
	return nil
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

// openRegular opens name in root and stats it; anything but a regular file is fs.ErrNotExist
// (directories, devices; symlinks leaving root are refused by os.Root itself).
func openRegular(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, st, nil
}

// serveOpen sends the open regular file f (Stat st) with http.ServeContent (conditional and range
// requests) and the given Cache-Control. ctype overrides the type guessed from the extension.
func serveOpen(c echo.Context, f *os.File, st fs.FileInfo, ctype, cacheControl string) {
	if ctype == "" {
		ctype = mime.TypeByExtension(path.Ext(st.Name()))
	}
	hd := c.Response().Header()
	if ctype != "" {
		hd.Set("Content-Type", ctype)
	}
	hd.Set("Cache-Control", cacheControl)
	http.ServeContent(c.Response(), c.Request(), st.Name(), st.ModTime(), f)
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

// codingExt maps each content coding that may be stored pre-compressed to its file suffix, and
// codingOrder is the server's preference among them when the client rates them equally: br is
// about a quarter smaller than gzip -9 on the wasm (1.07 vs 1.44 MB).
var (
	codingExt   = map[string]string{"br": ".br", "gzip": ".gz"}
	codingOrder = []string{"br", "gzip"}
)

// acceptedCodings parses an Accept-Encoding header (RFC 9110 §12.5.3) and returns the codings of
// codingOrder the client accepts, best first: by q, then by codingOrder. "coding;q=0" is a
// refusal, "*" rates every coding not named, x-gzip is gzip, and a coding is dropped when the
// client rates identity higher. The first entry for a coding counts; an unparsable q counts as 1.
func acceptedCodings(header string) []string {
	q := map[string]float64{}
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding == "" {
			continue
		}
		if coding == "x-gzip" {
			coding = "gzip"
		}
		w := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					w = min(max(f, 0), 1) // NaN stays NaN and fails every comparison below
				}
			}
		}
		if _, seen := q[coding]; !seen {
			q[coding] = w
		}
	}
	rate := func(coding string) float64 {
		if w, ok := q[coding]; ok {
			return w
		}
		return q["*"] // 0 when absent: a coding the client did not name is not acceptable
	}
	// identity is acceptable unless refused, but only an explicit rating outranks a compressed
	// coding: browsers list only the codings they decode.
	floor := 0.0
	if w, ok := q["identity"]; ok {
		floor = w
	}
	var out []string
	for _, c := range codingOrder {
		if w := rate(c); w > 0 && w >= floor {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return cmp.Compare(rate(b), rate(a)) })
	return out
}
