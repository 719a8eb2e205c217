package extract

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"

	"github.com/apiaryhq/apiary"
)

// RTF is read by a small state machine over its groups and control words:
// \par and \line break lines, \cell and \row lay out table rows as "a | b",
// \uN is a Unicode character (its ANSI fallback skipped, \ucN long), \'hh a
// byte of the document's code page (\ansicpgN; Windows-1252 by default).
// Destinations that hold no body text (\*\…, the font, colour and style
// tables, pictures, objects' data, field instructions, headers' and
// documents' information) are skipped; \info's \title is the title.

// maxRTFDepth bounds the nesting of groups.
const maxRTFDepth = 256

// rtfSkip are the destinations whose text is not the document's.
var rtfSkip = map[string]bool{
	"fonttbl": true, "colortbl": true, "stylesheet": true, "info": true, "pict": true,
	"objdata": true, "fldinst": true, "header": true, "headerl": true, "headerr": true,
	"headerf": true, "footer": true, "footerl": true, "footerr": true, "footerf": true,
	"listtable": true, "listoverridetable": true, "rsidtbl": true, "generator": true,
	"xmlnstbl": true, "themedata": true, "colorschememapping": true, "datastore": true,
	"latentstyles": true, "filetbl": true, "revtbl": true, "pgdsctbl": true, "bkmkstart": true,
	"bkmkend": true, "xe": true, "tc": true, "private": true, "operator": true, "author": true,
	"nonshppict": true, "shpinst": true, "sp": true, "mmathPr": true, "defchp": true, "defpap": true,
}

// rtfSymbols are control words that stand for a character.
var rtfSymbols = map[string]string{
	"par": "\n\n", "line": "\n", "sect": "\n", "page": "\n", "tab": "\t", "cell": " | ", "row": "\n",
	"nestcell": " | ", "nestrow": "\n", "emdash": "—", "endash": "–", "bullet": "•",
	"lquote": "‘", "rquote": "’", "ldblquote": "“", "rdblquote": "”", "emspace": " ",
	"enspace": " ", "qmspace": " ",
}

type rtfState struct {
	skip  bool
	uc    int  // fallback characters after \uN
	title bool // inside \info's \title
}

func extractRTF(raw []byte, w *writer) (string, string, error) {
	if !strings.HasPrefix(strings.TrimLeft(string(raw[:min(len(raw), 16)]), " \t\r\n"), "{\\rtf") {
		return "", "", apiary.E(apiary.KindInvalid, "extract rtf: the document does not start with {\\rtf")
	}
	var (
		cp      = charmap.Windows1252
		st      = rtfState{uc: 1}
		stack   []rtfState
		pending int // fallback characters still to skip after \uN
		title   strings.Builder
		dest    bool // the group started with \*
		started bool // a group's first control word is being read
		utf16hi rune
	)
	emit := func(s string) {
		switch {
		case st.title:
			if title.Len() < MaxTitleBytes {
				title.WriteString(s)
			}
		case !st.skip:
			w.write(s)
		}
	}
	emitByte := func(c byte) {
		if pending > 0 {
			pending--
			return
		}
		if c < 0x80 {
			emit(string(rune(c)))
			return
		}
		if r := cp.DecodeByte(c); r != utf8.RuneError {
			emit(string(r))
		}
	}
	for i := 0; i < len(raw) && !w.full; {
		c := raw[i]
		switch c {
		case '{':
			if len(stack) >= maxRTFDepth {
				return "", "", apiary.E(apiary.KindInvalid, "extract rtf: groups nested deeper than %d", maxRTFDepth)
			}
			stack = append(stack, st)
			dest, started = false, true
			pending = 0
			i++
			continue
		case '}':
			if n := len(stack); n > 0 {
				st = stack[n-1]
				stack = stack[:n-1]
			}
			pending, started = 0, false
			i++
			continue
		case '\r', '\n':
			i++
			continue
		case '\\':
		default:
			started = false
			emitByte(c)
			i++
			continue
		}
		// A control word or symbol.
		i++
		if i >= len(raw) {
			break
		}
		c = raw[i]
		if !isASCIILetter(c) {
			i++
			wasStart := started
			started = false
			switch c {
			case '*':
				dest = wasStart
				if dest {
					st.skip = true // an unknown \* destination: its text is never body text
				}
				started = wasStart
			case '\'':
				if i+1 < len(raw) {
					if v, ok := unhex2(raw[i], raw[i+1]); ok {
						emitByte(v)
					}
					i += 2
				}
			case '~':
				emit("\u00a0")
			case '_':
				emit("-")
			case '-':
			case '\\', '{', '}':
				emitByte(c)
			case '\r', '\n':
				emit("\n")
			}
			continue
		}
		start := i
		for i < len(raw) && isASCIILetter(raw[i]) && i-start < 32 {
			i++
		}
		word := string(raw[start:i])
		numStart := i
		if i < len(raw) && raw[i] == '-' {
			i++
		}
		for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' && i-numStart < 11 {
			i++
		}
		param, hasParam := 0, i > numStart
		if hasParam {
			param, _ = strconv.Atoi(string(raw[numStart:i]))
		}
		if i < len(raw) && raw[i] == ' ' {
			i++ // the delimiter
		}
		wasStart := started
		started = false
		if wasStart && (rtfSkip[word] || dest) {
			st.skip = true
		}
		if word == "title" && wasStart && len(stack) >= 2 && stack[len(stack)-1].skip {
			st.title, st.skip = true, true
		}
		switch word {
		case "bin":
			if hasParam && param > 0 {
				i = min(len(raw), i+param)
			}
		case "u":
			r := rune(param)
			if r < 0 {
				r += 65536
			}
			pending = st.uc
			switch {
			case r >= 0xD800 && r < 0xDC00:
				utf16hi = r
			case r >= 0xDC00 && r < 0xE000:
				if utf16hi != 0 {
					emit(string((utf16hi-0xD800)<<10 + (r - 0xDC00) + 0x10000))
				}
				utf16hi = 0
			default:
				utf16hi = 0
				emit(string(r))
			}
		case "uc":
			if hasParam && param >= 0 && param < 16 {
				st.uc = param
			}
		case "ansicpg":
			if m, ok := rtfCodePages[param]; ok {
				cp = m
			}
		case "row", "nestrow":
			if !st.skip && strings.HasSuffix(string(w.buf[max(0, len(w.buf)-3):]), " | ") {
				w.buf = w.buf[:len(w.buf)-3]
			}
			emit("\n")
		default:
			if s, ok := rtfSymbols[word]; ok {
				if st.title {
					s = " "
				}
				emit(s)
			}
		}
	}
	text := collapseBlankLines(normalize(string(w.buf)))
	return text, strings.Join(strings.Fields(title.String()), " "), nil
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// rtfCodePages are the ANSI code pages \ansicpg may name.
var rtfCodePages = map[int]*charmap.Charmap{
	437: charmap.CodePage437, 850: charmap.CodePage850, 1250: charmap.Windows1250,
	1251: charmap.Windows1251, 1252: charmap.Windows1252, 1253: charmap.Windows1253,
	1254: charmap.Windows1254, 1255: charmap.Windows1255, 1256: charmap.Windows1256,
	1257: charmap.Windows1257, 1258: charmap.Windows1258, 10000: charmap.Macintosh,
}
