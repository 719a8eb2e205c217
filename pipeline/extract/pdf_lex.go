package extract

import (
	"bytes"
	"strconv"
)

// The PDF object syntax (ISO 32000-1 §7.3): a lexer over bytes in memory
// that parses one object at a time. Objects are plain Go values:
//
//	nil (null), bool, int64, float64, pdfName, pdfString, pdfArray,
//	pdfDict, pdfRef, *pdfStream, pdfOp (a content-stream operator)

type (
	pdfName   string
	pdfString []byte
	pdfArray  []any
	pdfDict   map[pdfName]any
	pdfRef    struct{ num, gen int64 }
	pdfOp     string
	// pdfStream is a stream object: its dictionary and its raw (still
	// encoded) bytes, a slice of the file.
	pdfStream struct {
		dict     pdfDict
		raw      []byte
		num, gen int64 // the object's number and generation (for decryption)
	}
)

// maxPDFNesting bounds arrays and dictionaries inside one another, so that
// a hostile file cannot exhaust the stack.
const maxPDFNesting = 64

// pdfLexer reads objects from b starting at pos.
type pdfLexer struct {
	b   []byte
	pos int
	// refs: parse "n g R" as a reference (false in content streams, where
	// R is no operator but numbers never precede it as a reference).
	refs bool
}

// pdfSyntaxError is a parse failure at a byte offset; it never holds file text.
type pdfSyntaxError struct{ pos int }

func (e pdfSyntaxError) Error() string { return "syntax error at byte " + strconv.Itoa(e.pos) }

func isPDFSpace(c byte) bool {
	switch c {
	case 0, '\t', '\n', '\f', '\r', ' ':
		return true
	}
	return false
}

func isPDFDelim(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', '{', '}', '/', '%':
		return true
	}
	return false
}

// skipSpace skips white space and comments.
func (l *pdfLexer) skipSpace() {
	for l.pos < len(l.b) {
		c := l.b[l.pos]
		if isPDFSpace(c) {
			l.pos++
			continue
		}
		if c == '%' {
			for l.pos < len(l.b) && l.b[l.pos] != '\n' && l.b[l.pos] != '\r' {
				l.pos++
			}
			continue
		}
		return
	}
}

// regular returns the run of regular characters at pos and moves past it.
func (l *pdfLexer) regular() []byte {
	start := l.pos
	for l.pos < len(l.b) && !isPDFSpace(l.b[l.pos]) && !isPDFDelim(l.b[l.pos]) {
		l.pos++
	}
	return l.b[start:l.pos]
}

// errEOF marks the end of the input where an object was expected.
var errPDFEOF = pdfSyntaxError{pos: -1}

// object parses the next object. In a file (refs true), "n g R" is a
// reference; keywords (obj, endobj, stream, R, operators) come back as pdfOp.
func (l *pdfLexer) object(depth int) (any, error) {
	if depth > maxPDFNesting {
		return nil, pdfSyntaxError{l.pos}
	}
	l.skipSpace()
	if l.pos >= len(l.b) {
		return nil, errPDFEOF
	}
	c := l.b[l.pos]
	switch c {
	case '/':
		l.pos++
		return pdfName(decodeName(l.regular())), nil
	case '(':
		return l.literalString()
	case '<':
		if l.pos+1 < len(l.b) && l.b[l.pos+1] == '<' {
			l.pos += 2
			return l.dict(depth)
		}
		return l.hexString()
	case '[':
		l.pos++
		var arr pdfArray
		for {
			l.skipSpace()
			if l.pos >= len(l.b) {
				return arr, nil // unterminated: take what there is
			}
			if l.b[l.pos] == ']' {
				l.pos++
				return arr, nil
			}
			v, err := l.object(depth + 1)
			if err != nil {
				return nil, err
			}
			if op, ok := v.(pdfOp); ok && op == "R" && l.refs && len(arr) >= 2 {
				if ref, ok := makeRef(arr[len(arr)-2], arr[len(arr)-1]); ok {
					arr = append(arr[:len(arr)-2], ref)
					continue
				}
			}
			arr = append(arr, v)
		}
	case ']', '>', ')', '{', '}':
		l.pos++
		return pdfOp(c), nil
	}
	tok := l.regular()
	if len(tok) == 0 {
		l.pos++
		return nil, pdfSyntaxError{l.pos - 1}
	}
	if v, ok := parseNumber(tok); ok {
		if n, isInt := v.(int64); isInt && l.refs && n >= 0 {
			// Look ahead for "gen R".
			save := l.pos
			l.skipSpace()
			gen := l.regular()
			if g, err := strconv.ParseInt(string(gen), 10, 64); err == nil && len(gen) > 0 && g >= 0 {
				l.skipSpace()
				if l.pos < len(l.b) && l.b[l.pos] == 'R' && (l.pos+1 == len(l.b) || isPDFSpace(l.b[l.pos+1]) || isPDFDelim(l.b[l.pos+1])) {
					l.pos++
					return pdfRef{n, g}, nil
				}
			}
			l.pos = save
		}
		return v, nil
	}
	switch string(tok) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "null":
		return nil, nil
	}
	return pdfOp(tok), nil
}

