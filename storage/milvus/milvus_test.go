package milvus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testDim = 8

// testAddr returns the address of the Milvus server the tests use, or
// skips the test.
func testAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("APIARY_TEST_MILVUS_ADDR")
	if addr == "" {
		t.Skip("APIARY_TEST_MILVUS_ADDR is unset: start Milvus with scripts/test-services.sh and source .test-services/env")
	}
	return addr
}

func randomName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "apiary_test_" + hex.EncodeToString(b)
}

// testConfig is a Strong-consistency configuration on a fresh collection
// that is dropped when the test ends.
func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := Config{
		Addr:        testAddr(t),
		Collection:  randomName(t),
		Dim:         testDim,
		Consistency: Strong,
		Timeout:     30 * time.Second,
	}
	t.Cleanup(func() { dropCollection(t, cfg) })
	return cfg
}

func dropCollection(t *testing.T, cfg Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Logf("drop collection %s: %v", cfg.Collection, err)
		return
	}
	defer s.Close()
	if err := s.c.DropCollection(ctx, cfg.Collection); err != nil {
		t.Logf("drop collection %s: %v", cfg.Collection, err)
	}
}

func openTest(t *testing.T) *Store {
	t.Helper()
	return openWith(t, testConfig(t))
}

func openWith(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// vec returns a unit-ish vector pointing mostly along axis i.
func vec(i int, tilt float32) []float32 {
	v := make([]float32, testDim)
	v[i%testDim] = 1
	v[(i+1)%testDim] = tilt
	return v
}

func rec(acc apiary.AccountID, doc apiary.DocumentID, version uint64, index int, v []float32) storage.VectorRecord {
	return storage.VectorRecord{
		ChunkID:  apiary.ChunkIDFor(acc, doc, version, index),
		Account:  acc,
		Document: doc,
		Version:  version,
		Index:    index,
		Vector:   v,
		Sealed:   []byte{0, 1, 2, 0xff, byte(index), byte(version)},
		Model:    "test-model",
	}
}

func TestUpsertSearchCount(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	t.Logf("vector index in use: %s", s.index)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-1")
	recs := []storage.VectorRecord{
		rec(acc, "doc-a", 1, 0, vec(0, 0)),
		rec(acc, "doc-a", 1, 1, vec(0, 0.5)),
		rec(acc, "doc-b", 1, 0, vec(3, 0)),
	}
	require.NoError(t, s.Upsert(ctx, acc, recs))

	n, err := s.Count(ctx, acc, storage.VectorFilter{})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	n, err = s.Count(ctx, acc, storage.VectorFilter{Document: "doc-a"})
	require.NoError(t, err)
	require.Equal(t, 2, n)

	hits, err := s.Search(ctx, acc, vec(0, 0), 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 3)
	if diff := cmp.Diff(recs[0], hits[0].VectorRecord); diff != "" {
		t.Fatalf("best hit (-want +got):\n%s", diff)
	}
	require.InDelta(t, 1.0, hits[0].Score, 1e-5)
	require.InDelta(t, 1/math.Sqrt(1.25), hits[1].Score, 1e-5)
	require.InDelta(t, 0.0, hits[2].Score, 1e-5)
	for i := 1; i < len(hits); i++ {
		require.GreaterOrEqual(t, hits[i-1].Score, hits[i].Score, "hits must be best first")
	}

	hits, err = s.Search(ctx, acc, vec(0, 0), 1, storage.VectorFilter{Document: "doc-b"})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, recs[2].ChunkID, hits[0].ChunkID)

	// An opposite vector scores -1.
	opp := vec(3, 0)
	opp[3] = -1
	hits, err = s.Search(ctx, acc, opp, 1, storage.VectorFilter{Document: "doc-b"})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.InDelta(t, -1.0, hits[0].Score, 1e-5)
}

