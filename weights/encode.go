package weights

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// fixExport is the advice appended to errors about a damaged or foreign file.
const fixExport = "re-download the file or re-export it with `backend export`"

// Encode writes f as one msgpack map with the keys magic, version, arch, tensors, meta in that
// order. Arch is a map with all five fields, each tensor a map {name, dtype, shape, data} with data
// as a msgpack bin of little-endian values, and Meta a map with sorted keys (nested maps too), so
// equal Files give identical bytes. It validates f first (see Validate) and writes nothing when f
// is invalid.
func Encode(w io.Writer, f *File) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("weights: cannot encode: %v", err)
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	e := msgpack.NewEncoder(bw)
	err := encodeFile(e, f)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("weights: encode: %w", err)
	}
	return nil
}

// encodeFile writes the validated f through e.
func encodeFile(e *msgpack.Encoder, f *File) error {
	try := func(errs ...error) error {
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := try(
		e.EncodeMapLen(5),
		e.EncodeString("magic"), e.EncodeString(f.Magic),
		e.EncodeString("version"), e.EncodeInt(int64(f.Version)),
		e.EncodeString("arch"),
	); err != nil {
		return err
	}
	if err := encodeArch(e, f.Arch); err != nil {
		return err
	}
	if err := try(e.EncodeString("tensors"), e.EncodeArrayLen(len(f.Tensors))); err != nil {
		return err
	}
	for _, t := range f.Tensors {
		if err := try(
			e.EncodeMapLen(4),
			e.EncodeString("name"), e.EncodeString(t.Name),
			e.EncodeString("dtype"), e.EncodeString(t.DType),
			e.EncodeString("shape"), e.EncodeArrayLen(len(t.Shape)),
		); err != nil {
			return err
		}
		for _, s := range t.Shape {
			if err := e.EncodeInt(int64(s)); err != nil {
				return err
			}
		}
		if err := try(e.EncodeString("data"), e.EncodeBytes(t.Data)); err != nil {
			return err
		}
	}
	if err := e.EncodeString("meta"); err != nil {
		return err
	}
	nodes := 0
	return encodeMetaMap(e, f.Meta, 0, &nodes)
}

// encodeMetaMap writes m (nil writes an empty map) with sorted keys.
func encodeMetaMap(e *msgpack.Encoder, m map[string]any, depth int, nodes *int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if err := e.EncodeMapLen(len(keys)); err != nil {
		return err
	}
	for _, k := range keys {
		if len(k) > MaxNameLen {
			return fmt.Errorf("meta key %.40q… is %d bytes long, at most %d allowed", k, len(k), MaxNameLen)
		}
		if err := e.EncodeString(k); err != nil {
			return err
		}
		if err := encodeMeta(e, reflect.ValueOf(m[k]), depth+1, nodes); err != nil {
			return fmt.Errorf("meta %q: %w", k, err)
		}
	}
	return nil
}

// encodeMeta writes one Meta value. It accepts exactly what decodeMeta can give back (nil, bool,
// every Go integer and float type, string, []byte, slices/arrays and string-keyed maps of those,
// nested up to maxMetaDepth) and keeps each number's width, so decoding returns the same Go types
// (except int and uint, which come back as int64 and uint64). Anything else — structs, times,
// pointers to them — is an error rather than a file the reader would reject.
func encodeMeta(e *msgpack.Encoder, v reflect.Value, depth int, nodes *int) error {
	if *nodes++; *nodes > maxMetaNodes {
		return fmt.Errorf("meta holds more than %d values", maxMetaNodes)
	}
	if depth > maxMetaDepth {
		return fmt.Errorf("nested deeper than %d levels", maxMetaDepth)
	}
	for v.IsValid() && (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) {
		if v.IsNil() {
			return e.EncodeNil()
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return e.EncodeNil()
	}
	switch v.Kind() {
	case reflect.Bool:
		return e.EncodeBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return e.EncodeInt64(v.Int())
	case reflect.Int8:
		return e.EncodeInt8(int8(v.Int()))
	case reflect.Int16:
		return e.EncodeInt16(int16(v.Int()))
	case reflect.Int32:
		return e.EncodeInt32(int32(v.Int()))
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return e.EncodeUint64(v.Uint())
	case reflect.Uint8:
		return e.EncodeUint8(uint8(v.Uint()))
	case reflect.Uint16:
		return e.EncodeUint16(uint16(v.Uint()))
	case reflect.Uint32:
		return e.EncodeUint32(uint32(v.Uint()))
	case reflect.Float32:
		return e.EncodeFloat32(float32(v.Float()))
	case reflect.Float64:
		return e.EncodeFloat64(v.Float())
	case reflect.String:
		return e.EncodeString(v.String())
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(b), v)
			return e.EncodeBytes(b)
		}
		if v.Kind() == reflect.Slice && v.IsNil() {
			return e.EncodeNil()
		}
		if err := e.EncodeArrayLen(v.Len()); err != nil {
			return err
		}
		for i := 0; i < v.Len(); i++ {
			if err := encodeMeta(e, v.Index(i), depth+1, nodes); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("map keys must be strings, got %s", v.Type().Key())
		}
		if v.IsNil() {
			return e.EncodeNil()
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			switch as, bs := a.String(), b.String(); {
			case as < bs:
				return -1
			case as > bs:
				return 1
			}
			return 0
		})
		if err := e.EncodeMapLen(len(keys)); err != nil {
			return err
		}
		for _, k := range keys {
			if len(k.String()) > MaxNameLen {
				return fmt.Errorf("map key %.40q… is %d bytes long, at most %d allowed", k.String(), len(k.String()), MaxNameLen)
			}
			if err := e.EncodeString(k.String()); err != nil {
				return err
			}
			if err := encodeMeta(e, v.MapIndex(k), depth+1, nodes); err != nil {
				return fmt.Errorf("[%q]: %w", k.String(), err)
			}
		}
		return nil
	}
	return fmt.Errorf("unsupported type %s (meta holds numbers, strings, bools, []byte, and slices/maps of them)", v.Type())
}

