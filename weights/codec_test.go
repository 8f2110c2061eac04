package weights

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// randomFile builds a valid file shaped like a real model: an MLP's tensors under two prefixes,
// one of them stored as f16, random values, and meta of every supported kind.
func randomFile(t testing.TB, seed uint64) *File {
	r := rand.New(rand.NewPCG(seed, 7))
	a := Arch{Kind: "mlp", Dim: 1 + r.IntN(3), Hidden: 1 + r.IntN(9), Layers: 1 + r.IntN(3), Fourier: r.IntN(4)}
	f := New(a)
	for _, prefix := range []string{"score/", "gen/"} {
		in := a.Dim + 2*a.Fourier
		for i := 0; i < a.Layers; i++ {
			add(t, f, prefix == "gen/", fmt.Sprintf("%sl%d.w", prefix, i), []int{in, a.Hidden}, r)
			add(t, f, prefix == "gen/", fmt.Sprintf("%sl%d.b", prefix, i), []int{a.Hidden}, r)
			in = a.Hidden
		}
		add(t, f, prefix == "gen/", prefix+"out.w", []int{in, a.Dim}, r)
		add(t, f, prefix == "gen/", prefix+"out.b", []int{a.Dim}, r)
	}
	f.Meta = map[string]any{
		"beta0":   0.1,
		"beta1":   4.0,
		"sigma_v": float32(1),
		"dataset": "8gaussians",
		"steps":   20000,
		"i8":      int8(-3),
		"i16":     int16(-300),
		"i32":     int32(70000),
		"u8":      uint8(200),
		"u16":     uint16(60000),
		"u32":     uint32(1 << 31),
		"u64":     uint64(1 << 63),
		"flag":    true,
		"none":    nil,
		"bytes":   []byte{1, 2, 3},
		"list":    []float64{1, 2.5},
		"mixed":   []any{"a", int64(-1), false},
		"nested":  map[string]any{"swd": map[string]float64{"nfe1": 0.3, "nfe100": 0.05}, "empty": []any{}},
		"nan":     math.NaN(),
		"commit":  fmt.Sprintf("%016x", r.Uint64()),
	}
	return f
}

