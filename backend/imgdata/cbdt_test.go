package imgdata

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fakeSub describes one CBLC index subtable of a synthetic font: the glyphs first..last (a nil
// payload is a glyph without bitmap, allowed only in formats 1, 3 and 4), stored with the given
// index and image formats.
type fakeSub struct {
	indexFmt, imageFmt int
	first              int
	payloads           [][]byte
}

// fakeStrike is one BitmapSize record with its subtables.
type fakeStrike struct {
	ppem int
	subs []fakeSub
}

var be = binary.BigEndian

// buildFont writes a minimal sfnt file with only CBLC and CBDT tables holding the strikes, laid
// out as the OpenType spec describes (an independent encoder for parseCBLC to be checked
// against). It returns the font and, per strike, the (glyph, PNG) pairs a reader must find.
func buildFont(strikes []fakeStrike) ([]byte, [][]glyphPNG) {
	cbdt := []byte{0, 3, 0, 0}
	// record appends one glyph's CBDT record in image format f, padded to slot bytes if slot > 0.
	record := func(f int, png []byte, slot int) (start, end int) {
		start = len(cbdt)
		switch f {
		case 17:
			cbdt = append(cbdt, 9, 8, 0, 7, 9) // smallGlyphMetrics
		case 18:
			cbdt = append(cbdt, 9, 8, 0, 7, 9, 0, 0, 8) // bigGlyphMetrics
		}
		cbdt = be.AppendUint32(cbdt, uint32(len(png)))
		cbdt = append(cbdt, png...)
		for len(cbdt)-start < slot {
			cbdt = append(cbdt, 0)
		}
		return start, len(cbdt)
	}
	recLen := func(f int, png []byte) int { return map[int]int{17: 5, 18: 8, 19: 0}[f] + 4 + len(png) }

	want := make([][]glyphPNG, len(strikes))
	var arrays [][]byte
	for si, st := range strikes {
		var subtables [][]byte
		for _, sb := range st.subs {
			dataOff := len(cbdt)
			h := be.AppendUint16(nil, uint16(sb.indexFmt))
			h = be.AppendUint16(h, uint16(sb.imageFmt))
			h = be.AppendUint32(h, uint32(dataOff))
			slot := 0
			for _, p := range sb.payloads {
				slot = max(slot, recLen(sb.imageFmt, p)+3) // +3: slack the length field must bound
			}
			bigMetrics := []byte{9, 8, 0, 7, 9, 0, 0, 8}
			switch sb.indexFmt {
			case 1, 3:
				var offs []int
				for _, p := range sb.payloads {
					if p == nil {
						offs = append(offs, len(cbdt)-dataOff)
						continue
					}
					s, _ := record(sb.imageFmt, p, 0)
					offs = append(offs, s-dataOff)
				}
				offs = append(offs, len(cbdt)-dataOff)
				for _, o := range offs {
					if sb.indexFmt == 1 {
						h = be.AppendUint32(h, uint32(o))
					} else {
						h = be.AppendUint16(h, uint16(o))
					}
				}
			case 2:
				h = be.AppendUint32(h, uint32(slot))
				h = append(h, bigMetrics...)
				for _, p := range sb.payloads {
					record(sb.imageFmt, p, slot)
				}
			case 4:
				h = be.AppendUint32(h, uint32(countNonNil(sb.payloads)))
				for j, p := range sb.payloads {
					if p == nil {
						continue
					}
					s, _ := record(sb.imageFmt, p, 0)
					h = be.AppendUint16(h, uint16(sb.first+j))
					h = be.AppendUint16(h, uint16(s-dataOff))
				}
				h = be.AppendUint16(h, 0)
				h = be.AppendUint16(h, uint16(len(cbdt)-dataOff))
			case 5:
				h = be.AppendUint32(h, uint32(slot))
				h = append(h, bigMetrics...)
				h = be.AppendUint32(h, uint32(countNonNil(sb.payloads)))
				for j, p := range sb.payloads {
					if p != nil {
						h = be.AppendUint16(h, uint16(sb.first+j))
						record(sb.imageFmt, p, slot)
					}
				}
			}
			subtables = append(subtables, h)
			for j, p := range sb.payloads {
				if p != nil {
					want[si] = append(want[si], glyphPNG{sb.first + j, p})
				}
			}
		}
		// IndexSubTableArray followed by the subtables; offsets are from the array start.
		arr := make([]byte, 0)
		off := 8 * len(st.subs)
		for k, sb := range st.subs {
			arr = be.AppendUint16(arr, uint16(sb.first))
			arr = be.AppendUint16(arr, uint16(sb.first+len(sb.payloads)-1))
			arr = be.AppendUint32(arr, uint32(off))
			off += len(subtables[k])
		}
		for _, s := range subtables {
			arr = append(arr, s...)
		}
		arrays = append(arrays, arr)
	}
	cblc := []byte{0, 3, 0, 0}
	cblc = be.AppendUint32(cblc, uint32(len(strikes)))
	off := 8 + 48*len(strikes)
	for i, st := range strikes {
		rec := make([]byte, 48)
		be.PutUint32(rec[0:], uint32(off))
		be.PutUint32(rec[4:], uint32(len(arrays[i])))
		be.PutUint32(rec[8:], uint32(len(st.subs)))
		rec[44], rec[45], rec[46] = byte(st.ppem), byte(st.ppem), 32
		cblc = append(cblc, rec...)
		off += len(arrays[i])
	}
	for _, a := range arrays {
		cblc = append(cblc, a...)
	}
	// Offset table + two table records, then the tables.
	font := be.AppendUint32(nil, 0x00010000)
	font = be.AppendUint16(font, 2)
	font = append(font, 0, 32, 0, 1, 0, 0)
	at := 12 + 2*16
	for _, tb := range []struct {
		tag  string
		data []byte
	}{{"CBDT", cbdt}, {"CBLC", cblc}} {
		font = append(font, tb.tag...)
		font = be.AppendUint32(font, 0) // checksum (not verified)
		font = be.AppendUint32(font, uint32(at))
		font = be.AppendUint32(font, uint32(len(tb.data)))
		at += len(tb.data)
	}
	font = append(font, cbdt...)
	font = append(font, cblc...)
	return font, want
}

func countNonNil(p [][]byte) int {
	n := 0
	for _, b := range p {
		if b != nil {
			n++
		}
	}
	return n
}

// fakePNG returns n random bytes behind the PNG signature (parseCBLC does not decode them).
func fakePNG(r *rand.Rand, n int) []byte {
	b := slices.Clone(pngMagic)
	for range n {
		b = append(b, byte(r.Uint32()))
	}
	return b
}

// randomStrikes builds two strikes; the larger ppem one uses every index format, with every
// image format, and empty glyphs where the format allows them.
func randomStrikes(r *rand.Rand) []fakeStrike {
	glyph := 1 + r.IntN(50)
	var subs []fakeSub
	for _, f := range []struct{ index, image int }{{1, 17}, {3, 18}, {2, 19}, {4, 17}, {5, 19}, {1, 18}} {
		sb := fakeSub{indexFmt: f.index, imageFmt: f.image, first: glyph}
		n := 1 + r.IntN(6)
		sameLen := 20 + r.IntN(30)
		for j := range n {
			l := 10 + r.IntN(60)
			if f.index == 2 || f.index == 5 {
				l = sameLen - r.IntN(3) // slots are fixed size; lengths may still differ
			}
			var p []byte
			if f.index == 2 || j == 0 || r.IntN(4) > 0 {
				p = fakePNG(r, l)
			}
			sb.payloads = append(sb.payloads, p)
		}
		glyph += n + r.IntN(3)
		subs = append(subs, sb)
	}
	small := fakeStrike{ppem: 20, subs: []fakeSub{{indexFmt: 1, imageFmt: 17, first: 1, payloads: [][]byte{fakePNG(r, 5)}}}}
	big := fakeStrike{ppem: 109, subs: subs}
	if r.IntN(2) == 0 {
		return []fakeStrike{small, big}
	}
	return []fakeStrike{big, small}
}

func TestCBDTSynthetic(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 20 {
		strikes := randomStrikes(r)
		font, want := buildFont(strikes)
		got, err := cbdtPNGs(font)
		if err != nil {
			t.Fatalf("trial %d (%s): %v", trial, fmtStrikes(strikes), err)
		}
		bi := 0
		if strikes[1].ppem > strikes[0].ppem {
			bi = 1
		}
		if len(got) != len(want[bi]) {
			t.Fatalf("trial %d (%s): %d bitmaps, want %d (largest strike)", trial, fmtStrikes(strikes), len(got), len(want[bi]))
		}
		for i := range got {
			if got[i].Glyph != want[bi][i].Glyph || !bytes.Equal(got[i].PNG, want[bi][i].PNG) {
				t.Fatalf("trial %d bitmap %d: glyph %d (%d bytes), want glyph %d (%d bytes)", trial, i, got[i].Glyph, len(got[i].PNG), want[bi][i].Glyph, len(want[bi][i].PNG))
			}
		}
	}
}

func TestCBDTCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	font, _ := buildFont(randomStrikes(r))
	// Every truncation leaves some offset dangling: an error, never a panic.
	for n := range len(font) {
		if _, err := cbdtPNGs(font[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(font))
		}
	}
	// Random byte corruption must not panic (it may or may not be detected).
	for range 2000 {
		bad := slices.Clone(font)
		for range 1 + r.IntN(4) {
			bad[r.IntN(len(bad))] = byte(r.Uint32())
		}
		_, _ = cbdtPNGs(bad)
	}
	// Specific structural errors and their messages.
	one := func(sb fakeSub) []byte {
		f, _ := buildFont([]fakeStrike{{ppem: 50, subs: []fakeSub{sb}}})
		return f
	}
	p := fakePNG(r, 12)
	for _, tc := range []struct {
		name string
		font []byte
		want string
	}{
		{"not a font", []byte("GIF89a, not a font at all"), "not a TrueType"},
		{"image format 1", one(fakeSub{1, 1, 1, [][]byte{p}}), "image format 1 not supported"},
		{"index format 9", one(fakeSub{9, 17, 1, [][]byte{p}}), "index format 9"},
		{"not png", one(fakeSub{1, 17, 1, [][]byte{[]byte("JFIF not a png at all")}}), "not a PNG"},
		{"no bitmaps", one(fakeSub{1, 17, 1, [][]byte{nil, nil}}), "no bitmaps"},
		{"no tables", []byte{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "no CBLC/CBDT"},
	} {
		_, err := cbdtPNGs(tc.font)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// A PNG length field larger than its record is caught.
	f := one(fakeSub{1, 17, 1, [][]byte{p}})
	i := bytes.Index(f, p)
	be.PutUint32(f[i-4:], uint32(len(p)+1))
	if _, err := cbdtPNGs(f); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("overlong PNG length: error %v", err)
	}
}

func FuzzCBDT(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 3 {
		font, _ := buildFont(randomStrikes(r))
		f.Add(font)
	}
	f.Fuzz(func(t *testing.T, font []byte) {
		got, err := cbdtPNGs(font)
		if err == nil && len(got) == 0 {
			t.Fatal("no error and no bitmaps")
		}
		for _, g := range got {
			if !bytes.HasPrefix(g.PNG, pngMagic) {
				t.Fatalf("glyph %d: not a PNG", g.Glyph)
			}
		}
	})
}

// fmtStrikes describes the formats of each strike, for failure messages.
func fmtStrikes(s []fakeStrike) string {
	var b strings.Builder
	for _, st := range s {
		fmt.Fprintf(&b, "ppem %d:", st.ppem)
		for _, sb := range st.subs {
			fmt.Fprintf(&b, " %d/%d×%d", sb.indexFmt, sb.imageFmt, len(sb.payloads))
		}
		b.WriteString("; ")
	}
	return b.String()
}
