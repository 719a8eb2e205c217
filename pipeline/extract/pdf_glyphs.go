package extract

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/unicode/norm"
)

// Glyph names to Unicode, after the Adobe Glyph List's rules: uniXXXX and
// uXXXX[XX] names, ligatures joined by "_", suffixes after "." dropped, and
// a table of the names that fonts in documents use. Accented Latin letters
// are not listed: "eacute" is "e" with the combining acute, composed.

var glyphNames = map[string]string{
	"space": " ", "exclam": "!", "quotedbl": "\"", "numbersign": "#", "dollar": "$",
	"percent": "%", "ampersand": "&", "quotesingle": "'", "quoteright": "’", "parenleft": "(",
	"parenright": ")", "asterisk": "*", "plus": "+", "comma": ",", "hyphen": "-", "period": ".",
	"slash": "/", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
	"six": "6", "seven": "7", "eight": "8", "nine": "9", "colon": ":", "semicolon": ";",
	"less": "<", "equal": "=", "greater": ">", "question": "?", "at": "@", "bracketleft": "[",
	"backslash": "\\", "bracketright": "]", "asciicircum": "^", "underscore": "_", "grave": "`",
	"quoteleft": "‘", "braceleft": "{", "bar": "|", "braceright": "}", "asciitilde": "~",
	"exclamdown": "¡", "cent": "¢", "sterling": "£", "fraction": "⁄", "yen": "¥", "florin": "ƒ",
	"section": "§", "currency": "¤", "quotedblleft": "“", "guillemotleft": "«",
	"guilsinglleft": "‹", "guilsinglright": "›", "fi": "fi", "fl": "fl", "ff": "ff", "ffi": "ffi",
	"ffl": "ffl", "endash": "–", "dagger": "†", "daggerdbl": "‡", "periodcentered": "·",
	"paragraph": "¶", "bullet": "•", "quotesinglbase": "‚", "quotedblbase": "„",
	"quotedblright": "”", "guillemotright": "»", "ellipsis": "…", "perthousand": "‰",
	"questiondown": "¿", "acute": "´", "circumflex": "ˆ", "tilde": "˜", "macron": "¯",
	"breve": "˘", "dotaccent": "˙", "dieresis": "¨", "ring": "˚", "cedilla": "¸",
	"hungarumlaut": "˝", "ogonek": "˛", "caron": "ˇ", "emdash": "—", "AE": "Æ",
	"ordfeminine": "ª", "Lslash": "Ł", "Oslash": "Ø", "OE": "Œ", "ordmasculine": "º", "ae": "æ",
	"dotlessi": "ı", "dotlessj": "ȷ", "lslash": "ł", "oslash": "ø", "oe": "œ", "germandbls": "ß",
	"onesuperior": "¹", "twosuperior": "²", "threesuperior": "³", "onehalf": "½",
	"onequarter": "¼", "threequarters": "¾", "logicalnot": "¬", "mu": "µ", "multiply": "×",
	"divide": "÷", "degree": "°", "plusminus": "±", "copyright": "©", "registered": "®",
	"trademark": "™", "brokenbar": "¦", "minus": "−", "Eth": "Ð", "eth": "ð", "Thorn": "Þ",
	"thorn": "þ", "Euro": "€", "nbspace": "\u00a0", "sfthyphen": "\u00ad", "softhyphen": "\u00ad",
	"visiblespace": "␣", "quotedblreversed": "‟", "arrowleft": "←", "arrowright": "→",
	"arrowup": "↑", "arrowdown": "↓", "arrowboth": "↔", "arrowdblright": "⇒", "arrowdblleft": "⇐",
	"arrowdblboth": "⇔", "infinity": "∞", "lessequal": "≤", "greaterequal": "≥", "notequal": "≠",
	"approxequal": "≈", "equivalence": "≡", "element": "∈", "notelement": "∉", "universal": "∀",
	"existential": "∃", "emptyset": "∅", "intersection": "∩", "union": "∪", "summation": "∑",
	"product": "∏", "integral": "∫", "radical": "√", "partialdiff": "∂", "gradient": "∇",
	"proportional": "∝", "angle": "∠", "logicaland": "∧", "logicalor": "∨", "propersubset": "⊂",
	"propersuperset": "⊃", "reflexsubset": "⊆", "reflexsuperset": "⊇", "circleplus": "⊕",
	"circlemultiply": "⊗", "perpendicular": "⊥", "dotmath": "⋅", "lozenge": "◊", "prime": "′",
	"second": "″", "similar": "∼", "therefore": "∴", "asteriskmath": "∗", "angleleft": "〈",
	"angleright": "〉", "minute": "′", "club": "♣", "diamond": "♦", "heart": "♥", "spade": "♠",
	"Alpha": "Α", "Beta": "Β", "Gamma": "Γ", "Delta": "Δ", "Epsilon": "Ε", "Zeta": "Ζ",
	"Eta": "Η", "Theta": "Θ", "Iota": "Ι", "Kappa": "Κ", "Lambda": "Λ", "Mu": "Μ", "Nu": "Ν",
	"Xi": "Ξ", "Omicron": "Ο", "Pi": "Π", "Rho": "Ρ", "Sigma": "Σ", "Tau": "Τ", "Upsilon": "Υ",
	"Phi": "Φ", "Chi": "Χ", "Psi": "Ψ", "Omega": "Ω", "alpha": "α", "beta": "β", "gamma": "γ",
	"delta": "δ", "epsilon": "ε", "zeta": "ζ", "eta": "η", "theta": "θ", "iota": "ι",
	"kappa": "κ", "lambda": "λ", "nu": "ν", "xi": "ξ", "omicron": "ο", "pi": "π", "rho": "ρ",
	"sigma": "σ", "sigma1": "ς", "tau": "τ", "upsilon": "υ", "phi": "φ", "chi": "χ", "psi": "ψ",
	"omega": "ω", "theta1": "ϑ", "phi1": "ϕ", "omega1": "ϖ", "Upsilon1": "ϒ", "aleph": "ℵ",
	"Ifraktur": "ℑ", "Rfraktur": "ℜ", "weierstrass": "℘", "carriagereturn": "↵",
	"figuredash": "‒", "quotereversed": "‛", "dblverticalbar": "‖",
	"ij": "ĳ", "IJ": "Ĳ", "napostrophe": "ŉ", "Eng": "Ŋ", "eng": "ŋ", "kgreenlandic": "ĸ",
	"ldot": "ŀ", "Ldot": "Ŀ", "dcroat": "đ", "Dcroat": "Đ", "hbar": "ħ", "Hbar": "Ħ",
	"tbar": "ŧ", "Tbar": "Ŧ", "longs": "ſ", "schwa": "ə", "compwordmark": "", "cwm": "",
}

