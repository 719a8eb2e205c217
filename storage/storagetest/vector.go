package storagetest

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// VectorDim is the dimension of every vector the VectorStore suite writes
// (except the one case that checks that another dimension is refused).
const VectorDim = 8

// Vector returns a deterministic pseudo-random unit vector of dim
// dimensions: the same seed always gives the same vector.
func Vector(seed string, dim int) []float32 {
	v := make([]float32, dim)
	var norm float64
	for i := range v {
		h := sha256.Sum256(fmt.Appendf(nil, "%s|%d", seed, i))
		// uniform in [-1, 1)
		f := float64(binary.LittleEndian.Uint64(h[:8])>>11)/(1<<52) - 1
		v[i] = float32(f)
		norm += f * f
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}

// NewRecord returns a deterministic record for chunk index of version of doc
// in account: its ChunkID is apiary.ChunkIDFor of those, its vector is
// Vector(ChunkID, dim), Sealed is 48 bytes that look like ciphertext and are
// unique to the chunk, and Model is "storagetest".
func NewRecord(account apiary.AccountID, doc apiary.DocumentID, version uint64, index int, dim int) storage.VectorRecord {
	id := apiary.ChunkIDFor(account, doc, version, index)
	a := sha256.Sum256([]byte("sealed|1|" + id))
	b := sha256.Sum256([]byte("sealed|2|" + id))
	return storage.VectorRecord{
		ChunkID:  id,
		Account:  account,
		Document: doc,
		Version:  version,
		Index:    index,
		Vector:   Vector(string(id), dim),
		Sealed:   append(a[:], b[:16]...),
		Model:    "storagetest",
	}
}

// axis returns a vector of VectorDim dimensions with the given leading values.
func axis(vals ...float32) []float32 {
	v := make([]float32, VectorDim)
	copy(v, vals)
	return v
}

// RunVectorStore runs the conformance suite for storage.VectorStore. Each
// case gets its own store from newStore (which owns closing it) and uses
// fresh account ids, so a store shared between cases works too (newStore
// is called from parallel cases, so it must be safe for that); every
// vector has VectorDim dimensions.
func RunVectorStore(t *testing.T, newStore func(t *testing.T) storage.VectorStore) {
	t.Helper()
	runCases(t, newStore, append([]testCase[storage.VectorStore]{
		{"SearchRanksByCosine", testSearchRanksByCosine},
		{"UpsertReplacesByChunkID", testUpsertReplaces},
		{"AccountIsolation", testAccountIsolation},
		{"UpsertForeignAccountIsInvalid", testUpsertForeignAccount},
		{"DeleteDocumentKeepsVersion", testDeleteDocumentKeep},
		{"DeleteDocumentIsIdempotent", testDeleteDocumentIdempotent},
		{"DeleteAccount", testDeleteAccount},
		{"FilterByDocument", testFilterByDocument},
		{"KLargerThanStore", testKLargerThanStore},
		{"KNotPositiveIsInvalid", testKNotPositive},
		{"EmptyStore", testEmptyStore},
		{"EmptyUpsert", testEmptyUpsert},
		{"DimensionMismatchIsInvalid", testDimensionMismatch},
		{"EmptyVectorIsInvalid", testEmptyVector},
		{"ConcurrentUpserts", testConcurrentUpserts},
		{"FilterByModel", testFilterByModel},
		{"ScanPagesInChunkIDOrder", testScanPages},
		{"ScanFilters", testScanFilters},
		{"ScanLimitNotPositiveIsInvalid", testScanLimitNotPositive},
	}, lexicalCases...))
}

func upsert(t *testing.T, s storage.VectorStore, account apiary.AccountID, recs ...storage.VectorRecord) {
	t.Helper()
	require.NoError(t, s.Upsert(t.Context(), account, recs))
}

func count(t *testing.T, s storage.VectorStore, account apiary.AccountID, doc apiary.DocumentID) int {
	t.Helper()
	n, err := s.Count(t.Context(), account, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	return n
}

func search(t *testing.T, s storage.VectorStore, account apiary.AccountID, vec []float32, k int, doc apiary.DocumentID) []storage.Hit {
	t.Helper()
	hits, err := s.Search(t.Context(), account, vec, k, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	require.LessOrEqual(t, len(hits), k)
	for i, h := range hits {
		require.Equal(t, account, h.Account, "hit %d belongs to another account", i)
		require.GreaterOrEqual(t, h.Score, float32(-1), "hit %d", i)
		require.LessOrEqual(t, h.Score, float32(1), "hit %d", i)
		if i > 0 {
			require.GreaterOrEqual(t, hits[i-1].Score, h.Score, "hits are not best first")
		}
		if doc != "" {
			require.Equal(t, doc, h.Document, "hit %d is outside the filter", i)
		}
	}
	return hits
}

func chunkIDs(hits []storage.Hit) []apiary.ChunkID {
	ids := make([]apiary.ChunkID, len(hits))
	for i, h := range hits {
		ids[i] = h.ChunkID
	}
	return ids
}

func requireInvalid(t *testing.T, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, apiary.ErrInvalid, msgAndArgs...)
}

func testSearchRanksByCosine(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	same := NewRecord(acc, "doc-a", 1, 0, VectorDim)
	same.Vector = axis(3) // not unit length: similarity is cosine, not dot
	near := NewRecord(acc, "doc-a", 1, 1, VectorDim)
	near.Vector = axis(4, 3) // cosine 0.8 with the query
	orth := NewRecord(acc, "doc-b", 2, 0, VectorDim)
	orth.Vector = axis(0, 0.5)
	opp := NewRecord(acc, "doc-b", 2, 1, VectorDim)
	opp.Vector = axis(-2)
	upsert(t, s, acc, orth, near, opp, same)

	hits := search(t, s, acc, axis(0.25), 10, "")
	want := []storage.VectorRecord{same, near, orth, opp}
	require.Equal(t, []apiary.ChunkID{same.ChunkID, near.ChunkID, orth.ChunkID, opp.ChunkID}, chunkIDs(hits))
	for i, score := range []float32{1, 0.8, 0, -1} {
		require.InDelta(t, score, hits[i].Score, 1e-5, "score of hit %d", i)
		got, w := hits[i].VectorRecord, want[i]
		require.Equal(t, w.Document, got.Document)
		require.Equal(t, w.Version, got.Version)
		require.Equal(t, w.Index, got.Index)
		require.Equal(t, w.Sealed, got.Sealed)
		require.Equal(t, w.Model, got.Model)
		require.InDeltaSlice(t, w.Vector, got.Vector, 1e-5)
	}

	top := search(t, s, acc, axis(2, 1), 2, "")
	require.Equal(t, []apiary.ChunkID{near.ChunkID, same.ChunkID}, chunkIDs(top))
}

func testUpsertReplaces(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	r := NewRecord(acc, "doc", 1, 0, VectorDim)
	other := NewRecord(acc, "doc", 1, 1, VectorDim)
	upsert(t, s, acc, r, other)
	require.Equal(t, 2, count(t, s, acc, ""))

	r2 := r
	r2.Sealed = []byte("a new sealed value")
	r2.Vector = axis(0, 0, 1)
	upsert(t, s, acc, r2)
	upsert(t, s, acc, r2) // again: still idempotent
	require.Equal(t, 2, count(t, s, acc, ""))

	hits := search(t, s, acc, axis(0, 0, 1), 1, "")
	require.Len(t, hits, 1)
	require.Equal(t, r.ChunkID, hits[0].ChunkID)
	require.Equal(t, r2.Sealed, hits[0].Sealed)
	require.InDelta(t, 1, hits[0].Score, 1e-5)
}

func testAccountIsolation(t *testing.T, s storage.VectorStore) {
	a, b := apiary.NewAccountID(), apiary.NewAccountID()
	ra := []storage.VectorRecord{NewRecord(a, "shared-doc", 1, 0, VectorDim), NewRecord(a, "shared-doc", 1, 1, VectorDim)}
	upsert(t, s, a, ra...)

	hits, err := s.Search(t.Context(), b, ra[0].Vector, 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, hits, "account b sees account a's records")
	require.Zero(t, count(t, s, b, ""))
	require.Zero(t, count(t, s, b, "shared-doc"))
	require.NoError(t, s.DeleteDocument(t.Context(), b, "shared-doc", 0))
	require.Equal(t, 2, count(t, s, a, "shared-doc"), "account b deleted account a's document")

	// The same document id, and even the same chunk id, in b is b's own.
	rb := NewRecord(b, "shared-doc", 1, 0, VectorDim)
	rb.ChunkID = ra[0].ChunkID
	rb.Sealed = []byte("b's own sealed bytes")
	upsert(t, s, b, rb)
	require.Equal(t, 1, count(t, s, b, ""))
	require.Equal(t, 2, count(t, s, a, ""))
	hits = search(t, s, a, ra[0].Vector, 10, "")
	require.Len(t, hits, 2)
	for _, h := range hits {
		require.NotEqual(t, rb.Sealed, h.Sealed, "account b's upsert replaced account a's record")
	}
	hits = search(t, s, b, ra[0].Vector, 10, "")
	require.Len(t, hits, 1)
	require.Equal(t, rb.Sealed, hits[0].Sealed)

	require.NoError(t, s.DeleteDocument(t.Context(), b, "shared-doc", 0))
	require.Zero(t, count(t, s, b, ""))
	require.Equal(t, 2, count(t, s, a, ""), "account b's delete reached account a")
}

func testUpsertForeignAccount(t *testing.T, s storage.VectorStore) {
	a, b := apiary.NewAccountID(), apiary.NewAccountID()
	upsert(t, s, a, NewRecord(a, "doc", 1, 0, VectorDim))

	foreign := NewRecord(a, "doc", 1, 1, VectorDim)
	requireInvalid(t, s.Upsert(t.Context(), b, []storage.VectorRecord{foreign}),
		"a record of account a upserted through account b")
	// A mixed batch is refused whole.
	own := NewRecord(b, "doc", 1, 0, VectorDim)
	requireInvalid(t, s.Upsert(t.Context(), b, []storage.VectorRecord{own, foreign}))
	noAccount := NewRecord(b, "doc", 1, 2, VectorDim)
	noAccount.Account = ""
	requireInvalid(t, s.Upsert(t.Context(), b, []storage.VectorRecord{noAccount}))

	require.Zero(t, count(t, s, b, ""), "a refused batch wrote to account b")
	require.Equal(t, 1, count(t, s, a, ""), "a refused batch wrote to account a")
}

func testDeleteDocumentKeep(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	var recs []storage.VectorRecord
	for i := range 3 {
		recs = append(recs, NewRecord(acc, "doc", 1, i, VectorDim))
	}
	for i := range 2 {
		recs = append(recs, NewRecord(acc, "doc", 2, i, VectorDim))
	}
	newer := NewRecord(acc, "doc", 3, 0, VectorDim)
	other := NewRecord(acc, "other", 1, 0, VectorDim)
	upsert(t, s, acc, append(recs, newer, other)...)
	require.Equal(t, 6, count(t, s, acc, "doc"))

	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 2))
	require.Equal(t, 3, count(t, s, acc, "doc"))
	hits := search(t, s, acc, recs[0].Vector, 10, "doc")
	require.Len(t, hits, 3)
	for _, h := range hits {
		require.GreaterOrEqual(t, h.Version, uint64(2), "DeleteDocument(keep=2) left an older version")
	}
	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 3))
	require.Equal(t, 1, count(t, s, acc, "doc"), "a newer version stays; older ones go")
	require.Equal(t, 1, count(t, s, acc, "other"))

	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 0))
	require.Zero(t, count(t, s, acc, "doc"))
	require.Empty(t, search(t, s, acc, newer.Vector, 10, "doc"))
	require.Equal(t, 1, count(t, s, acc, "other"), "deleting one document touched another")
	require.Equal(t, 1, count(t, s, acc, ""))
}

