// Package vecguardtest helps test vector protection over any vector store:
// Wrap puts a vecguard.Store over one, and RequireSameResults checks that
// protection changes nothing a search returns while it changes what is
// stored. For test code only.
package vecguardtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/embed/local"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/storage/vecguard"
)

// Secrets is a vecguard.Keys: a random secret per account, made on first
// use.
type Secrets struct {
	mu      sync.Mutex
	secrets map[apiary.AccountID][]byte
}

func (s *Secrets) Key(_ context.Context, account apiary.AccountID) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		s.secrets = map[apiary.AccountID][]byte{}
	}
	if s.secrets[account] == nil {
		s.secrets[account] = make([]byte, 32)
		rand.Read(s.secrets[account])
	}
	return s.secrets[account], nil
}

// Wrap returns a vecguard.Store that protects every new account over
// inner, for vectors of dim, with its decisions in records over memkv.
func Wrap(t testing.TB, inner storage.VectorStore, dim int) *vecguard.Store {
	t.Helper()
	recs, err := records.Open(context.Background(), memkv.New())
	require.NoError(t, err)
	s, err := vecguard.New(inner, &Secrets{}, recs, vecguard.Options{Dim: dim, Protect: true})
	require.NoError(t, err)
	return s
}

// Dim is the dimension of the vectors RequireSameResults writes.
const Dim = 384

// topics and facets make the corpus: every pair is one chunk's text.
var (
	topics = []string{"invoice", "shipment", "password", "holiday", "database", "contract", "printer",
		"salary", "meeting", "warranty", "migration", "firewall", "recipe", "insurance", "telescope"}
	facets = []string{"overdue payment reminder", "delayed at customs", "reset after lockout",
		"policy for the winter", "backup restored overnight", "renewal terms negotiated",
		"jammed on the third floor", "raise approved in March", "moved to Thursday afternoon",
		"claim rejected for water damage", "schema changed without downtime", "rule blocks outbound mail"}
	filler = []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
		"juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
		"uniform", "victor", "whiskey", "xray", "yankee", "zulu", "amber", "cobalt", "crimson", "indigo",
		"ivory", "jade", "lilac", "ochre", "scarlet", "teal", "umber", "violet", "azure", "sepia", "olive"}
	queries = []string{"when is my invoice payment overdue", "customs delayed the shipment",
		"how do I reset a locked password", "database restored from backup", "printer jammed again",
		"water damage warranty claim", "firewall rule blocks outbound mail", "meeting moved to Thursday",
		"salary raise in March", "contract renewal negotiation", "telescope insurance policy",
		"holiday recipe for winter guests"}
)

// RequireSameResults writes one corpus, embedded by the local embedder at
// Dim, to plain (as it is) and to guarded (a vecguard.Store over inner),
// each under a fresh account, and requires that a fixed set of queries
// returns the same chunk ids in the same order, with the same scores, from
// both, and that the vectors inner holds are not the embedder's: far from
// them by cosine. The corpus has no near ties (the test checks that
// neighbouring scores differ by more than 1e-5, ten times what rounding
// the rotated vectors to float32 moves a score), so the order is a real
// answer, not one of several.
func RequireSameResults(t *testing.T, plain, guarded, inner storage.VectorStore) {
	t.Helper()
	ctx := t.Context()
	emb := local.New(local.Config{Dim: Dim})
	var texts []string
	for i, tp := range topics {
		for j, f := range facets {
			// A few words of filler each, different per chunk, so that no
			// two chunks score alike.
			n := i*len(facets) + j
			texts = append(texts, fmt.Sprintf("%s %s %s %s %s", tp, f,
				filler[n%len(filler)], filler[(n*7+3)%len(filler)], filler[(n*13+5)%len(filler)]))
		}
	}
	vecs, err := emb.Embed(ctx, texts)
	require.NoError(t, err)
	qtexts := make([]string, len(queries))
	for i, q := range queries {
		qtexts[i] = fmt.Sprintf("%s %s %s", q, filler[(i*5+1)%len(filler)], filler[(i*11+2)%len(filler)])
	}
	qvecs, err := emb.Embed(ctx, qtexts)
	require.NoError(t, err)
	a, b := apiary.NewAccountID(), apiary.NewAccountID()
	build := func(account apiary.AccountID) []storage.VectorRecord {
		recs := make([]storage.VectorRecord, len(texts))
		for i := range texts {
			doc := apiary.DocumentID(fmt.Sprintf("doc-%d", i/len(facets)))
			recs[i] = storage.VectorRecord{
				ChunkID: apiary.ChunkIDFor(account, doc, 1, i), Account: account, Document: doc, Version: 1, Index: i,
				Vector: vecs[i], Sealed: []byte(fmt.Sprintf("sealed-%d", i)), Model: emb.Model(),
			}
		}
		return recs
	}
	require.NoError(t, plain.Upsert(ctx, a, build(a)))
	require.NoError(t, guarded.Upsert(ctx, b, build(b)))

	index := func(id apiary.ChunkID, account apiary.AccountID) int {
		for i := range texts {
			doc := apiary.DocumentID(fmt.Sprintf("doc-%d", i/len(facets)))
			if apiary.ChunkIDFor(account, doc, 1, i) == id {
				return i
			}
		}
		t.Fatalf("hit %s is not a chunk of the corpus", id)
		return -1
	}
	const k = 10
	for qi, q := range qvecs {
		want, err := plain.Search(ctx, a, q, k+1, storage.VectorFilter{})
		require.NoError(t, err)
		require.Len(t, want, k+1)
		for i := 1; i <= k; i++ {
			require.Greater(t, want[i-1].Score-want[i].Score, float32(1e-5), "query %q: the corpus has a near tie at rank %d", queries[qi], i)
		}
		want = want[:k]
		got, err := guarded.Search(ctx, b, q, k, storage.VectorFilter{})
		require.NoError(t, err)
		require.Len(t, got, k)
		for i := range want {
			require.Equal(t, index(want[i].ChunkID, a), index(got[i].ChunkID, b), "query %q: rank %d differs", queries[qi], i)
			require.InDelta(t, want[i].Score, got[i].Score, 1e-5, "query %q: score at rank %d", queries[qi], i)
			require.InDeltaSlice(t, want[i].Vector, got[i].Vector, 1e-5, "query %q: a hit's vector comes back as embedded", queries[qi])
		}
	}

	stored, err := inner.Scan(ctx, b, "", len(texts)+1, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, stored, len(texts))
	var worst float64
	for _, r := range stored {
		worst = max(worst, math.Abs(Cosine(r.Vector, vecs[index(r.ChunkID, b)])))
	}
	// Unrelated vectors of dimension 384 have cosines of about ±0.05.
	require.Less(t, worst, 0.3, "a stored vector is close to the embedder's output")
	t.Logf("%d chunks, %d queries: same ids and order; largest |cosine(stored, embedded)| %.3f", len(texts), len(queries), worst)
}

// Cosine is the cosine similarity of x and y, in float64.
func Cosine(x, y []float32) float64 {
	var dot, nx, ny float64
	for i := range x {
		dot += float64(x[i]) * float64(y[i])
		nx += float64(x[i]) * float64(x[i])
		ny += float64(y[i]) * float64(y[i])
	}
	return dot / math.Sqrt(nx*ny)
}
