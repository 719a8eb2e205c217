package chunk

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func texts(ps []Piece) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Text
	}
	return out
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"   \n\t ", 0},
		{"hello", 1},
		{"hello, world!", 4},
		{"don't", 3},
		{"e.g. foo...", 6},
		{"12345678", 1},
		{"123456789", 2},
		{"internationalization", 3}, // 20 runes: 8 + 8 + 4
		{"日本語", 3},
		{"héllo wörld", 2},
		{"a\xffb", 3},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, CountTokens(tt.text), "%q", tt.text)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	require.NoError(t, Config{}.Validate())
	require.Equal(t, Config{Size: 512, Overlap: 64}, Config{}.WithDefaults())
	require.Equal(t, Config{Size: 40, Overlap: 5}, Config{Size: 40}.WithDefaults())
	require.Equal(t, Config{Size: 40, Overlap: -1}, Config{Size: 40, Overlap: -1}.WithDefaults())
	err := Config{Size: 10, Overlap: 10}.Validate()
	require.ErrorContains(t, err, "Overlap (10) must be less than Size (10)")
	err = Config{Size: -3, Overlap: -2}.Validate()
	require.ErrorContains(t, err, "Size must be positive")
	require.ErrorContains(t, err, "Overlap must be -1")
}

func TestSplit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		text string
		want []string
	}{
		{"empty", Config{}, "", nil},
		{"white space only", Config{}, " \n\n\t ", nil},
		{"small text is one trimmed piece", Config{}, "\n  Hello, world.  \n", []string{"Hello, world."}},
		{
			"paragraphs first", Config{Size: 5, Overlap: -1},
			"one two three.\n\nfour five six.\n\nseven eight",
			[]string{"one two three.", "four five six.", "seven eight"},
		},
		{
			"small paragraphs merge", Config{Size: 10, Overlap: -1},
			"a b.\n\nc d.\n\ne f g h i j k",
			[]string{"a b.\n\nc d.", "e f g h i j k"},
		},
		{
			"lines inside a large paragraph", Config{Size: 5, Overlap: -1},
			"alpha beta gamma\ndelta epsilon zeta\neta",
			[]string{"alpha beta gamma", "delta epsilon zeta\neta"},
		},
		{
			"sentences inside a large line", Config{Size: 5, Overlap: -1},
			"One two three. Four five six. Seven.",
			[]string{"One two three.", "Four five six.", "Seven."},
		},
		{
			"words inside a long sentence", Config{Size: 3, Overlap: -1},
			"a b c d e f g",
			[]string{"a b c", "d e f", "g"},
		},
		{
			"code points inside a long word", Config{Size: 2, Overlap: -1},
			strings.Repeat("é", 40),
			[]string{strings.Repeat("é", 16), strings.Repeat("é", 16), strings.Repeat("é", 8)},
		},
		{
			"overlap at a word boundary", Config{Size: 4, Overlap: 2},
			"a b c d e f g h",
			[]string{"a b c d", "c d e f", "e f g h"},
		},
		{
			"overlap never splits word and punctuation", Config{Size: 4, Overlap: 1},
			"a b c, d e f",
			[]string{"a b c,", "d e f"},
		},
		{
			"wide sentence stops", Config{Size: 5, Overlap: -1},
			"日本語。東京です。",
			[]string{"日本語。", "東京です。"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Split(tt.cfg, tt.text)
			if diff := cmp.Diff(tt.want, texts(got)); diff != "" {
				t.Fatalf("pieces (-want +got):\n%s", diff)
			}
			checkPieces(t, tt.cfg, tt.text, got)
		})
	}
}

func TestSplitOffsets(t *testing.T) {
	t.Parallel()
	text := "  first para.\n\nsecond para here."
	got := Split(Config{Size: 3, Overlap: -1}, text)
	require.Equal(t, []Piece{
		{Text: "first para.", Start: 2, End: 13},
		{Text: "second para", Start: 15, End: 26},
		{Text: "here.", Start: 27, End: 32},
	}, got)
}

func TestSplitInvalidConfigStillSplits(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("word ", 100)
	got := Split(Config{Size: 10, Overlap: 50}, text)
	checkPieces(t, Config{Size: 10}, text, got)
	got = Split(Config{Size: -5}, text)
	require.Len(t, got, 1)
}

func TestSplitWindows(t *testing.T) {
	// Not parallel: it changes maxWindow.
	old := maxWindow
	maxWindow = 64
	t.Cleanup(func() { maxWindow = old })
	text := strings.Repeat("word ", 40) + strings.Repeat("x", 100) + " tail"
	got := Split(Config{Size: 4, Overlap: 1}, text)
	checkPieces(t, Config{Size: 4, Overlap: 1}, text, got)
}

// checkPieces asserts the invariants every Split result keeps.
func checkPieces(t *testing.T, cfg Config, text string, ps []Piece) {
	t.Helper()
	cfg.setDefaults()
	size := cfg.Size
	if size < 1 {
		size = DefaultSize
	}
	covered := 0 // text[:covered] is covered
	prevStart := -1
	for i, p := range ps {
		require.Equal(t, text[p.Start:p.End], p.Text, "piece %d offsets", i)
		require.NotEmpty(t, p.Text, "piece %d empty", i)
		if utf8.ValidString(text) {
			require.True(t, utf8.ValidString(p.Text), "piece %d not valid UTF-8", i)
		}
		require.Equal(t, p.Text, strings.TrimFunc(p.Text, unicode.IsSpace), "piece %d has surrounding space", i)
		require.LessOrEqual(t, CountTokens(p.Text), size, "piece %d too large", i)
		require.Greater(t, p.Start, prevStart, "piece %d does not advance", i)
		require.Greater(t, p.End, covered, "piece %d adds nothing", i)
		require.Empty(t, strings.TrimFunc(text[min(covered, p.Start):p.Start], unicode.IsSpace), "gap before piece %d", i)
		prevStart, covered = p.Start, p.End
	}
	require.Empty(t, strings.TrimFunc(text[covered:], unicode.IsSpace), "text left uncovered")
}

func FuzzSplit(f *testing.F) {
	f.Add("Hello, world. This is a test.\n\nNew paragraph!", 8, 2)
	f.Add(strings.Repeat("é", 50), 3, 1)
	f.Add("日本語。東京です。\n\nabc", 2, 0)
	f.Add("a\xffb \u00a0 c", 1, 0)
	f.Add("", 0, 0)
	f.Fuzz(func(t *testing.T, text string, size, overlap int) {
		cfg := Config{Size: size%600 + 1, Overlap: overlap % 600}
		if cfg.Overlap < -1 {
			cfg.Overlap = -1
		}
		a := Split(cfg, text)
		b := Split(cfg, text)
		require.Equal(t, a, b, "not deterministic")
		if strings.TrimFunc(text, unicode.IsSpace) == "" {
			require.Empty(t, a)
		}
		valid := cfg
		if valid.Validate() != nil {
			valid.Overlap = 0
		}
		checkPieces(t, valid, text, a)
	})
}

func BenchmarkSplit(b *testing.B) {
	var sb strings.Builder
	for i := range 2000 {
		sb.WriteString("The quick brown fox jumps over the lazy dog, again and again. ")
		if i%5 == 4 {
			sb.WriteString("\n\n")
		}
	}
	text := sb.String()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if len(Split(Config{}, text)) == 0 {
			b.Fatal("no pieces")
		}
	}
}
