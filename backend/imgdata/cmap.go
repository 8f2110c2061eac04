package imgdata

import (
	"errors"
	"fmt"
)

// The character-to-glyph table of an OpenType font (https://learn.microsoft.com/typography/opentype/spec/cmap).
// The emoji:faces subset needs it to find which CBDT bitmaps draw which code points. Only the two
// Unicode formats are read: 12 (segmented coverage, every plane; Noto Color Emoji's emoji live in
// plane 1) and 4 (segment mapping, the Basic Multilingual Plane). Sequences (skin tones, ZWJ
// families, flags) are GSUB ligatures, not cmap entries, so the map holds single code points only.

// cmapGlyphs returns the glyph of every code point the font's Unicode cmap subtable maps. It prefers
// a format-12 subtable (platform 3 encoding 10, or platform 0) and falls back to format 4.
func cmapGlyphs(font []byte) (map[rune]int, error) {
	tables, err := sfntTables(font)
	if err != nil {
		return nil, err
	}
	cmap := tables["cmap"]
	if cmap == nil {
		return nil, errors.New("font: no cmap table")
	}
	r := &reader{b: cmap, what: "cmap"}
	n := r.u16(2)
	if !r.need(4, 8*n) {
		return nil, fmt.Errorf("cmap: %d encoding records: %w", n, r.err)
	}
	best, bestFmt := -1, 0
	for i := range n {
		platform, encoding, off := r.u16(4+8*i), r.u16(4+8*i+2), r.u32(4+8*i+4)
		unicode := platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10))
		f := r.u16(off)
		if r.err != nil {
			return nil, fmt.Errorf("cmap: encoding record %d: %w", i, r.err)
		}
		if unicode && (f == 12 || (f == 4 && bestFmt != 12)) {
			best, bestFmt = off, f
		}
	}
	switch bestFmt {
	case 12:
		return cmapFormat12(r, best)
	case 4:
		return cmapFormat4(r, best)
	}
	return nil, errors.New("cmap: no Unicode subtable of format 12 or 4")
}

// cmapFormat12 reads SequentialMapGroup records: (startCharCode, endCharCode, startGlyphID).
func cmapFormat12(r *reader, off int) (map[rune]int, error) {
	groups := r.u32(off + 12)
	if !r.need(off+16, 12*groups) {
		return nil, fmt.Errorf("cmap format 12: %d groups: %w", groups, r.err)
	}
	m := map[rune]int{}
	for i := range groups {
		p := off + 16 + 12*i
		start, end, glyph := r.u32(p), r.u32(p+4), r.u32(p+8)
		if end < start || end > 0x10FFFF {
			return nil, fmt.Errorf("cmap format 12: group %d has bad range U+%04X..U+%04X", i, start, end)
		}
		for c := start; c <= end; c++ {
			m[rune(c)] = glyph + c - start
		}
	}
	return m, nil
}

// cmapFormat4 reads the segment arrays endCode, startCode, idDelta and idRangeOffset (each
// segCount u16 values; a reserved u16 separates endCode from startCode).
func cmapFormat4(r *reader, off int) (map[rune]int, error) {
	segs := r.u16(off+6) / 2
	ends, starts := off+14, off+16+2*segs
	deltas, ranges := starts+2*segs, starts+4*segs
	if !r.need(ends, 8*segs+2) {
		return nil, fmt.Errorf("cmap format 4: %d segments: %w", segs, r.err)
	}
	m := map[rune]int{}
	for s := range segs {
		start, end := r.u16(starts+2*s), r.u16(ends+2*s)
		delta, ro := r.u16(deltas+2*s), r.u16(ranges+2*s)
		if end < start {
			return nil, fmt.Errorf("cmap format 4: segment %d has bad range U+%04X..U+%04X", s, start, end)
		}
		for c := start; c <= end && c != 0xFFFF; c++ {
			g := c
			if ro != 0 {
				// idRangeOffset is relative to its own position in the idRangeOffset array.
				g = r.u16(ranges + 2*s + ro + 2*(c-start))
				if r.err != nil {
					return nil, fmt.Errorf("cmap format 4: segment %d: %w", s, r.err)
				}
				if g == 0 {
					continue
				}
			}
			if g = (g + delta) & 0xFFFF; g != 0 {
				m[rune(c)] = g
			}
		}
	}
	return m, nil
}

