package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
)

func TestCompressFile(t *testing.T) {
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	// Compressible text with random words, plus a stretch of incompressible bytes.
	var in bytes.Buffer
	for in.Len() < 50000 {
		fmt.Fprintf(&in, "func f%d() { return %d }\n", r.IntN(500), r.IntN(1<<20))
	}
	for range 4096 {
		in.WriteByte(byte(r.Uint32()))
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "x.wasm")
	if err := os.WriteFile(name, in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, out, err := compressFile(name)
	if err != nil {
		t.Fatal(err)
	}
	br, err := os.ReadFile(name + ".br")
	if err != nil {
		t.Fatal(err)
	}
	if raw != int64(in.Len()) || out != int64(len(br)) || out >= raw/2 {
		t.Errorf("sizes raw %d out %d (file %d), want raw %d and out < raw/2", raw, out, len(br), in.Len())
	}
	got, err := io.ReadAll(brotli.NewReader(bytes.NewReader(br)))
	if err != nil || !bytes.Equal(got, in.Bytes()) {
		t.Fatalf("decoded .br: %d bytes, err %v; want the %d input bytes", len(got), err, in.Len())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("folder holds %d files, want x.wasm and x.wasm.br (no temporary left)", len(ents))
	}
	if _, _, err := compressFile(filepath.Join(dir, "missing.wasm")); err == nil {
		t.Error("a missing file gave no error")
	}
}
