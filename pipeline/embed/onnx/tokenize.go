package onnx

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/normalizer"
	"github.com/sugarme/tokenizer/pretrained"
	"golang.org/x/text/unicode/norm"
)

// maxWordRunes is WordPiece's max_input_chars_per_word in every model of the
// table: a longer word becomes one [UNK] whatever its letters.
const maxWordRunes = 100

// wordPiece tokenises text for a BERT-family model the way Hugging Face's
// tokenizers does. Safe for concurrent use.
type wordPiece struct {
	tk        *tokenizer.Tokenizer
	maxTokens int
	padID     int64
}

// loadTokenizer reads a tokenizer.json and overrides its truncation and
// padding: the jars' files truncate and pad every text to 128 tokens, where
// the models take maxTokens and a batch is padded to its longest text.
func loadTokenizer(path string, maxTokens int) (*wordPiece, error) {
	tk, err := pretrained.FromFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: load tokenizer %s: %w", path, err)
	}
	tk.WithTruncation(&tokenizer.TruncationParams{MaxLength: maxTokens, Strategy: tokenizer.LongestFirst})
	tk.WithPadding(nil)
	pad, ok := tk.TokenToId("[PAD]")
	if !ok {
		return nil, fmt.Errorf("onnx: load tokenizer %s: no [PAD] token", path)
	}
	return &wordPiece{tk: tk, maxTokens: maxTokens, padID: int64(pad)}, nil
}

// encode returns the token ids of text, special tokens included, at most
// maxTokens of them.
func (w *wordPiece) encode(text string) (ids []int64, err error) {
	defer func() {
		// The tokenizer is third-party code fed with untrusted text: a
		// panic in it fails this text, not the process.
		if r := recover(); r != nil {
			ids, err = nil, fmt.Errorf("onnx: tokenize: tokenizer panicked")
		}
	}()
	enc, err := w.tk.EncodeSingle(prepare(text, 3*w.maxTokens+3), true)
	if err != nil {
		return nil, fmt.Errorf("onnx: tokenize: %w", err)
	}
	ids = make([]int64, len(enc.Ids))
	for i, id := range enc.Ids {
		ids[i] = int64(id)
	}
	return ids, nil
}

// prepare does, before the tokenizer sees text, the part of Hugging Face's
// BertNormalizer that sugarme/tokenizer v0.3.0 does not do, so that both
// give the same tokens:
//
//   - clean_text: drop NUL, U+FFFD and control and format characters other
//     than \t, \n, \r; map every Unicode space to ' ' (sugarme splits words
//     on ASCII spaces only, so "a\u202fb" would be one unknown word);
//   - strip_accents (on when lowercase is on and strip_accents is unset, as
//     in every model of the table): NFD, then drop nonspacing marks
//     ("François" → "Francois"; sugarme would give [UNK]).
//
// Lowercasing and splitting Chinese characters stay with the tokenizer.
//
// prepare also bounds the work of a long text without changing its tokens:
// it keeps only the first maxPieces pre-tokens (words, punctuation marks,
// CJK characters: each gives at least one token, and a special token such as
// "[SEP]" written in the text spans three), and cuts a word longer than
// maxWordRunes to maxWordRunes+1 runes (it is one [UNK] either way).
func prepare(text string, maxPieces int) string {
	var (
		b      strings.Builder
		pieces int
		word   int // runes of the current word kept so far; 0 between words
		it     norm.Iter
	)
	if n := len(text); maxPieces > n/8 {
		b.Grow(n)
	} else {
		b.Grow(maxPieces * 8)
	}
	it.InitString(norm.NFD, text)
	for !it.Done() {
		for _, r := range string(it.Next()) {
			switch {
			case r == 0 || r == unicode.ReplacementChar || isControl(r), unicode.Is(unicode.Mn, r):
				continue
			case unicode.IsSpace(r):
				word = 0
				b.WriteByte(' ')
				continue
			case normalizer.IsBertPunctuation(r) || normalizer.IsChinese(r):
				word = 0
				pieces++
			default:
				if word == 0 {
					pieces++
				}
				word++
				if word > maxWordRunes+1 {
					continue
				}
			}
			if pieces > maxPieces {
				return b.String()
			}
			b.WriteRune(r)
		}
	}
	return b.String()
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
