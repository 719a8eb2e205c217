package extract

import (
	"bytes"
	"slices"
	"sort"
)

// pdfFont maps a font's character codes to text and to widths.
type pdfFont struct {
	simple bool        // one-byte codes (Type1, TrueType, Type3)
	spaces []codeRange // code lengths of a composite font (codespace ranges)
	toUni  *cmap       // the font's ToUnicode, or nil
	enc    [256]string // a simple font's text per code, from its encoding
	cids   *cmap       // a composite font's code → CID, or nil (Identity)
	// Widths in text space units per code (simple) or CID (composite):
	// glyph space / 1000, or a Type3 font's FontMatrix.
	widths  map[uint32]float64
	missing float64 // width of a code not in widths
}

// codeRange is a codespace range: codes of n bytes from lo to hi.
type codeRange struct {
	n      int
	lo, hi uint32
}

// cmap maps codes to text (ToUnicode) or to CIDs: single codes, and
// ranges kept as ranges (a hostile range of millions of codes costs
// nothing), searched by binary search.
type cmap struct {
	spaces []codeRange
	single map[uint32]string
	ranges []cmapRange
}

type cmapRange struct {
	lo, hi uint32
	dst    []byte   // the first code's destination (UTF-16BE, or a CID as 4 bytes)
	arr    []string // one destination per code, when given as an array
}

// maxCMapEntries bounds the entries one CMap may hold.
const maxCMapEntries = 1 << 17

// maxCodespaceRanges bounds a CMap's codespace ranges, which every code
// shown is tried against (MuPDF holds 40; Adobe's CMaps have a few).
const maxCodespaceRanges = 40

// pdfWidthCost is what one width read from a font counts against the
// document's budget (pdfFile.spend): about what an entry of the widths map
// takes. Fonts may share their arrays, and a font given directly in a
// page's resources is read again at each Tf.
const pdfWidthCost = 16

// lookup returns the destination of code as UTF-16BE bytes (or a CID).
func (m *cmap) lookup(code uint32) ([]byte, bool) {
	if m == nil {
		return nil, false
	}
	if s, ok := m.single[code]; ok {
		return []byte(s), true
	}
	// The last range starting at or before code, or one of the few before
	// it (ranges may overlap).
	i := sort.Search(len(m.ranges), func(i int) bool { return m.ranges[i].lo > code }) - 1
	for k := i; k >= 0 && k > i-8; k-- {
		r := m.ranges[k]
		if code > r.hi {
			continue
		}
		off := code - r.lo
		if r.arr != nil {
			if int(off) < len(r.arr) {
				return []byte(r.arr[off]), true
			}
			return nil, false
		}
		if len(r.dst) == 0 {
			return nil, false
		}
		d := slices.Clone(r.dst)
		// Add off to the last byte pair (or byte), carrying.
		carry := off
		for j := len(d) - 1; j >= 0 && carry > 0; j-- {
			v := uint32(d[j]) + carry
			d[j] = byte(v)
			carry = v >> 8
		}
		return d, true
	}
	return nil, false
}

// parseCMap reads a CMap stream (ToUnicode or an embedded encoding):
// codespace ranges, bfchar/bfrange (to UTF-16BE) and cidchar/cidrange
// (to CIDs, as 4 big-endian bytes).
func parseCMap(data []byte) *cmap {
	m := &cmap{single: map[uint32]string{}}
	l := &pdfLexer{b: data}
	var stack []any
	entries := 0
	for entries < maxCMapEntries {
		v, err := l.object(0)
		if err != nil {
			break
		}
		op, isOp := v.(pdfOp)
		if !isOp {
			if len(stack) < 1024 {
				stack = append(stack, v)
			}
			continue
		}
		switch op {
		case "endcodespacerange":
			for i := 0; i+1 < len(stack); i += 2 {
				lo, ok1 := stack[i].(pdfString)
				hi, ok2 := stack[i+1].(pdfString)
				if ok1 && ok2 && len(lo) == len(hi) && len(lo) >= 1 && len(lo) <= 4 && len(m.spaces) < maxCodespaceRanges {
					m.spaces = append(m.spaces, codeRange{len(lo), codeOf(lo), codeOf(hi)})
				}
			}
		case "endbfchar", "endcidchar":
			for i := 0; i+1 < len(stack); i += 2 {
				src, ok := stack[i].(pdfString)
				if !ok || len(src) > 4 {
					continue
				}
				if dst, ok := cmapDest(stack[i+1]); ok {
					m.single[codeOf(src)] = string(dst)
					entries++
				}
			}
		case "endbfrange", "endcidrange":
			for i := 0; i+2 < len(stack); i += 3 {
				lo, ok1 := stack[i].(pdfString)
				hi, ok2 := stack[i+1].(pdfString)
				if !ok1 || !ok2 || len(lo) > 4 || len(hi) > 4 || codeOf(lo) > codeOf(hi) {
					continue
				}
				r := cmapRange{lo: codeOf(lo), hi: codeOf(hi)}
				if arr, ok := stack[i+2].(pdfArray); ok {
					for _, a := range arr[:min(len(arr), maxCMapEntries)] {
						d, _ := cmapDest(a)
						r.arr = append(r.arr, string(d))
					}
					entries += len(r.arr)
				} else if d, ok := cmapDest(stack[i+2]); ok {
					r.dst = d
				}
				m.ranges = append(m.ranges, r)
				entries++
			}
		}
		stack = stack[:0]
	}
	sort.SliceStable(m.ranges, func(i, j int) bool { return m.ranges[i].lo < m.ranges[j].lo })
	return m
}

