package lexical

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kljensen/snowball/english"
	"golang.org/x/text/unicode/norm"
)

// stopWords are Lucene's English stop words (EnglishAnalyzer's default set),
// the list BM25 baselines usually drop.
var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an and are as at be but by for if in into is it no not of on or
		such that the their then there these they this to was will with`) {
		stopWords[w] = true
	}
}

// maxTermBytes bounds one term: longer runs of letters and digits (base64,
// hex dumps) are cut to this many bytes.
const maxTermBytes = 64

// Tokens returns text's terms in order: text is folded (NFKD, combining
// marks dropped, lower case), split on anything that is not a letter or a
// digit, stop words dropped, and each word of letters only stemmed by the
// English Snowball (Porter2) stemmer. Words holding a digit ("x509", "2024")
// or a letter outside ASCII are kept as they are. Scripts written without spaces give one term per
// run of letters.
func Tokens(text string) []string {
	var out []string
	var word strings.Builder
	plain := true // the word is ASCII letters only: English, stemmed
	flush := func() {
		stem := plain
		plain = true
		if word.Len() == 0 {
			return
		}
		w := word.String()
		word.Reset()
		if len(w) > maxTermBytes {
			w = truncate(w, maxTermBytes)
		}
		if stopWords[w] {
			return
		}
		if stem {
			w = english.Stem(w, true)
		}
		out = append(out, w)
	}
	var it norm.Iter
	it.InitString(norm.NFKD, text)
	for !it.Done() {
		seg := it.Next()
		for len(seg) > 0 {
			r, n := utf8.DecodeRune(seg)
			seg = seg[n:]
			switch {
			case unicode.Is(unicode.Mn, r):
				// a combining mark: dropped, so é is e
			case unicode.IsLetter(r):
				r = unicode.ToLower(r)
				plain = plain && r < utf8.RuneSelf
				word.WriteRune(r)
			case unicode.IsDigit(r):
				word.WriteRune(r)
				plain = false
			default:
				flush()
			}
		}
	}
	flush()
	return out
}

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
