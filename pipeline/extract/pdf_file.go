package extract

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"errors"
	"io"
	"strconv"
)

// Bounds on what reading one PDF may cost.
const (
	// MaxPDFPages is the most pages a PDF may have; more is TooLarge.
	MaxPDFPages = 10000
	// maxPDFRefDepth bounds references followed one after another.
	maxPDFRefDepth = 32
	// maxPDFFormDepth bounds form XObjects drawn inside one another.
	maxPDFFormDepth = 12
	// maxPDFXrefSections bounds the chain of cross-reference sections.
	maxPDFXrefSections = 256
)

var (
	errPDFTooManyPages = errors.New("too many pages")
	errPDFInflate      = errors.New("streams decode (or objects parse) to too many bytes")
	errPDFEncrypted    = errors.New("encrypted")
	errPDFNoPages      = errors.New("no page tree")
)

type xrefEntry struct {
	off   int64 // byte offset of "n g obj"; or the object stream's number
	idx   int   // index inside the object stream
	inStm bool
}

// objStm is a decoded object stream.
type objStm struct {
	data  []byte
	first int
	offs  map[int64]int // object number → offset after first
}

// pdfFile is a PDF held in memory, its objects parsed on demand.
type pdfFile struct {
	ctx     context.Context
	b       []byte
	xref    map[int64]xrefEntry
	trailer pdfDict
	objs    map[int64]any
	stms    map[int64]*objStm
	loading map[int64]bool // objects being parsed: a Length that refers to its own object is no loop
	scanned bool           // xref rebuilt by scanning the file
	budget  int64          // bytes left to decode or parse
	crypt   *pdfCrypt
}

func openPDF(ctx context.Context, b []byte) (*pdfFile, error) {
	f := &pdfFile{
		ctx:     ctx,
		b:       b,
		xref:    map[int64]xrefEntry{},
		objs:    map[int64]any{},
		stms:    map[int64]*objStm{},
		loading: map[int64]bool{},
		budget:  int64(InflateRatio)*int64(len(b)) + InflateSlack,
	}
	if !bytes.Contains(b[:min(len(b), 1024)], []byte("%PDF-")) {
		return nil, errors.New("not a PDF (no %PDF- header)")
	}
	if err := f.readXref(); err != nil || f.root() == nil {
		if errors.Is(err, errPDFInflate) {
			return nil, err
		}
		f.scan()
	}
	if f.budget < 0 {
		return nil, errPDFInflate
	}
	if f.root() == nil {
		return nil, errPDFNoPages
	}
	if enc := f.trailer["Encrypt"]; enc != nil {
		c, err := newPDFCrypt(f, f.resolveDict(enc))
		if err != nil {
			return nil, err
		}
		f.crypt = c
	}
	return f, nil
}

func (f *pdfFile) root() pdfDict {
	d := f.resolveDict(f.trailer["Root"])
	if d == nil || f.resolveDict(d["Pages"]) == nil {
		return nil
	}
	return d
}

// readXref reads the cross-reference sections from startxref back through
// every Prev, the newest entry of an object winning.
func (f *pdfFile) readXref() error {
	i := bytes.LastIndex(f.b[max(0, len(f.b)-4096):], []byte("startxref"))
	if i < 0 {
		return errors.New("no startxref")
	}
	l := &pdfLexer{b: f.b, pos: max(0, len(f.b)-4096) + i + len("startxref")}
	v, _ := l.object(0)
	off, ok := v.(int64)
	seen := map[int64]bool{}
	for n := 0; ok && n < maxPDFXrefSections && !seen[off]; n++ {
		seen[off] = true
		if off < 0 || off >= int64(len(f.b)) {
			return errors.New("xref offset out of range")
		}
		trailer, err := f.readXrefSection(int(off))
		if err != nil {
			return err
		}
		if f.trailer == nil {
			f.trailer = trailer
		}
		// A hybrid file's XRefStm holds the entries its table leaves out.
		if xs, isInt := trailer["XRefStm"].(int64); isInt && !seen[xs] && xs >= 0 && xs < int64(len(f.b)) {
			seen[xs] = true
			if _, err := f.readXrefSection(int(xs)); err != nil {
				return err
			}
		}
		off, ok = trailer["Prev"].(int64)
	}
	if f.trailer == nil {
		return errors.New("no trailer")
	}
	return nil
}

