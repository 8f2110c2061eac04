package imgdata

import (
	"bytes"
	"encoding/binary"
	"image/png"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// sfnt wraps tables into a minimal font file (version 1.0, table records sorted by tag).
func sfnt(tables map[string][]byte) []byte {
	tags := slices.Sorted(maps.Keys(tables))
	be := binary.BigEndian
	out := make([]byte, 12+16*len(tags))
	be.PutUint32(out, 0x00010000)
	be.PutUint16(out[4:], uint16(len(tags)))
	for i, tag := range tags {
		rec := out[12+16*i:]
		copy(rec, tag)
		be.PutUint32(rec[8:], uint32(len(out)))
		be.PutUint32(rec[12:], uint32(len(tables[tag])))
		out = append(out, tables[tag]...)
	}
	return out
}

// cmapTable builds a cmap table of one encoding record (platform, encoding) pointing at sub.
func cmapTable(platform, encoding uint16, sub []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, 0) // version
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, platform)
	b = binary.BigEndian.AppendUint16(b, encoding)
	b = binary.BigEndian.AppendUint32(b, 12)
	return append(b, sub...)
}

// format12 encodes m as sequential groups: every maximal run of consecutive code points with
// consecutive glyphs is one group.
func format12(m map[rune]int) []byte {
	be := binary.BigEndian
	var groups [][3]uint32
	for _, c := range slices.Sorted(maps.Keys(m)) {
		if n := len(groups); n > 0 && groups[n-1][1]+1 == uint32(c) && groups[n-1][2]+uint32(c)-groups[n-1][0] == uint32(m[c]) {
			groups[n-1][1] = uint32(c)
			continue
		}
		groups = append(groups, [3]uint32{uint32(c), uint32(c), uint32(m[c])})
	}
	b := be.AppendUint16(nil, 12)
	b = be.AppendUint16(b, 0)
	b = be.AppendUint32(b, uint32(16+12*len(groups)))
	b = be.AppendUint32(b, 0)
	b = be.AppendUint32(b, uint32(len(groups)))
	for _, g := range groups {
		b = be.AppendUint32(b, g[0])
		b = be.AppendUint32(b, g[1])
		b = be.AppendUint32(b, g[2])
	}
	return b
}

// format4Seg is one segment of a format-4 subtable: code points start..end, mapped either by
// delta (glyph = c + delta mod 65536) or, when glyphs is non-nil, through the glyph ID array
// (0 = unmapped; delta is still added to non-zero entries).
type format4Seg struct {
	start, end, delta int
	glyphs            []int
}

// format4 encodes segs (sorted, disjoint, below U+FFFF) and the required final 0xFFFF segment.
func format4(segs []format4Seg) []byte {
	segs = append(slices.Clone(segs), format4Seg{start: 0xFFFF, end: 0xFFFF, delta: 1})
	n := len(segs)
	be := binary.BigEndian
	var ends, starts, deltas, ranges, arr []byte
	arrLen := 0
	for _, s := range segs {
		arrLen += len(s.glyphs)
	}
	used := 0
	for i, s := range segs {
		ends = be.AppendUint16(ends, uint16(s.end))
		starts = be.AppendUint16(starts, uint16(s.start))
		deltas = be.AppendUint16(deltas, uint16(s.delta))
		ro := 0
		if s.glyphs != nil {
			// Bytes from this idRangeOffset entry to the segment's first glyph ID.
			ro = 2*(n-i) + 2*used
			for _, g := range s.glyphs {
				arr = be.AppendUint16(arr, uint16(g))
			}
			used += len(s.glyphs)
		}
		ranges = be.AppendUint16(ranges, uint16(ro))
	}
	b := be.AppendUint16(nil, 4)
	b = be.AppendUint16(b, uint16(16+8*n+2*arrLen))
	b = be.AppendUint16(b, 0)
	b = be.AppendUint16(b, uint16(2*n))
	b = append(b, make([]byte, 6)...) // searchRange, entrySelector, rangeShift: unused by readers here
	b = append(b, ends...)
	b = be.AppendUint16(b, 0)
	b = append(b, starts...)
	b = append(b, deltas...)
	b = append(b, ranges...)
	return append(b, arr...)
}

