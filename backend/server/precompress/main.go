// Command precompress writes FILE.br beside each FILE given, Brotli at quality 11 with a 16 MiB
// window, for `backend serve` (and any static host that serves pre-compressed files) to send to
// clients that accept br. build.sh runs it on dist/asbm.wasm:
//
//	go run ./backend/server/precompress dist/asbm.wasm
//
// It is a build step rather than something the server does at start-up: quality 11 in pure Go
// takes tens of seconds for the multi-megabyte wasm, which would delay every start of the server,
// and a file on disk also serves hosts that are not ours. The output is written to a temporary
// file and renamed, so a server never sees half a .br, and it is checked by decoding it again.
package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/andybalholm/brotli"
)

// Quality and LGWin are the Brotli settings: the highest quality, and the largest window RFC 7932
// allows (browsers decode every window size).
const (
	Quality = 11
	LGWin   = 24
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: precompress FILE... (writes FILE.br beside each)")
		os.Exit(2)
	}
	for _, name := range os.Args[1:] {
		raw, out, err := compressFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "precompress:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %d bytes, brotli %d bytes\n", name, raw, out)
	}
}

// compressFile writes name+".br" and returns the raw and compressed sizes.
func compressFile(name string) (raw, out int64, err error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return 0, 0, err
	}
	var buf bytes.Buffer
	if err := compress(&buf, data); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", name, err)
	}
	// A cheap guard against an encoder bug shipping an undecodable file for a year of caching.
	back, err := io.ReadAll(brotli.NewReader(bytes.NewReader(buf.Bytes())))
	if err != nil || !bytes.Equal(back, data) {
		return 0, 0, fmt.Errorf("%s: the brotli stream does not decode to the input (%v)", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), filepath.Base(name)+".br.*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return 0, 0, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return 0, 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, 0, err
	}
	if err := os.Rename(tmp.Name(), name+".br"); err != nil {
		return 0, 0, err
	}
	return int64(len(data)), int64(buf.Len()), nil
}

// compress writes data to w as one Brotli stream at Quality and LGWin.
func compress(w io.Writer, data []byte) error {
	bw := brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: Quality, LGWin: LGWin})
	if _, err := bw.Write(data); err != nil {
		bw.Close()
		return err
	}
	return bw.Close()
}