// accents are the suffixes of accented letters' glyph names, as combining marks.
var accents = []struct{ name, mark string }{
	{"acute", "\u0301"}, {"grave", "\u0300"}, {"circumflex", "\u0302"}, {"dieresis", "\u0308"},
	{"tilde", "\u0303"}, {"ring", "\u030a"}, {"cedilla", "\u0327"}, {"caron", "\u030c"},
	{"macron", "\u0304"}, {"breve", "\u0306"}, {"ogonek", "\u0328"}, {"dotaccent", "\u0307"},
	{"hungarumlaut", "\u030b"}, {"commaaccent", "\u0326"}, {"dotbelow", "\u0323"},
}

// glyphText returns the text a glyph name stands for; ok false when the
// name means nothing known.
func glyphText(name string) (string, bool) {
	if s, ok := glyphNames[name]; ok {
		return s, true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		name = name[:i] // "a.sc", "one.oldstyle"
	} else if i == 0 {
		return "", false
	}
	if s, ok := glyphNames[name]; ok {
		return s, true
	}
	if strings.Contains(name, "_") { // a ligature: "f_f_i"
		var b strings.Builder
		for part := range strings.SplitSeq(name, "_") {
			s, ok := glyphText(part)
			if !ok {
				return "", false
			}
			b.WriteString(s)
		}
		return b.String(), true
	}
	if len(name) == 1 && (name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z') {
		return name, true
	}
	if hex, ok := strings.CutPrefix(name, "uni"); ok && len(hex) >= 4 && len(hex)%4 == 0 {
		var b strings.Builder
		for i := 0; i < len(hex); i += 4 {
			v, err := strconv.ParseUint(hex[i:i+4], 16, 32)
			if err != nil || v >= 0xD800 && v < 0xE000 {
				return "", false
			}
			b.WriteRune(rune(v))
		}
		return b.String(), true
	}
	if hex, ok := strings.CutPrefix(name, "u"); ok && len(hex) >= 4 && len(hex) <= 6 {
		if v, err := strconv.ParseUint(hex, 16, 32); err == nil && v <= utf8.MaxRune && (v < 0xD800 || v >= 0xE000) {
			return string(rune(v)), true
		}
	}
	for _, a := range accents {
		if base, ok := strings.CutSuffix(name, a.name); ok && len(base) == 1 {
			if s, ok := glyphText(base); ok {
				return norm.NFC.String(s + a.mark), true
			}
		}
	}
	return "", false
}

