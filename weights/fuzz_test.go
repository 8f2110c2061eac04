package weights

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode from fuzzSeeds")

// fuzzSeeds are the committed seed inputs of FuzzDecode: valid files and the typical ways a file
// goes wrong.
func fuzzSeeds(t testing.TB) map[string][]byte {
	valid := encode(t, randomFile(t, 1))
	half := New(Arch{Kind: "mlp", Dim: 2, Hidden: 4, Layers: 1})
	if err := half.AddF16("gen/out.w", []int{4, 2}, []float32{0, -1, 2.5, 1e-6, 65504, -3, 0.1, 7}); err != nil {
		t.Fatal(err)
	}
	half.Meta["dataset"] = "moons"
	nan := New(Arch{Kind: "mlp", Dim: 2})
	nan.AddF32("x", []int{2}, []float32{1, float32(math.NaN())})
	newer := New(Arch{Kind: "mlp", Dim: 1})
	newer.Version = 2
	magic := New(Arch{Kind: "mlp", Dim: 1})
	magic.Magic = "GGUF"
	return map[string][]byte{
		"valid":     valid,
		"f16":       encode(t, half),
		"empty":     encode(t, New(Arch{})),
		"truncated": valid[:len(valid)/2],
		"magic":     rawEncode(t, magic),
		"newer":     rawEncode(t, newer),
		"nan":       rawEncode(t, nan),
		"huge-bin": cat(header(4), []byte{0x91, 0x84}, mpStr("name"), mpStr("x"), mpStr("dtype"), mpStr("f32"),
			mpStr("shape"), []byte{0x91, 1}, mpStr("data"), []byte{0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}),
		"deep-meta": cat(header(5), mpArr(0), mpStr("meta"), mpMap(1), mpStr("x"), bytes.Repeat([]byte{0x91}, 20), []byte{1}),
		"text":      []byte("not msgpack at all"),
	}
}

// corpusFile is the on-disk form of one seed in Go's fuzzing corpus format.
func corpusFile(data []byte) []byte {
	return []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data))))
}

// TestFuzzCorpus checks that the committed corpus matches fuzzSeeds, so a format change cannot
// leave the fuzzer starting from stale inputs; -update-corpus rewrites it.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	for name, data := range fuzzSeeds(t) {
		path := filepath.Join(dir, name)
		want := corpusFile(data)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): run go test ./weights -run TestFuzzCorpus -update-corpus", path, err)
		}
	}
}

// FuzzDecode: Decode never panics, and whatever it accepts re-encodes, decodes to an equal File,
// and re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Decode(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := Encode(&b, g); err != nil {
			t.Fatalf("Decode accepted a file that Encode refuses: %v", err)
		}
		h, err := Decode(b.Bytes())
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		if !equalFiles(g, h) {
			t.Fatalf("decode(encode(f)) differs from f:\n%+v\n%+v", g, h)
		}
		var b2 bytes.Buffer
		if err := Encode(&b2, h); err != nil || !bytes.Equal(b.Bytes(), b2.Bytes()) {
			t.Fatalf("encoding is not a fixed point: %v", err)
		}
	})
}