func testDeleteDocumentIdempotent(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	require.NoError(t, s.DeleteDocument(t.Context(), acc, "never-stored", 0))
	upsert(t, s, acc, NewRecord(acc, "doc", 3, 0, VectorDim))
	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 3)) // keeps its only version
	require.Equal(t, 1, count(t, s, acc, "doc"))
	for range 2 {
		require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 0))
		require.Zero(t, count(t, s, acc, "doc"))
	}
}

func testDeleteAccount(t *testing.T, s storage.VectorStore) {
	acc, other := apiary.NewAccountID(), apiary.NewAccountID()
	require.NoError(t, s.DeleteAccount(t.Context(), acc), "an account with no records")
	gone := []storage.VectorRecord{NewRecord(acc, "a", 1, 0, VectorDim), NewRecord(acc, "a", 1, 1, VectorDim), NewRecord(acc, "b", 2, 0, VectorDim)}
	upsert(t, s, acc, gone...)
	kept := NewRecord(other, "a", 1, 0, VectorDim)
	upsert(t, s, other, kept)
	require.NoError(t, s.DeleteAccount(t.Context(), acc))
	require.Zero(t, count(t, s, acc, ""))
	require.Empty(t, search(t, s, acc, gone[0].Vector, 10, ""))
	recs, err := s.Scan(t.Context(), acc, "", 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, recs)
	require.Equal(t, 1, count(t, s, other, ""), "another account keeps its records")
	require.NoError(t, s.DeleteAccount(t.Context(), acc), "deleting twice")
	upsert(t, s, acc, gone[0])
	require.Equal(t, 1, count(t, s, acc, ""), "the account can store again")
}