// standardEncoding is Adobe's StandardEncoding where it differs from ASCII
// (32 to 126 are ASCII but for the quotes).
var standardEncoding = map[byte]string{
	0x27: "quoteright", 0x60: "quoteleft", 0xa1: "exclamdown", 0xa2: "cent", 0xa3: "sterling",
	0xa4: "fraction", 0xa5: "yen", 0xa6: "florin", 0xa7: "section", 0xa8: "currency",
	0xa9: "quotesingle", 0xaa: "quotedblleft", 0xab: "guillemotleft", 0xac: "guilsinglleft",
	0xad: "guilsinglright", 0xae: "fi", 0xaf: "fl", 0xb1: "endash", 0xb2: "dagger",
	0xb3: "daggerdbl", 0xb4: "periodcentered", 0xb6: "paragraph", 0xb7: "bullet",
	0xb8: "quotesinglbase", 0xb9: "quotedblbase", 0xba: "quotedblright", 0xbb: "guillemotright",
	0xbc: "ellipsis", 0xbd: "perthousand", 0xbf: "questiondown", 0xc1: "grave", 0xc2: "acute",
	0xc3: "circumflex", 0xc4: "tilde", 0xc5: "macron", 0xc6: "breve", 0xc7: "dotaccent",
	0xc8: "dieresis", 0xca: "ring", 0xcb: "cedilla", 0xcd: "hungarumlaut", 0xce: "ogonek",
	0xcf: "caron", 0xd0: "emdash", 0xe1: "AE", 0xe3: "ordfeminine", 0xe8: "Lslash",
	0xe9: "Oslash", 0xea: "OE", 0xeb: "ordmasculine", 0xf1: "ae", 0xf5: "dotlessi",
	0xf8: "lslash", 0xf9: "oslash", 0xfa: "oe", 0xfb: "germandbls",
}

// baseEncoding returns the text of each code of a named simple encoding.
func baseEncoding(name pdfName) [256]string {
	var t [256]string
	switch name {
	case "WinAnsiEncoding", "MacRomanEncoding":
		cm := charmap.Windows1252
		if name == "MacRomanEncoding" {
			cm = charmap.Macintosh
		}
		for c := 32; c < 256; c++ {
			if r := cm.DecodeByte(byte(c)); r != utf8.RuneError && r != 0x7f {
				t[c] = string(r)
			}
		}
		if name == "WinAnsiEncoding" {
			t[0xa0] = " "
			t[0xad] = "-"
		}
	default: // StandardEncoding
		for c := 32; c < 127; c++ {
			t[c] = string(rune(c))
		}
		for c, n := range standardEncoding {
			t[c], _ = glyphText(n)
		}
	}
	return t
}

// pdfDocText decodes a text string (a title): UTF-16BE after a byte-order
// mark, UTF-8 after its mark, otherwise PDFDocEncoding (close enough to
// Windows-1252 for titles).
func pdfDocText(s []byte) string {
	switch {
	case len(s) >= 2 && s[0] == 0xfe && s[1] == 0xff:
		return utf16BE(s[2:])
	case len(s) >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf:
		return strings.ToValidUTF8(string(s[3:]), "")
	}
	var b strings.Builder
	for _, c := range s {
		if r := charmap.Windows1252.DecodeByte(c); r != utf8.RuneError {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// utf16BE decodes big-endian UTF-16, dropping what does not decode.
func utf16BE(s []byte) string {
	var b strings.Builder
	for i := 0; i+1 < len(s); i += 2 {
		r := rune(s[i])<<8 | rune(s[i+1])
		if r >= 0xD800 && r < 0xDC00 && i+3 < len(s) {
			lo := rune(s[i+2])<<8 | rune(s[i+3])
			if lo >= 0xDC00 && lo < 0xE000 {
				b.WriteRune((r-0xD800)<<10 + (lo - 0xDC00) + 0x10000)
				i += 2
				continue
			}
		}
		if r >= 0xD800 && r < 0xE000 {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