func TestCmapSynthetic(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for trial := range 20 {
		// Format 12: random runs anywhere in Unicode, some consecutive, glyphs 1..60000.
		want12 := map[rune]int{}
		c := rune(r.IntN(0x100))
		for range 1 + r.IntN(30) {
			c += rune(1 + r.IntN(0x3000))
			if c > 0x10FFF0 {
				break
			}
			g := 1 + r.IntN(60000)
			for k := range 1 + r.IntN(8) {
				want12[c+rune(k)] = g + k
			}
			c += 8
		}
		got, err := cmapGlyphs(sfnt(map[string][]byte{"cmap": cmapTable(3, 10, format12(want12))}))
		if err != nil || !maps.Equal(got, want12) {
			t.Fatalf("trial %d format 12: %v\ngot  %v\nwant %v", trial, err, got, want12)
		}
		// Format 4: BMP segments, half by delta, half through the glyph array (with holes).
		want4 := map[rune]int{}
		var segs []format4Seg
		start := 0x20
		for range 1 + r.IntN(12) {
			start += 1 + r.IntN(0x400)
			end := start + r.IntN(20)
			if end >= 0xFFFF {
				break
			}
			s := format4Seg{start: start, end: end, delta: r.IntN(65536)}
			if r.IntN(2) == 0 {
				s.glyphs = make([]int, end-start+1)
				for k := range s.glyphs {
					if r.IntN(4) > 0 {
						s.glyphs[k] = 1 + r.IntN(40000)
					}
				}
			}
			for k := start; k <= end; k++ {
				g := k
				if s.glyphs != nil {
					if g = s.glyphs[k-start]; g == 0 {
						continue
					}
				}
				if g = (g + s.delta) % 65536; g != 0 {
					want4[rune(k)] = g
				}
			}
			segs = append(segs, s)
			start = end
		}
		got, err = cmapGlyphs(sfnt(map[string][]byte{"cmap": cmapTable(3, 1, format4(segs))}))
		if err != nil || !maps.Equal(got, want4) {
			t.Fatalf("trial %d format 4: %v\ngot  %v\nwant %v", trial, err, got, want4)
		}
	}
}

func TestCmapErrors(t *testing.T) {
	good := cmapTable(3, 10, format12(map[rune]int{0x1F600: 7, 0x1F601: 8, 0x263A: 3}))
	for _, tc := range []struct {
		name string
		font []byte
		want string
	}{
		{"no cmap", sfnt(map[string][]byte{"CBDT": {0, 3, 0, 0}}), "no cmap table"},
		{"symbol encoding only", sfnt(map[string][]byte{"cmap": cmapTable(3, 0, format12(map[rune]int{1: 1}))}), "no Unicode subtable"},
		{"format 6 only", sfnt(map[string][]byte{"cmap": cmapTable(3, 1, []byte{0, 6, 0, 10, 0, 0, 0, 0, 0, 0})}), "no Unicode subtable"},
		{"bad group range", sfnt(map[string][]byte{"cmap": cmapTable(0, 4, format12(map[rune]int{0x110000: 1}))}), "bad range"},
	} {
		if _, err := cmapGlyphs(tc.font); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// Every truncation of a good table is an error or a subset, never a panic or an out-of-range read.
	for n := range len(good) {
		if m, err := cmapGlyphs(sfnt(map[string][]byte{"cmap": good[:n]})); err == nil && len(m) > 3 {
			t.Errorf("truncated to %d bytes: %d entries from 3", n, len(m))
		}
	}
}

func TestEmojiFaces(t *testing.T) {
	if _, err := os.Stat(emojiFontPath); err != nil {
		skipOrFail(t, "fonts-noto-color-emoji is not installed at %s", emojiFontPath)
	}
	const size = 16
	s, err := Load("emoji:faces", size)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s, -1, 3, size, -1)
	if s.Name != "emoji:faces" || s.N < 100 || s.N > len(faceEmoji) {
		t.Fatalf("%q: %d faces, want 100..%d", s.Name, s.N, len(faceEmoji))
	}
	// The first face is U+1F600 GRINNING FACE: the glyph cmap names, resampled as emoji are.
	font, err := os.ReadFile(emojiFontPath)
	if err != nil {
		t.Fatal(err)
	}
	cmap, err := cmapGlyphs(font)
	if err != nil {
		t.Fatal(err)
	}
	glyphs, err := cbdtPNGs(font)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(glyphs, func(g glyphPNG) bool { return g.Glyph == cmap[0x1F600] })
	if i < 0 {
		t.Fatalf("U+1F600 (glyph %d) has no bitmap", cmap[0x1F600])
	}
	img, err := png.Decode(bytes.NewReader(glyphs[i].PNG))
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(s.Image(0), refColour(img, size)); d > 1e-4 {
		t.Errorf("face 0 vs U+1F600: max |diff| %.2g", d)
	}
	// They are yellow faces: at the centre 4×4 pixels of the average face red and green are
	// high and blue is low (on the [-1, 1] scale); the whole emoji set is nowhere near that.
	centre := func(set *Set, ch int) float64 {
		var sum float64
		for k := range set.N {
			p := set.Image(k)[ch*size*size:]
			for y := size/2 - 2; y < size/2+2; y++ {
				for x := size/2 - 2; x < size/2+2; x++ {
					sum += float64(p[y*size+x])
				}
			}
		}
		return sum / float64(16*set.N)
	}
	r, g, b := centre(s, 0), centre(s, 1), centre(s, 2)
	t.Logf("%d faces; mean centre RGB %.2f %.2f %.2f", s.N, r, g, b)
	if r < 0.5 || g < 0.1 || b > -0.3 {
		t.Errorf("centre RGB %.2f %.2f %.2f: not yellow", r, g, b)
	}
	if _, err := Load("emoji:cats", size); err == nil || !strings.Contains(err.Error(), "emoji:faces") {
		t.Errorf("emoji:cats: error %v, want one naming emoji:faces", err)
	}
}