func testFilterByDocument(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	best := NewRecord(acc, "elsewhere", 1, 0, VectorDim)
	best.Vector = axis(1)
	var mine []storage.VectorRecord
	for i := range 3 {
		r := NewRecord(acc, "mine", 1, i, VectorDim)
		r.Vector = axis(0, float32(i+1), 1)
		mine = append(mine, r)
	}
	upsert(t, s, acc, append(mine, best)...)

	hits := search(t, s, acc, axis(1), 10, "mine")
	require.Len(t, hits, 3)
	require.Equal(t, 3, count(t, s, acc, "mine"))
	require.Equal(t, 1, count(t, s, acc, "elsewhere"))
	require.Equal(t, 4, count(t, s, acc, ""))
	require.Zero(t, count(t, s, acc, "nothing-here"))
	require.Empty(t, search(t, s, acc, axis(1), 10, "nothing-here"))

	hits = search(t, s, acc, axis(0, 1), 2, "mine")
	require.Equal(t, []apiary.ChunkID{mine[2].ChunkID, mine[1].ChunkID}, chunkIDs(hits))
}

func testKLargerThanStore(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	for i := range 3 {
		upsert(t, s, acc, NewRecord(acc, "doc", 1, i, VectorDim))
	}
	require.Len(t, search(t, s, acc, Vector("q", VectorDim), 1000, ""), 3)
}

