package pipeline_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
	"github.com/apiaryhq/apiary/pipeline/lexical"
	"github.com/apiaryhq/apiary/storage"
)

func search(t *testing.T, e *env, account apiary.AccountID, q pipeline.Query) []pipeline.Result {
	t.Helper()
	if q.TopK == 0 {
		q.TopK = 10
	}
	res, err := e.p.Search(t.Context(), account, q)
	require.NoError(t, err)
	return res
}

func docIDs(res []pipeline.Result) []apiary.DocumentID {
	out := make([]apiary.DocumentID, len(res))
	for i, r := range res {
		out[i] = r.DocumentID
	}
	return out
}

// The hashing embedder sees an identifier as its character 3-grams, so
// near-identical identifiers in short chunks outrank the exact one in a long
// chunk; the lexical leg matches the exact term only.
func TestLexicalFindsARareIdentifier(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	target := "Quarterly maintenance notes for the north site. Inspections covered the boilers, " +
		"the conveyors and the loading bay; the replacement valve ordered is QZX7731 from the usual supplier."
	e.ingest(t, "acme", 1, apiary.Document{ID: "target", Text: target})
	for i, near := range []string{"QZX7713 valve", "QZX7371 valve", "QZX1773 valve", "QZX3177 valve"} {
		e.ingest(t, "acme", 1, apiary.Document{ID: apiary.DocumentID("near-" + string(rune('a'+i))), Text: near})
	}
	e.ingest(t, "acme", 1, apiary.Document{ID: "sail", Text: sailing})

	dense := search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeDense, Text: "QZX7731"})
	require.NotEqual(t, apiary.DocumentID("target"), dense[0].DocumentID, "the premise: the hashing embedder misses it")

	lex := search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeLexical, Text: "QZX7731"})
	require.Equal(t, []apiary.DocumentID{"target"}, docIDs(lex), "lexical finds the exact identifier, and only it")
	require.Contains(t, lex[0].Text, "QZX7731")
	require.Positive(t, lex[0].Score, "a BM25 score")

	hybrid := search(t, e, "acme", pipeline.Query{Text: "QZX7731"})
	require.Equal(t, apiary.DocumentID("target"), hybrid[0].DocumentID, "hybrid puts it first")
}

// tableEmbedder embeds by marker words, so that a test chooses what the
// dense leg thinks of each text.
type tableEmbedder map[string][]float32

func (tableEmbedder) Dim() int      { return 4 }
func (tableEmbedder) Model() string { return "table" }
func (m tableEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, text := range texts {
		out[i] = []float32{1, 0, 0, 0}
		for marker, v := range m {
			if strings.Contains(text, marker) {
				out[i] = v
			}
		}
	}
	return out, nil
}

func TestHybridRanksWhatBothLegsLikeFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *envConfig) {
		c.emb = tableEmbedder{
			"alpha":   {1, 0, 0, 0},      // dense: best
			"bravo":   {0.8, 0.6, 0, 0},  // dense: second
			"filler":  {0.5, -0.8, 0, 0}, // dense: next
			"charlie": {0, 0, 1, 0},      // dense: last
		}
	})
	docs := map[apiary.DocumentID]string{
		"dense-only":   "alpha",
		"both":         "bravo needle",
		"lexical-only": "charlie needle haystack",
		"filler-1":     "filler one",
		"filler-2":     "filler two",
		"filler-3":     "filler three",
	}
	for id, text := range docs {
		e.ingest(t, "acme", 1, apiary.Document{ID: id, Text: text})
	}
	const query = "haystack needle" // embedded as the default {1, 0, 0, 0}
	dense := search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeDense, Text: query})
	require.Equal(t, []apiary.DocumentID{"dense-only", "both"}, docIDs(dense)[:2])
	lex := search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeLexical, Text: query})
	require.Equal(t, []apiary.DocumentID{"lexical-only", "both"}, docIDs(lex))

	hybrid := search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeHybrid, Text: query})
	require.Equal(t, apiary.DocumentID("both"), hybrid[0].DocumentID)
	require.InDelta(t, 2.0/(pipeline.RRFK+2), hybrid[0].Score, 1e-6, "second in both legs")
	require.Len(t, hybrid, len(docs), "the dense leg ranks every chunk")
	require.Equal(t, hybrid, search(t, e, "acme", pipeline.Query{Text: query}), "hybrid is the default")
}

func TestLexicalIsKeyedPerAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.ingest(t, "acme", 1, apiary.Document{ID: "garden", Text: gardening})
	e.ingest(t, "globex", 1, apiary.Document{ID: "garden", Text: gardening})

	keys := lexical.NewKeys(e.keys, e.docs, lexical.KeysConfig{})
	acme, err := keys.Key(ctx, "acme")
	require.NoError(t, err)
	globex, err := keys.Key(ctx, "globex")
	require.NoError(t, err)
	a, g := acme.Query("tomato"), globex.Query("tomato")
	require.NotEqual(t, a, g, "the same word in two accounts")

	// Each account finds its own chunk with its own hashes, and nothing with
	// the other's, though both hold the same text.
	for _, tc := range []struct {
		account apiary.AccountID
		own     []uint32
		other   []uint32
	}{{"acme", a, g}, {"globex", g, a}} {
		hits, err := e.vecs.SearchLexical(ctx, tc.account, tc.own, 10, storage.VectorFilter{})
		require.NoError(t, err)
		require.NotEmpty(t, hits)
		hits, err = e.vecs.SearchLexical(ctx, tc.account, tc.other, 10, storage.VectorFilter{})
		require.NoError(t, err)
		require.Empty(t, hits, "%s matched another account's hash", tc.account)
	}
	res := search(t, e, "globex", pipeline.Query{Mode: pipeline.ModeLexical, Text: "tomatoes"})
	require.NotEmpty(t, res)
	for _, r := range res {
		require.Equal(t, apiary.DocumentID("garden"), r.DocumentID)
	}
}

// Neither a document's words nor a query's reach the vector store's files,
// in any form the tokeniser gives them.
func TestNoTermStoredInTheClear(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const word, queryWord = "Xylophonists", "Quokkaburgers"
	e.ingest(t, "acme", 1, apiary.Document{ID: "doc", Text: "Three " + word + " played at dawn. " + gardening})
	for _, mode := range pipeline.Modes {
		require.NotEmpty(t, search(t, e, "acme", pipeline.Query{Mode: mode, Text: word + " " + queryWord}))
	}
	require.NoError(t, e.vecs.Close())
	forms := append(lexical.Tokens(word+" "+queryWord+" gardening compost"), word, queryWord, "compost")
	require.Contains(t, forms, "xylophonist")
	err := filepath.WalkDir(e.vecDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b = bytes.ToLower(b)
		for _, f := range forms {
			require.False(t, bytes.Contains(b, []byte(strings.ToLower(f))), "%s holds %q", path, f)
		}
		return nil
	})
	require.NoError(t, err)
}

func TestSearchModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.ingest(t, "acme", 1, apiary.Document{ID: "garden", Text: gardening})
	e.ingest(t, "acme", 1, apiary.Document{ID: "db", Text: databases})
	for _, mode := range pipeline.Modes {
		res := search(t, e, "acme", pipeline.Query{Mode: mode, Text: "watering tomatoes", TopK: 1})
		require.Equal(t, []apiary.DocumentID{"garden"}, docIDs(res), "mode %s", mode)
	}
	// A query of stop words has no lexical terms: lexical finds nothing,
	// hybrid what the dense leg finds.
	require.Empty(t, search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeLexical, Text: "the of and"}))
	require.NotEmpty(t, search(t, e, "acme", pipeline.Query{Text: "the of and"}))
	_, err := e.p.Search(t.Context(), "acme", pipeline.Query{Mode: "fuzzy", Text: "x", TopK: 1})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	require.ErrorContains(t, err, "hybrid, dense or lexical")
}

// noLexical is a vector store without lexical search.
type noLexical struct{ storage.VectorStore }

func (noLexical) SearchLexical(context.Context, apiary.AccountID, []uint32, int, storage.VectorFilter) ([]storage.Hit, error) {
	return nil, storage.ErrNoLexical
}

func TestHybridFallsBackToDenseWithoutLexicalSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *envConfig) {
		c.vecs = func(vs storage.VectorStore) storage.VectorStore { return noLexical{vs} }
	})
	e.ingest(t, "acme", 1, apiary.Document{ID: "garden", Text: gardening})
	e.ingest(t, "acme", 1, apiary.Document{ID: "db", Text: databases})
	dense := search(t, e, "acme", pipeline.Query{Mode: pipeline.ModeDense, Text: "tomatoes"})
	hybrid := search(t, e, "acme", pipeline.Query{Text: "tomatoes"})
	require.Equal(t, docIDs(dense), docIDs(hybrid))
	require.InDelta(t, 1.0/(pipeline.RRFK+1), hybrid[0].Score, 1e-6)
	_, err := e.p.Search(t.Context(), "acme", pipeline.Query{Mode: pipeline.ModeLexical, Text: "tomatoes", TopK: 1})
	require.ErrorIs(t, err, storage.ErrNoLexical)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}
