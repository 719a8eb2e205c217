package storagetest

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// lexicalCases are the SearchLexical cases of RunVectorStore. Where records
// are replaced or deleted, every record has the same length, so that a store
// whose document weights fix the mean length at write time (milvus) is held
// to exact scores too.
var lexicalCases = []testCase[storage.VectorStore]{
	{"LexicalRanksByBM25", testLexicalRanksByBM25},
	{"LexicalAccountIsolation", testLexicalAccountIsolation},
	{"LexicalDeletesUpdateStatistics", testLexicalDeletes},
	{"LexicalReplaceUpdatesStatistics", testLexicalReplace},
	{"LexicalVersions", testLexicalVersions},
	{"LexicalFilterByDocument", testLexicalFilterByDocument},
	{"LexicalInvalid", testLexicalInvalid},
}

// Terms returns counts as a VectorRecord.Terms value: sorted by hash.
func Terms(counts map[uint32]uint32) []storage.TermCount {
	out := make([]storage.TermCount, 0, len(counts))
	for h, c := range counts {
		out = append(out, storage.TermCount{Hash: h, Count: c})
	}
	slices.SortFunc(out, func(a, b storage.TermCount) int {
		switch {
		case a.Hash < b.Hash:
			return -1
		case a.Hash > b.Hash:
			return 1
		}
		return 0
	})
	return out
}

// lexRecord is NewRecord with terms.
func lexRecord(account apiary.AccountID, doc apiary.DocumentID, version uint64, index int, counts map[uint32]uint32) storage.VectorRecord {
	r := NewRecord(account, doc, version, index, VectorDim)
	r.Terms = Terms(counts)
	return r
}

// BM25 scores every record of corpus (one account's records) holding a
// query term, by the formula of storage.VectorStore.SearchLexical.
func BM25(corpus []storage.VectorRecord, query []uint32) map[apiary.ChunkID]float64 {
	df := map[uint32]int{}
	var total float64
	for _, r := range corpus {
		for _, t := range r.Terms {
			df[t.Hash]++
			total += float64(t.Count)
		}
	}
	n := float64(len(corpus))
	avgdl := total / n
	q := slices.Clone(query)
	slices.Sort(q)
	q = slices.Compact(q)
	out := map[apiary.ChunkID]float64{}
	for _, r := range corpus {
		var dl float64
		for _, t := range r.Terms {
			dl += float64(t.Count)
		}
		var score float64
		found := false
		for _, t := range r.Terms {
			if _, ok := slices.BinarySearch(q, t.Hash); !ok {
				continue
			}
			found = true
			idf := math.Log(1 + (n-float64(df[t.Hash])+0.5)/(float64(df[t.Hash])+0.5))
			tf := float64(t.Count)
			score += idf * tf * (storage.BM25K1 + 1) / (tf + storage.BM25K1*(1-storage.BM25B+storage.BM25B*dl/avgdl))
		}
		if found {
			out[r.ChunkID] = score
		}
	}
	return out
}