// WriteFile encodes f to path atomically: it writes a temporary file in the same directory,
// fsyncs it, renames it over path and fsyncs the directory, so path holds either the old
// contents or the complete new file, never a partial one. The file is created with mode 0644.
func WriteFile(path string, f *File) (err error) {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("weights: cannot write %s: %v", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = Encode(tmp, f); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("weights: write %s: fsync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("weights: write %s: %w", path, err)
	}
	// Make the rename itself durable. Some file systems refuse to fsync a directory; the data
	// is already safe under its final name by then, so that is not worth failing for.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// encodeArch writes a as a map: kind and the four MLP fields always (so MLP files keep their
// bytes), every other field only when it is set.
func encodeArch(e *msgpack.Encoder, a Arch) error {
	fields := a.intFields()
	n := 1
	for i, fv := range fields {
		if i < 4 || *fv.v != 0 {
			n++
		}
	}
	if len(a.Mults) > 0 {
		n++
	}
	if err := e.EncodeMapLen(n); err != nil {
		return err
	}
	if err := e.EncodeString("kind"); err != nil {
		return err
	}
	if err := e.EncodeString(a.Kind); err != nil {
		return err
	}
	for i, fv := range fields {
		if i >= 4 && *fv.v == 0 {
			continue
		}
		if err := e.EncodeString(fv.name); err != nil {
			return err
		}
		if err := e.EncodeInt(int64(*fv.v)); err != nil {
			return err
		}
	}
	if len(a.Mults) == 0 {
		return nil
	}
	if err := e.EncodeString("mults"); err != nil {
		return err
	}
	if err := e.EncodeArrayLen(len(a.Mults)); err != nil {
		return err
	}
	for _, m := range a.Mults {
		if err := e.EncodeInt(int64(m)); err != nil {
			return err
		}
	}
	return nil
}