func TestUpsertReplacesByChunkID(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-1")
	r := rec(acc, "doc", 1, 0, vec(1, 0))
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{r}))
	r.Sealed = []byte("second")
	r.Vector = vec(2, 0)
	// Twice in one call too: the last one wins.
	first := r
	first.Sealed = []byte("lost")
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{first, r}))

	n, err := s.Count(ctx, acc, storage.VectorFilter{})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	hits, err := s.Search(ctx, acc, vec(2, 0), 5, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	if diff := cmp.Diff(r, hits[0].VectorRecord); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestUpsertManyBatches(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-many")
	recs := make([]storage.VectorRecord, 2*maxBatchRows+7)
	for i := range recs {
		recs[i] = rec(acc, "big", 1, i, vec(i, float32(i)/float32(len(recs))))
	}
	require.NoError(t, s.Upsert(ctx, acc, recs))
	n, err := s.Count(ctx, acc, storage.VectorFilter{Document: "big"})
	require.NoError(t, err)
	require.Equal(t, len(recs), n)
}

func TestDeleteDocumentKeepsVersion(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-1")
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{
		rec(acc, "doc", 1, 0, vec(0, 0)),
		rec(acc, "doc", 1, 1, vec(1, 0)),
		rec(acc, "doc", 2, 0, vec(2, 0)),
		rec(acc, "other", 1, 0, vec(3, 0)),
	}))

	require.NoError(t, s.DeleteDocument(ctx, acc, "doc", 2))
	requireCount(t, s, acc, "doc", 1)
	hits, err := s.Search(ctx, acc, vec(0, 0), 10, storage.VectorFilter{Document: "doc"})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, uint64(2), hits[0].Version)

	require.NoError(t, s.DeleteDocument(ctx, acc, "doc", 0))
	requireCount(t, s, acc, "doc", 0)
	requireCount(t, s, acc, "other", 1)
	// Deleting what is not there is not an error.
	require.NoError(t, s.DeleteDocument(ctx, acc, "doc", 0))
}

