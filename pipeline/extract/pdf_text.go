package extract

import (
	"context"
	"errors"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/apiaryhq/apiary"
)

// PDF text: each page's content stream is interpreted (text state, text
// and graphics matrices, form XObjects) to place every glyph on the page.
// Text comes out in content order, which is reading order for what word
// processors and TeX write; where glyphs go is used only to tell words
// and lines apart: a gap along the baseline wider than pdfWordGap of the
// font size starts a word, a move off the baseline starts a line. Each
// page's text starts on a line of its own and Document.Pages records where.

const (
	// pdfWordGap is the gap between two glyphs, as a fraction of the font
	// size, from which they are two words (as pdftotext decides).
	pdfWordGap = 0.1
	// pdfLineShift is how far off the baseline (fraction of the font size)
	// a glyph starts a new line; less is a superscript or subscript.
	pdfLineShift = 0.5
	// maxPDFStack bounds the graphics state stack (q nested in q).
	maxPDFStack = 128
	// pdfCtxEvery is how many operators run between looks at the context.
	pdfCtxEvery = 1024
)

type matrix [6]float64

var identity = matrix{1, 0, 0, 1, 0, 0}

// mul returns m × n (m applied first).
func (m matrix) mul(n matrix) matrix {
	return matrix{
		m[0]*n[0] + m[1]*n[2], m[0]*n[1] + m[1]*n[3],
		m[2]*n[0] + m[3]*n[2], m[2]*n[1] + m[3]*n[3],
		m[4]*n[0] + m[5]*n[2] + n[4], m[4]*n[1] + m[5]*n[3] + n[5],
	}
}

type gstate struct {
	ctm                  matrix
	font                 *pdfFont
	size, tc, tw, th, tl float64
	rise                 float64
}

// pdfPage interprets the content of one page into w.
type pdfPage struct {
	f     *pdfFile
	w     *writer
	fonts map[any]*pdfFont // by font reference (or dict identity within the page)
	gs    gstate
	stack []gstate
	tm    matrix // text matrix
	tlm   matrix // text line matrix
	// The last glyph written: where it ended, its baseline direction and size.
	have       bool
	endX, endY float64
	dirX, dirY float64
	lastSize   float64
	formDepth  int
	ops        int  // operators run, to look at the context now and then
	hyphen     bool // a line break after a hyphen is pending
	accent     rune // the combining form of an accent just written, or 0
	accentRune rune // that accent as written
}

// extractPDF writes the text of every page, in order, and records where
// each page starts.
func extractPDF(ctx context.Context, raw []byte, w *writer) (text, title string, pages []int, err error) {
	f, err := openPDF(ctx, raw)
	if err != nil {
		return "", "", nil, pdfError(err)
	}
	list, err := f.pages()
	if err != nil {
		return "", "", nil, pdfError(err)
	}
	fonts := map[any]*pdfFont{}
	for _, pg := range list {
		if err := ctx.Err(); err != nil {
			return "", "", nil, pdfError(err)
		}
		trimTrailingSpace(w)
		if len(w.buf) > 0 {
			w.write("\n\n")
		}
		pages = append(pages, len(w.buf))
		p := &pdfPage{f: f, w: w, fonts: fonts, gs: gstate{ctm: identity, th: 1}}
		res := f.resolveDict(pg["Resources"])
		for _, data := range f.contents(pg["Contents"]) {
			p.run(data, res)
		}
		if f.budget < 0 {
			return "", "", nil, pdfError(errPDFInflate)
		}
		if w.full {
			return "", "", nil, nil // the caller reports the bound
		}
	}
	if err := ctx.Err(); err != nil {
		return "", "", nil, pdfError(err)
	}
	trimTrailingSpace(w)
	for i := range pages {
		pages[i] = min(pages[i], len(w.buf))
	}
	if f.crypt == nil {
		if info := f.resolveDict(f.trailer["Info"]); info != nil {
			if s, ok := f.resolve(info["Title"]).(pdfString); ok {
				title = strings.Join(strings.Fields(pdfDocText(s)), " ")
			}
		}
	}
	return string(w.buf), title, pages, nil
}

func trimTrailingSpace(w *writer) {
	for len(w.buf) > 0 && (w.buf[len(w.buf)-1] == ' ' || w.buf[len(w.buf)-1] == '\n') {
		w.buf = w.buf[:len(w.buf)-1]
	}
}