// readXrefSection reads a table ("xref" … "trailer" dict) or an xref stream
// at off, adding the entries not yet known, and returns its trailer.
func (f *pdfFile) readXrefSection(off int) (pdfDict, error) {
	l := &pdfLexer{b: f.b, pos: off, refs: true}
	l.skipSpace()
	if bytes.HasPrefix(f.b[l.pos:], []byte("xref")) {
		l.pos += 4
		for {
			l.skipSpace()
			if bytes.HasPrefix(f.b[l.pos:], []byte("trailer")) {
				l.pos += len("trailer")
				v, err := l.object(0)
				if err != nil {
					return nil, err
				}
				if err := f.spend(l.pos - off); err != nil {
					return nil, err
				}
				d, _ := v.(pdfDict)
				return d, nil
			}
			start, err1 := l.object(0)
			count, err2 := l.object(0)
			s, ok1 := start.(int64)
			c, ok2 := count.(int64)
			if err1 != nil || err2 != nil || !ok1 || !ok2 || s < 0 || c < 0 || c > int64(len(f.b)) {
				return nil, errors.New("bad xref table")
			}
			for k := int64(0); k < c; k++ {
				l.skipSpace()
				o, err1 := l.object(0)
				_, err2 := l.object(0)
				t, err3 := l.object(0)
				if err1 != nil || err2 != nil || err3 != nil {
					return nil, errors.New("bad xref entry")
				}
				ov, _ := o.(int64)
				if _, known := f.xref[s+k]; !known && t == pdfOp("n") && ov > 0 {
					f.xref[s+k] = xrefEntry{off: ov}
				} else if !known && t == pdfOp("f") {
					f.xref[s+k] = xrefEntry{off: -1}
				}
			}
		}
	}
	// An xref stream: "n g obj << /Type /XRef … >> stream".
	obj, err := f.parseObjectAt(off, -1)
	if err != nil {
		return nil, err
	}
	s, ok := obj.(*pdfStream)
	if !ok || s.dict["Type"] != pdfName("XRef") {
		return nil, errors.New("no xref at startxref")
	}
	data, err := f.decode(s)
	if err != nil {
		return nil, err
	}
	w := f.resolveArray(s.dict["W"])
	if len(w) != 3 {
		return nil, errors.New("bad xref stream W")
	}
	var widths [3]int
	rowLen := 0
	for i := range 3 {
		n, _ := w[i].(int64)
		if n < 0 || n > 8 {
			return nil, errors.New("bad xref stream W")
		}
		widths[i] = int(n)
		rowLen += int(n)
	}
	if rowLen == 0 {
		return nil, errors.New("bad xref stream W")
	}
	index := f.resolveArray(s.dict["Index"])
	if index == nil {
		size, _ := f.resolve(s.dict["Size"]).(int64)
		index = pdfArray{int64(0), size}
	}
	for i := 0; i+1 < len(index) && len(data) >= rowLen; i += 2 {
		start, _ := index[i].(int64)
		count, _ := index[i+1].(int64)
		for k := int64(0); k < count && len(data) >= rowLen; k++ {
			var fields [3]int64
			p := 0
			for j, wd := range widths {
				for range wd {
					fields[j] = fields[j]<<8 | int64(data[p])
					p++
				}
			}
			data = data[rowLen:]
			if widths[0] == 0 {
				fields[0] = 1
			}
			num := start + k
			if _, known := f.xref[num]; known {
				continue
			}
			switch fields[0] {
			case 0:
				f.xref[num] = xrefEntry{off: -1}
			case 1:
				f.xref[num] = xrefEntry{off: fields[1]}
			case 2:
				f.xref[num] = xrefEntry{off: fields[1], idx: int(fields[2]), inStm: true}
			}
		}
	}
	return s.dict, nil
}