func requireCount(t *testing.T, s *Store, acc apiary.AccountID, doc apiary.DocumentID, want int) {
	t.Helper()
	n, err := s.Count(context.Background(), acc, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	require.Equal(t, want, n, "count of account %s document %q", acc, doc)
}

func TestAccountsAreIsolated(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	require.NoError(t, s.Upsert(ctx, "acc-a", []storage.VectorRecord{rec("acc-a", "doc", 1, 0, vec(0, 0))}))
	require.NoError(t, s.Upsert(ctx, "acc-b", []storage.VectorRecord{rec("acc-b", "doc", 1, 0, vec(0, 0))}))

	hits, err := s.Search(ctx, "acc-b", vec(0, 0), 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, apiary.AccountID("acc-b"), hits[0].Account)

	require.NoError(t, s.DeleteDocument(ctx, "acc-b", "doc", 0))
	requireCount(t, s, "acc-b", "doc", 0)
	requireCount(t, s, "acc-a", "doc", 1)

	hits, err = s.Search(ctx, "acc-c", vec(0, 0), 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, hits)
}

// nastyIDs are document ids that would widen a filter if quoted naively.
var nastyIDs = []apiary.DocumentID{
	`quote"inside`,
	`x" || account != "`,
	`x" || document != "x`,
	`back\slash`,
	`trailing\`,
	`\" || true || \"`,
	`\\" or 1 == 1 or "\\`,
	`it's 'single'`,
	`x') or ('1' == '1`,
	`ünïcødé 文書 🐝`,
	`%_*[]{}()$`,
}

func TestNastyDocumentIDsCannotWidenDeletes(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const acc, other = apiary.AccountID("acc-nasty"), apiary.AccountID("acc-other")
	docs := append([]apiary.DocumentID{"x", "plain"}, nastyIDs...)
	for _, a := range []apiary.AccountID{acc, other} {
		var recs []storage.VectorRecord
		for i, d := range docs {
			recs = append(recs, rec(a, d, 1, 0, vec(i, 0)), rec(a, d, 2, 0, vec(i, 0.5)))
		}
		require.NoError(t, s.Upsert(ctx, a, recs))
	}

	for i, d := range nastyIDs {
		// Each id round-trips and filters exactly its own chunks.
		requireCount(t, s, acc, d, 2)
		hits, err := s.Search(ctx, acc, vec(0, 0), 50, storage.VectorFilter{Document: d})
		require.NoError(t, err)
		require.Len(t, hits, 2, "search of %q", d)
		for _, h := range hits {
			require.Equal(t, d, h.Document)
		}

		require.NoError(t, s.DeleteDocument(ctx, acc, d, 2))
		requireCount(t, s, acc, d, 1)
		require.NoError(t, s.DeleteDocument(ctx, acc, d, 0))
		requireCount(t, s, acc, d, 0)

		// Nothing else moved: later nasty ids, the plain ones, the other account.
		for _, rest := range append([]apiary.DocumentID{"x", "plain"}, nastyIDs[i+1:]...) {
			requireCount(t, s, acc, rest, 2)
		}
		n, err := s.Count(ctx, other, storage.VectorFilter{})
		require.NoError(t, err)
		require.Equal(t, 2*len(docs), n)
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		``:           `""`,
		`plain`:      `"plain"`,
		`a"b`:        `"a\"b"`,
		`a\b`:        `"a\\b"`,
		`\"`:         `"\\\""`,
		"nl\nx\x7f":  `"nl\u000ax\u007f"`,
		`it's`:       `"it's"`,
		"文書 🐝":       `"文書 🐝"`,
		"c1\u0085xx": `"c1\u0085xx"`,
	} {
		require.Equal(t, want, quote(in), "quote(%q)", in)
	}
}

func TestScopeFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    scope
		want string
		kind apiary.Kind
	}{
		{"account", scope{account: "acc"}, `account == "acc"`, 0},
		{"document", scope{account: "acc", document: `d"x`}, `account == "acc" && document == "d\"x"`, 0},
		{"older than", scope{account: "acc", document: "d", olderThan: 3}, `account == "acc" && document == "d" && version < 3`, 0},
		{"no account", scope{}, "", apiary.KindInvalid},
		{"bad account", scope{account: `a" || "`}, "", apiary.KindInvalid},
		{"bad document", scope{account: "acc", document: "a\nb"}, "", apiary.KindInvalid},
		{"version without document", scope{account: "acc", olderThan: 1}, "", apiary.KindInvalid},
		{"huge version", scope{account: "acc", document: "d", olderThan: math.MaxUint64}, "", apiary.KindInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.filter()
			if tt.kind != 0 {
				require.Error(t, err)
				require.Equal(t, tt.kind, apiary.KindOf(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-1")
	good := rec(acc, "doc", 1, 0, vec(0, 0))
	with := func(f func(*storage.VectorRecord)) []storage.VectorRecord {
		r := good
		f(&r)
		return []storage.VectorRecord{r}
	}
	tests := []struct {
		name string
		acc  apiary.AccountID
		recs []storage.VectorRecord
		kind apiary.Kind
	}{
		{"other account", acc, with(func(r *storage.VectorRecord) { r.Account = "acc-2" }), apiary.KindInvalid},
		{"bad account", "Bad Account", with(func(r *storage.VectorRecord) { r.Account = "Bad Account" }), apiary.KindInvalid},
		{"short vector", acc, with(func(r *storage.VectorRecord) { r.Vector = r.Vector[:testDim-1] }), apiary.KindInvalid},
		{"long vector", acc, with(func(r *storage.VectorRecord) { r.Vector = append(r.Vector, 1) }), apiary.KindInvalid},
		{"zero vector", acc, with(func(r *storage.VectorRecord) { r.Vector = make([]float32, testDim) }), apiary.KindInvalid},
		{"nan", acc, with(func(r *storage.VectorRecord) { r.Vector = vec(0, float32(math.NaN())) }), apiary.KindInvalid},
		{"no chunk id", acc, with(func(r *storage.VectorRecord) { r.ChunkID = "" }), apiary.KindInvalid},
		{"bad document", acc, with(func(r *storage.VectorRecord) { r.Document = "" }), apiary.KindInvalid},
		{"huge version", acc, with(func(r *storage.VectorRecord) { r.Version = math.MaxUint64 }), apiary.KindInvalid},
		{"sealed too large", acc, with(func(r *storage.VectorRecord) { r.Sealed = make([]byte, MaxSealedBytes+1) }), apiary.KindTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Upsert(ctx, tt.acc, append([]storage.VectorRecord{good}, tt.recs...))
			require.Error(t, err)
			require.Equal(t, tt.kind, apiary.KindOf(err), "%v", err)
		})
	}
	// Nothing of a rejected call was written.
	n, err := s.Count(ctx, acc, storage.VectorFilter{})
	require.NoError(t, err)
	require.Zero(t, n)

	// The largest Sealed value fits.
	big := good
	big.Sealed = make([]byte, MaxSealedBytes)
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{big}))
	hits, err := s.Search(ctx, acc, vec(0, 0), 1, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Len(t, hits[0].Sealed, MaxSealedBytes)

	for name, call := range map[string]func() error{
		"search short vector": func() error { _, err := s.Search(ctx, acc, vec(0, 0)[:3], 1, storage.VectorFilter{}); return err },
		"search zero vector": func() error {
			_, err := s.Search(ctx, acc, make([]float32, testDim), 1, storage.VectorFilter{})
			return err
		},
		"search k 0":         func() error { _, err := s.Search(ctx, acc, vec(0, 0), 0, storage.VectorFilter{}); return err },
		"search bad account": func() error { _, err := s.Search(ctx, "", vec(0, 0), 1, storage.VectorFilter{}); return err },
		"count bad document": func() error { _, err := s.Count(ctx, acc, storage.VectorFilter{Document: " x"}); return err },
		"delete no document": func() error { return s.DeleteDocument(ctx, acc, "", 0) },
		"delete bad account": func() error { return s.DeleteDocument(ctx, "x\"y", "doc", 0) },
	} {
		err := call()
		require.Error(t, err, name)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%s: %v", name, err)
	}
}

func TestOpenIsIdempotentAndRaceSafe(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	stores := make([]*Store, 3)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), cfg) })
	}
	wg.Wait()
	for i, s := range stores {
		require.NoError(t, errs[i], "open %d", i)
		t.Cleanup(func() { require.NoError(t, s.Close()) })
	}
	// One process writes, another reads.
	const acc = apiary.AccountID("acc-1")
	require.NoError(t, stores[0].Upsert(context.Background(), acc, []storage.VectorRecord{rec(acc, "doc", 1, 0, vec(0, 0))}))
	requireCount(t, stores[2], acc, "doc", 1)

	// The same collection with another dimension is refused.
	other := cfg
	other.Dim = testDim * 2
	_, err := Open(context.Background(), other)
	require.Error(t, err)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
	require.Contains(t, err.Error(), "dim")
}