func searchLexical(t *testing.T, s storage.VectorStore, account apiary.AccountID, terms []uint32, k int, doc apiary.DocumentID) []storage.Hit {
	t.Helper()
	hits, err := s.SearchLexical(t.Context(), account, terms, k, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	require.LessOrEqual(t, len(hits), k)
	for i, h := range hits {
		require.Equal(t, account, h.Account, "hit %d belongs to another account", i)
		require.Positive(t, h.Score, "hit %d", i)
		if i > 0 {
			require.GreaterOrEqual(t, hits[i-1].Score, h.Score, "hits are not best first")
		}
		if doc != "" {
			require.Equal(t, doc, h.Document, "hit %d is outside the filter", i)
		}
	}
	return hits
}

// requireScores checks that hits are exactly the records of want with
// want's scores (searchLexical has checked that they come best first).
func requireScores(t *testing.T, want map[apiary.ChunkID]float64, hits []storage.Hit) {
	t.Helper()
	require.Len(t, hits, len(want), "hits %v", chunkIDs(hits))
	seen := map[apiary.ChunkID]bool{}
	for _, h := range hits {
		w, ok := want[h.ChunkID]
		require.True(t, ok, "%s is not a match", h.ChunkID)
		require.False(t, seen[h.ChunkID], "%s comes twice", h.ChunkID)
		seen[h.ChunkID] = true
		require.InEpsilon(t, w, h.Score, 1e-4, "score of %s", h.ChunkID)
	}
}

func testLexicalRanksByBM25(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	corpus := []storage.VectorRecord{
		lexRecord(acc, "doc-a", 1, 0, map[uint32]uint32{1: 2, 2: 1}),       // both terms, short
		lexRecord(acc, "doc-a", 1, 1, map[uint32]uint32{1: 1, 3: 3, 7: 4}), // term 1 in a long chunk
		lexRecord(acc, "doc-b", 1, 0, map[uint32]uint32{2: 1, 3: 1, 4: 2}), // term 2 only
		lexRecord(acc, "doc-b", 1, 1, map[uint32]uint32{5: 1}),             // neither
		lexRecord(acc, "doc-c", 1, 0, nil),                                 // no terms at all
		lexRecord(acc, "doc-c", 1, 1, map[uint32]uint32{storage.MaxTermHash: 1, 1: 1}),
	}
	upsert(t, s, acc, corpus...)

	// Worked out by hand: N = 6, total length 18, avgdl = 3; df(1) = 3 and
	// df(2) = 2, so idf(1) = ln(1 + 3.5/3.5) = ln 2 and idf(2) = ln(1 + 4.5/2.5).
	// Chunk a/0 (length 3 = avgdl, tf 2 and 1) scores
	// ln2·2·2.2/3.2 + ln2.8·2.2/2.2.
	want := BM25(corpus, []uint32{1, 2})
	require.InDelta(t, math.Ln2*2*2.2/3.2+math.Log(2.8), want[corpus[0].ChunkID], 1e-12, "the test's own BM25")
	require.Len(t, want, 4)
	requireScores(t, want, searchLexical(t, s, acc, []uint32{1, 2}, 10, ""))
	// A repeated query term counts once; order does not matter.
	requireScores(t, want, searchLexical(t, s, acc, []uint32{2, 1, 2, 1}, 10, ""))
	top := searchLexical(t, s, acc, []uint32{1, 2}, 2, "")
	require.Len(t, top, 2)
	require.Equal(t, corpus[0].ChunkID, top[0].ChunkID)

	hit := top[0]
	require.Equal(t, corpus[0].Document, hit.Document)
	require.Equal(t, corpus[0].Version, hit.Version)
	require.Equal(t, corpus[0].Index, hit.Index)
	require.Equal(t, corpus[0].Sealed, hit.Sealed)
	require.Equal(t, corpus[0].Model, hit.Model)

	requireScores(t, BM25(corpus, []uint32{storage.MaxTermHash}), searchLexical(t, s, acc, []uint32{storage.MaxTermHash}, 10, ""))
	require.Empty(t, searchLexical(t, s, acc, []uint32{99}, 10, ""), "a term no record holds")
	require.Empty(t, searchLexical(t, s, acc, nil, 10, ""), "no terms")
	require.Equal(t, 6, count(t, s, acc, ""))
}

func testLexicalAccountIsolation(t *testing.T, s storage.VectorStore) {
	a, b := apiary.NewAccountID(), apiary.NewAccountID()
	ca := []storage.VectorRecord{
		lexRecord(a, "doc", 1, 0, map[uint32]uint32{1: 1, 2: 1}),
		lexRecord(a, "doc", 1, 1, map[uint32]uint32{2: 3}),
		lexRecord(a, "doc", 1, 2, map[uint32]uint32{3: 1}),
	}
	upsert(t, s, a, ca...)
	// b holds term 1 everywhere, in long chunks: were its statistics mixed
	// into a's, a's idf(1) and mean length would change.
	var cb []storage.VectorRecord
	for i := range 8 {
		cb = append(cb, lexRecord(b, "doc", 1, i, map[uint32]uint32{1: 5, 4: 20}))
	}
	upsert(t, s, b, cb...)

	requireScores(t, BM25(ca, []uint32{1, 2}), searchLexical(t, s, a, []uint32{1, 2}, 10, ""))
	requireScores(t, BM25(cb, []uint32{1, 2}), searchLexical(t, s, b, []uint32{1, 2}, 20, ""))
	require.Empty(t, searchLexical(t, s, b, []uint32{3}, 10, ""), "account b sees account a's terms")
	require.Empty(t, searchLexical(t, s, apiary.NewAccountID(), []uint32{1, 2, 3}, 10, ""))
}

func testLexicalDeletes(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	keep := []storage.VectorRecord{
		lexRecord(acc, "keep", 1, 0, map[uint32]uint32{1: 1, 9: 1}),
		lexRecord(acc, "keep", 1, 1, map[uint32]uint32{2: 1, 8: 1}),
	}
	gone := []storage.VectorRecord{
		lexRecord(acc, "gone", 1, 0, map[uint32]uint32{1: 1, 7: 1}),
		lexRecord(acc, "gone", 1, 1, map[uint32]uint32{1: 1, 6: 1}),
	}
	upsert(t, s, acc, append(keep, gone...)...)

	// By hand: every chunk has length 2 = avgdl, so a chunk's score for
	// one term of count 1 is its idf: N = 4 and df(1) = 3 give
	// ln(1 + 1.5/3.5).
	hits := searchLexical(t, s, acc, []uint32{1}, 10, "")
	require.Len(t, hits, 3)
	for _, h := range hits {
		require.InEpsilon(t, math.Log(1+1.5/3.5), h.Score, 1e-4)
	}

	require.NoError(t, s.DeleteDocument(t.Context(), acc, "gone", 0))
	// N = 2 and df(1) = 1: ln 2.
	hits = searchLexical(t, s, acc, []uint32{1}, 10, "")
	require.Equal(t, []apiary.ChunkID{keep[0].ChunkID}, chunkIDs(hits), "a deleted chunk was found")
	require.InEpsilon(t, math.Ln2, hits[0].Score, 1e-4)
	requireScores(t, BM25(keep, []uint32{1, 2, 7}), searchLexical(t, s, acc, []uint32{1, 2, 7}, 10, ""))
}

func testLexicalReplace(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	corpus := []storage.VectorRecord{
		lexRecord(acc, "doc", 1, 0, map[uint32]uint32{1: 2}),
		lexRecord(acc, "doc", 1, 1, map[uint32]uint32{1: 1, 2: 1}),
		lexRecord(acc, "doc", 1, 2, map[uint32]uint32{3: 2}),
	}
	upsert(t, s, acc, corpus...)
	requireScores(t, BM25(corpus, []uint32{1}), searchLexical(t, s, acc, []uint32{1}, 10, ""))

	// The same chunk id with other terms replaces the record's terms, and
	// with them the statistics: df(1) drops from 2 to 1.
	corpus[0].Terms = Terms(map[uint32]uint32{2: 1, 4: 1})
	upsert(t, s, acc, corpus[0])
	upsert(t, s, acc, corpus[0]) // again: idempotent
	requireScores(t, BM25(corpus, []uint32{1}), searchLexical(t, s, acc, []uint32{1}, 10, ""))
	requireScores(t, BM25(corpus, []uint32{2, 4}), searchLexical(t, s, acc, []uint32{2, 4}, 10, ""))

	// And without terms, the record drops out of lexical search only.
	corpus[0].Terms = nil
	upsert(t, s, acc, corpus[0])
	require.Equal(t, []apiary.ChunkID{corpus[1].ChunkID}, chunkIDs(searchLexical(t, s, acc, []uint32{2, 4}, 10, "")))
	require.Equal(t, 3, count(t, s, acc, ""))
}

func testLexicalVersions(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	v1 := []storage.VectorRecord{
		lexRecord(acc, "doc", 1, 0, map[uint32]uint32{1: 1, 2: 1}),
		lexRecord(acc, "doc", 1, 1, map[uint32]uint32{1: 1, 3: 1}),
	}
	v2 := []storage.VectorRecord{
		lexRecord(acc, "doc", 2, 0, map[uint32]uint32{1: 1, 4: 1}),
	}
	upsert(t, s, acc, append(v1, v2...)...)
	requireScores(t, BM25(append(v1, v2...), []uint32{1, 4}), searchLexical(t, s, acc, []uint32{1, 4}, 10, ""))

	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 2))
	hits := searchLexical(t, s, acc, []uint32{1, 2, 3, 4}, 10, "")
	requireScores(t, BM25(v2, []uint32{1, 2, 3, 4}), hits)
	for _, h := range hits {
		require.Equal(t, uint64(2), h.Version, "DeleteDocument(keep=2) left an older version")
	}
}

