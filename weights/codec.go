package weights

// codec.go is the decoder (Decode, ReadFile and the msgpack reader); the encoder is encode.go. It is
// long (≈700 lines) because the reader is hand-written: it checks every length against what is left
// before allocating, so an untrusted or truncated file gives an error and never a panic or a huge
// allocation (fuzz_test.go), and its methods share one error vocabulary, so they stay together.

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/vmihailenco/msgpack/v5"
)

// ReadFile reads and decodes the weights file at path (see Decode). It refuses files larger than
// the format's limits allow before reading them.
func ReadFile(path string) (*File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("weights: %s is not a regular file", path)
	}
	if st.Size() > maxFileBytes {
		return nil, fmt.Errorf("weights: %s is %d bytes, more than any valid weights file (%d): is it the right file?", path, st.Size(), int64(maxFileBytes))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	f, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Decode parses and validates a weights file. It never panics, and its allocations are bounded by
// the input: every length the input declares is checked against the bytes that remain before
// anything is allocated, and Meta is limited to 2^20 values nested at most 16 deep. The result
// passes Validate (magic, version, dtypes, shape/byte counts, NaN/Inf, size limits, duplicate
// names). Errors say what is wrong and what to do. The magic and version are checked first, so a
// foreign file or one from a newer format version is reported as such even when the rest would
// not parse. The returned tensors do not alias data. Unknown top-level keys are skipped; unknown
// keys inside arch or a tensor are errors. Meta comes back non-nil, with numbers in the Go type of
// their msgpack encoding (use MetaFloat, MetaInt, MetaString).
func Decode(data []byte) (*File, error) {
	magic, version, err := decodeHeader(newReader(data))
	if err != nil {
		return nil, err
	}
	if magic != Magic {
		return nil, fmt.Errorf("weights: not an ASBM weights file (magic %q, want %q): pass a model file written by `backend train` or `backend export`", magic, Magic)
	}
	if version > Version {
		return nil, fmt.Errorf("weights: written by a newer version %d of the format; this build reads ≤ %d: update (git pull and rebuild) to load it", version, Version)
	}
	if version < 1 {
		return nil, fmt.Errorf("weights: format version %d is invalid (want 1…%d): the file is corrupt; %s", version, Version, fixExport)
	}
	f, err := decodeBody(newReader(data))
	if err != nil {
		return nil, err
	}
	f.Magic, f.Version = magic, int(version)
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("weights: invalid file: %v; %s", err, fixExport)
	}
	return f, nil
}

// decodeHeader reads only the magic and version, skipping every other value.
func decodeHeader(r *reader) (magic string, version int64, err error) {
	n, err := r.topMapLen()
	if err != nil {
		return "", 0, err
	}
	gotMagic, gotVersion := false, false
	for i := 0; i < n; i++ {
		key, err := r.key("top-level")
		if err != nil {
			return "", 0, err
		}
		switch {
		case key == "magic" && !gotMagic:
			gotMagic = true
			k, _, err := r.peek()
			if err != nil {
				return "", 0, err
			}
			if k != kStr {
				return "", 0, fmt.Errorf("weights: not an ASBM weights file (magic is a msgpack %s, want the string %q): pass a model file written by `backend train` or `backend export`", k, Magic)
			}
			// A long magic is wrong anyway; read at most a little of it for the message.
			if magic, err = r.str("magic", 64); err != nil {
				magic = "<long string>"
				if err := r.skip(0); err != nil {
					return "", 0, err
				}
			}
		case key == "version" && !gotVersion:
			gotVersion = true
			if version, err = r.int("version"); err != nil {
				return "", 0, err
			}
		default:
			if err := r.skip(0); err != nil {
				return "", 0, err
			}
		}
	}
	if !gotMagic {
		return "", 0, fmt.Errorf("weights: not an ASBM weights file (no magic field): pass a model file written by `backend train` or `backend export`")
	}
	if !gotVersion {
		return "", 0, fmt.Errorf("weights: the file has no version field: it is corrupt; %s", fixExport)
	}
	return magic, version, nil
}