func TestOpenAutoIndex(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Index = IndexAuto
	s := openWith(t, cfg)
	const acc = apiary.AccountID("acc-1")
	ctx := context.Background()
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{rec(acc, "doc", 1, 0, vec(0, 0))}))
	hits, err := s.Search(ctx, acc, vec(0, 0), 3, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
}

func TestOpenUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	_, err = Open(context.Background(), Config{Addr: addr, Dim: testDim, OpenTimeout: 500 * time.Millisecond})
	require.Error(t, err)
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
}

func TestConfig(t *testing.T) {
	t.Parallel()
	var c Config
	c.setDefaults()
	err := c.Validate()
	require.Error(t, err)
	for _, want := range []string{"addr", "dim"} {
		require.Contains(t, err.Error(), want)
	}
	require.Equal(t, DefaultCollection, c.Collection)
	require.Equal(t, Bounded, c.Consistency)
	require.Equal(t, 10*time.Second, c.Timeout)

	bad := Config{Addr: "x:1", Dim: 4, Collection: "no-dashes", Consistency: "sometimes", Index: "IVF", M: 2, EfConstruction: 1, SearchEf: 1, Timeout: -1, OpenTimeout: 1}
	err = bad.Validate()
	require.Error(t, err)
	require.Len(t, strings.Split(err.Error(), "\n"), 6, "%v", err)

	c = Config{Addr: "x:1", Dim: 4, Username: "u", Password: "hunter2"}
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		require.NotContains(t, s, "hunter2")
	}
	_, err = Open(context.Background(), Config{Addr: "x:1"})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestSearchOrdersByScore(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	const acc = apiary.AccountID("acc-order")
	var recs []storage.VectorRecord
	for i := range 20 {
		recs = append(recs, rec(acc, "doc", 1, i, vec(0, float32(i)/4)))
	}
	require.NoError(t, s.Upsert(ctx, acc, recs))
	hits, err := s.Search(ctx, acc, vec(0, 0), 5, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 5)
	got := make([]int, len(hits))
	for i, h := range hits {
		got[i] = h.Index
		require.LessOrEqual(t, h.Score, float32(1.0001))
		require.GreaterOrEqual(t, h.Score, float32(-1.0001))
	}
	require.True(t, sort.IntsAreSorted(got), "want indexes 0..4 in order, got %v", got)
	require.Equal(t, []int{0, 1, 2, 3, 4}, got)
}

func TestCountByDocument(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	var recs []storage.VectorRecord
	want := map[apiary.DocumentID]int{}
	for d := range 7 {
		doc := apiary.DocumentID(fmt.Sprintf("doc-%d", d))
		for i := range d + 1 {
			recs = append(recs, rec("acme", doc, 1, i, vec(i, 0.1)))
		}
		want[doc] = d + 1
	}
	require.NoError(t, s.Upsert(ctx, "acme", recs))
	require.NoError(t, s.Upsert(ctx, "globex", []storage.VectorRecord{rec("globex", "doc-1", 1, 0, vec(0, 0.1))}))
	got, err := s.CountByDocument(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, want, got)
	got, err = s.CountByDocument(ctx, "nobody")
	require.NoError(t, err)
	require.Empty(t, got)
}