// faceEmoji lists the code points of the emoji:faces subset: the single-code-point faces of
// Unicode's "Smileys & Emotion" group (emoji-test.txt subgroups face-smiling, face-affection,
// face-tongue, face-hand, face-neutral-skeptical, face-sleepy, face-unwell, face-hat,
// face-glasses, face-concerned, the angry faces of face-negative, and cat-face). The
// costume faces (ghost, alien, poo, …), skulls and imps are left out: the subset is the yellow
// round face every reader recognises as "an emoji", a distribution a small model can learn.
var faceEmoji = []rune{
	// face-smiling
	0x1F600, 0x1F603, 0x1F604, 0x1F601, 0x1F606, 0x1F605, 0x1F923, 0x1F602, 0x1F642, 0x1F643,
	0x1FAE0, 0x1F609, 0x1F60A, 0x1F607,
	// face-affection
	0x1F970, 0x1F60D, 0x1F929, 0x1F618, 0x1F617, 0x263A, 0x1F61A, 0x1F619, 0x1F972,
	// face-tongue
	0x1F60B, 0x1F61B, 0x1F61C, 0x1F92A, 0x1F61D, 0x1F911,
	// face-hand
	0x1F917, 0x1F92D, 0x1FAE2, 0x1FAE3, 0x1F92B, 0x1F914, 0x1FAE1,
	// face-neutral-skeptical
	0x1F910, 0x1F928, 0x1F610, 0x1F611, 0x1F636, 0x1FAE5, 0x1F60F, 0x1F612, 0x1F644, 0x1F62C,
	0x1F925, 0x1FAE8,
	// face-sleepy
	0x1F60C, 0x1F614, 0x1F62A, 0x1F924, 0x1F634,
	// face-unwell
	0x1F637, 0x1F912, 0x1F915, 0x1F922, 0x1F92E, 0x1F927, 0x1F975, 0x1F976, 0x1F974, 0x1F635,
	0x1F92F,
	// face-hat, face-glasses
	0x1F920, 0x1F973, 0x1F978, 0x1F60E, 0x1F913, 0x1F9D0,
	// face-concerned
	0x1F615, 0x1FAE4, 0x1F61F, 0x1F641, 0x2639, 0x1F62E, 0x1F62F, 0x1F632, 0x1F633, 0x1F97A,
	0x1F979, 0x1F626, 0x1F627, 0x1F628, 0x1F630, 0x1F625, 0x1F622, 0x1F62D, 0x1F631, 0x1F616,
	0x1F623, 0x1F61E, 0x1F613, 0x1F629, 0x1F62B, 0x1F971,
	// face-negative (the angry faces)
	0x1F624, 0x1F621, 0x1F620, 0x1F92C,
	// cat-face
	0x1F63A, 0x1F638, 0x1F639, 0x1F63B, 0x1F63C, 0x1F63D, 0x1F640, 0x1F63F, 0x1F63E,
}

// faceGlyphs picks, from a font's bitmaps, those of the faceEmoji code points, in faceEmoji's
// order; code points the font lacks (older fonts miss the newest faces) are skipped.
func faceGlyphs(font []byte, glyphs []glyphPNG) ([]glyphPNG, error) {
	cmap, err := cmapGlyphs(font)
	if err != nil {
		return nil, err
	}
	byGlyph := make(map[int]glyphPNG, len(glyphs))
	for _, g := range glyphs {
		byGlyph[g.Glyph] = g
	}
	var out []glyphPNG
	for _, c := range faceEmoji {
		if g, ok := byGlyph[cmap[c]]; ok && cmap[c] != 0 {
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the font draws none of the face emoji (no cmap entry with a colour bitmap)")
	}
	return out, nil
}
