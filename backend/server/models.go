package server

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"asbm/weights"

	"github.com/labstack/echo/v4"
)

// ShortHashLen is how many hex digits of a SHA-256 the API lists (/api/models, /api/build): 64
// bits, plenty to tell versions of one file apart, and what the page's Cache API keys use.
const ShortHashLen = 16

// maxModelBytes bounds what /api/models reads to describe one file; bigger files are listed with
// an error instead of being decoded.
const maxModelBytes = 256 << 20

// Model is one entry of GET /api/models.
type Model struct {
	// Name is the file name without .msgpack, e.g. "8gaussians".
	Name string `json:"name"`
	// URL is where the page fetches the file.
	URL string `json:"url"`
	// Bytes is the file size.
	Bytes int64 `json:"bytes"`
	// SHA256 is the first 16 hex digits of the file's SHA-256 (also sent as its ETag). Fetching
	// URL with ?v=SHA256 makes the response cacheable for a year (see the package comment).
	SHA256 string `json:"sha256"`
	// Dataset is meta["dataset"] ("" when absent).
	Dataset string `json:"dataset"`
	// Nets lists the network prefixes the file holds, e.g. ["control", "gen", "score"].
	Nets []string `json:"nets"`
	// Kind is the networks' family: "mlp" (2-D toys) or "unet" (images).
	Kind string `json:"kind,omitempty"`
	// Error says why the file could not be decoded; such a model cannot be loaded by the page.
	Error string `json:"error,omitempty"`
}

// fileCache remembers, per served file, its SHA-256 and (for model files) its description, keyed
// by folder, name, size and modification time: every file is hashed once per modification, and
// /api/models, the weights' ETag, the ?v= check and /api/build all read the same entry.
type fileCache struct {
	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	size  int64
	mtime time.Time
	sum   string // full SHA-256, lowercase hex
	model *Model // nil until a model description is asked for
}

func newFileCache() *fileCache { return &fileCache{m: map[string]cached{}} }

// lookup returns the entry for key if it still describes st.
func (fc *fileCache) lookup(key string, st fs.FileInfo) (cached, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	c, ok := fc.m[key]
	return c, ok && c.size == st.Size() && c.mtime.Equal(st.ModTime())
}

func (fc *fileCache) store(key string, c cached) {
	fc.mu.Lock()
	fc.m[key] = c
	fc.mu.Unlock()
}

// sum returns the full hex SHA-256 of the open file f whose Stat is st, cached under key (the
// folder and the file name, e.g. "site/asbm.wasm"). Hashing the descriptor that is then served,
// not a second open of the name, keeps the hash and the body in agreement while a file is replaced.
// It leaves f's offset at the start.
func (fc *fileCache) sum(key string, f *os.File, st fs.FileInfo) (string, error) {
	if c, ok := fc.lookup(key, st); ok {
		return c.sum, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	s := hex.EncodeToString(h.Sum(nil))
	fc.store(key, cached{size: st.Size(), mtime: st.ModTime(), sum: s})
	return s, nil
}

// model describes the model file name (with .msgpack) in the weights folder root.
func (fc *fileCache) model(root *os.Root, name string) (Model, error) {
	f, st, err := openRegular(root, name)
	if err != nil {
		return Model{}, err
	}
	defer f.Close()
	key := weightsKey(name)
	if c, ok := fc.lookup(key, st); ok && c.model != nil {
		return *c.model, nil
	}
	s, err := fc.sum(key, f, st)
	if err != nil {
		return Model{}, err
	}
	m := describe(name, st.Size(), s, f)
	fc.store(key, cached{size: st.Size(), mtime: st.ModTime(), sum: s, model: &m})
	return m, nil
}

// weightsKey and siteKey are fileCache keys; the two folders may hold files of the same name.
func weightsKey(name string) string { return "weights/" + name }
func siteKey(name string) string    { return "site/" + name }

// describe decodes one model file whose full hex SHA-256 is sum. Decoding errors are reported in
// Model.Error rather than hiding the file, so a broken export shows up in the list with its reason.
func describe(name string, size int64, sum string, r io.Reader) Model {
	base := strings.TrimSuffix(name, ".msgpack")
	m := Model{Name: base, URL: "/weights/" + name, Bytes: size, SHA256: sum[:ShortHashLen], Nets: []string{}}
	if size > maxModelBytes {
		m.Error = "file larger than 256 MiB; not decoded"
		return m
	}
	data, err := io.ReadAll(io.LimitReader(r, maxModelBytes+1))
	if err != nil {
		m.Error = "read: " + err.Error()
		return m
	}
	f, err := weights.Decode(data)
	if err != nil {
		m.Error = err.Error()
		return m
	}
	if ds, ok := f.Meta["dataset"].(string); ok {
		m.Dataset = ds
	}
	m.Nets = netsOf(f)
	m.Kind = f.Arch.Kind
	return m
}

// netsOf lists the networks of a model file, sorted: the prefixes before "/" of its tensor names.
func netsOf(f *weights.File) []string {
	nets := []string{}
	for _, t := range f.Tensors {
		if p, _, ok := strings.Cut(t.Name, "/"); ok && !slices.Contains(nets, p) {
			nets = append(nets, p)
		}
	}
	sort.Strings(nets)
	return nets
}

// isGenerator reports whether a described file is a generative model the page can sample (it has
// a score network) or a broken file whose error the list should show; the FID feature networks
// that share the weights folder are neither.
func (m Model) isGenerator() bool {
	return m.Error != "" || slices.Contains(m.Nets, "score")
}

// listModels answers GET /api/models with every regular *.msgpack model file in the weights
// folder (not the FID feature networks), sorted by name.
func (h *handler) listModels(c echo.Context) error {
	d, err := h.weights.Open(".")
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "cannot read the weights folder")
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return echo.NewHTTPError(http.StatusInternalServerError, "cannot read the weights folder")
	}
	out := []Model{}
	for _, de := range ents {
		if !de.Type().IsRegular() || !validModelName(de.Name()) {
			continue
		}
		m, err := h.files.model(h.weights, de.Name())
		if err != nil || !m.isGenerator() {
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	c.Response().Header().Set("Cache-Control", NoCache)
	return c.JSON(http.StatusOK, out)
}
