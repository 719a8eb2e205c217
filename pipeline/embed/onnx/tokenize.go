package onnx

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/normalizer"
	"github.com/sugarme/tokenizer/pretrained"
	"golang.org/x/text/unicode/norm"
)

// maxWordRunes is WordPiece's max_input_chars_per_word in every model of the
// table: a longer word becomes one [UNK] whatever its letters.
const maxWordRunes = 100

// wordPiece tokenises text for a BERT-family model exactly as Hugging Face's
// tokenizers does. Safe for concurrent use.
//
// sugarme/tokenizer v0.3.0 does only the WordPiece part: its normalizer
// neither strips accents nor treats Unicode spaces as spaces, its lowercasing
// panics on a letter whose lowercase is longer in UTF-8 ("Ⱥ" → "ⱥ"), its
// table of CJK ideographs misses U+3400–U+4DBF, and it finds a special token
// written in the text only sometimes ("[SEP] [CLS]x" finds neither). So
// bertNormalizer normalises and splits out special tokens, sugarme
// pre-tokenises and looks up each piece, and encode adds the template's
// [CLS] … [SEP] and truncates.
type wordPiece struct {
	tk        *tokenizer.Tokenizer
	norm      bertNormalizer
	verbatim  map[string]int64 // special tokens matched in the raw text
	prefix    []int64          // the template's tokens before the text ([CLS])
	suffix    []int64          // and after it ([SEP])
	maxTokens int
	padID     int64
}

// tokenizerFile is the part of a tokenizer.json that sugarme/tokenizer
// v0.3.0 reads wrongly or not at all.
type tokenizerFile struct {
	Normalizer struct {
		Type         string `json:"type"`
		Lowercase    bool   `json:"lowercase"`
		StripAccents *bool  `json:"strip_accents"`
	} `json:"normalizer"`
	AddedTokens []struct {
		Content    string `json:"content"`
		Normalized bool   `json:"normalized"`
	} `json:"added_tokens"`
}

// loadTokenizer reads a tokenizer.json. The file's truncation and padding
// are ignored: the jars' files truncate and pad every text to 128 tokens,
// where the models take maxTokens and a batch is padded to its longest text.
func loadTokenizer(path string, maxTokens int) (*wordPiece, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load tokenizer %s: %w", path, err)
	}
	var file tokenizerFile
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("onnx: load tokenizer %s: %w", path, err)
	}
	if file.Normalizer.Type != "BertNormalizer" {
		return nil, fmt.Errorf("onnx: load tokenizer %s: normalizer %q, want BertNormalizer", path, file.Normalizer.Type)
	}
	tk, err := pretrained.FromFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load tokenizer %s: %w", path, err)
	}
	tk.WithNormalizer(nil)
	tk.WithTruncation(nil)
	tk.WithPadding(nil)

	w := &wordPiece{tk: tk, verbatim: map[string]int64{}, maxTokens: maxTokens}
	w.norm = bertNormalizer{
		lowercase: file.Normalizer.Lowercase,
		// Unset, strip_accents follows lowercase (Hugging Face's rule).
		stripAccents: file.Normalizer.Lowercase,
		maxPieces:    maxTokens,
	}
	if s := file.Normalizer.StripAccents; s != nil {
		w.norm.stripAccents = *s
	}
	for _, t := range file.AddedTokens {
		id, ok := tk.TokenToId(t.Content)
		if t.Normalized || t.Content == "" || !ok {
			return nil, fmt.Errorf("onnx: load tokenizer %s: added token %q: only special tokens matched verbatim are supported", path, t.Content)
		}
		w.norm.verbatim = append(w.norm.verbatim, t.Content)
		w.verbatim[t.Content] = int64(id)
	}
	pad, ok := tk.TokenToId("[PAD]")
	if !ok {
		return nil, fmt.Errorf("onnx: load tokenizer %s: no [PAD] token", path)
	}
	w.padID = int64(pad)
	// The template, from where a one-word text sits among its tokens.
	bare, err := tk.EncodeSingle("a", false)
	if err != nil || len(bare.Ids) != 1 {
		return nil, fmt.Errorf("onnx: load tokenizer %s: cannot encode a probe word: %v", path, err)
	}
	full, err := tk.EncodeSingle("a", true)
	if err != nil {
		return nil, fmt.Errorf("onnx: load tokenizer %s: %w", path, err)
	}
	i := slices.Index(full.Ids, bare.Ids[0])
	if i < 0 || len(full.Ids) >= maxTokens {
		return nil, fmt.Errorf("onnx: load tokenizer %s: unexpected template %v", path, full.Tokens)
	}
	for _, id := range full.Ids[:i] {
		w.prefix = append(w.prefix, int64(id))
	}
	for _, id := range full.Ids[i+1:] {
		w.suffix = append(w.suffix, int64(id))
	}
	return w, nil
}

// encode returns the token ids of text, the template's special tokens
// included, at most maxTokens of them.
func (w *wordPiece) encode(text string) (ids []int64, err error) {
	defer func() {
		// The tokenizer is third-party code fed with untrusted text: a
		// panic in it fails this text, not the process.
		if r := recover(); r != nil {
			ids, err = nil, fmt.Errorf("onnx: tokenize: tokenizer panicked")
		}
	}()
	limit := w.maxTokens - len(w.suffix)
	ids = append(make([]int64, 0, 64), w.prefix...)
	for _, seg := range w.norm.normalize(text) {
		if seg.text != "" {
			enc, err := w.tk.EncodeSingle(seg.text, false)
			if err != nil {
				return nil, fmt.Errorf("onnx: tokenize: %w", err)
			}
			for _, id := range enc.Ids[:min(len(enc.Ids), limit-len(ids))] {
				ids = append(ids, int64(id))
			}
		}
		if seg.token != "" && len(ids) < limit {
			ids = append(ids, w.verbatim[seg.token])
		}
		if len(ids) == limit {
			break
		}
	}
	return append(ids, w.suffix...), nil
}

