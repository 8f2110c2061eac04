package server

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"asbm/weights"

	"github.com/labstack/echo/v4"
)

// maxSubsets bounds how many network subsets (file version × nets) the server keeps encoded; the
// page asks for at most three per model version, so this is never reached in normal use.
const maxSubsets = 64

// subsetCache holds the encoded network subsets of model files, keyed by file and nets and
// checked against the source's size and modification time like fileCache.
type subsetCache struct {
	mu sync.Mutex
	m  map[string]subset
}

type subset struct {
	size  int64
	mtime time.Time
	data  []byte
}

func newSubsetCache() *subsetCache { return &subsetCache{m: map[string]subset{}} }

// parseNets reads a ?nets= value: comma-separated network prefixes, each a plain name. It returns
// them sorted without duplicates, so "gen,score" and "score,gen,score" name one subset.
func parseNets(q string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(q, ",") {
		n = strings.TrimSpace(n)
		if n == "" || len(n) > 64 || strings.ContainsAny(n, "/\\") {
			return nil, fmt.Errorf("nets=%q: want comma-separated network names such as score,control", q)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// subsetOf returns the model file (open as f, Stat st) cut down to the networks nets: the same
// magic, version, arch and metadata, and only the tensors named "<net>/…" for those nets, in file
// order. A net the file lacks is an error naming the ones it has.
func (sc *subsetCache) subsetOf(key string, f *os.File, st fs.FileInfo, nets []string) ([]byte, error) {
	ck := key + "?nets=" + strings.Join(nets, ",")
	sc.mu.Lock()
	if s, ok := sc.m[ck]; ok && s.size == st.Size() && s.mtime.Equal(st.ModTime()) {
		sc.mu.Unlock()
		return s.data, nil
	}
	sc.mu.Unlock()
	if st.Size() > maxModelBytes {
		return nil, fmt.Errorf("file larger than 256 MiB")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxModelBytes+1))
	if err != nil {
		return nil, err
	}
	file, err := weights.Decode(data)
	if err != nil {
		return nil, err
	}
	has := netsOf(file)
	for _, n := range nets {
		if !slices.Contains(has, n) {
			return nil, fmt.Errorf("the file has no network %q (it has %s)", n, strings.Join(has, ", "))
		}
	}
	var kept []weights.Tensor
	for _, t := range file.Tensors {
		if p, _, ok := strings.Cut(t.Name, "/"); ok && slices.Contains(nets, p) {
			kept = append(kept, t)
		}
	}
	file.Tensors = kept
	var buf bytes.Buffer
	if err := weights.Encode(&buf, file); err != nil {
		return nil, err
	}
	sc.mu.Lock()
	if len(sc.m) >= maxSubsets {
		clear(sc.m)
	}
	sc.m[ck] = subset{size: st.Size(), mtime: st.ModTime(), data: buf.Bytes()}
	sc.mu.Unlock()
	return buf.Bytes(), nil
}

// serveSubset answers /weights/<name>.msgpack?nets=a,b: the file with only those networks, so the
// page downloads what its sampler runs (the one-step generator alone, or the score) and never the
// baseline. The subset is derived from one version of the file, so it is cached like the file: a
// ?v= naming the file's hash makes it immutable, and its ETag is the file's hash prefix and the
// nets.
func (h *handler) serveSubset(c echo.Context, name string, f *os.File, st fs.FileInfo) error {
	nets, err := parseNets(c.QueryParam("nets"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	data, err := h.subsets.subsetOf(weightsKey(name), f, st, nets)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("%s: %v", name, err))
	}
	cc := NoCache
	if sum, err := h.files.sum(weightsKey(name), f, st); err == nil {
		c.Response().Header().Set("ETag", `"`+sum[:ShortHashLen]+"-"+strings.Join(nets, "-")+`"`)
		cc = cacheControlFor(c.QueryParam("v"), sum)
	}
	hd := c.Response().Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Cache-Control", cc)
	http.ServeContent(c.Response(), c.Request(), name, st.ModTime(), bytes.NewReader(data))
	return nil
}