func makeRef(a, b any) (pdfRef, bool) {
	n, ok1 := a.(int64)
	g, ok2 := b.(int64)
	return pdfRef{n, g}, ok1 && ok2 && n >= 0 && g >= 0
}

func (l *pdfLexer) dict(depth int) (any, error) {
	d := pdfDict{}
	for {
		l.skipSpace()
		if l.pos >= len(l.b) {
			return d, nil
		}
		if l.b[l.pos] == '>' {
			l.pos++
			if l.pos < len(l.b) && l.b[l.pos] == '>' {
				l.pos++
			}
			return d, nil
		}
		k, err := l.object(depth + 1)
		if err != nil {
			return nil, err
		}
		key, ok := k.(pdfName)
		if !ok {
			continue // a stray token: skip it, as readers do
		}
		l.skipSpace()
		if l.pos < len(l.b) && l.b[l.pos] == '>' {
			d[key] = nil
			continue
		}
		v, err := l.object(depth + 1)
		if err != nil {
			return nil, err
		}
		if _, isOp := v.(pdfOp); isOp {
			continue
		}
		d[key] = v
	}
}

func parseNumber(tok []byte) (any, bool) {
	c := tok[0]
	if c != '+' && c != '-' && c != '.' && (c < '0' || c > '9') {
		return nil, false
	}
	if n, err := strconv.ParseInt(string(tok), 10, 64); err == nil {
		return n, true
	}
	// Reals: digits with one point; writers also emit "--1" or "1.2.3": read the leading number.
	end, dot, digits := 0, false, false
	if end < len(tok) && (tok[end] == '+' || tok[end] == '-') {
		end++
	}
	for ; end < len(tok); end++ {
		switch {
		case tok[end] >= '0' && tok[end] <= '9':
			digits = true
		case tok[end] == '.' && !dot:
			dot = true
		default:
			goto done
		}
	}
done:
	if !digits {
		if c == '-' || c == '+' || c == '.' {
			return int64(0), true
		}
		return nil, false
	}
	f, err := strconv.ParseFloat(string(tok[:end]), 64)
	if err != nil {
		return nil, false
	}
	return f, true
}

// decodeName undoes #xx escapes in a name.
func decodeName(b []byte) string {
	if bytes.IndexByte(b, '#') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '#' && i+2 < len(b) {
			if v, ok := unhex2(b[i+1], b[i+2]); ok {
				out = append(out, v)
				i += 2
				continue
			}
		}
		out = append(out, b[i])
	}
	return string(out)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func (l *pdfLexer) literalString() (any, error) {
	l.pos++ // (
	var out []byte
	depth := 1
	for l.pos < len(l.b) {
		c := l.b[l.pos]
		l.pos++
		switch c {
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return pdfString(out), nil
			}
		case '\r':
			if l.pos < len(l.b) && l.b[l.pos] == '\n' {
				l.pos++
			}
			c = '\n'
		case '\\':
			if l.pos >= len(l.b) {
				return pdfString(out), nil
			}
			c = l.b[l.pos]
			l.pos++
			switch c {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case '\r':
				if l.pos < len(l.b) && l.b[l.pos] == '\n' {
					l.pos++
				}
				continue
			case '\n':
				continue
			default:
				if c >= '0' && c <= '7' {
					v := int(c - '0')
					for k := 0; k < 2 && l.pos < len(l.b) && l.b[l.pos] >= '0' && l.b[l.pos] <= '7'; k++ {
						v = v*8 + int(l.b[l.pos]-'0')
						l.pos++
					}
					c = byte(v)
				}
			}
		}
		out = append(out, c)
	}
	return pdfString(out), nil
}

func (l *pdfLexer) hexString() (any, error) {
	l.pos++ // <
	rest := l.b[l.pos:]
	end := bytes.IndexByte(rest, '>')
	if end < 0 {
		end = len(rest) - 1 // unterminated: the string runs to the end
	}
	l.pos += end + 1
	return pdfString(asciiHexDecode(rest[:end+1])), nil
}
