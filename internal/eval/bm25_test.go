package eval

import (
	"bufio"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testdata/porter.tsv holds words of the godoc set and the examples of
// Porter's paper with their stems by NLTK's PorterStemmer in
// MARTIN_EXTENSIONS mode, which follows the reference implementation.
func TestStemMatchesReference(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/porter.tsv")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		word, want, ok := strings.Cut(sc.Text(), "\t")
		require.True(t, ok, sc.Text())
		require.Equal(t, want, Stem(word), "stem of %q", word)
		n++
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 2000)
}

func TestStem(t *testing.T) {
	t.Parallel()
	for word, want := range map[string]string{
		"caresses": "caress", "ponies": "poni", "relational": "relat", "generalizations": "gener",
		"hopping": "hop", "sized": "size", "conformabli": "conform", "archaeology": "archaeolog",
		"is": "is", "go1": "go1", "naïve": "naïve", "": "",
	} {
		require.Equal(t, want, Stem(word), word)
	}
}

func TestTerms(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"builder", "capac", "grow", "n", "byte", "os", "readfil", "v2", "don", "t"},
		Terms("The Builder's capacity grows by n bytes; os.ReadFile v2 — don't"))
	require.Empty(t, Terms("the and of, to!"))
}

func TestBM25(t *testing.T) {
	t.Parallel()
	x := NewBM25()
	x.Add("d1", "bees make honey")
	x.Add("d2", "honey honey honey")
	x.Add("d3", "wasps make nothing of note")
	x.Add("d4", "bees")
	require.Equal(t, 4, x.Len())

	// Hand-computed: N = 4, average length (3+3+4+1)/4 = 2.75 terms
	// (stop words "of" dropped; "nothing" and "note" kept).
	idf := func(df float64) float64 { return math.Log(1 + (4-df+0.5)/(df+0.5)) }
	score := func(tf, dl float64) float64 {
		return tf * (BM25K1 + 1) / (tf + BM25K1*(1-BM25B+BM25B*dl/2.75))
	}
	honeyD1, honeyD2 := idf(2)*score(1, 3), idf(2)*score(3, 3)
	require.Greater(t, honeyD2, honeyD1)
	require.Equal(t, []string{"d2", "d1"}, x.Search("honey", 10))

	// "bees honey": d1 has both; d4 is short; d2 has honey three times.
	d1 := idf(2)*score(1, 3) + idf(2)*score(1, 3)
	d2 := idf(2) * score(3, 3)
	d4 := idf(2) * score(1, 1)
	require.Greater(t, d1, d2)
	require.Greater(t, d2, d4)
	require.Equal(t, []string{"d1", "d2", "d4"}, x.Search("bees honey", 10))
	require.Equal(t, []string{"d1"}, x.Search("bees honey", 1))

	require.Empty(t, x.Search("zebra", 10), "no shared term, no result")
	require.Empty(t, NewBM25().Search("honey", 10))

	// Equal scores keep the order of adding.
	y := NewBM25()
	y.Add("b", "same words")
	y.Add("a", "same words")
	require.Equal(t, []string{"b", "a"}, y.Search("words", 10))
}
