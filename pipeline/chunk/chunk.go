// Package chunk splits text into overlapping pieces small enough to embed.
//
// # Tokens
//
// Sizes are counted in approximate tokens, not in the tokens of any one
// model: a token is a run of letters, digits and marks (a word), or a run of
// other visible characters (punctuation and symbols); white space separates
// tokens and is not counted. A run longer than MaxTokenRunes code points
// counts as one token per MaxTokenRunes code points (as a subword tokenizer
// would cut a long word or a base64 blob), and each Han, Hiragana or
// Katakana character is a token of its own. For English prose this comes
// close to what BPE tokenizers count (within about a third); keep Size
// comfortably under the embedding model's limit.
//
// # Splitting
//
// Split works on structure, from the coarsest to the finest: paragraphs
// (a blank line), lines, sentences, words, then the token boundaries inside
// a word (which are always code point boundaries). A span larger than Size
// is split at its coarsest boundaries and each part again, recursively;
// then adjacent small parts are merged back, in order, up to Size tokens.
// Each chunk after the first starts with about Overlap tokens carried from
// the end of the previous one, beginning at a word boundary. Pieces never
// start or end with white space, never split a UTF-8 code point, and
// together cover every non-space byte of the text in order.
//
// Split is deterministic and safe for concurrent use.
package chunk

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTokenRunes is the longest run of code points counted as one token.
const MaxTokenRunes = 8

// MaxPieceBytes bounds a piece in bytes as Size bounds it in tokens: white
// space is not counted as tokens, so without it two words around megabytes
// of line breaks would be one piece of megabytes. A span of more bytes is
// split like a span of more tokens; the white space between two pieces
// belongs to neither. Far above what Size tokens of prose take.
const MaxPieceBytes = 64 << 10

// maxPieceBytes is MaxPieceBytes (a variable so that tests can exercise
// the byte bound on small texts).
var maxPieceBytes int32 = MaxPieceBytes

// Defaults.
const (
	DefaultSize    = 512
	DefaultOverlap = 64
)

// Config sizes the chunks.
type Config struct {
	// Size is the largest chunk, in tokens (see the package comment).
	// Default 512.
	Size int
	// Overlap is about how many tokens of the previous chunk each chunk
	// starts with. Default 64 (or Size/8 when that is smaller); -1 for none.
	// Must be less than Size.
	Overlap int
}

func (c *Config) setDefaults() {
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Overlap == 0 {
		c.Overlap = min(DefaultOverlap, c.Size/8)
	}
}

// Validate reports every problem with c once defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Size < 1 {
		errs = append(errs, fmt.Errorf("chunk: Size must be positive, got %d", c.Size))
	}
	if c.Overlap < -1 {
		errs = append(errs, fmt.Errorf("chunk: Overlap must be -1 (none) or more, got %d", c.Overlap))
	}
	if c.Overlap >= c.Size {
		errs = append(errs, fmt.Errorf("chunk: Overlap (%d) must be less than Size (%d)", c.Overlap, c.Size))
	}
	return errors.Join(errs...)
}

// WithDefaults returns c with its defaults applied.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// Piece is one chunk: Text is text[Start:End] of the text given to Split.
type Piece struct {
	Text       string
	Start, End int // byte offsets
}

// CountTokens returns how many tokens text holds (see the package comment).
func CountTokens(text string) int {
	n := 0
	scanTokens(text, func(_, _ int32, _ stopKind) { n++ })
	return n
}

// maxWindow bounds the text one pass works on, so that token offsets fit in
// int32 (a variable so that tests can exercise the windowing).
var maxWindow = 1 << 30

// Split cuts text into pieces of at most cfg.Size tokens. Empty or
// white-space-only text gives no pieces. An invalid cfg is not an error
// here: a non-positive Size is taken as the default and an Overlap not less
// than Size as Size/8 (validate configurations where they are read).
//
// Text larger than 1 GiB is processed in windows cut at white space, without
// overlap across windows.
func Split(cfg Config, text string) []Piece {
	cfg.setDefaults()
	if cfg.Size < 1 {
		cfg.Size = DefaultSize
	}
	if cfg.Overlap < 0 {
		cfg.Overlap = 0
	}
	if cfg.Overlap >= cfg.Size {
		cfg.Overlap = cfg.Size / 8
	}
	var out []Piece
	for base := 0; base < len(text); {
		end := windowEnd(text, base)
		out = splitWindow(cfg, text, base, end, out)
		base = end
	}
	return out
}

// windowEnd returns where the window starting at base ends: at the last
// white space of the second half of a full window, else at a code point
// boundary.
func windowEnd(text string, base int) int {
	end := base + maxWindow
	if end >= len(text) {
		return len(text)
	}
	if i := strings.LastIndexFunc(text[base+maxWindow/2:end], unicode.IsSpace); i >= 0 {
		return base + maxWindow/2 + i
	}
	for end > base+1 && !utf8.RuneStart(text[end]) {
		end--
	}
	return end
}

// Boundary strengths: what separates token k-1 from token k.
const (
	inWord    uint8 = iota + 1 // no white space: inside a word, or word then punctuation
	word                       // white space
	sentence                   // after a sentence end
	line                       // one line break
	paragraph                  // a blank line
)

type splitter struct {
	text   string // the window
	starts []int32
	ends   []int32
	// strength[k] is the boundary before token k (strength[0] unused).
	strength []uint8
	size     int
	// leaf receives each part split cuts, in order.
	leaf func(end int32)
}