func pdfError(err error) error {
	switch {
	case errors.Is(err, errPDFTooManyPages):
		return apiary.E(apiary.KindTooLarge, "extract pdf: more than %d pages", MaxPDFPages)
	case errors.Is(err, errPDFInflate):
		return apiary.E(apiary.KindTooLarge, "extract pdf: its streams decode (or its objects parse) to more than %d times the file plus %d bytes", InflateRatio, InflateSlack)
	case errors.Is(err, errPDFEncrypted):
		return apiary.E(apiary.KindInvalid, "extract pdf: the document is encrypted with a password")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apiary.Wrap(err, apiary.KindUnavailable, "extract pdf: stopped")
	case errors.Is(err, errPDFNoPages):
		return apiary.E(apiary.KindInvalid, "extract pdf: no page tree was found (not a PDF, or a damaged one)")
	}
	var se pdfSyntaxError
	if errors.As(err, &se) {
		return apiary.E(apiary.KindInvalid, "extract pdf: %v", se)
	}
	return apiary.E(apiary.KindInvalid, "extract pdf: not a readable PDF")
}

// contents returns the decoded content streams of a page (one stream or
// an array of them, which are one content stream split in parts).
func (f *pdfFile) contents(v any) [][]byte {
	var out [][]byte
	add := func(x any) {
		if s, ok := f.resolve(x).(*pdfStream); ok {
			if data, err := f.decode(s); err == nil {
				out = append(out, data)
			}
		}
	}
	if arr, ok := f.resolve(v).(pdfArray); ok {
		// Parts may split an operator: join them with a space.
		var joined []byte
		for _, x := range arr {
			before := len(out)
			add(x)
			if len(out) > before {
				joined = append(append(joined, out[before]...), ' ')
				out = out[:before]
			}
		}
		return [][]byte{joined}
	}
	add(v)
	return out
}

// run interprets one content stream with its resources.
func (p *pdfPage) run(data []byte, res pdfDict) {
	l := &pdfLexer{b: data}
	var ops []any
	for !p.w.full && p.f.budget >= 0 {
		v, err := l.object(0)
		if err != nil {
			if err == errPDFEOF {
				return
			}
			ops = ops[:0]
			continue
		}
		op, isOp := v.(pdfOp)
		if !isOp {
			if len(ops) < 1024 {
				ops = append(ops, v)
			}
			continue
		}
		if p.ops++; p.ops%pdfCtxEvery == 0 && p.f.ctx.Err() != nil {
			return
		}
		if op == "ID" { // inline image data: skip to EI
			l.pos = skipInlineImage(data, l.pos)
		} else {
			p.do(op, ops, res)
		}
		ops = ops[:0]
	}
}

// skipInlineImage returns the position after the "EI" that ends inline
// image data starting at pos.
func skipInlineImage(b []byte, pos int) int {
	for i := pos + 1; i+2 <= len(b); i++ {
		if b[i] == 'E' && b[i+1] == 'I' && isPDFSpace(b[i-1]) && (i+2 == len(b) || isPDFSpace(b[i+2]) || isPDFDelim(b[i+2])) {
			return i + 2
		}
	}
	return len(b)
}

func nums(ops []any, n int) ([]float64, bool) {
	if len(ops) < n {
		return nil, false
	}
	out := make([]float64, n)
	for i, v := range ops[len(ops)-n:] {
		switch x := v.(type) {
		case int64:
			out[i] = float64(x)
		case float64:
			out[i] = x
		default:
			return nil, false
		}
		if math.IsNaN(out[i]) || math.IsInf(out[i], 0) {
			return nil, false
		}
	}
	return out, true
}