// decodeBody reads the arch, tensors and meta (the header fields are skipped: decodeHeader has
// read them).
func decodeBody(r *reader) (*File, error) {
	n, err := r.topMapLen()
	if err != nil {
		return nil, err
	}
	f := &File{Meta: map[string]any{}}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		key, err := r.key("top-level")
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, r.corrupt("duplicate top-level field %q", key)
		}
		seen[key] = true
		switch key {
		case "arch":
			err = r.arch(&f.Arch)
		case "tensors":
			f.Tensors, err = r.tensors()
		case "meta":
			f.Meta, err = r.metaTop()
		default:
			err = r.skip(0)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"arch", "tensors"} {
		if !seen[k] {
			return nil, r.corrupt("no %q field", k)
		}
	}
	if left := r.left(); left != 0 {
		return nil, r.corrupt("%d unexpected bytes after the end of the file", left)
	}
	return f, nil
}

// kind is the type of a msgpack value, as far as the decoder cares.
type kind int

const (
	kNil kind = iota
	kBool
	kInt  // fixints and int8…int64
	kUint // uint8…uint64
	kFloat
	kStr
	kBin
	kArray
	kMap
	kExt
)

func (k kind) String() string {
	return [...]string{"nil", "bool", "integer", "unsigned integer", "float", "string", "bin", "array", "map", "extension"}[k]
}

// reader decodes one msgpack document with github.com/vmihailenco/msgpack/v5, but checks every
// declared length itself first (peek): msgpack's own decoding allocates whatever a str/bin/array
// header declares (up to 4 GiB per value), and its reflection path ignores its allocation limit,
// so handing it a hostile file directly can exhaust memory.
type reader struct {
	buf []byte
	br  *bytes.Reader
	d   *msgpack.Decoder
	// metaNodes counts Meta values decoded so far (bounded by maxMetaNodes).
	metaNodes int
}

func newReader(data []byte) *reader {
	br := bytes.NewReader(data)
	// A *bytes.Reader is an io.ByteScanner, so the decoder reads from it directly without its own
	// buffering: br's position is always the decoder's position, which peek relies on.
	return &reader{buf: data, br: br, d: msgpack.NewDecoder(br)}
}

func (r *reader) off() int  { return len(r.buf) - r.br.Len() }
func (r *reader) left() int { return r.br.Len() }

// corrupt formats an error about a damaged file at the current offset.
func (r *reader) corrupt(format string, args ...any) error {
	return fmt.Errorf("weights: corrupt file at byte %d of %d: %s; %s", r.off(), len(r.buf), fmt.Sprintf(format, args...), fixExport)
}

// truncated is the error for input that ends inside a value.
func (r *reader) truncated() error {
	return fmt.Errorf("weights: the file ends early (%d bytes; a truncated download or copy?): %s", len(r.buf), fixExport)
}

// wrap turns an error from the msgpack decoder into one of ours.
func (r *reader) wrap(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return r.truncated()
	}
	return r.corrupt("%v", err)
}

