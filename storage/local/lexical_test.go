package local_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

// TestLexicalIndexFollowsChurn replaces and deletes records at random (so
// that slots are reused and posting lists compacted) and checks after each
// step, and after reopening from the log and from a snapshot, that every
// score is the BM25 of the records a model says are stored.
func TestLexicalIndexFollowsChurn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts local.Options
	}{
		{"Log", local.Options{}},
		{"Snapshot", local.Options{CompactMinBytes: 1, CompactRatio: 1.1}},
		{"SealedLog", local.Options{Keys: newTestKeys()}},
		{"SealedSnapshot", local.Options{Keys: newTestKeys(), CompactMinBytes: 1, CompactRatio: 1.1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := local.Open(dir, tc.opts)
			require.NoError(t, err)
			acc := apiary.NewAccountID()
			rng := rand.New(rand.NewPCG(1, 2))
			const vocab = 12
			model := map[apiary.ChunkID]storage.VectorRecord{}
			query := make([]uint32, vocab)
			for i := range query {
				query[i] = uint32(i)
			}
			check := func(s *local.Store, step string) {
				t.Helper()
				want := storagetest.BM25(slices.Collect(maps.Values(model)), query)
				hits, err := s.SearchLexical(t.Context(), acc, query, 1000, storage.VectorFilter{})
				require.NoError(t, err)
				require.Len(t, hits, len(want), step)
				for _, h := range hits {
					require.InEpsilon(t, want[h.ChunkID], h.Score, 1e-4, "%s: %s", step, h.ChunkID)
				}
			}
			for step := range 200 {
				doc := apiary.DocumentID(fmt.Sprintf("doc-%d", rng.IntN(6)))
				if rng.IntN(8) == 0 {
					require.NoError(t, s.DeleteDocument(t.Context(), acc, doc, 0))
					for id, r := range model {
						if r.Document == doc {
							delete(model, id)
						}
					}
				} else {
					r := storagetest.NewRecord(acc, doc, 1, rng.IntN(4), storagetest.VectorDim)
					counts := map[uint32]uint32{}
					for range rng.IntN(5) {
						counts[uint32(rng.IntN(vocab))] += uint32(1 + rng.IntN(3))
					}
					r.Terms = storagetest.Terms(counts)
					require.NoError(t, s.Upsert(t.Context(), acc, []storage.VectorRecord{r}))
					model[r.ChunkID] = r
				}
				if len(model) > 0 {
					check(s, fmt.Sprintf("step %d", step))
				}
			}
			require.NoError(t, s.Close())
			s = open(t, dir, tc.opts)
			check(s, "reopened")
		})
	}
}