func (p *pdfPage) do(op pdfOp, ops []any, res pdfDict) {
	gs := &p.gs
	switch op {
	case "q":
		if len(p.stack) < maxPDFStack {
			p.stack = append(p.stack, *gs)
		}
	case "Q":
		if n := len(p.stack); n > 0 {
			*gs = p.stack[n-1]
			p.stack = p.stack[:n-1]
		}
	case "cm":
		if v, ok := nums(ops, 6); ok {
			gs.ctm = matrix(v).mul(gs.ctm)
		}
	case "BT":
		p.tm, p.tlm = identity, identity
	case "Tf":
		if v, ok := nums(ops, 1); ok && len(ops) >= 2 {
			gs.size = v[0]
			if name, ok := ops[len(ops)-2].(pdfName); ok {
				gs.font = p.font(res, name)
			}
		}
	case "Tc", "Tw", "Tz", "TL", "Ts":
		if v, ok := nums(ops, 1); ok {
			switch op {
			case "Tc":
				gs.tc = v[0]
			case "Tw":
				gs.tw = v[0]
			case "Tz":
				gs.th = v[0] / 100
			case "TL":
				gs.tl = v[0]
			case "Ts":
				gs.rise = v[0]
			}
		}
	case "Td", "TD":
		if v, ok := nums(ops, 2); ok {
			if op == "TD" {
				gs.tl = -v[1]
			}
			p.tlm = matrix{1, 0, 0, 1, v[0], v[1]}.mul(p.tlm)
			p.tm = p.tlm
		}
	case "Tm":
		if v, ok := nums(ops, 6); ok {
			p.tlm, p.tm = matrix(v), matrix(v)
		}
	case "T*":
		p.nextLine()
	case "Tj":
		if len(ops) > 0 {
			p.show(ops[len(ops)-1])
		}
	case "'":
		if len(ops) > 0 {
			p.nextLine()
			p.show(ops[len(ops)-1])
		}
	case "\"":
		if v, ok := nums(ops[:max(len(ops)-1, 0)], 2); ok {
			gs.tw, gs.tc = v[0], v[1]
			p.nextLine()
			p.show(ops[len(ops)-1])
		}
	case "TJ":
		if len(ops) == 0 {
			return
		}
		arr, _ := ops[len(ops)-1].(pdfArray)
		for _, v := range arr {
			switch x := v.(type) {
			case pdfString:
				p.show(x)
			case int64, float64:
				n, _ := nums([]any{x}, 1)
				p.tm = matrix{1, 0, 0, 1, -n[0] / 1000 * gs.size * gs.th, 0}.mul(p.tm)
			}
		}
	case "Do":
		if len(ops) > 0 {
			if name, ok := ops[len(ops)-1].(pdfName); ok {
				p.form(res, name)
			}
		}
	}
}

func (p *pdfPage) nextLine() {
	p.tlm = matrix{1, 0, 0, 1, 0, -p.gs.tl}.mul(p.tlm)
	p.tm = p.tlm
}

// font returns the font named name in res, read once per document.
func (p *pdfPage) font(res pdfDict, name pdfName) *pdfFont {
	fonts := p.f.resolveDict(res["Font"])
	v := fonts[name]
	key := any(v)
	if _, isRef := v.(pdfRef); !isRef {
		d := p.f.resolveDict(v)
		if d == nil {
			return nil
		}
		key = &d // a direct font: cached for this call only
	}
	if ft, ok := p.fonts[key]; ok {
		return ft
	}
	d := p.f.resolveDict(v)
	if d == nil {
		return nil
	}
	ft := p.f.loadFont(d)
	p.fonts[key] = ft
	return ft
}

// form draws a form XObject: its content with its resources and matrix.
func (p *pdfPage) form(res pdfDict, name pdfName) {
	s, ok := p.f.resolve(p.f.resolveDict(res["XObject"])[name]).(*pdfStream)
	if !ok || s.dict["Subtype"] != pdfName("Form") || p.formDepth >= maxPDFFormDepth || p.f.ctx.Err() != nil {
		return
	}
	data, err := p.f.decode(s)
	if err != nil {
		return
	}
	formRes := p.f.resolveDict(s.dict["Resources"])
	if formRes == nil {
		formRes = res
	}
	saved, savedTm, savedTlm, savedStack := p.gs, p.tm, p.tlm, len(p.stack)
	if v, ok := nums(p.f.resolveArray(s.dict["Matrix"]), 6); ok {
		p.gs.ctm = matrix(v).mul(p.gs.ctm)
	}
	p.formDepth++
	p.run(data, formRes)
	p.formDepth--
	p.gs, p.tm, p.tlm, p.stack = saved, savedTm, savedTlm, p.stack[:min(savedStack, len(p.stack))]
}

// show draws a string with the current font, writing its glyphs' text.
func (p *pdfPage) show(v any) {
	s, ok := v.(pdfString)
	gs := &p.gs
	if !ok || gs.font == nil {
		return
	}
	ft := gs.font
	for len(s) > 0 && !p.w.full {
		code, n := ft.nextCode(s)
		s = s[n:]
		text, w0 := ft.glyph(code)
		adv := w0*gs.size + gs.tc
		if n == 1 && code == 32 {
			adv += gs.tw
		}
		adv *= gs.th
		trm := matrix{gs.size * gs.th, 0, 0, gs.size, 0, gs.rise}.mul(p.tm).mul(gs.ctm)
		next := matrix{1, 0, 0, 1, adv, 0}.mul(p.tm)
		end := matrix{gs.size * gs.th, 0, 0, gs.size, 0, gs.rise}.mul(next).mul(gs.ctm)
		size := math.Hypot(trm[2], trm[3])
		p.glyph(text, trm[4], trm[5], end[4], end[5], trm[0], trm[1], size)
		p.tm = next
	}
}

