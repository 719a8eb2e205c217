package onnx

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// tokenizerOf loads model's tokenizer alone (no runtime needed).
func tokenizerOf(t testing.TB, model string) *wordPiece {
	t.Helper()
	spec, ok := Lookup(model)
	require.True(t, ok)
	w, err := loadTokenizer(filepath.Join(spec.Dir(modelsDir(t)), TokenizerFile), spec.MaxTokens)
	require.NoError(t, err)
	return w
}

// Token ids of BERT's uncased vocabulary used below.
const (
	idUNK = 100
	idCLS = 101
	idSEP = 102
)

func TestTokenizeLikeHuggingFace(t *testing.T) {
	t.Parallel()
	w := tokenizerOf(t, int8Model)
	ids, err := w.encode(referenceText)
	require.NoError(t, err)
	// As Hugging Face's tokenizers: [CLS] i love sentence transformers . [SEP]
	require.Equal(t, []int64{idCLS, 1045, 2293, 6251, 19081, 1012, idSEP}, ids)

	// Ids from Hugging Face's tokenizers 0.23 on the same tokenizer.json.
	for text, want := range map[string][]int64{
		"x [SEP] y [sep]":     {idCLS, 1060, idSEP, 1061, 1031, 19802, 1033, idSEP}, // only the exact literal is special
		"Ⱥ Ⱦ":                 {idCLS, idUNK, idUNK, idSEP},                         // sugarme's own lowercasing panics here
		"a㪋b":                 {idCLS, 1037, idUNK, 1038, idSEP},                    // CJK Extension A is split like other ideographs
		"François naïve café": {idCLS, 8173, 15743, 7668, idSEP},
		"東京タワー":               {idCLS, 1879, 1755, 1709, 30262, 30265, idSEP},
		"İstanbul Straße ﬁne": {idCLS, 9960, 2358, 27807, 1984, 2638, idSEP},
	} {
		got, err := w.encode(text)
		require.NoError(t, err, text)
		require.Equal(t, want, got, text)
	}

	// Text that differs from plain ASCII only in case, accents and kinds of
	// space gives the plain text's tokens, and no [UNK].
	for _, tc := range []struct{ text, plain string }{
		{"François", "francois"},
		{"naïve café", "naive cafe"},
		{"a\u202fb", "a b"},                   // narrow no-break space
		{"a\u00a0b\u2003c\u3000d", "a b c d"}, // no-break, em and ideographic spaces
		{"line\none\ttab\r\nend", "line one tab end"},
		{"HELLO World", "hello world"},           // the tokenizer lowercases
		{"Ångström Øre Æon", "angstrom øre æon"}, // Ø and Æ have no decomposition
		{"zero\u200bwidth\ufeff", "zerowidth"},   // format characters are dropped
	} {
		got, err := w.encode(tc.text)
		require.NoError(t, err)
		want, err := w.encode(tc.plain)
		require.NoError(t, err)
		require.Equal(t, want, got, "%q", tc.text)
		require.NotContains(t, got, int64(idUNK), "%q", tc.text)
	}
}

func TestTokenizeTruncatesAtModelLimit(t *testing.T) {
	t.Parallel()
	for _, model := range []string{int8Model, bgeModel} {
		w := tokenizerOf(t, model)
		spec, _ := Lookup(model)
		ids, err := w.encode(strings.Repeat("word ", 10_000))
		require.NoError(t, err)
		require.Len(t, ids, spec.MaxTokens, model)
		require.Equal(t, int64(idCLS), ids[0])
		require.Equal(t, int64(idSEP), ids[len(ids)-1])
	}
}

// The normaliser keeps only the start of a long text; the tokens must be
// those of the whole text truncated.
func TestNormalizeKeepsTheTokensOfTheWholeText(t *testing.T) {
	t.Parallel()
	w := tokenizerOf(t, int8Model)
	for name, text := range map[string]string{
		"words":          strings.Repeat("the quick brown fox ", 600),
		"punctuation":    strings.Repeat("a.b,c;d!", 400),
		"special tokens": strings.Repeat("[SEP] [CLS]x[PAD] ", 300),
		"long words":     strings.Repeat(strings.Repeat("z", 150)+" ", 300) + "end",
		"one huge word":  strings.Repeat("y", 20_000) + " x",
		"cjk":            strings.Repeat("中文字符测试", 300),
		"accents":        strings.Repeat("café naïve ", 600),
		"mixed":          strings.Repeat("Ünïcödé\u202fspaces, [UNK] "+strings.Repeat("q", 120)+" 東京 ", 200),
	} {
		got, err := w.encode(text)
		require.NoError(t, err, name)
		whole := *w
		whole.norm.maxPieces = math.MaxInt
		want, err := whole.encode(text)
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
}

func TestNormalizeBoundsItsOutput(t *testing.T) {
	t.Parallel()
	n := bertNormalizer{lowercase: true, stripAccents: true, verbatim: []string{"[SEP]"}, maxPieces: 100}
	segs := n.normalize(strings.Repeat("y", 1_000_000) + " " + strings.Repeat("word ", 100_000))
	require.Len(t, segs, 1)
	require.Less(t, len(segs[0].text), 1000)
	require.Empty(t, n.normalize(""))
	require.Equal(t, []segment{{"francois a b ", "[SEP]"}, {text: "  東  京 "}}, n.normalize("François\u0000 a\u202fb [SEP] 東京"))
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"", "François", "a\u202fb", "[SEP]x", "\xff\xfe", "中文", strings.Repeat("ab.", 50)} {
		f.Add(s)
	}
	w := tokenizerOf(f, int8Model)
	f.Fuzz(func(t *testing.T, text string) {
		ids, err := w.encode(text)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(ids), 2)
		require.LessOrEqual(t, len(ids), w.maxTokens)
	})
}