func testKNotPositive(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	upsert(t, s, acc, NewRecord(acc, "doc", 1, 0, VectorDim))
	for _, k := range []int{0, -1} {
		_, err := s.Search(t.Context(), acc, Vector("q", VectorDim), k, storage.VectorFilter{})
		requireInvalid(t, err, "k=%d", k)
	}
}

func testEmptyStore(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	hits, err := s.Search(t.Context(), acc, Vector("q", VectorDim), 5, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, hits)
	require.Zero(t, count(t, s, acc, ""))
	require.Zero(t, count(t, s, acc, "doc"))
}

func testEmptyUpsert(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	require.NoError(t, s.Upsert(t.Context(), acc, nil))
	require.Zero(t, count(t, s, acc, ""))
}

func testDimensionMismatch(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	upsert(t, s, acc, NewRecord(acc, "doc", 1, 0, VectorDim))

	short := NewRecord(acc, "doc", 1, 1, VectorDim/2)
	requireInvalid(t, s.Upsert(t.Context(), acc, []storage.VectorRecord{short}))
	long := NewRecord(acc, "doc", 1, 2, VectorDim*2)
	requireInvalid(t, s.Upsert(t.Context(), acc, []storage.VectorRecord{NewRecord(acc, "doc", 1, 3, VectorDim), long}),
		"a batch with one vector of another dimension")
	require.Equal(t, 1, count(t, s, acc, ""), "a refused batch wrote something")

	_, err := s.Search(t.Context(), acc, Vector("q", VectorDim/2), 5, storage.VectorFilter{})
	requireInvalid(t, err)
	// The dimension belongs to the store, not the account.
	other := apiary.NewAccountID()
	requireInvalid(t, s.Upsert(t.Context(), other, []storage.VectorRecord{NewRecord(other, "doc", 1, 0, VectorDim/2)}))
}

func testEmptyVector(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	r := NewRecord(acc, "doc", 1, 0, VectorDim)
	r.Vector = nil
	requireInvalid(t, s.Upsert(t.Context(), acc, []storage.VectorRecord{r}))
	upsert(t, s, acc, NewRecord(acc, "doc", 1, 1, VectorDim))
	_, err := s.Search(t.Context(), acc, nil, 5, storage.VectorFilter{})
	requireInvalid(t, err)
}