// scan rebuilds the cross-reference from the file itself, as readers do
// for a damaged file: every "n g obj" (the last definition wins), the
// objects inside every object stream, and the last trailer (or an xref
// stream's dictionary, or a catalog) for the root.
func (f *pdfFile) scan() {
	f.scanned = true
	f.xref = map[int64]xrefEntry{}
	f.objs = map[int64]any{}
	var stmNums []int64
	for i := 0; ; {
		j := bytes.Index(f.b[i:], []byte("obj"))
		if j < 0 {
			break
		}
		at := i + j
		i = at + 3
		if i < len(f.b) && !isPDFSpace(f.b[i]) && !isPDFDelim(f.b[i]) {
			continue
		}
		num, start, ok := objHeaderBefore(f.b, at)
		if !ok {
			continue
		}
		f.xref[num] = xrefEntry{off: int64(start)}
	}
	for num, e := range f.xref {
		if s, ok := f.object(num).(*pdfStream); ok && s.dict["Type"] == pdfName("ObjStm") && !e.inStm {
			stmNums = append(stmNums, num)
		}
	}
	for _, sn := range stmNums {
		stm, err := f.objStm(sn)
		if err != nil {
			continue
		}
		for num := range stm.offs {
			if _, direct := f.xref[num]; !direct {
				f.xref[num] = xrefEntry{off: sn, inStm: true}
			}
		}
	}
	f.trailer = nil
	if i := bytes.LastIndex(f.b, []byte("trailer")); i >= 0 {
		l := &pdfLexer{b: f.b, pos: i + len("trailer"), refs: true}
		if v, err := l.object(0); err == nil {
			f.trailer, _ = v.(pdfDict)
		}
	}
	if f.trailer == nil || f.root() == nil {
		for num := range f.xref {
			var d pdfDict
			switch v := f.object(num).(type) {
			case *pdfStream:
				d = v.dict
			case pdfDict:
				d = v
			}
			switch {
			case d == nil:
			case d["Type"] == pdfName("XRef") && d["Root"] != nil:
				f.trailer = d
			case d["Type"] == pdfName("Catalog") && f.trailer == nil:
				f.trailer = pdfDict{"Root": pdfRef{num, 0}}
			}
			if f.trailer != nil && f.root() != nil {
				break
			}
		}
	}
}

// objHeaderBefore reads "num gen " backwards from at (where "obj" starts)
// and returns the object number and where the header starts.
func objHeaderBefore(b []byte, at int) (num int64, start int, ok bool) {
	p := at - 1
	skip := func() {
		for p >= 0 && isPDFSpace(b[p]) {
			p--
		}
	}
	digits := func() (int64, bool) {
		end := p + 1
		for p >= 0 && b[p] >= '0' && b[p] <= '9' && end-p <= 10 {
			p--
		}
		if p+1 == end {
			return 0, false
		}
		n, err := strconv.ParseInt(string(b[p+1:end]), 10, 64)
		return n, err == nil
	}
	skip()
	if _, ok := digits(); !ok {
		return 0, 0, false
	}
	skip()
	num, ok = digits()
	if !ok || (p >= 0 && !isPDFSpace(b[p]) && !isPDFDelim(b[p])) {
		return 0, 0, false
	}
	return num, p + 1, true
}

// object returns object num (nil when it is missing or unreadable).
func (f *pdfFile) object(num int64) any {
	if v, ok := f.objs[num]; ok {
		return v
	}
	if f.loading[num] || f.budget < 0 {
		return nil
	}
	f.loading[num] = true
	defer delete(f.loading, num)
	v, err := f.load(num)
	if err != nil && !f.scanned && !errors.Is(err, errPDFInflate) {
		// The cross-reference points at the wrong place: rebuild it once.
		f.scan()
		v, _ = f.load(num)
	}
	f.objs[num] = v
	return v
}

