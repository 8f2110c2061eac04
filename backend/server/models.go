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
	// SHA256 is the first 16 hex digits of the file's SHA-256 (also sent as its ETag).
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

// modelCache remembers decoded descriptions by name, size and modification time, so listing does
// not hash and decode every file on every request.
type modelCache struct {
	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	size  int64
	mtime time.Time
	model Model
}

func newModelCache() *modelCache { return &modelCache{m: map[string]cached{}} }

// entry describes the model file name (with .msgpack) in root.
func (mc *modelCache) entry(root *os.Root, name string) (Model, error) {
	f, err := root.Open(name)
	if err != nil {
		return Model{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Model{}, err
	}
	if !st.Mode().IsRegular() {
		return Model{}, fs.ErrNotExist
	}
	mc.mu.Lock()
	c, ok := mc.m[name]
	mc.mu.Unlock()
	if ok && c.size == st.Size() && c.mtime.Equal(st.ModTime()) {
		return c.model, nil
	}
	m := describe(name, st.Size(), f)
	mc.mu.Lock()
	mc.m[name] = cached{size: st.Size(), mtime: st.ModTime(), model: m}
	mc.mu.Unlock()
	return m, nil
}

// describe hashes and decodes one model file. Decoding errors are reported in Model.Error rather
// than hiding the file, so a broken export shows up in the list with its reason.
func describe(name string, size int64, r io.Reader) Model {
	base := strings.TrimSuffix(name, ".msgpack")
	m := Model{Name: base, URL: "/weights/" + name, Bytes: size, Nets: []string{}}
	if size > maxModelBytes {
		m.Error = "file larger than 256 MiB; not decoded"
		return m
	}
	data, err := io.ReadAll(io.LimitReader(r, maxModelBytes+1))
	if err != nil {
		m.Error = "read: " + err.Error()
		return m
	}
	sum := sha256.Sum256(data)
	m.SHA256 = hex.EncodeToString(sum[:8])
	f, err := weights.Decode(data)
	if err != nil {
		m.Error = err.Error()
		return m
	}
	if ds, ok := f.Meta["dataset"].(string); ok {
		m.Dataset = ds
	}
	seen := map[string]bool{}
	for _, t := range f.Tensors {
		if p, _, ok := strings.Cut(t.Name, "/"); ok && !seen[p] {
			seen[p] = true
			m.Nets = append(m.Nets, p)
		}
	}
	sort.Strings(m.Nets)
	m.Kind = f.Arch.Kind
	return m
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
		m, err := h.models.entry(h.weights, de.Name())
		if err != nil || !m.isGenerator() {
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(http.StatusOK, out)
}