// peek returns the kind of the next value and, for str, bin, array, map and ext values, the
// length its header declares, without consuming anything. It fails when the header is cut off,
// when the declared length cannot fit in the bytes that remain (every array element takes at
// least one byte, every map entry two), and on the never-used code 0xc1.
func (r *reader) peek() (kind, int, error) {
	p := r.off()
	if p >= len(r.buf) {
		return 0, 0, r.truncated()
	}
	c := r.buf[p]
	be := func(size int) (int, error) { // the big-endian length after the code byte
		if p+1+size > len(r.buf) {
			return 0, r.truncated()
		}
		n := 0
		for _, b := range r.buf[p+1 : p+1+size] {
			n = n<<8 | int(b)
		}
		return n, nil
	}
	var (
		k   kind
		n   int
		hdr int // header bytes after the code byte
		err error
	)
	switch {
	case c <= 0x7f || c >= 0xe0:
		return kInt, 0, nil
	case c <= 0x8f:
		k, n = kMap, int(c&0x0f)
	case c <= 0x9f:
		k, n = kArray, int(c&0x0f)
	case c <= 0xbf:
		k, n = kStr, int(c&0x1f)
	default:
		switch c {
		case 0xc0:
			return kNil, 0, nil
		case 0xc2, 0xc3:
			return kBool, 0, nil
		case 0xca, 0xcb:
			return kFloat, 0, nil
		case 0xcc, 0xcd, 0xce, 0xcf:
			return kUint, 0, nil
		case 0xd0, 0xd1, 0xd2, 0xd3:
			return kInt, 0, nil
		case 0xd9, 0xda, 0xdb:
			k, hdr = kStr, 1<<(c-0xd9)
		case 0xc4, 0xc5, 0xc6:
			k, hdr = kBin, 1<<(c-0xc4)
		case 0xdc, 0xdd:
			k, hdr = kArray, 2<<(c-0xdc)
		case 0xde, 0xdf:
			k, hdr = kMap, 2<<(c-0xde)
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
			k, n, hdr = kExt, 1<<(c-0xd4), 0
		case 0xc7, 0xc8, 0xc9:
			k, hdr = kExt, 1<<(c-0xc7)
		default: // 0xc1
			return 0, 0, r.corrupt("invalid msgpack code 0x%02x (not msgpack data?)", c)
		}
		if hdr > 0 {
			if n, err = be(hdr); err != nil {
				return 0, 0, err
			}
		}
	}
	rest := len(r.buf) - p - 1 - hdr
	need := n
	switch k {
	case kMap:
		need = 2 * n
	case kExt:
		need = n + 1 // the type byte
	}
	if need > rest {
		return 0, 0, fmt.Errorf("weights: a %s at byte %d declares %d entries/bytes but only %d bytes follow (truncated or corrupt file): %s", k, p, n, rest, fixExport)
	}
	return k, n, nil
}

// want peeks and checks that the next value is of kind k, naming it what in the error.
func (r *reader) want(what string, k kind) (int, error) {
	got, n, err := r.peek()
	if err != nil {
		return 0, err
	}
	if got != k {
		return 0, r.corrupt("%s has msgpack type %s, want %s", what, got, k)
	}
	return n, nil
}

// topMapLen reads the header of the document's top-level map.
func (r *reader) topMapLen() (int, error) {
	if len(r.buf) == 0 {
		return 0, fmt.Errorf("weights: the file is empty: %s", fixExport)
	}
	k, n, err := r.peek()
	if err != nil {
		return 0, err
	}
	if k != kMap {
		return 0, fmt.Errorf("weights: not an ASBM weights file (it starts with a msgpack %s, not a map): pass a model file written by `backend train` or `backend export`", k)
	}
	if _, err := r.d.DecodeMapLen(); err != nil {
		return 0, r.wrap(err)
	}
	return n, nil
}

// key reads a map key, which must be a short string.
func (r *reader) key(where string) (string, error) {
	return r.str(where+" key", MaxNameLen)
}

// str reads a string of at most max bytes.
func (r *reader) str(what string, max int) (string, error) {
	n, err := r.want(what, kStr)
	if err != nil {
		return "", err
	}
	if n > max {
		return "", r.corrupt("%s is %d bytes long, at most %d allowed", what, n, max)
	}
	s, err := r.d.DecodeString()
	if err != nil {
		return "", r.wrap(err)
	}
	return s, nil
}

// int reads an integer of any msgpack width that fits in an int64.
func (r *reader) int(what string) (int64, error) {
	k, _, err := r.peek()
	if err != nil {
		return 0, err
	}
	switch k {
	case kInt:
		v, err := r.d.DecodeInt64()
		if err != nil {
			return 0, r.wrap(err)
		}
		return v, nil
	case kUint:
		v, err := r.d.DecodeUint64()
		if err != nil {
			return 0, r.wrap(err)
		}
		if v > math.MaxInt64 {
			return 0, r.corrupt("%s = %d is out of range", what, v)
		}
		return int64(v), nil
	}
	return 0, r.corrupt("%s has msgpack type %s, want integer", what, k)
}

// intIn reads an integer and checks it lies in [lo, hi].
func (r *reader) intIn(what string, lo, hi int64) (int, error) {
	v, err := r.int(what)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		return 0, r.corrupt("%s = %d is outside [%d, %d]", what, v, lo, hi)
	}
	return int(v), nil
}