// bertNormalizer is Hugging Face's BertNormalizer, done before the text
// reaches sugarme/tokenizer (whose own normalizer is off):
//
//   - clean_text: drop NUL, U+FFFD and control and format characters other
//     than \t, \n, \r; map every Unicode space to ' ' (sugarme splits words
//     on ASCII spaces only, so "a\u202fb" would be one unknown word);
//   - handle_chinese_chars: a space either side of each CJK ideograph;
//   - strip_accents: NFD, then drop nonspacing marks ("François" →
//     "Francois"; sugarme would give [UNK]);
//   - lowercase, per rune.
//
// Special tokens written in the raw text ("[CLS]", "[SEP]", …; the exact
// literal only) are split out first and kept verbatim, as Hugging Face does.
//
// It also bounds the work of a long text without changing its tokens: it
// keeps only the first maxPieces pre-tokens (a word, a punctuation mark, an
// ideograph or a verbatim token; each gives at least one token), and cuts a
// word longer than maxWordRunes to maxWordRunes+1 runes (one [UNK] either
// way).
type bertNormalizer struct {
	lowercase, stripAccents bool
	verbatim                []string
	maxPieces               int
}

// segment is normalised text followed by a special token ("" for none).
type segment struct{ text, token string }

func (n bertNormalizer) normalize(text string) []segment {
	var (
		segs   []segment
		b      strings.Builder
		pieces int
		word   int // runes of the current word so far; 0 between words
	)
	if grow := len(text); n.maxPieces < grow/16 {
		b.Grow(n.maxPieces * 16)
	} else {
		b.Grow(grow)
	}
	// emit writes r as normalised and reports whether to go on.
	emit := func(r rune) bool {
		switch {
		case r == 0 || r == utf8.RuneError || isControl(r), n.stripAccents && unicode.Is(unicode.Mn, r):
			return true
		case unicode.IsSpace(r):
			word = 0
			b.WriteByte(' ')
			return true
		case isCJK(r):
			word = 0
			if pieces++; pieces > n.maxPieces {
				return false
			}
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
			return true
		case normalizer.IsBertPunctuation(r):
			word = 0
			if pieces++; pieces > n.maxPieces {
				return false
			}
		default:
			if word == 0 {
				if pieces++; pieces > n.maxPieces {
					return false
				}
			}
			if word++; word > maxWordRunes+1 {
				return true
			}
		}
		if n.lowercase {
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
		return true
	}

	verbatim := n.verbatimFinder(text)
	for pos := 0; pos < len(text); {
		at, tok := verbatim(pos)
		seg, more := text[pos:at], true
		if n.stripAccents {
			var it norm.Iter
			for it.InitString(norm.NFD, seg); more && !it.Done(); {
				for _, r := range string(it.Next()) {
					if more = emit(r); !more {
						break
					}
				}
			}
		} else {
			for _, r := range seg {
				if more = emit(r); !more {
					break
				}
			}
		}
		if !more {
			break
		}
		if tok != "" {
			if pieces++; pieces > n.maxPieces {
				break
			}
			word = 0
			segs = append(segs, segment{b.String(), tok})
			b.Reset()
		}
		pos = at + len(tok)
	}
	if b.Len() > 0 {
		segs = append(segs, segment{text: b.String()})
	}
	return segs
}

// verbatimFinder returns a function giving the first verbatim token in text
// at or after pos: its index and the token (len(text) and "" when there is
// none). Called with increasing pos, it scans text about once per token.
func (n bertNormalizer) verbatimFinder(text string) func(pos int) (int, string) {
	next := make([]int, len(n.verbatim)) // index of the next occurrence; -1 none left
	for i := range next {
		next[i] = -2 // not searched yet
	}
	return func(pos int) (at int, tok string) {
		at = len(text)
		for i, v := range n.verbatim {
			if next[i] == -2 || next[i] >= 0 && next[i] < pos {
				if j := strings.Index(text[pos:], v); j >= 0 {
					next[i] = pos + j
				} else {
					next[i] = -1
				}
			}
			if j := next[i]; j >= 0 && (j < at || j == at && len(v) > len(tok)) {
				at, tok = j, v
			}
		}
		return at, tok
	}
}

// isCJK is BertNormalizer's "Chinese character": a CJK Unified Ideograph,
// by Hugging Face's ranges (sugarme's table is unsorted, so Go's binary
// search misses U+3400–U+4DBF).
func isCJK(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0x3400 && r <= 0x4DBF, r >= 0xF900 && r <= 0xFAFF,
		r >= 0x20000 && r <= 0x2A6DF, r >= 0x2A700 && r <= 0x2B73F, r >= 0x2B740 && r <= 0x2B81F,
		r >= 0x2B920 && r <= 0x2CEAF, r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}

// isControl is BertNormalizer's control class: categories Cc, Cf and Co
// except the three whitespace controls.
func isControl(r rune) bool {
	switch r {
	case '\t', '\n', '\r':
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co)
}
