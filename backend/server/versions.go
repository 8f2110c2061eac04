package server

import (
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/labstack/echo/v4"
)

// Cache-Control values. File names carry no content hash, so a plain URL must be revalidated
// every time (a stale asbm.wasm next to a fresh wasm_exec.js breaks the page); a URL whose ?v=
// names the content's hash can never change meaning, so browsers may keep it for a year.
const (
	NoCache   = "no-cache"
	Immutable = "public, max-age=31536000, immutable"
)

// MinVersionLen is the fewest hex digits of the SHA-256 a ?v= must give to be trusted as naming
// the content (48 bits: no accidental match among the versions of one file).
const MinVersionLen = 12

// validVersion says whether v looks like a hash prefix: MinVersionLen to 64 lowercase hex digits.
func validVersion(v string) bool {
	if len(v) < MinVersionLen || len(v) > 64 {
		return false
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// cacheControlFor is Immutable when v is a valid prefix of sum (the file's full hex SHA-256) and
// NoCache otherwise. A wrong or stale v still gets the current file, only uncached: a page that
// stayed open across a redeploy asks for the old hash and must keep working.
func cacheControlFor(v, sum string) string {
	if validVersion(v) && strings.HasPrefix(sum, v) {
		return Immutable
	}
	return NoCache
}

// versionedCacheControl is cacheControlFor the request's ?v= and the hash of the open file f (Stat
// st), cached under key. A request without v costs no hashing.
func (h *handler) versionedCacheControl(c echo.Context, key string, f *os.File, st fs.FileInfo) string {
	v := c.QueryParam("v")
	if v == "" {
		return NoCache
	}
	sum, err := h.files.sum(key, f, st)
	if err != nil {
		return NoCache
	}
	return cacheControlFor(v, sum)
}

// WasmFile is the site's WebAssembly client, whose hash /api/build reports.
const WasmFile = "asbm.wasm"

// Build is the body of GET /api/build: what the page needs to fetch the client with ?v=.
type Build struct {
	// Wasm is the client's URL, "/asbm.wasm".
	Wasm string `json:"wasm"`
	// WasmSHA256 is the first ShortHashLen hex digits of asbm.wasm's SHA-256 ("" when the site has
	// no asbm.wasm): fetch /asbm.wasm?v=WasmSHA256 for a response cached for a year.
	WasmSHA256 string `json:"wasm_sha256"`
	// WasmBytes is asbm.wasm's size before compression (0 when absent).
	WasmBytes int64 `json:"wasm_bytes"`
}

// buildInfo answers GET /api/build.
func (h *handler) buildInfo(c echo.Context) error {
	b := Build{Wasm: "/" + WasmFile}
	if f, st, err := openRegular(h.site, WasmFile); err == nil {
		if sum, err := h.files.sum(siteKey(WasmFile), f, st); err == nil {
			b.WasmSHA256 = sum[:ShortHashLen]
			b.WasmBytes = st.Size()
		}
		f.Close()
	}
	c.Response().Header().Set("Cache-Control", NoCache)
	return c.JSON(http.StatusOK, b)
}