// add appends a tensor of normal values as f32, or as f16 when half is set.
func add(t testing.TB, f *File, half bool, name string, shape []int, r *rand.Rand) {
	n := 1
	for _, s := range shape {
		n *= s
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	if !half {
		f.AddF32(name, shape, v)
		return
	}
	if err := f.AddF16(name, shape, v); err != nil {
		t.Fatal(err)
	}
}

// encode is Encode into a byte slice.
func encode(t testing.TB, f *File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rawEncode writes f with the real encoder but without validation, to build invalid files.
func rawEncode(t testing.TB, f *File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := encodeFile(msgpack.NewEncoder(&b), f); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// equalFiles compares two files like reflect.DeepEqual, except that NaN meta values are equal to
// NaN values of the same type (a metric may legitimately be NaN).
func equalFiles(a, b *File) bool {
	if a.Magic != b.Magic || a.Version != b.Version || !a.Arch.Equal(b.Arch) || !reflect.DeepEqual(a.Tensors, b.Tensors) {
		return false
	}
	return equalMeta(a.Meta, b.Meta)
}

func equalMeta(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	case float32:
		y, ok := b.(float32)
		return ok && (x == y || x != x && y != y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !equalMeta(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equalMeta(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestRoundTrip(t *testing.T) {
	for seed := range uint64(5) {
		f := randomFile(t, seed)
		data := encode(t, f)
		g, err := Decode(data)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if f.Magic != g.Magic || f.Version != g.Version || !f.Arch.Equal(g.Arch) || !reflect.DeepEqual(f.Tensors, g.Tensors) {
			t.Fatalf("seed %d: header or tensors differ after a round trip", seed)
		}
		for _, name := range []string{"score/l0.w", "gen/out.b"} {
			a, sa, err1 := f.Float32(name)
			b, sb, err2 := g.Float32(name)
			if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) || !reflect.DeepEqual(sa, sb) {
				t.Fatalf("seed %d: Float32(%q) differs: %v %v", seed, name, err1, err2)
			}
		}
		// Meta numbers come back in the width they were written with; int becomes int64.
		for key, want := range map[string]float64{"beta0": 0.1, "beta1": 4, "sigma_v": 1, "steps": 20000, "i8": -3,
			"i16": -300, "i32": 70000, "u8": 200, "u16": 60000, "u32": 1 << 31, "u64": 1 << 63} {
			if got, ok := g.MetaFloat(key); !ok || got != want {
				t.Errorf("MetaFloat(%q) = %v, %v; want %v", key, got, ok, want)
			}
		}
		if got, ok := g.MetaInt("steps"); !ok || got != 20000 {
			t.Errorf("MetaInt(steps) = %v, %v", got, ok)
		}
		if _, ok := g.MetaInt("u64"); ok {
			t.Errorf("MetaInt(u64 = 2^63) should not fit an int64")
		}
		if _, ok := g.MetaInt("beta0"); ok {
			t.Errorf("MetaInt(beta0 = 0.1) should fail")
		}
		if got, ok := g.MetaString("dataset"); !ok || got != "8gaussians" {
			t.Errorf("MetaString(dataset) = %q, %v", got, ok)
		}
		if _, ok := g.MetaFloat("dataset"); ok {
			t.Errorf("MetaFloat of a string should fail")
		}
		if _, ok := g.MetaString("beta0"); ok {
			t.Errorf("MetaString of a number should fail")
		}
		wantNested := map[string]any{"swd": map[string]any{"nfe1": 0.3, "nfe100": 0.05}, "empty": []any{}}
		if !reflect.DeepEqual(g.Meta["nested"], wantNested) || !reflect.DeepEqual(g.Meta["list"], []any{1.0, 2.5}) ||
			!reflect.DeepEqual(g.Meta["bytes"], []byte{1, 2, 3}) || g.Meta["none"] != nil || g.Meta["flag"] != true {
			t.Errorf("meta decoded as %#v", g.Meta)
		}
		// A decoded file re-encodes to the same bytes and decodes to an equal File.
		data2 := encode(t, g)
		h, err := Decode(data2)
		if err != nil {
			t.Fatal(err)
		}
		if !equalFiles(g, h) || !bytes.Equal(data2, encode(t, h)) {
			t.Fatalf("seed %d: decode∘encode is not stable", seed)
		}
	}
}

func TestEncodeDeterministic(t *testing.T) {
	// Map iteration order is random in Go, so 20 encodings of a file with ~25 meta keys (and
	// nested maps) would differ if the keys were not sorted.
	f := randomFile(t, 9)
	want := encode(t, f)
	for range 20 {
		if !bytes.Equal(encode(t, f), want) {
			t.Fatal("two encodings of the same File differ")
		}
	}
	// Data travels as msgpack bin (code 0xc4–0xc6), never as an array of floats.
	var probe bytes.Buffer
	g := New(Arch{Kind: "mlp", Dim: 2})
	g.AddF32("x", []int{3}, []float32{1, 2, 3})
	if err := Encode(&probe, g); err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(probe.Bytes(), []byte("\xa4data\xc4\x0c")); i < 0 {
		t.Fatalf("tensor data is not written as a bin8 of 12 bytes: % x", probe.Bytes())
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	cases := map[string]func(f *File){
		"nan":      func(f *File) { f.AddF32("x", []int{2}, []float32{1, float32(math.NaN())}) },
		"shape":    func(f *File) { f.AddF32("x", []int{3}, []float32{1, 2}) },
		"dup":      func(f *File) { f.AddF32("x", []int{1}, []float32{1}); f.AddF32("x", []int{1}, []float32{1}) },
		"meta":     func(f *File) { f.Meta["when"] = struct{ A int }{1} },
		"metakey":  func(f *File) { f.Meta["m"] = map[int]int{1: 2} },
		"magic":    func(f *File) { f.Magic = "" },
		"version":  func(f *File) { f.Version = 2 },
		"arch":     func(f *File) { f.Arch.Hidden = -1 },
		"longname": func(f *File) { f.AddF32(strings.Repeat("a", MaxNameLen+1), []int{1}, []float32{1}) },
	}
	for name, mutate := range cases {
		f := New(Arch{Kind: "mlp", Dim: 2})
		mutate(f)
		var b bytes.Buffer
		if err := Encode(&b, f); err == nil {
			t.Errorf("%s: Encode accepted an invalid file", name)
		} else if b.Len() != 0 {
			t.Errorf("%s: Encode wrote %d bytes before failing", name, b.Len())
		}
	}
}

// Raw msgpack pieces for hand-built hostile inputs.
func mpStr(s string) []byte { return append([]byte{0xd9, byte(len(s))}, s...) }
func mpMap(n int) []byte    { return []byte{0xdf, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
func mpArr(n int) []byte    { return []byte{0xdd, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// fixStr is a string the way the encoder writes short ones (fixstr).
func fixStr(s string) []byte { return append([]byte{0xa0 | byte(len(s))}, s...) }

// header is the start of a valid file up to and including the "tensors" key (4 keys so far),
// for a top-level map of n entries.
func header(n int) []byte {
	return cat(mpMap(n), mpStr("magic"), mpStr("ASBM"), mpStr("version"), []byte{1},
		mpStr("arch"), mpMap(1), mpStr("dim"), []byte{2}, mpStr("tensors"))
}

func TestDecodeRejects(t *testing.T) {
	valid := func() *File {
		f := New(Arch{Kind: "mlp", Dim: 2, Hidden: 3, Layers: 1, Fourier: 1})
		f.AddF32("a", []int{2, 3}, []float32{1, 2, 3, 4, 5, 6})
		if err := f.AddF16("b", []int{2}, []float32{1, 2}); err != nil {
			t.Fatal(err)
		}
		f.Meta["beta1"] = 4.0
		return f
	}
	mut := func(m func(f *File)) []byte {
		f := valid()
		m(f)
		return rawEncode(t, f)
	}
	setF32 := func(f *File, name string, i int, v float32) {
		tt, _ := f.Tensor(name)
		binary.LittleEndian.PutUint32(tt.Data[4*i:], math.Float32bits(v))
	}
	good := rawEncode(t, valid())
	deep := cat(header(5), mpArr(0), mpStr("meta"), mpMap(1), mpStr("x"), bytes.Repeat([]byte{0x91}, 100), []byte{1})

	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "the file is empty"},
		{"text", []byte("hello, world"), "not an ASBM weights file"},
		{"json", []byte(`{"magic":"ASBM"}`), "not an ASBM weights file"},
		{"code c1", []byte{0xc1}, "invalid msgpack code 0xc1"},
		{"magic", mut(func(f *File) { f.Magic = "GGUF" }), `magic "GGUF", want "ASBM"`},
		{"magic type", cat(mpMap(1), mpStr("magic"), []byte{7}), "magic is a msgpack integer"},
		{"no magic", cat(mpMap(1), mpStr("version"), []byte{1}), "no magic field"},
		{"newer", mut(func(f *File) { f.Version = 2 }), "written by a newer version 2 of the format; this build reads ≤ 1: update"},
		{"version 0", mut(func(f *File) { f.Version = 0 }), "format version 0 is invalid"},
		{"version type", cat(mpMap(2), mpStr("magic"), mpStr("ASBM"), mpStr("version"), mpStr("1")), "version has msgpack type string, want integer"},
		{"no version", cat(mpMap(1), mpStr("magic"), mpStr("ASBM")), "no version field"},
		{"dtype", mut(func(f *File) { f.Tensors[0].DType = "bf16" }), `tensor "a": unknown dtype "bf16"`},
		{"bytes", mut(func(f *File) { f.Tensors[0].Data = f.Tensors[0].Data[:20] }), `tensor "a": shape [2 3] of f32 needs 24 bytes, data has 20`},
		{"bytes f16", mut(func(f *File) { f.Tensors[1].Data = append(f.Tensors[1].Data, 0, 0) }), `tensor "b": shape [2] of f16 needs 4 bytes, data has 6`},
		{"nan", mut(func(f *File) { setF32(f, "a", 5, float32(math.NaN())) }), `tensor "a": value 5 (index [1 2]) is NaN`},
		{"inf", mut(func(f *File) { setF32(f, "a", 3, float32(math.Inf(-1))) }), `tensor "a": value 3 (index [1 0]) is ±Inf`},
		{"inf f16", mut(func(f *File) { f.Tensors[1].Data[2], f.Tensors[1].Data[3] = 0x00, 0x7c }), `tensor "b": value 1 (index [1]) is ±Inf`},
		{"nan f16", mut(func(f *File) { f.Tensors[1].Data[0], f.Tensors[1].Data[1] = 0x01, 0xfe }), `tensor "b": value 0 (index [0]) is NaN`},
		{"dim 0", mut(func(f *File) { f.Tensors[0].Shape = []int{0, 3} }), "dim = 0 is outside [1, 268435456]"},
		{"dim <0", mut(func(f *File) { f.Tensors[0].Shape = []int{-2, -3} }), "dim = -2 is outside"},
		{"rank 9", mut(func(f *File) { f.Tensors[0].Shape = []int{1, 1, 1, 1, 1, 1, 1, 2, 3} }), "rank 9; the format allows 1 to 8 dims"},
		{"rank 0", mut(func(f *File) { f.Tensors[0].Shape = []int{} }), "rank 0"},
		{"elements", mut(func(f *File) { f.Tensors[0].Shape = []int{1 << 14, 1<<14 + 1} }), "more than 268435456 elements"},
		{"total", mut(func(f *File) { f.Tensors[0].Shape = []int{1 << 27}; f.Tensors[1].Shape = []int{1<<27 + 1} }), "more than 268435456 elements together"},
		{"arch big", mut(func(f *File) { f.Arch.Hidden = MaxArchValue + 1 }), fmt.Sprintf("arch hidden = %d is outside [0, %d]", MaxArchValue+1, MaxArchValue)},
		{"arch neg", mut(func(f *File) { f.Arch.Dim = -1 }), "arch dim = -1 is outside"},
		{"dup top", cat(header(5), mpArr(0), mpStr("arch"), mpMap(0)), `duplicate top-level field "arch"`},
		{"arch field", bytes.Replace(good, fixStr("fourier"), fixStr("fouriez"), 1), `unknown arch field "fouriez"`},
		{"dup tensor", mut(func(f *File) { f.Tensors[1] = f.Tensors[0] }), `duplicate tensor name "a"`},
		{"empty name", mut(func(f *File) { f.Tensors[1].Name = "" }), "tensor 1 has an empty name"},
		{"tensor field", bytes.Replace(good, fixStr("dtype"), fixStr("dtypo"), 1), `unknown field "dtypo"`},
		{"no tensors", cat(mpMap(3), mpStr("magic"), mpStr("ASBM"), mpStr("version"), []byte{1}, mpStr("arch"), mpMap(0)), `no "tensors" field`},
		{"float array", cat(header(4), []byte{0x91, 0x84}, mpStr("name"), mpStr("x"), mpStr("dtype"), mpStr("f32"),
			mpStr("shape"), []byte{0x91, 1}, mpStr("data"), []byte{0x91, 0xca, 0, 0, 0, 0}), `tensor "x" data has msgpack type array, want bin`},
		{"missing data", cat(header(4), []byte{0x91, 0x83}, mpStr("name"), mpStr("x"), mpStr("dtype"), mpStr("f32"),
			mpStr("shape"), []byte{0x91, 1}), `tensor "x" has no "data" field`},
		{"trailing", append(append([]byte{}, good...), 0xc0), "1 unexpected bytes after the end of the file"},
		{"truncated", good[:len(good)-5], "the file ends early"},
		{"truncated head", good[:3], "truncated or corrupt"},
		{"huge bin", cat(header(4), []byte{0x91, 0x84}, mpStr("name"), mpStr("x"), mpStr("dtype"), mpStr("f32"),
			mpStr("shape"), []byte{0x91, 1}, mpStr("data"), []byte{0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}), "declares 4294967295 entries/bytes but only 4 bytes follow"},
		{"huge str", cat(mpMap(1), []byte{0xdb, 0xff, 0xff, 0xff, 0xf0}, []byte("magic")), "declares 4294967280"},
		{"huge array", cat(header(4), mpArr(1<<31)), "declares 2147483648"},
		{"huge map", cat(mpMap(1<<30), mpStr("magic")), "declares 1073741824"},
		{"huge meta", cat(header(5), mpArr(0), mpStr("meta"), mpMap(1), mpStr("x"), mpArr(1<<30), []byte{1}), "declares 1073741824"},
		{"many tensors", cat(header(4), mpArr(MaxTensors+1), bytes.Repeat([]byte{0x80}, MaxTensors+1)), "65537 tensors"},
		{"deep meta", deep, "nested deeper than 16 levels"},
		{"deep skip", cat(mpMap(3), mpStr("magic"), mpStr("ASBM"), mpStr("version"), []byte{1}, mpStr("junk"), bytes.Repeat([]byte{0x91}, 100), []byte{1}), "nested deeper than 16 levels"},
		{"meta ext", cat(header(5), mpArr(0), mpStr("meta"), mpMap(1), mpStr("when"), []byte{0xd6, 0xff, 0, 0, 0, 0}), `meta["when"] is a msgpack extension value`},
		{"meta key", cat(header(5), mpArr(0), mpStr("meta"), mpMap(1), []byte{1}, []byte{1}), "meta key has msgpack type integer, want string"},
		{"meta type", cat(header(5), mpArr(0), mpStr("meta"), mpArr(0)), "meta has msgpack type array, want map"},
	}
	for _, c := range cases {
		f, err := Decode(c.in)
		if err == nil {
			t.Errorf("%s: Decode accepted the input: %+v", c.name, f)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, msg, c.want)
		}
		// Every rejection tells the user what to do.
		if !strings.Contains(msg, "backend export") && !strings.Contains(msg, ": update") {
			t.Errorf("%s: error %q gives no advice", c.name, msg)
		}
	}
}

func TestDecodeEveryPrefixFails(t *testing.T) {
	data := encode(t, randomFile(t, 2))
	if _, err := Decode(data); err != nil {
		t.Fatal(err)
	}
	for n := range len(data) {
		if f, err := Decode(data[:n]); err == nil {
			t.Fatalf("Decode accepted the first %d of %d bytes: %+v", n, len(data), f)
		}
	}
}

func TestDecodeBoundedAllocation(t *testing.T) {
	// Each input declares gigabytes (a 4 GiB bin, a 2^31-element array, a 2^30-entry map) in a
	// few bytes. msgpack's own decoder would allocate the declared size; ours must not.
	inputs := [][]byte{
		cat(header(4), []byte{0x91, 0x84}, mpStr("name"), mpStr("x"), mpStr("dtype"), mpStr("f32"),
			mpStr("shape"), []byte{0x91, 1}, mpStr("data"), []byte{0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}),
		cat(header(4), mpArr(1<<31), bytes.Repeat([]byte{0x80}, 64)),
		cat(header(5), mpArr(0), mpStr("meta"), mpMap(1<<30), bytes.Repeat([]byte{0xa0, 0xc0}, 64)),
	}
	for i, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Decode(in)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("input %d accepted", i)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("input %d (%d bytes): Decode allocated %d bytes", i, len(in), alloc)
		}
	}
}

func TestDecodeSkipsUnknownTopLevel(t *testing.T) {
	f := New(Arch{Kind: "mlp", Dim: 2})
	f.AddF32("x", []int{1}, []float32{3})
	in := cat(mpMap(6), rawEncode(t, f)[1:], mpStr("comment"), mpMap(1), mpStr("k"), []byte{0x92, 0xc3, 0xc4, 1, 9})
	g, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	if !equalFiles(f, g) {
		t.Fatalf("got %+v", g)
	}
}

func TestWriteReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.msgpack")
	f := randomFile(t, 4)
	if err := WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	g, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Tensors, g.Tensors) || !f.Arch.Equal(g.Arch) {
		t.Fatal("ReadFile(WriteFile(f)) differs from f")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	old, _ := os.ReadFile(path)

	// A failed write (invalid file) leaves the old file untouched and no temporary behind.
	bad := randomFile(t, 5)
	bad.Tensors[0].Data = bad.Tensors[0].Data[:1]
	if err := WriteFile(path, bad); err == nil {
		t.Fatal("WriteFile accepted an invalid file")
	}
	// A write that fails after the temporary file is complete must not leave anything either: a
	// non-empty directory in the way of the final name makes the rename fail.
	if err := WriteFile(filepath.Join(dir, "sub"), f); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "sub"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "x"), nil, 0o644)
	if err := WriteFile(filepath.Join(dir, "sub"), f); err == nil {
		t.Fatal("WriteFile over a non-empty directory succeeded")
	}
	now, _ := os.ReadFile(path)
	if !bytes.Equal(now, old) {
		t.Fatal("a failed WriteFile changed the existing file")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "m.msgpack" && e.Name() != "sub" {
			t.Errorf("left behind %s", e.Name())
		}
	}

	if _, err := ReadFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("ReadFile of a missing file succeeded")
	}
	if _, err := ReadFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("ReadFile of a directory: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "cut"), old[:len(old)/2], 0o644)
	if _, err := ReadFile(filepath.Join(dir, "cut")); err == nil || !strings.Contains(err.Error(), "cut: weights:") {
		t.Errorf("ReadFile of a truncated file: %v (want the path in the error)", err)
	}
}

func TestFloat32Errors(t *testing.T) {
	f := New(Arch{Kind: "mlp", Dim: 2})
	f.AddF32("x", []int{2}, []float32{1})
	f.Tensors = append(f.Tensors, Tensor{Name: "q", DType: "i8", Shape: []int{1}, Data: []byte{1}})
	for name, want := range map[string]string{"x": "needs 8 bytes, data has 4", "q": "unknown dtype", "nope": `no tensor "nope"`} {
		if _, _, err := f.Float32(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Float32(%q) = %v, want %q", name, err, want)
		}
	}
	if tt, ok := f.Tensor("x"); !ok || tt != &f.Tensors[0] {
		t.Error("Tensor(x) should point into f.Tensors")
	}
	if _, ok := f.Tensor("nope"); ok {
		t.Error("Tensor(nope) found something")
	}
}

// TestUNetArchRoundTrip checks the U-Net fields survive a write and read, that MLP files carry none
// of them, and that hostile mults are refused.
func TestUNetArchRoundTrip(t *testing.T) {
	u := Arch{Kind: "unet", Dim: 784, Fourier: 16, Channels: 1, Height: 28, Width: 28, Base: 16,
		Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8, TimeEmb: 64}
	f := New(u)
	f.AddF32("w", []int{2}, []float32{1, 2})
	var b bytes.Buffer
	if err := Encode(&b, f); err != nil {
		t.Fatal(err)
	}
	g, err := Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !g.Arch.Equal(u) {
		t.Fatalf("arch %+v came back as %+v", u, g.Arch)
	}
	m := New(Arch{Kind: "mlp", Dim: 2, Hidden: 4, Layers: 1, Fourier: 1})
	m.AddF32("w", []int{1}, []float32{1})
	var mb bytes.Buffer
	if err := Encode(&mb, m); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(mb.Bytes(), []byte("mults")) || bytes.Contains(mb.Bytes(), []byte("channels")) {
		t.Fatal("an MLP file carries U-Net arch fields")
	}
	u.Mults = make([]int, maxMults+1)
	if err := Encode(io.Discard, &File{Magic: Magic, Version: Version, Arch: u, Meta: map[string]any{}}); err == nil || !strings.Contains(err.Error(), "mults") {
		t.Fatalf("%d mults: got %v, want an error naming mults", maxMults+1, err)
	}
}