func testLexicalFilterByDocument(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	corpus := []storage.VectorRecord{
		lexRecord(acc, "mine", 1, 0, map[uint32]uint32{1: 1, 5: 1}),
		lexRecord(acc, "mine", 1, 1, map[uint32]uint32{1: 2}),
		lexRecord(acc, "elsewhere", 1, 0, map[uint32]uint32{1: 3, 6: 1}),
		lexRecord(acc, "elsewhere", 1, 1, map[uint32]uint32{6: 1}),
	}
	upsert(t, s, acc, corpus...)
	all := BM25(corpus, []uint32{1})
	// The filter narrows the results, not the statistics.
	mine := map[apiary.ChunkID]float64{corpus[0].ChunkID: all[corpus[0].ChunkID], corpus[1].ChunkID: all[corpus[1].ChunkID]}
	requireScores(t, mine, searchLexical(t, s, acc, []uint32{1}, 10, "mine"))
	requireScores(t, all, searchLexical(t, s, acc, []uint32{1}, 10, ""))
	require.Empty(t, searchLexical(t, s, acc, []uint32{1}, 10, "nothing-here"))
	top := searchLexical(t, s, acc, []uint32{1}, 1, "elsewhere")
	require.Equal(t, []apiary.ChunkID{corpus[2].ChunkID}, chunkIDs(top))
}