// cmapDest is a bf destination (a string of UTF-16BE, or a glyph name) or
// a CID (an integer, as 4 bytes).
func cmapDest(v any) ([]byte, bool) {
	switch d := v.(type) {
	case pdfString:
		return d, true
	case pdfName:
		if s, ok := glyphText(string(d)); ok {
			return utf16Encode(s), true
		}
	case int64:
		return []byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)}, true
	}
	return nil, false
}

func utf16Encode(s string) []byte {
	var out []byte
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			hi, lo := 0xD800+(r>>10), 0xDC00+(r&0x3ff)
			out = append(out, byte(hi>>8), byte(hi), byte(lo>>8), byte(lo))
			continue
		}
		out = append(out, byte(r>>8), byte(r))
	}
	return out
}

func codeOf(b []byte) uint32 {
	var v uint32
	for _, c := range b {
		v = v<<8 | uint32(c)
	}
	return v
}

// loadFont reads a font dictionary.
func (f *pdfFile) loadFont(d pdfDict) *pdfFont {
	ft := &pdfFont{widths: map[uint32]float64{}}
	if s, ok := f.resolve(d["ToUnicode"]).(*pdfStream); ok {
		if data, err := f.decode(s); err == nil {
			ft.toUni = parseCMap(data)
		}
	}
	if f.resolve(d["Subtype"]) == pdfName("Type0") {
		f.loadComposite(ft, d)
		return ft
	}
	ft.simple = true
	scale := 0.001
	if f.resolve(d["Subtype"]) == pdfName("Type3") {
		if m := f.resolveArray(d["FontMatrix"]); len(m) == 6 {
			if v, ok := f.number(m[0]); ok {
				scale = v
			}
		}
	}
	desc := f.resolveDict(d["FontDescriptor"])
	if v, ok := f.number(desc["MissingWidth"]); ok {
		ft.missing = v * scale
	} else {
		ft.missing = 0.5
		if bytes.Contains([]byte(string(pdfBaseName(f, d))), []byte("Courier")) {
			ft.missing = 0.6
		}
	}
	first, _ := f.resolve(d["FirstChar"]).(int64)
	widths := f.resolveArray(d["Widths"])
	widths = widths[:min(len(widths), 256)]
	if f.spend(pdfWidthCost*len(widths)) != nil {
		return ft
	}
	for i, w := range widths {
		if v, ok := f.number(w); ok {
			ft.widths[uint32(first)+uint32(i)] = v * scale
		}
	}
	// The encoding: a base (named, or the font program's own), then Differences.
	var base [256]string
	enc := f.resolve(d["Encoding"])
	encDict := f.resolveDict(enc)
	name, _ := enc.(pdfName)
	if encDict != nil {
		name, _ = f.resolve(encDict["BaseEncoding"]).(pdfName)
	}
	switch {
	case name != "":
		base = baseEncoding(name)
	default:
		if builtin, ok := f.type1Encoding(desc); ok {
			base = builtin
		} else if f.resolve(d["Subtype"]) == pdfName("TrueType") {
			base = baseEncoding("WinAnsiEncoding")
		} else {
			base = baseEncoding("StandardEncoding")
		}
	}
	ft.enc = base
	if encDict != nil {
		code := 0
		diffs := f.resolveArray(encDict["Differences"])
		if f.spend(pdfWidthCost*len(diffs)) != nil {
			return ft
		}
		for _, v := range diffs {
			switch x := f.resolve(v).(type) {
			case int64:
				code = int(x)
			case pdfName:
				if code >= 0 && code < 256 {
					s, ok := glyphText(string(x))
					if !ok && len(x) > 0 {
						s = ""
					}
					ft.enc[code] = s
				}
				code++
			}
		}
	}
	return ft
}

func pdfBaseName(f *pdfFile, d pdfDict) pdfName {
	n, _ := f.resolve(d["BaseFont"]).(pdfName)
	return n
}