func testConcurrentUpserts(t *testing.T, s storage.VectorStore) {
	const writers, batches, perBatch = 6, 5, 4
	acc := apiary.NewAccountID()
	ctx := t.Context()
	errs := make(chan error, writers*batches+batches)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			doc := apiary.DocumentID(fmt.Sprintf("doc-%d", w))
			for b := range batches {
				recs := make([]storage.VectorRecord, perBatch)
				for i := range recs {
					recs[i] = NewRecord(acc, doc, 1, b*perBatch+i, VectorDim)
				}
				errs <- s.Upsert(ctx, acc, recs)
			}
		})
	}
	// Searches run alongside the writers.
	wg.Go(func() {
		for range batches {
			_, err := s.Search(ctx, acc, Vector("q", VectorDim), 3, storage.VectorFilter{})
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, writers*batches*perBatch, count(t, s, acc, ""))
	for w := range writers {
		doc := apiary.DocumentID(fmt.Sprintf("doc-%d", w))
		require.Equal(t, batches*perBatch, count(t, s, acc, doc))
		probe := NewRecord(acc, doc, 1, batches*perBatch-1, VectorDim)
		hits := search(t, s, acc, probe.Vector, 1, doc)
		require.Len(t, hits, 1)
		require.Equal(t, probe.ChunkID, hits[0].ChunkID)
		require.True(t, slices.Equal(probe.Sealed, hits[0].Sealed))
	}
}

func testFilterByModel(t *testing.T, s storage.VectorStore) {
	acc, other := apiary.NewAccountID(), apiary.NewAccountID()
	var old, cur []storage.VectorRecord
	for i := range 3 {
		r := NewRecord(acc, "doc", 1, i, VectorDim)
		r.Model = "model-a"
		old = append(old, r)
	}
	for i := range 2 {
		r := NewRecord(acc, "doc", 1, 3+i, VectorDim)
		r.Model = "model-b"
		cur = append(cur, r)
	}
	elsewhere := NewRecord(acc, "elsewhere", 1, 0, VectorDim)
	elsewhere.Model = "model-b"
	foreign := NewRecord(other, "doc", 1, 0, VectorDim)
	foreign.Model = "model-b"
	upsert(t, s, acc, append(append(old, cur...), elsewhere)...)
	upsert(t, s, other, foreign)

	countModel := func(account apiary.AccountID, doc apiary.DocumentID, model string) int {
		t.Helper()
		n, err := s.Count(t.Context(), account, storage.VectorFilter{Document: doc, Model: model})
		require.NoError(t, err)
		return n
	}
	require.Equal(t, 3, countModel(acc, "", "model-a"))
	require.Equal(t, 3, countModel(acc, "", "model-b"))
	require.Equal(t, 2, countModel(acc, "doc", "model-b"))
	require.Equal(t, 1, countModel(acc, "elsewhere", "model-b"))
	require.Zero(t, countModel(acc, "elsewhere", "model-a"))
	require.Zero(t, countModel(acc, "", "model-c"))
	require.Equal(t, 1, countModel(other, "", "model-b"))

	// The nearest record is of model-a: a search for model-b never returns it.
	hits, err := s.Search(t.Context(), acc, old[0].Vector, 10, storage.VectorFilter{Model: "model-b"})
	require.NoError(t, err)
	require.ElementsMatch(t, []apiary.ChunkID{cur[0].ChunkID, cur[1].ChunkID, elsewhere.ChunkID}, chunkIDs(hits))
	for _, h := range hits {
		require.Equal(t, "model-b", h.Model)
	}
	hits, err = s.Search(t.Context(), acc, old[0].Vector, 10, storage.VectorFilter{Document: "doc", Model: "model-a"})
	require.NoError(t, err)
	require.Len(t, hits, 3)
	require.Equal(t, old[0].ChunkID, hits[0].ChunkID)
	hits, err = s.Search(t.Context(), acc, old[0].Vector, 10, storage.VectorFilter{Model: "model-c"})
	require.NoError(t, err)
	require.Empty(t, hits)

	// Re-embedding in place: the same ChunkID with another model and vector.
	moved := old[0]
	moved.Model, moved.Vector = "model-b", axis(0, 0, 0, 1)
	upsert(t, s, acc, moved)
	require.Equal(t, 2, countModel(acc, "", "model-a"))
	require.Equal(t, 4, countModel(acc, "", "model-b"))
	require.Equal(t, 6, count(t, s, acc, ""))
}

// scanAll pages through account's records matching f, limit at a time.
func scanAll(t *testing.T, s storage.VectorStore, account apiary.AccountID, limit int, f storage.VectorFilter) []storage.VectorRecord {
	t.Helper()
	var all []storage.VectorRecord
	var after apiary.ChunkID
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000, "Scan does not end")
		page, err := s.Scan(t.Context(), account, after, limit, f)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), limit)
		for i, r := range page {
			require.Equal(t, account, r.Account, "scan returned another account's record")
			require.Greater(t, r.ChunkID, after, "record %d of a page is not after the cursor", i)
			if i > 0 {
				require.Greater(t, r.ChunkID, page[i-1].ChunkID, "a page is not in ChunkID order")
			}
		}
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		after = page[len(page)-1].ChunkID
	}
}