// splitWindow appends the pieces of full[base:end] to out. Its memory is
// nine bytes a token (counted first, so the arrays are allocated once) and
// the pieces: the parts split cuts are packed into pieces as they come.
func splitWindow(cfg Config, full string, base, end int, out []Piece) []Piece {
	s := &splitter{text: full[base:end], size: cfg.Size}
	n := CountTokens(s.text)
	if n == 0 {
		return out
	}
	s.starts, s.ends, s.strength = make([]int32, 0, n), make([]int32, 0, n), make([]uint8, 0, n)
	var prevStop stopKind
	scanTokens(s.text, func(start, end int32, st stopKind) {
		var b uint8
		if k := len(s.starts); k > 0 {
			b = s.boundary(s.ends[k-1], start)
			if b == word && prevStop != noStop || b == inWord && prevStop == wideStop {
				b = sentence
			}
		}
		s.starts = append(s.starts, start)
		s.ends = append(s.ends, end)
		s.strength = append(s.strength, b)
		prevStop = st
	})
	emit := func(a, b int32) {
		st, en := base+int(s.starts[a]), base+int(s.ends[b-1])
		out = append(out, Piece{Text: full[st:en], Start: st, End: en})
	}
	// A piece grows by whole parts while it fits; the next piece starts
	// with up to Overlap tokens of the one before (see overlapStart).
	size := int32(cfg.Size)
	var start, stop int32
	s.leaf = func(b int32) {
		if b-start <= size && s.fits(start, b) {
			stop = b
			return
		}
		emit(start, stop)
		start, stop = s.overlapStart(start, stop, b, int32(cfg.Overlap)), b
	}
	s.split(0, int32(len(s.starts)))
	emit(start, stop)
	return out
}

// boundary classifies the white space between two tokens.
func (s *splitter) boundary(prevEnd, start int32) uint8 {
	gap := s.text[prevEnd:start]
	switch nl := strings.Count(gap, "\n"); {
	case gap == "":
		return inWord
	case nl >= 2:
		return paragraph
	case nl == 1:
		return line
	}
	return word
}

// split cuts tokens [a,b) at its strongest boundaries until every part has
// at most size tokens, handing each part's end to s.leaf in order.
func (s *splitter) split(a, b int32) {
	if int(b-a) <= s.size && s.fits(a, b) || b-a == 1 {
		s.leaf(b)
		return
	}
	var top uint8
	for k := a + 1; k < b; k++ {
		top = max(top, s.strength[k])
	}
	from := a
	for k := a + 1; k < b; k++ {
		if s.strength[k] == top {
			s.split(from, k)
			from = k
		}
	}
	s.split(from, b)
}

// fits reports whether tokens [a,b) span at most MaxPieceBytes.
func (s *splitter) fits(a, b int32) bool {
	return s.ends[b-1]-s.starts[a] <= maxPieceBytes
}

// overlapStart returns where the chunk after [prevStart, prevEnd) starts:
// the earliest word boundary that carries at most overlap tokens of the
// previous chunk, leaves room for the next leaf (which ends at nextEnd) and
// makes progress; prevEnd (no overlap) when there is none.
func (s *splitter) overlapStart(prevStart, prevEnd, nextEnd, overlap int32) int32 {
	lo := max(prevEnd-overlap, prevStart+1, nextEnd-int32(s.size))
	for k := lo; k < prevEnd; k++ {
		if s.strength[k] >= word && s.fits(k, nextEnd) {
			return k
		}
	}
	return prevEnd
}

// stopKind says whether a token ends a sentence.
type stopKind uint8

const (
	noStop    stopKind = iota
	plainStop          // ".", "!", "?": a sentence ends if white space follows
	wideStop           // "。", "！", "？": a sentence ends here
)

// scanTokens calls emit with the byte range of each token of text, in order,
// and whether it is punctuation that ends a sentence.
func scanTokens(text string, emit func(start, end int32, st stopKind)) {
	if len(text) > math.MaxInt32 {
		panic("chunk: window larger than 2 GiB")
	}
	const (
		none = iota
		wordRun
		punctRun
	)
	class, start, runes, st := none, 0, 0, noStop
	flush := func(end int) {
		if class != none {
			emit(int32(start), int32(end), st)
		}
		class, runes, st = none, 0, noStop
	}
	for i := 0; i < len(text); {
		r, w := utf8.DecodeRuneInString(text[i:])
		var c int
		switch {
		case unicode.IsSpace(r):
			flush(i)
			i += w
			continue
		case isIdeograph(r):
			flush(i)
			class, start = wordRun, i
			flush(i + w)
			i += w
			continue
		case r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
			c = wordRun
		default:
			c = punctRun
		}
		if c != class || runes == MaxTokenRunes {
			flush(i)
			class, start = c, i
		}
		if c == punctRun {
			st = max(st, sentenceStop(r))
		}
		runes++
		i += w
	}
	flush(len(text))
}

// isIdeograph reports whether r is written without spaces between words and
// counts as a token of its own.
func isIdeograph(r rune) bool {
	return r >= 0x2E80 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r))
}

func sentenceStop(r rune) stopKind {
	switch r {
	case '.', '!', '?', '…':
		return plainStop
	case '。', '！', '？':
		return wideStop
	}
	return noStop
}