func testLexicalInvalid(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	ok := lexRecord(acc, "doc", 1, 0, map[uint32]uint32{1: 1})
	upsert(t, s, acc, ok)
	for _, k := range []int{0, -1} {
		_, err := s.SearchLexical(t.Context(), acc, []uint32{1}, k, storage.VectorFilter{})
		requireInvalid(t, err, "k=%d", k)
	}
	_, err := s.SearchLexical(t.Context(), acc, []uint32{storage.MaxTermHash + 1}, 5, storage.VectorFilter{})
	requireInvalid(t, err, "a query hash above MaxTermHash")

	many := make(map[uint32]uint32, storage.MaxTerms+1)
	for i := range storage.MaxTerms + 1 {
		many[uint32(i)] = 1
	}
	for name, terms := range map[string][]storage.TermCount{
		"unsorted":        {{Hash: 2, Count: 1}, {Hash: 1, Count: 1}},
		"repeated":        {{Hash: 1, Count: 1}, {Hash: 1, Count: 2}},
		"zero count":      {{Hash: 1, Count: 0}},
		"reserved hash":   {{Hash: storage.MaxTermHash + 1, Count: 1}},
		"too many terms":  Terms(many),
		"max uint32 hash": {{Hash: math.MaxUint32, Count: 1}},
	} {
		bad := lexRecord(acc, "doc", 1, 1, nil)
		bad.Terms = terms
		requireInvalid(t, s.Upsert(t.Context(), acc, []storage.VectorRecord{bad}), name)
	}
	require.Equal(t, 1, count(t, s, acc, ""), "a refused record was written")
}
