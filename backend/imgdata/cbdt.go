package imgdata

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The colour bitmap tables of an OpenType font (https://learn.microsoft.com/typography/opentype/spec/cblc
// and …/cbdt): CBLC indexes, per strike (pixel size), which glyphs have bitmaps and where their
// data lie in CBDT; CBDT holds, per glyph, small metrics and a PNG. Noto Color Emoji has one
// strike (ppem 109) of 3,926 PNGs, indexed with index format 1 and image format 17; the parser
// also reads index formats 2–5 and image formats 18/19 so any CBDT font works.

// pngMagic starts every PNG file.
var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// glyphPNG is the PNG bitmap of one glyph.
type glyphPNG struct {
	Glyph int
	PNG   []byte // aliases the font bytes
}

// reader reads big-endian fields at absolute offsets of a byte slice; the first out-of-range read
// sets err and later reads return 0, so parsers check err once per structure instead of
// bounds-checking every field.
type reader struct {
	b    []byte
	what string
	err  error
}

func (r *reader) need(off, n int) bool {
	if r.err != nil {
		return false
	}
	if off < 0 || n < 0 || off > len(r.b) || n > len(r.b)-off {
		r.err = fmt.Errorf("%s: %d bytes at offset %d run past its end (%d bytes)", r.what, n, off, len(r.b))
		return false
	}
	return true
}

func (r *reader) u8(off int) int {
	if !r.need(off, 1) {
		return 0
	}
	return int(r.b[off])
}

func (r *reader) u16(off int) int {
	if !r.need(off, 2) {
		return 0
	}
	return int(binary.BigEndian.Uint16(r.b[off:]))
}

func (r *reader) u32(off int) int {
	if !r.need(off, 4) {
		return 0
	}
	return int(binary.BigEndian.Uint32(r.b[off:]))
}

func (r *reader) bytes(off, n int) []byte {
	if !r.need(off, n) {
		return nil
	}
	return r.b[off : off+n : off+n]
}

// sfntTables returns the tables of a TrueType/OpenType font file by tag.
func sfntTables(font []byte) (map[string][]byte, error) {
	r := &reader{b: font, what: "font"}
	switch v := r.u32(0); v {
	case 0x00010000, 0x74727565 /* "true" */, 0x4f54544f /* "OTTO" */ :
	default:
		if r.err != nil {
			return nil, r.err
		}
		return nil, fmt.Errorf("font: not a TrueType/OpenType file (version tag %08x)", v)
	}
	n := r.u16(4)
	tables := make(map[string][]byte, n)
	for i := range n {
		rec := 12 + 16*i
		tag := string(r.bytes(rec, 4))
		off, length := r.u32(rec+8), r.u32(rec+12)
		if r.err != nil {
			return nil, fmt.Errorf("font: table directory: %w", r.err)
		}
		if off > len(font) || length > len(font)-off {
			return nil, fmt.Errorf("font: table %q (offset %d, length %d) runs past the end of the file (%d bytes)", tag, off, length, len(font))
		}
		tables[tag] = font[off : off+length : off+length]
	}
	return tables, nil
}

// cbdtPNGs returns, in glyph order of the index, the PNG bitmaps of the font's largest colour
// bitmap strike. Empty glyphs (no bitmap) are skipped. Any offset that leaves its table, any
// unsupported index or image format, and any bitmap that is not a PNG is an error.
func cbdtPNGs(font []byte) ([]glyphPNG, error) {
	tables, err := sfntTables(font)
	if err != nil {
		return nil, err
	}
	cblc, cbdt := tables["CBLC"], tables["CBDT"]
	if cblc == nil || cbdt == nil {
		return nil, errors.New("font: no CBLC/CBDT colour bitmap tables")
	}
	return parseCBLC(cblc, cbdt)
}

// parseCBLC walks the CBLC index of the largest strike and cuts the PNGs out of cbdt.
func parseCBLC(cblc, cbdt []byte) ([]glyphPNG, error) {
	r := &reader{b: cblc, what: "CBLC"}
	major, numSizes := r.u16(0), r.u32(4)
	if r.err != nil {
		return nil, r.err
	}
	if major != 2 && major != 3 {
		return nil, fmt.Errorf("CBLC: version %d not supported (want 3)", major)
	}
	if numSizes == 0 {
		return nil, errors.New("CBLC: no bitmap strikes")
	}
	if !r.need(8, 48*numSizes) {
		return nil, fmt.Errorf("CBLC: %d strike records: %w", numSizes, r.err)
	}
	// BitmapSize record (48 bytes): indexSubTableArrayOffset u32, indexTablesSize u32,
	// numberOfIndexSubTables u32, colorRef u32, hori and vert SbitLineMetrics (12 bytes each),
	// startGlyphIndex u16, endGlyphIndex u16, ppemX u8, ppemY u8, bitDepth u8, flags i8.
	best, bestPPEM := 0, -1
	for i := range numSizes {
		if p := r.u8(8 + 48*i + 45); p > bestPPEM {
			best, bestPPEM = i, p
		}
	}
	rec := 8 + 48*best
	arrOff, numSub := r.u32(rec), r.u32(rec+8)
	if !r.need(arrOff, 8*numSub) {
		return nil, fmt.Errorf("CBLC: index subtable array of %d records: %w", numSub, r.err)
	}
	d := &reader{b: cbdt, what: "CBDT"}
	if major := d.u16(0); d.err != nil || (major != 2 && major != 3) {
		return nil, fmt.Errorf("CBDT: bad header (version %d, %v)", major, d.err)
	}
	var out []glyphPNG
	// cut appends the bitmap of glyph g stored at cbdt[start:end] in image format imgFmt.
	cut := func(g, imgFmt, start, end int) error {
		if end < start {
			return fmt.Errorf("CBLC: glyph %d has negative data length (%d..%d)", g, start, end)
		}
		if end == start {
			return nil // no bitmap for this glyph
		}
		var hdr int // glyph metrics before the PNG length
		switch imgFmt {
		case 17:
			hdr = 5 // smallGlyphMetrics
		case 18:
			hdr = 8 // bigGlyphMetrics
		case 19:
			hdr = 0 // metrics live in CBLC (index format 2 or 5)
		default:
			return fmt.Errorf("CBLC: glyph %d: image format %d not supported (want 17, 18 or 19)", g, imgFmt)
		}
		if !d.need(start, end-start) {
			return fmt.Errorf("glyph %d: %w", g, d.err)
		}
		if end-start < hdr+4 {
			return fmt.Errorf("CBDT: glyph %d: %d bytes cannot hold its %d-byte header", g, end-start, hdr+4)
		}
		n := d.u32(start + hdr)
		if n > end-start-hdr-4 {
			return fmt.Errorf("CBDT: glyph %d: PNG length %d exceeds its %d-byte slot", g, n, end-start-hdr-4)
		}
		png := d.bytes(start+hdr+4, n)
		if !bytes.HasPrefix(png, pngMagic) {
			return fmt.Errorf("CBDT: glyph %d: bitmap data is not a PNG", g)
		}
		out = append(out, glyphPNG{Glyph: g, PNG: png})
		return nil
	}
	for k := range numSub {
		first, last, add := r.u16(arrOff+8*k), r.u16(arrOff+8*k+2), r.u32(arrOff+8*k+4)
		if last < first {
			return nil, fmt.Errorf("CBLC: index subtable %d: last glyph %d < first glyph %d", k, last, first)
		}
		st := arrOff + add
		indexFmt, imgFmt, dataOff := r.u16(st), r.u16(st+2), r.u32(st+4)
		if r.err != nil {
			return nil, fmt.Errorf("CBLC: index subtable %d: %w", k, r.err)
		}
		n := last - first + 1
		switch indexFmt {
		case 1, 3: // offsets (u32 or u16) of each glyph and one past the last, from dataOff
			w := 4
			if indexFmt == 3 {
				w = 2
			}
			if !r.need(st+8, w*(n+1)) {
				return nil, fmt.Errorf("CBLC: index subtable %d (format %d): %w", k, indexFmt, r.err)
			}
			at := func(j int) int {
				if w == 4 {
					return r.u32(st + 8 + 4*j)
				}
				return r.u16(st + 8 + 2*j)
			}
			for j := range n {
				if err := cut(first+j, imgFmt, dataOff+at(j), dataOff+at(j+1)); err != nil {
					return nil, err
				}
			}
		case 2: // every glyph in [first, last] has imageSize bytes, back to back
			size := r.u32(st + 8)
			if r.err != nil {
				return nil, fmt.Errorf("CBLC: index subtable %d (format 2): %w", k, r.err)
			}
			for j := range n {
				if err := cut(first+j, imgFmt, dataOff+j*size, dataOff+(j+1)*size); err != nil {
					return nil, err
				}
			}
		case 4: // sparse: numGlyphs+1 (glyphID u16, offset u16) pairs
			ng := r.u32(st + 8)
			if !r.need(st+12, 4*(ng+1)) {
				return nil, fmt.Errorf("CBLC: index subtable %d (format 4, %d glyphs): %w", k, ng, r.err)
			}
			for j := range ng {
				p := st + 12 + 4*j
				if err := cut(r.u16(p), imgFmt, dataOff+r.u16(p+2), dataOff+r.u16(p+6)); err != nil {
					return nil, err
				}
			}
		case 5: // sparse, constant size: imageSize, bigMetrics, numGlyphs, glyph IDs
			size, ng := r.u32(st+8), r.u32(st+20)
			if !r.need(st+24, 2*ng) {
				return nil, fmt.Errorf("CBLC: index subtable %d (format 5, %d glyphs): %w", k, ng, r.err)
			}
			for j := range ng {
				if err := cut(r.u16(st+24+2*j), imgFmt, dataOff+j*size, dataOff+(j+1)*size); err != nil {
					return nil, err
				}
			}
		default:
			return nil, fmt.Errorf("CBLC: index subtable %d: index format %d not supported", k, indexFmt)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("CBLC: the strike holds no bitmaps")
	}
	return out, nil
}