// type1Encoding reads the encoding built into an embedded Type 1 font
// program ("dup 65 /A put" in its clear-text part).
func (f *pdfFile) type1Encoding(desc pdfDict) ([256]string, bool) {
	var t [256]string
	s, ok := f.resolve(desc["FontFile"]).(*pdfStream)
	if !ok {
		return t, false
	}
	data, err := f.decode(s)
	if err != nil {
		return t, false
	}
	if n, ok := f.resolve(s.dict["Length1"]).(int64); ok && n > 0 && n < int64(len(data)) {
		data = data[:n]
	}
	i := bytes.Index(data, []byte("/Encoding"))
	if i < 0 {
		return t, false
	}
	data = data[i:]
	if bytes.HasPrefix(bytes.TrimSpace(data[len("/Encoding"):]), []byte("StandardEncoding")) {
		return baseEncoding("StandardEncoding"), true
	}
	if end := bytes.Index(data, []byte("readonly def")); end >= 0 {
		data = data[:end]
	}
	found := false
	for {
		j := bytes.Index(data, []byte("dup "))
		if j < 0 {
			break
		}
		data = data[j+4:]
		l := &pdfLexer{b: data}
		c, err1 := l.object(0)
		n, err2 := l.object(0)
		code, ok1 := c.(int64)
		name, ok2 := n.(pdfName)
		if err1 != nil || err2 != nil || !ok1 || !ok2 || code < 0 || code > 255 {
			continue
		}
		if s, ok := glyphText(string(name)); ok {
			t[code] = s
			found = true
		}
	}
	return t, found
}

// loadComposite reads a Type0 font: its code lengths (the encoding CMap's
// codespace, two bytes for Identity-H/V) and its CIDFont's widths.
func (f *pdfFile) loadComposite(ft *pdfFont, d pdfDict) {
	switch enc := f.resolve(d["Encoding"]).(type) {
	case *pdfStream:
		if data, err := f.decode(enc); err == nil {
			ft.cids = parseCMap(data)
			ft.spaces = ft.cids.spaces
		}
	case pdfName:
		// Identity-H/V and the predefined CMaps of 2-byte codes; the
		// predefined CMaps of mixed lengths are not read (ToUnicode, when
		// present, still gives the text).
	}
	if len(ft.spaces) == 0 && ft.toUni != nil {
		ft.spaces = ft.toUni.spaces
	}
	if len(ft.spaces) == 0 {
		ft.spaces = []codeRange{{2, 0, 0xffff}}
	}
	var cid pdfDict
	if ds := f.resolveArray(d["DescendantFonts"]); len(ds) > 0 {
		cid = f.resolveDict(ds[0])
	}
	ft.missing = 1
	if v, ok := f.number(cid["DW"]); ok {
		ft.missing = v / 1000
	}
	w := f.resolveArray(cid["W"])
	for i := 0; i < len(w) && len(ft.widths) < maxCMapEntries; {
		first, ok := f.resolve(w[i]).(int64)
		if !ok || i+1 >= len(w) {
			break
		}
		if arr, ok := f.resolve(w[i+1]).(pdfArray); ok {
			if f.spend(pdfWidthCost*len(arr)) != nil {
				return
			}
			for k, v := range arr {
				if n, ok := f.number(v); ok {
					ft.widths[uint32(first)+uint32(k)] = n / 1000
				}
			}
			i += 2
			continue
		}
		if i+2 >= len(w) {
			break
		}
		last, _ := f.resolve(w[i+1]).(int64)
		n, _ := f.number(w[i+2])
		if first >= 0 && last >= first {
			count := min(last-first, maxCMapEntries-1) + 1
			if f.spend(pdfWidthCost*int(count)) != nil {
				return
			}
			for c := first; c < first+count && len(ft.widths) < maxCMapEntries; c++ {
				ft.widths[uint32(c)] = n / 1000
			}
		}
		i += 3
	}
}

// nextCode returns the first code of s and its length in bytes.
func (ft *pdfFont) nextCode(s []byte) (uint32, int) {
	if ft.simple {
		return uint32(s[0]), 1
	}
	for n := 1; n <= 4 && n <= len(s); n++ {
		c := codeOf(s[:n])
		for _, r := range ft.spaces {
			if r.n == n && c >= r.lo && c <= r.hi {
				return c, n
			}
		}
	}
	n := min(2, len(s))
	if len(ft.spaces) > 0 {
		n = min(ft.spaces[0].n, len(s))
	}
	return codeOf(s[:n]), n
}

// glyph returns the text and width (text space units) of code.
func (ft *pdfFont) glyph(code uint32) (string, float64) {
	text, mapped := "", false
	if d, ok := ft.toUni.lookup(code); ok {
		text, mapped = utf16BE(d), true
	}
	if ft.simple {
		if !mapped {
			text = ft.enc[code&0xff]
		}
		w, ok := ft.widths[code]
		if !ok {
			w = ft.missing
		}
		return text, w
	}
	cid := code
	if d, ok := ft.cids.lookup(code); ok && len(d) == 4 {
		cid = codeOf(d)
	}
	w, ok := ft.widths[cid]
	if !ok {
		w = ft.missing
	}
	return text, w
}