func (f *pdfFile) load(num int64) (any, error) {
	e, ok := f.xref[num]
	if !ok {
		return nil, errors.New("no such object")
	}
	if e.off < 0 {
		return nil, nil // free
	}
	if e.inStm {
		stm, err := f.objStm(e.off)
		if err != nil {
			return nil, err
		}
		o, ok := stm.offs[num]
		if !ok || o >= len(stm.data)-stm.first { // o may be near the largest int: no sum
			return nil, errors.New("object not in its object stream")
		}
		l := &pdfLexer{b: stm.data, pos: stm.first + o, refs: true}
		v, err := l.object(0)
		if err := f.spend(l.pos - stm.first - o); err != nil {
			return nil, err
		}
		return v, err
	}
	if e.off >= int64(len(f.b)) {
		return nil, errors.New("object offset out of range")
	}
	return f.parseObjectAt(int(e.off), num)
}

// parseObjectAt parses "num gen obj <object> [stream … endstream]" at off;
// want is the expected object number (-1: any).
func (f *pdfFile) parseObjectAt(off int, want int64) (any, error) {
	l := &pdfLexer{b: f.b, pos: off, refs: true}
	n, err1 := l.object(0)
	g, err2 := l.object(0)
	kw, err3 := l.object(0)
	if err1 != nil || err2 != nil || err3 != nil || kw != pdfOp("obj") {
		return nil, pdfSyntaxError{off}
	}
	if num, _ := n.(int64); want >= 0 && num != want {
		return nil, pdfSyntaxError{off}
	}
	v, err := l.object(0)
	// Objects may overlap (a string that never closes runs to the end of
	// the file): what is parsed counts against the budget like what is
	// decoded, or each object could cost the whole file.
	if err := f.spend(l.pos - off); err != nil {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	d, ok := v.(pdfDict)
	if !ok {
		return v, nil
	}
	save := l.pos
	l.skipSpace()
	if !bytes.HasPrefix(f.b[l.pos:], []byte("stream")) {
		l.pos = save
		return d, nil
	}
	start := l.pos + len("stream")
	if start < len(f.b) && f.b[start] == '\r' {
		start++
	}
	if start < len(f.b) && f.b[start] == '\n' {
		start++
	}
	end := -1
	if n, ok := f.resolve(d["Length"]).(int64); ok && n >= 0 && int64(start)+n <= int64(len(f.b)) {
		tail := bytes.TrimLeft(f.b[start+int(n):min(len(f.b), start+int(n)+32)], "\r\n\t \x00")
		if bytes.HasPrefix(tail, []byte("endstream")) {
			end = start + int(n)
		}
	}
	if end < 0 { // a wrong Length: the stream ends at "endstream"
		i := bytes.Index(f.b[start:], []byte("endstream"))
		searched := i
		if i < 0 {
			searched = len(f.b) - start
		}
		if err := f.spend(searched); err != nil {
			return nil, err
		}
		if i < 0 {
			end = len(f.b)
		} else {
			end = start + i
			// The EOL before endstream is not data.
			if end > start && f.b[end-1] == '\n' {
				end--
			}
			if end > start && f.b[end-1] == '\r' {
				end--
			}
		}
	}
	num, _ := n.(int64)
	gen, _ := g.(int64)
	return &pdfStream{dict: d, raw: f.b[start:end], num: num, gen: gen}, nil
}

func (f *pdfFile) objStm(num int64) (*objStm, error) {
	if s, ok := f.stms[num]; ok {
		if s == nil {
			return nil, errors.New("bad object stream")
		}
		return s, nil
	}
	f.stms[num] = nil
	s, ok := f.object(num).(*pdfStream)
	if !ok {
		return nil, errors.New("not an object stream")
	}
	data, err := f.decode(s)
	if err != nil {
		return nil, err
	}
	n, _ := f.resolve(s.dict["N"]).(int64)
	first, _ := f.resolve(s.dict["First"]).(int64)
	if first < 0 || first > int64(len(data)) {
		return nil, errors.New("bad object stream")
	}
	stm := &objStm{data: data, first: int(first), offs: map[int64]int{}}
	l := &pdfLexer{b: data[:first]}
	for range n {
		a, err1 := l.object(0)
		b, err2 := l.object(0)
		on, ok1 := a.(int64)
		oo, ok2 := b.(int64)
		if err1 != nil || err2 != nil || !ok1 || !ok2 || oo < 0 {
			break
		}
		stm.offs[on] = int(oo)
	}
	f.stms[num] = stm
	return stm, nil
}

// resolve follows references to a direct object.
func (f *pdfFile) resolve(v any) any {
	for range maxPDFRefDepth {
		r, ok := v.(pdfRef)
		if !ok {
			return v
		}
		v = f.object(r.num)
	}
	return nil
}

func (f *pdfFile) resolveDict(v any) pdfDict {
	switch d := f.resolve(v).(type) {
	case pdfDict:
		return d
	case *pdfStream:
		return d.dict
	}
	return nil
}

func (f *pdfFile) resolveArray(v any) pdfArray {
	a, _ := f.resolve(v).(pdfArray)
	return a
}

func (f *pdfFile) number(v any) (float64, bool) {
	switch n := f.resolve(v).(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// decode returns a stream's data with its filters undone; an unknown
// filter (an image's) gives no data. Every byte counts against the budget.
func (f *pdfFile) decode(s *pdfStream) ([]byte, error) {
	data := s.raw
	if f.crypt != nil && s.dict["Type"] != pdfName("XRef") {
		data = f.crypt.decrypt(s, data)
	}
	filters := f.resolve(s.dict["Filter"])
	parms := f.resolve(s.dict["DecodeParms"])
	var fs, ps pdfArray
	switch v := filters.(type) {
	case pdfName:
		fs, ps = pdfArray{v}, pdfArray{parms}
	case pdfArray:
		fs = v
		ps, _ = parms.(pdfArray)
	}
	for i, fv := range fs {
		var p pdfDict
		if i < len(ps) {
			p = f.resolveDict(ps[i])
		}
		var err error
		switch f.resolve(fv) {
		case pdfName("FlateDecode"), pdfName("Fl"):
			data, err = f.inflate(data)
			if err == nil {
				data, err = unpredict(data, p, f)
			}
		case pdfName("LZWDecode"), pdfName("LZW"):
			early := int64(1)
			if v, ok := f.resolve(p["EarlyChange"]).(int64); ok {
				early = v
			}
			data, err = f.lzw(data, early != 0)
			if err == nil {
				data, err = unpredict(data, p, f)
			}
		case pdfName("ASCIIHexDecode"), pdfName("AHx"):
			data = asciiHexDecode(data)
		case pdfName("ASCII85Decode"), pdfName("A85"):
			data = ascii85Decode(data)
		case pdfName("RunLengthDecode"), pdfName("RL"):
			data, err = f.runLength(data)
		default:
			return nil, nil // an image filter (DCT, JPX, CCITT, JBIG2) or unknown: no text
		}
		if err != nil {
			return nil, err
		}
	}
	if err := f.spend(len(data)); err != nil {
		return nil, err
	}
	return data, nil
}

// spend takes n decoded bytes from the budget.
func (f *pdfFile) spend(n int) error {
	f.budget -= int64(n)
	if f.budget < 0 {
		return errPDFInflate
	}
	return nil
}

// inflate undoes zlib (or bare deflate) compression, reading no more than
// the budget allows. A stream that is damaged or cut short gives what came
// out before the damage, as other readers do.
func (f *pdfFile) inflate(data []byte) ([]byte, error) {
	var r io.ReadCloser
	zr, err := zlib.NewReader(bytes.NewReader(data))
	if err == nil {
		r = zr
	} else {
		r = flate.NewReader(bytes.NewReader(data))
	}
	defer r.Close()
	out, _ := io.ReadAll(io.LimitReader(r, max(f.budget, 0)+1))
	if int64(len(out)) > f.budget {
		f.budget = -1
		return nil, errPDFInflate
	}
	return out, nil
}

func (f *pdfFile) runLength(data []byte) ([]byte, error) {
	var out []byte
	for i := 0; i < len(data); {
		n := int(data[i])
		i++
		switch {
		case n == 128:
			return out, nil
		case n < 128:
			end := min(i+n+1, len(data))
			out = append(out, data[i:end]...)
			i = end
		default:
			if i < len(data) {
				out = append(out, bytes.Repeat(data[i:i+1], 257-n)...)
				i++
			}
		}
		if int64(len(out)) > f.budget {
			return nil, errPDFInflate
		}
	}
	return out, nil
}

// lzw undoes LZW compression (ISO 32000-1 §7.4.4): variable-width codes
// of 9 to 12 bits, 256 clears the table, 257 ends the data; early is the
// EarlyChange parameter.
func (f *pdfFile) lzw(data []byte, early bool) ([]byte, error) {
	newTable := func() [][]byte {
		t := make([][]byte, 258, 4096)
		for i := range 256 {
			t[i] = []byte{byte(i)}
		}
		return t
	}
	var (
		out    []byte
		table  = newTable()
		prev   []byte
		bits   uint32
		nbits  uint
		width  uint = 9
		offset int
	)
	for {
		for nbits < width && offset < len(data) {
			bits = bits<<8 | uint32(data[offset])
			offset++
			nbits += 8
		}
		if nbits < width {
			return out, nil
		}
		code := int(bits >> (nbits - width) & (1<<width - 1))
		nbits -= width
		switch code {
		case 256:
			table, width, prev = newTable(), 9, nil
			continue
		case 257:
			return out, nil
		}
		var entry []byte
		switch {
		case code < len(table) && table[code] != nil:
			entry = table[code]
		case code == len(table) && prev != nil:
			entry = append(append([]byte(nil), prev...), prev[0])
		default:
			return out, nil // damaged: keep what came out
		}
		out = append(out, entry...)
		if int64(len(out)) > f.budget {
			return nil, errPDFInflate
		}
		if prev != nil && len(table) < 4096 {
			table = append(table, append(append([]byte(nil), prev...), entry[0]))
		}
		prev = entry
		next := len(table)
		if early {
			next++
		}
		if next >= 1<<width && width < 12 {
			width++
		}
	}
}

func asciiHexDecode(data []byte) []byte {
	out := make([]byte, 0, len(data)/2)
	var hi byte
	half := false
	for _, c := range data {
		if c == '>' {
			break
		}
		v, ok := unhex(c)
		if !ok {
			continue
		}
		if half {
			out = append(out, hi<<4|v)
		} else {
			hi = v
		}
		half = !half
	}
	if half {
		out = append(out, hi<<4)
	}
	return out
}

func ascii85Decode(data []byte) []byte {
	out := make([]byte, 0, len(data))
	var group [5]byte
	n := 0
	flush := func(k int) {
		var v uint32
		for i := range 5 {
			c := byte('u')
			if i < k {
				c = group[i]
			}
			v = v*85 + uint32(c-'!')
		}
		b := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		out = append(out, b[:k-1]...)
	}
	data = bytes.TrimPrefix(bytes.TrimSpace(data), []byte("<~"))
	for _, c := range data {
		switch {
		case c == '~':
			if n > 1 {
				flush(n)
			}
			return out
		case c == 'z' && n == 0:
			out = append(out, 0, 0, 0, 0)
		case c >= '!' && c <= 'u':
			group[n] = c
			if n++; n == 5 {
				flush(5)
				n = 0
			}
		}
	}
	if n > 1 {
		flush(n)
	}
	return out
}

// unpredict undoes a PNG or TIFF predictor (DecodeParms Predictor).
func unpredict(data []byte, p pdfDict, f *pdfFile) ([]byte, error) {
	pred, _ := f.resolve(p["Predictor"]).(int64)
	if pred < 2 {
		return data, nil
	}
	colors, cols, bpc := int64(1), int64(1), int64(8)
	if v, ok := f.resolve(p["Colors"]).(int64); ok && v > 0 && v <= 32 {
		colors = v
	}
	if v, ok := f.resolve(p["Columns"]).(int64); ok && v > 0 && v <= 1<<20 {
		cols = v
	}
	if v, ok := f.resolve(p["BitsPerComponent"]).(int64); ok && v > 0 && v <= 16 {
		bpc = v
	}
	bpp := int(max((colors*bpc+7)/8, 1))
	rowLen := int((colors*bpc*cols + 7) / 8)
	if pred == 2 {
		if bpc != 8 {
			return data, nil
		}
		for r := 0; r+rowLen <= len(data); r += rowLen {
			for i := bpp; i < rowLen; i++ {
				data[r+i] += data[r+i-bpp]
			}
		}
		return data, nil
	}
	out := make([]byte, 0, len(data))
	prev := make([]byte, rowLen)
	for r := 0; r < len(data); r += rowLen + 1 {
		ft := data[r]
		row := data[r+1 : min(r+1+rowLen, len(data))]
		cur := make([]byte, rowLen)
		copy(cur, row)
		for i := range rowLen {
			var a, b, c byte
			if i >= bpp {
				a, c = cur[i-bpp], prev[i-bpp]
			}
			b = prev[i]
			switch ft {
			case 1:
				cur[i] += a
			case 2:
				cur[i] += b
			case 3:
				cur[i] += byte((int(a) + int(b)) / 2)
			case 4:
				cur[i] += paeth(a, b, c)
			}
		}
		out = append(out, cur[:len(row)]...)
		prev = cur
	}
	return out, nil
}

func paeth(a, b, c byte) byte {
	p := int(a) + int(b) - int(c)
	pa, pb, pc := abs(p-int(a)), abs(p-int(b)), abs(p-int(c))
	switch {
	case pa <= pb && pa <= pc:
		return a
	case pb <= pc:
		return b
	}
	return c
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// pages returns the page dictionaries in order, each with its inherited
// resources, refusing more than MaxPDFPages and never visiting a node twice
// (a page tree may be a loop).
func (f *pdfFile) pages() ([]pdfDict, error) {
	var out []pdfDict
	seen := map[pdfRef]bool{}
	var walk func(node any, res any, depth int) error
	walk = func(node any, res any, depth int) error {
		if r, ok := node.(pdfRef); ok {
			if seen[r] {
				return nil
			}
			seen[r] = true
		}
		d := f.resolveDict(node)
		if d == nil || depth > maxPDFNesting {
			return nil
		}
		if v, ok := d["Resources"]; ok {
			res = v
		}
		kids, hasKids := f.resolve(d["Kids"]).(pdfArray)
		if !hasKids || d["Type"] == pdfName("Page") {
			if len(out) == MaxPDFPages {
				return errPDFTooManyPages
			}
			page := pdfDict{"Contents": d["Contents"], "Resources": res}
			out = append(out, page)
			return nil
		}
		for _, k := range kids {
			if err := walk(k, res, depth+1); err != nil {
				return err
			}
		}
		return f.ctx.Err()
	}
	if err := walk(f.root()["Pages"], nil, 0); err != nil {
		return nil, err
	}
	if f.budget < 0 {
		return nil, errPDFInflate
	}
	return out, nil
}
