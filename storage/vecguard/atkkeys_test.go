package vecguard_test

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/storagetest"
	"github.com/apiaryhq/apiary/storage/vecguard/vecguardtest"
)

// Hostile vectors through a protected store behave as they do without
// protection: NaN, infinity, all zeros and a wrong dimension are refused or
// stored alike (and read back as given, never rotated into something
// else), a search
// with them neither panics nor finds another account's chunks, absurd k
// are the inner store's answer, and an account with nothing stored finds
// nothing.
func TestHostileVectors(t *testing.T) {
	ctx := t.Context()
	dim := storagetest.VectorDim
	plain := openLocal(t)
	guarded := vecguardtest.Wrap(t, openLocal(t), dim)
	acc, other := apiary.NewAccountID(), apiary.NewAccountID()
	for _, s := range []storage.VectorStore{plain, guarded} {
		require.NoError(t, s.Upsert(ctx, other, []storage.VectorRecord{storagetest.NewRecord(other, "d", 1, 0, dim)}))
		require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{storagetest.NewRecord(acc, "d", 1, 0, dim)}))
	}
	with := func(v ...float32) []float32 { out := make([]float32, dim); copy(out, v); return out }
	hostile := map[string][]float32{
		"NaN":   with(float32(math.NaN()), 1),
		"+Inf":  with(float32(math.Inf(1))),
		"-Inf":  with(1, float32(math.Inf(-1))),
		"zero":  with(),
		"short": make([]float32, dim-1),
		"long":  append(with(1), 1),
		"empty": nil,
	}
	for name, v := range hostile {
		var kinds []apiary.Kind
		for _, s := range []storage.VectorStore{plain, guarded} {
			rec := storagetest.NewRecord(acc, apiary.DocumentID("h-"+name), 1, 0, dim)
			rec.Vector = v
			err := s.Upsert(ctx, acc, []storage.VectorRecord{rec})
			kinds = append(kinds, apiary.KindOf(err))
			if err == nil {
				got, err := s.Scan(ctx, acc, "", 100, storage.VectorFilter{Document: rec.Document})
				require.NoError(t, err)
				require.Len(t, got, 1)
				require.Equal(t, v, got[0].Vector, "%s read back as given", name)
			}
		}
		require.Equal(t, kinds[0], kinds[1], "%s: plain and guarded upsert", name)
		for sname, s := range map[string]storage.VectorStore{"plain": plain, "guarded": guarded} {
			hits, err := s.Search(ctx, acc, v, 10, storage.VectorFilter{})
			if err == nil {
				for _, h := range hits {
					require.Equal(t, acc, h.Account, "%s search %s", sname, name)
				}
			}
		}
	}
	for _, k := range []int{-1, 0, 1 << 30, math.MaxInt} {
		q := storagetest.NewRecord(acc, "d", 1, 0, dim).Vector
		ph, perr := plain.Search(ctx, acc, q, k, storage.VectorFilter{})
		gh, gerr := guarded.Search(ctx, acc, q, k, storage.VectorFilter{})
		require.Equal(t, apiary.KindOf(perr), apiary.KindOf(gerr), "k=%d: %v / %v", k, perr, gerr)
		require.Len(t, gh, len(ph), fmt.Sprintf("k=%d", k))
	}
	empty := apiary.NewAccountID()
	hits, err := guarded.Search(ctx, empty, storagetest.NewRecord(acc, "d", 1, 0, dim).Vector, 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.Empty(t, hits)
}

// Two processes (two Stores over one inner store, one records store and
// one key source) writing an account's first vectors at once agree on one
// decision: every vector is stored in the same space, so each reads back
// as given through either Store, whichever wrote it.
func TestTwoProcessesDecideOnce(t *testing.T) {
	ctx := t.Context()
	dim := storagetest.VectorDim
	for round := range 20 {
		inner, recs, secrets := openLocal(t), openRecords(t), &vecguardtest.Secrets{}
		a := newStore(t, inner, secrets, recs, true)
		b := newStore(t, inner, secrets, recs, true)
		acc := apiary.NewAccountID()
		var wg sync.WaitGroup
		errs := make([]error, 8)
		want := map[apiary.ChunkID][]float32{}
		for i := range errs {
			rec := storagetest.NewRecord(acc, apiary.DocumentID(fmt.Sprintf("d%d", i)), 1, 0, dim)
			want[rec.ChunkID] = rec.Vector
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() { errs[i] = s.Upsert(ctx, acc, []storage.VectorRecord{rec}) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		protected, err := recs.VectorProtection(ctx, acc)
		require.NoError(t, err)
		require.True(t, protected)
		for _, s := range []storage.VectorStore{a, b} {
			got, err := s.Scan(ctx, acc, "", 100, storage.VectorFilter{})
			require.NoError(t, err)
			require.Len(t, got, len(want))
			for _, r := range got {
				require.InDeltaSlice(t, want[r.ChunkID], r.Vector, 1e-5, "round %d: %s read back as written", round, r.ChunkID)
			}
			raw, err := inner.Scan(ctx, acc, "", 100, storage.VectorFilter{})
			require.NoError(t, err)
			for _, r := range raw {
				require.NotEqual(t, want[r.ChunkID], r.Vector, "round %d: %s stored as given", round, r.ChunkID)
			}
		}
	}
}
