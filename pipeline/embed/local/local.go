// Package local is Apiary's built-in embedder: it needs no network and no
// model file.
//
// It is feature hashing, not a language model. Each text is lower-cased and
// cut into words (runs of letters and digits); every word unigram, every
// pair of adjacent words (bigram) and every character 3-gram of each word
// (with the word's boundaries marked, so "cat" gives "<ca", "cat", "at>") is
// hashed with 64-bit FNV-1a into one of Dim buckets, with a sign from another
// bit of the same hash so that collisions cancel rather than pile up. Counts
// are damped (1 + ln tf) and the vector is L2-normalized, so the dot product
// of two vectors is their cosine similarity.
//
// What it captures is lexical overlap: shared words, shared phrases and
// spelling variants (plural forms, typos, inflections share 3-grams). It
// does not capture meaning: "car" and "automobile" are unrelated to it. It
// is a sound default for self-hosting and tests; use a model endpoint for
// semantic search.
//
// Vectors are deterministic for a given Dim: the same text always gives the
// same vector, on every machine and release with the same Model name.
package local

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/apiaryhq/apiary/pipeline/embed"
)

var _ embed.Embedder = (*Embedder)(nil)

// DefaultDim is the default vector size.
const DefaultDim = 384

// Config configures the local embedder.
type Config struct {
	// Dim is the vector size. Default 384. Larger means fewer collisions.
	Dim int
}

func (c *Config) setDefaults() {
	if c.Dim == 0 {
		c.Dim = DefaultDim
	}
}

// Validate reports every problem with c once defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.Dim < 8 || c.Dim > 65536 {
		errs = append(errs, fmt.Errorf("local: Dim must be between 8 and 65536, got %d", c.Dim))
	}
	return errors.Join(errs...)
}

// Embedder is the local hashing embedder. Safe for concurrent use: it holds
// no mutable state.
type Embedder struct {
	dim   int
	model string
}

// New returns an embedder. A Dim that does not validate is replaced by the
// default; call cfg.Validate first to reject it instead.
func New(cfg Config) *Embedder {
	cfg.setDefaults()
	if cfg.Validate() != nil {
		cfg.Dim = DefaultDim
	}
	return &Embedder{dim: cfg.Dim, model: "apiary-local-hash-v1-" + strconv.Itoa(cfg.Dim)}
}

// Dim returns the vector size.
func (e *Embedder) Dim() int { return e.dim }

// Model returns "apiary-local-hash-v1-<dim>".
func (e *Embedder) Model() string { return e.model }

// Embed returns one vector per text, in order. An empty text (or one with no
// letters or digits) gives the zero vector. It fails only when ctx is done.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("local: embed: %w", context.Cause(ctx))
			}
		}
		out[i] = e.vector(t)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: embed: %w", context.Cause(ctx))
	}
	return out, nil
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Feature kinds, hashed in first so that the word "ab" and the 3-gram "ab"
// land in different buckets.
const (
	kindWord   = 'w'
	kindBigram = 'b'
	kindGram   = 'g'
)

func (e *Embedder) vector(text string) []float32 {
	counts := make(map[uint64]float64)
	var prev string
	for w := range words(text) {
		counts[hashParts(kindWord, w, "")]++
		if prev != "" {
			counts[hashParts(kindBigram, prev, w)]++
		}
		prev = w
		addGrams(counts, w)
	}
	v := make([]float64, e.dim)
	for h, tf := range counts {
		bucket := (h >> 1) % uint64(e.dim)
		weight := 1 + math.Log(tf)
		if h&1 == 1 {
			weight = -weight
		}
		v[bucket] += weight
	}
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	out := make([]float32, e.dim)
	if norm == 0 {
		return out
	}
	norm = math.Sqrt(norm)
	for i, x := range v {
		out[i] = float32(x / norm)
	}
	return out
}

// addGrams counts the character 3-grams of "<word>" (code points, not bytes).
func addGrams(counts map[uint64]float64, w string) {
	padded := "<" + w + ">"
	var starts [4]int // byte offsets of the last four code points seen
	n := 0
	for i := range padded {
		starts[n%4] = i
		if n >= 3 {
			counts[hashParts(kindGram, padded[starts[(n-3)%4]:i], "")]++
		}
		n++
	}
	if n >= 3 {
		counts[hashParts(kindGram, padded[starts[(n-3)%4]:], "")]++
	}
}

// hashParts is FNV-1a 64 over kind, a, a separator and b.
func hashParts(kind byte, a, b string) uint64 {
	h := uint64(fnvOffset)
	mix := func(c byte) { h ^= uint64(c); h *= fnvPrime }
	mix(kind)
	for i := 0; i < len(a); i++ {
		mix(a[i])
	}
	if b != "" {
		mix(0)
		for i := 0; i < len(b); i++ {
			mix(b[i])
		}
	}
	// FNV's low bits mix poorly; fold the high half in before taking buckets.
	return h ^ h>>32
}

// words yields the lower-cased runs of letters, digits and marks of text.
func words(text string) iter.Seq[string] {
	return func(yield func(string) bool) {
		isWordRune := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) }
		for text != "" {
			i := strings.IndexFunc(text, isWordRune)
			if i < 0 {
				return
			}
			text = text[i:]
			j := strings.IndexFunc(text, func(r rune) bool { return !isWordRune(r) })
			if j < 0 {
				j = len(text)
			}
			if !yield(strings.ToLower(text[:j])) {
				return
			}
			text = text[j:]
		}
	}
}