func testScanPages(t *testing.T, s storage.VectorStore) {
	acc, other := apiary.NewAccountID(), apiary.NewAccountID()
	want := map[apiary.ChunkID]storage.VectorRecord{}
	var recs []storage.VectorRecord
	for d := range 3 {
		for i := range 5 {
			r := NewRecord(acc, apiary.DocumentID(fmt.Sprintf("doc-%d", d)), 1, i, VectorDim)
			recs = append(recs, r)
			want[r.ChunkID] = r
		}
	}
	upsert(t, s, acc, recs...)
	upsert(t, s, other, NewRecord(other, "doc-0", 1, 0, VectorDim))

	for _, limit := range []int{1, 4, 15, 100} {
		got := scanAll(t, s, acc, limit, storage.VectorFilter{})
		require.Len(t, got, len(want), "limit %d", limit)
		for _, r := range got {
			w, ok := want[r.ChunkID]
			require.True(t, ok, "limit %d: unknown chunk %s", limit, r.ChunkID)
			require.Equal(t, w.Document, r.Document)
			require.Equal(t, w.Version, r.Version)
			require.Equal(t, w.Index, r.Index)
			require.Equal(t, w.Sealed, r.Sealed)
			require.Equal(t, w.Model, r.Model)
			require.InDeltaSlice(t, w.Vector, r.Vector, 1e-5)
		}
	}
	empty, err := s.Scan(t.Context(), apiary.NewAccountID(), "", 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, empty)
	last := scanAll(t, s, acc, 100, storage.VectorFilter{})
	past, err := s.Scan(t.Context(), acc, last[len(last)-1].ChunkID, 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, past)
}

func testScanFilters(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	var recs []storage.VectorRecord
	for i := range 6 {
		r := NewRecord(acc, "mine", 1, i, VectorDim)
		if i%2 == 0 {
			r.Model = "model-a"
		}
		recs = append(recs, r)
	}
	recs = append(recs, NewRecord(acc, "theirs", 1, 0, VectorDim))
	upsert(t, s, acc, recs...)

	byDoc := scanAll(t, s, acc, 2, storage.VectorFilter{Document: "mine"})
	require.Len(t, byDoc, 6)
	for _, r := range byDoc {
		require.Equal(t, apiary.DocumentID("mine"), r.Document)
	}
	byModel := scanAll(t, s, acc, 2, storage.VectorFilter{Model: "model-a"})
	require.Len(t, byModel, 3)
	for _, r := range byModel {
		require.Equal(t, "model-a", r.Model)
	}
	both := scanAll(t, s, acc, 10, storage.VectorFilter{Document: "theirs", Model: "storagetest"})
	require.Len(t, both, 1)
	require.Equal(t, recs[6].ChunkID, both[0].ChunkID)
}

func testScanLimitNotPositive(t *testing.T, s storage.VectorStore) {
	acc := apiary.NewAccountID()
	upsert(t, s, acc, NewRecord(acc, "doc", 1, 0, VectorDim))
	for _, limit := range []int{0, -1} {
		_, err := s.Scan(t.Context(), acc, "", limit, storage.VectorFilter{})
		requireInvalid(t, err, "limit=%d", limit)
	}
}