// spacingAccents are accents that TeX and others draw as glyphs of their
// own over the letter that follows; as combining marks.
var spacingAccents = map[rune]rune{
	'´': '\u0301', '`': '\u0300', 'ˆ': '\u0302', '^': '\u0302', '¨': '\u0308', '˜': '\u0303',
	'~': '\u0303', '˚': '\u030a', '¸': '\u0327', 'ˇ': '\u030c', '˘': '\u0306', '¯': '\u0304',
	'˙': '\u0307', '˝': '\u030b', '˛': '\u0328',
}

// glyph writes a glyph's text, preceded by a space or a line break when
// it is not where the previous glyph ended. A word hyphenated at a line's
// end is joined again (as pdftotext does) when the next line starts with
// a lower-case letter; an accent drawn over the next letter is composed
// with it.
func (p *pdfPage) glyph(text string, x, y, ex, ey, dx, dy, size float64) {
	if n := math.Hypot(dx, dy); n > 0 {
		dx, dy = dx/n, dy/n
	} else {
		dx, dy = 1, 0
	}
	overlap := false
	if p.have {
		gx, gy := x-p.endX, y-p.endY
		along := gx*p.dirX + gy*p.dirY
		across := -gx*p.dirY + gy*p.dirX
		ref := max(p.lastSize, size, 1e-3)
		turned := dx*p.dirX+dy*p.dirY < 0.9
		switch {
		case turned || math.Abs(across) > pdfLineShift*ref:
			p.sep('\n')
		case along > pdfWordGap*ref || along < -ref:
			p.sep(' ')
		default:
			overlap = along < -0.1*ref
		}
	}
	accent := p.accent
	p.accent = 0
	p.have = true
	p.endX, p.endY, p.dirX, p.dirY, p.lastSize = ex, ey, dx, dy, size
	for _, r := range text {
		if p.hyphen {
			p.hyphen = false
			if unicode.IsLower(r) {
				p.w.buf = p.w.buf[:len(p.w.buf)-1] // the hyphen
			} else {
				p.w.writeByte('\n')
			}
		}
		switch {
		case unicode.IsSpace(r) || r == 0xa0:
			p.sep(' ')
		case r >= 0xfb00 && r <= 0xfb06: // ligatures: their letters, for search
			p.w.write([...]string{"ff", "fi", "fl", "ffi", "ffl", "st", "st"}[r-0xfb00])
		case r == 0xad: // a soft hyphen is a visible hyphen at a line's end
			p.w.writeByte('-')
		case unicode.IsControl(r) || r == 0xfffd || unicode.Is(unicode.Co, r):
		default:
			s := string(r)
			if accent != 0 && overlap && unicode.IsLetter(r) {
				// Replace the accent written before with the composed letter.
				p.w.buf = p.w.buf[:len(p.w.buf)-utf8.RuneLen(p.accentRune)]
				s = norm.NFC.String(s + string(accent))
			}
			p.w.write(s)
			if mark, ok := spacingAccents[r]; ok && len(text) == len(s) {
				p.accent, p.accentRune = mark, r
			}
		}
		accent = 0
	}
}

// sep writes a space or a line break, unless the text already ends with one
// (a line break replaces a space). A line break after a letter and a
// hyphen waits for the next glyph (see glyph).
func (p *pdfPage) sep(c byte) {
	p.accent = 0
	buf := p.w.buf
	if len(buf) == 0 || p.hyphen {
		return
	}
	last := buf[len(buf)-1]
	switch {
	case last == '\n':
	case last == ' ' && c == '\n':
		p.w.buf[len(buf)-1] = '\n'
	case last == ' ':
	case c == '\n' && last == '-' && len(buf) >= 2 && endsWithLetter(buf[:len(buf)-1]):
		p.hyphen = true
	default:
		p.w.writeByte(c)
	}
}

func endsWithLetter(b []byte) bool {
	r, _ := utf8.DecodeLastRune(b)
	return unicode.IsLetter(r)
}