// bin reads a msgpack bin into a fresh slice.
func (r *reader) bin(what string) ([]byte, error) {
	n, err := r.want(what, kBin)
	if err != nil {
		return nil, err
	}
	if _, err := r.d.DecodeBytesLen(); err != nil {
		return nil, r.wrap(err)
	}
	b := make([]byte, n) // n ≤ the bytes left, checked by peek
	if err := r.d.ReadFull(b); err != nil {
		return nil, r.wrap(err)
	}
	return b, nil
}

// skip consumes one value of any kind without building it, bounding the nesting.
func (r *reader) skip(depth int) error {
	if depth > maxMetaDepth {
		return r.corrupt("values nested deeper than %d levels", maxMetaDepth)
	}
	k, n, err := r.peek()
	if err != nil {
		return err
	}
	switch k {
	case kArray, kMap:
		var err error
		if k == kArray {
			_, err = r.d.DecodeArrayLen()
		} else {
			_, err = r.d.DecodeMapLen()
			n *= 2
		}
		if err != nil {
			return r.wrap(err)
		}
		for i := 0; i < n; i++ {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case kStr, kBin, kExt:
		// Header length: everything between the code byte and the payload.
		p := r.off()
		c := r.buf[p]
		hdr := 0
		switch {
		case c >= 0xd9 && c <= 0xdb:
			hdr = 1 << (c - 0xd9)
		case c >= 0xc4 && c <= 0xc6:
			hdr = 1 << (c - 0xc4)
		case c >= 0xc7 && c <= 0xc9:
			hdr = 1 << (c - 0xc7)
		}
		if k == kExt {
			n++ // the type byte
		}
		_, err := r.br.Seek(int64(1+hdr+n), io.SeekCurrent) // in range: peek checked it
		return err
	}
	if _, err := r.d.DecodeInterface(); err != nil { // a scalar of at most 9 bytes
		return r.wrap(err)
	}
	return nil
}

// ints reads an array of at most max integers, each in [0, MaxArchValue].
func (r *reader) ints(what string, max int) ([]int, error) {
	n, err := r.want(what, kArray)
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, r.corrupt("%s has %d entries, the format allows at most %d", what, n, max)
	}
	if _, err := r.d.DecodeArrayLen(); err != nil {
		return nil, r.wrap(err)
	}
	out := make([]int, n)
	for i := range out {
		if out[i], err = r.intIn(fmt.Sprintf("%s[%d]", what, i), 0, MaxArchValue); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// arch reads the arch map into a.
func (r *reader) arch(a *Arch) error {
	n, err := r.want("arch", kMap)
	if err != nil {
		return err
	}
	if _, err := r.d.DecodeMapLen(); err != nil {
		return r.wrap(err)
	}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		key, err := r.key("arch")
		if err != nil {
			return err
		}
		if seen[key] {
			return r.corrupt("duplicate arch field %q", key)
		}
		seen[key] = true
		switch key {
		case "kind":
			a.Kind, err = r.str("arch kind", maxKindLen)
		case "mults":
			a.Mults, err = r.ints("arch mults", maxMults)
		default:
			err = r.corrupt("unknown arch field %q (written by a newer or different program?)", key)
			for _, fv := range a.intFields() {
				if fv.name == key {
					*fv.v, err = r.intIn("arch "+key, 0, MaxArchValue)
				}
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// tensors reads the tensor array. It appends as it goes rather than trusting the declared count.
func (r *reader) tensors() ([]Tensor, error) {
	n, err := r.want("tensors", kArray)
	if err != nil {
		return nil, err
	}
	if n > MaxTensors {
		return nil, r.corrupt("%d tensors, the format allows at most %d", n, MaxTensors)
	}
	if _, err := r.d.DecodeArrayLen(); err != nil {
		return nil, r.wrap(err)
	}
	var ts []Tensor
	for i := 0; i < n; i++ {
		t, err := r.tensor(i)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// tensor reads one tensor map; i numbers it in errors.
func (r *reader) tensor(i int) (Tensor, error) {
	var t Tensor
	what := fmt.Sprintf("tensor %d", i)
	n, err := r.want(what, kMap)
	if err != nil {
		return t, err
	}
	if _, err := r.d.DecodeMapLen(); err != nil {
		return t, r.wrap(err)
	}
	seen := map[string]bool{}
	for j := 0; j < n; j++ {
		key, err := r.key(what)
		if err != nil {
			return t, err
		}
		if seen[key] {
			return t, r.corrupt("%s: duplicate field %q", what, key)
		}
		seen[key] = true
		switch key {
		case "name":
			t.Name, err = r.str(what+" name", MaxNameLen)
			if err == nil {
				what = fmt.Sprintf("tensor %q", t.Name)
			}
		case "dtype":
			t.DType, err = r.str(what+" dtype", 16)
		case "shape":
			t.Shape, err = r.shape(what)
		case "data":
			t.Data, err = r.bin(what + " data")
		default:
			err = r.corrupt("%s: unknown field %q (written by a newer or different program?)", what, key)
		}
		if err != nil {
			return t, err
		}
	}
	for _, k := range []string{"name", "dtype", "shape", "data"} {
		if !seen[k] {
			return t, r.corrupt("%s has no %q field", what, k)
		}
	}
	return t, nil
}

// shape reads a shape array, checking rank and dims as it goes.
func (r *reader) shape(what string) ([]int, error) {
	n, err := r.want(what+" shape", kArray)
	if err != nil {
		return nil, err
	}
	if n < 1 || n > MaxRank {
		return nil, r.corrupt("%s has rank %d; the format allows 1 to %d dims", what, n, MaxRank)
	}
	if _, err := r.d.DecodeArrayLen(); err != nil {
		return nil, r.wrap(err)
	}
	shape := make([]int, n)
	for i := range shape {
		if shape[i], err = r.intIn(what+" dim", 1, MaxElements); err != nil {
			return nil, err
		}
	}
	return shape, nil
}

// metaTop reads the meta map; a nil meta reads as an empty map.
func (r *reader) metaTop() (map[string]any, error) {
	k, _, err := r.peek()
	if err != nil {
		return nil, err
	}
	if k == kNil {
		if err := r.d.DecodeNil(); err != nil {
			return nil, r.wrap(err)
		}
		return map[string]any{}, nil
	}
	if k != kMap {
		return nil, r.corrupt("meta has msgpack type %s, want map", k)
	}
	v, err := r.meta("meta", 0)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// meta reads one Meta value of any supported kind (the inverse of encodeMeta).
func (r *reader) meta(what string, depth int) (any, error) {
	if r.metaNodes++; r.metaNodes > maxMetaNodes {
		return nil, r.corrupt("meta holds more than %d values", maxMetaNodes)
	}
	if depth > maxMetaDepth {
		return nil, r.corrupt("%s: nested deeper than %d levels", what, maxMetaDepth)
	}
	k, n, err := r.peek()
	if err != nil {
		return nil, err
	}
	switch k {
	case kStr:
		return r.str(what, n)
	case kBin:
		return r.bin(what)
	case kExt:
		return nil, r.corrupt("%s is a msgpack extension value, which meta does not support", what)
	case kArray:
		if _, err := r.d.DecodeArrayLen(); err != nil {
			return nil, r.wrap(err)
		}
		a := make([]any, 0, min(n, 1024))
		for i := 0; i < n; i++ {
			v, err := r.meta(fmt.Sprintf("%s[%d]", what, i), depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	case kMap:
		if _, err := r.d.DecodeMapLen(); err != nil {
			return nil, r.wrap(err)
		}
		m := make(map[string]any, min(n, 1024))
		for i := 0; i < n; i++ {
			key, err := r.key(what)
			if err != nil {
				return nil, err
			}
			if m[key], err = r.meta(fmt.Sprintf("%s[%q]", what, key), depth+1); err != nil {
				return nil, err
			}
		}
		return m, nil
	}
	// nil, bool, integers and floats: msgpack gives back the Go type of the encoding (int8,
	// uint16, float32, …), which encodeMeta writes again unchanged.
	v, err := r.d.DecodeInterface()
	if err != nil {
		return nil, r.wrap(err)
	}
	return v, nil
}
