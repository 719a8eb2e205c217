package vecguard_test

import (
	"context"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/storage/storagetest"
	"github.com/apiaryhq/apiary/storage/vecguard"
	"github.com/apiaryhq/apiary/storage/vecguard/vecguardtest"
)

func openLocal(t testing.TB) *local.Store {
	t.Helper()
	s, err := local.Open(t.TempDir(), local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// The VectorStore suite passes over vecguard and the local store.
func TestConformanceLocal(t *testing.T) {
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		return vecguardtest.Wrap(t, openLocal(t), storagetest.VectorDim)
	})
}

// A fixed query set gives the same ids in the same order with protection
// on as with it off, and the stored vectors are not the embedder's.
func TestSameResultsLocal(t *testing.T) {
	plain, inner := openLocal(t), openLocal(t)
	vecguardtest.RequireSameResults(t, plain, vecguardtest.Wrap(t, inner, vecguardtest.Dim), inner)
}

func newStore(t *testing.T, inner storage.VectorStore, secrets vecguard.Keys, recs vecguard.Records, protect bool) *vecguard.Store {
	t.Helper()
	s, err := vecguard.New(inner, secrets, recs, vecguard.Options{Dim: storagetest.VectorDim, Protect: protect})
	require.NoError(t, err)
	return s
}

func openRecords(t *testing.T) *records.Store {
	t.Helper()
	recs, err := records.Open(t.Context(), memkv.New())
	require.NoError(t, err)
	return recs
}

// An account that has vectors stored before protection stays unprotected
// (its searches keep working), a new account is protected, and the
// decisions outlive the process that made them: a store opened later with
// protection off still protects the protected account.
func TestProtectionIsDecidedOncePerAccount(t *testing.T) {
	ctx := t.Context()
	inner, recs, secrets := openLocal(t), openRecords(t), &vecguardtest.Secrets{}
	old, fresh := apiary.NewAccountID(), apiary.NewAccountID()
	oldRec := storagetest.NewRecord(old, "doc", 1, 0, storagetest.VectorDim)
	require.NoError(t, inner.Upsert(ctx, old, []storage.VectorRecord{oldRec}))

	s := newStore(t, inner, secrets, recs, true)
	newer := storagetest.NewRecord(old, "doc", 1, 1, storagetest.VectorDim)
	freshRec := storagetest.NewRecord(fresh, "doc", 1, 0, storagetest.VectorDim)
	require.NoError(t, s.Upsert(ctx, old, []storage.VectorRecord{newer}))
	require.NoError(t, s.Upsert(ctx, fresh, []storage.VectorRecord{freshRec}))

	p, err := recs.VectorProtection(ctx, old)
	require.NoError(t, err)
	require.False(t, p, "an account with vectors stored before stays unprotected")
	p, err = recs.VectorProtection(ctx, fresh)
	require.NoError(t, err)
	require.True(t, p)

	stored := func(r storage.VectorRecord) []float32 {
		t.Helper()
		got, err := inner.Scan(ctx, r.Account, "", 10, storage.VectorFilter{})
		require.NoError(t, err)
		for _, g := range got {
			if g.ChunkID == r.ChunkID {
				return g.Vector
			}
		}
		t.Fatalf("chunk %s is not stored", r.ChunkID)
		return nil
	}
	require.InDeltaSlice(t, newer.Vector, stored(newer), 1e-6, "the unprotected account's vectors are stored as they are")
	require.Less(t, math.Abs(vecguardtest.Cosine(freshRec.Vector, stored(freshRec))), 0.99, "the protected account's vectors are stored rotated")

	later := newStore(t, inner, secrets, recs, false)
	for _, tc := range []struct {
		account apiary.AccountID
		rec     storage.VectorRecord
	}{{old, oldRec}, {old, newer}, {fresh, freshRec}} {
		hits, err := later.Search(ctx, tc.account, tc.rec.Vector, 1, storage.VectorFilter{})
		require.NoError(t, err)
		require.Len(t, hits, 1)
		require.Equal(t, tc.rec.ChunkID, hits[0].ChunkID)
		require.InDelta(t, 1, hits[0].Score, 1e-5)
	}
	off := apiary.NewAccountID()
	offRec := storagetest.NewRecord(off, "doc", 1, 0, storagetest.VectorDim)
	require.NoError(t, later.Upsert(ctx, off, []storage.VectorRecord{offRec}))
	require.InDeltaSlice(t, offRec.Vector, stored(offRec), 1e-6, "with protection off, a new account is stored as it is")
}

// Each account has its own rotation: the same vector is stored differently
// in two accounts, and a vector is not changed in place.
func TestAccountsHaveTheirOwnRotation(t *testing.T) {
	ctx := t.Context()
	inner := openLocal(t)
	s := vecguardtest.Wrap(t, inner, storagetest.VectorDim)
	v := storagetest.Vector("same", storagetest.VectorDim)
	orig := append([]float32(nil), v...)
	var stored [][]float32
	for range 2 {
		acc := apiary.NewAccountID()
		r := storagetest.NewRecord(acc, "doc", 1, 0, storagetest.VectorDim)
		r.Vector = v
		require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{r}))
		got, err := inner.Scan(ctx, acc, "", 1, storage.VectorFilter{})
		require.NoError(t, err)
		stored = append(stored, got[0].Vector)
	}
	require.Equal(t, orig, v, "the caller's vector is left as it is")
	require.Less(t, vecguardtest.Cosine(stored[0], stored[1]), 0.99)
}

// A secret that is gone (the account's key erased) fails the account's
// writes and searches with the secret's error.
func TestGoneSecretFails(t *testing.T) {
	ctx := t.Context()
	s, err := vecguard.New(openLocal(t), goneSecrets{}, openRecords(t), vecguard.Options{Dim: storagetest.VectorDim, Protect: true})
	require.NoError(t, err)
	acc := apiary.NewAccountID()
	err = s.Upsert(ctx, acc, []storage.VectorRecord{storagetest.NewRecord(acc, "doc", 1, 0, storagetest.VectorDim)})
	require.ErrorIs(t, err, apiary.ErrNotFound)
	_, err = s.Search(ctx, acc, storagetest.Vector("q", storagetest.VectorDim), 1, storage.VectorFilter{})
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

type goneSecrets struct{}

func (goneSecrets) Key(context.Context, apiary.AccountID) ([]byte, error) {
	return nil, apiary.E(apiary.KindNotFound, "test: the account's key is erased")
}

func TestNewChecksItsArguments(t *testing.T) {
	_, err := vecguard.New(openLocal(t), &vecguardtest.Secrets{}, openRecords(t), vecguard.Options{})
	require.ErrorIs(t, err, apiary.ErrInvalid, "a dimension is needed")
}

// BenchmarkSearch compares a search of 10000 chunks of dimension 384 in
// the local store with protection (the query rotated, the hits' vectors
// rotated back) and without.
func BenchmarkSearch(b *testing.B) {
	const n, dim, batch = 10000, 384, 1000
	rng := mrand.New(mrand.NewPCG(1, 2))
	vector := func() []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for _, protected := range []bool{false, true} {
		b.Run(fmt.Sprintf("protected=%t", protected), func(b *testing.B) {
			var s storage.VectorStore = openLocal(b)
			if protected {
				s = vecguardtest.Wrap(b, s, dim)
			}
			acc := apiary.AccountID("bench")
			for from := 0; from < n; from += batch {
				recs := make([]storage.VectorRecord, batch)
				for i := range recs {
					doc := apiary.DocumentID(fmt.Sprintf("doc-%d", from/batch))
					recs[i] = storage.VectorRecord{ChunkID: apiary.ChunkIDFor(acc, doc, 1, from+i), Account: acc, Document: doc,
						Version: 1, Index: from + i, Vector: vector(), Sealed: make([]byte, 64), Model: "bench"}
				}
				require.NoError(b, s.Upsert(b.Context(), acc, recs))
			}
			q := vector()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Search(b.Context(), acc, q, 10, storage.VectorFilter{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// With a cache of one account, accounts taking turns each still get their
// own rotation back.
func TestSmallCache(t *testing.T) {
	ctx := t.Context()
	s, err := vecguard.New(openLocal(t), &vecguardtest.Secrets{}, openRecords(t),
		vecguard.Options{Dim: storagetest.VectorDim, Protect: true, CacheSize: 1})
	require.NoError(t, err)
	var recs []storage.VectorRecord
	for range 3 {
		acc := apiary.NewAccountID()
		r := storagetest.NewRecord(acc, "doc", 1, 0, storagetest.VectorDim)
		require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{r}))
		recs = append(recs, r)
	}
	for range 2 {
		for _, r := range recs {
			hits, err := s.Search(ctx, r.Account, r.Vector, 1, storage.VectorFilter{})
			require.NoError(t, err)
			require.Len(t, hits, 1)
			require.InDelta(t, 1, hits[0].Score, 1e-5)
			require.InDeltaSlice(t, r.Vector, hits[0].Vector, 1e-5)
		}
	}
}

// switchSecrets hands out one secret per account until the account is
// erased; while entered is set, each Key says it has begun and waits to be
// let go.
type switchSecrets struct {
	vecguardtest.Secrets
	mu               sync.Mutex
	erased           map[apiary.AccountID]bool
	entered, release chan struct{}
}

func (s *switchSecrets) Key(ctx context.Context, account apiary.AccountID) ([]byte, error) {
	if s.entered != nil {
		s.entered <- struct{}{}
		<-s.release
	}
	s.mu.Lock()
	erased := s.erased[account]
	s.mu.Unlock()
	if erased {
		return nil, apiary.E(apiary.KindNotFound, "test: the account's key is erased")
	}
	return s.Secrets.Key(ctx, account)
}

func (s *switchSecrets) erase(account apiary.AccountID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.erased == nil {
		s.erased = map[apiary.AccountID]bool{}
	}
	s.erased[account] = true
}

// Forget drops an account's rotation (another process deleted the
// account): its writes fail from then on instead of going on under the
// cached rotation, also when the rotation was being made as Forget ran.
func TestForgetDropsTheRotation(t *testing.T) {
	ctx := t.Context()
	secrets := &switchSecrets{}
	s := newStore(t, openLocal(t), secrets, openRecords(t), true)
	acc := apiary.NewAccountID()
	upsert := func(i int) error {
		return s.Upsert(ctx, acc, []storage.VectorRecord{storagetest.NewRecord(acc, "doc", 1, i, storagetest.VectorDim)})
	}
	require.NoError(t, upsert(0))
	secrets.erase(acc)
	require.NoError(t, upsert(1), "the rotation is cached")
	s.Forget(acc)
	require.ErrorIs(t, upsert(2), apiary.ErrNotFound, "the rotation outlived Forget")

	other := apiary.NewAccountID()
	secrets.entered, secrets.release = make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Upsert(ctx, other, []storage.VectorRecord{storagetest.NewRecord(other, "doc", 1, 0, storagetest.VectorDim)})
	}()
	<-secrets.entered
	s.Forget(other) // while its rotation is being made
	close(secrets.release)
	require.NoError(t, <-done)
	secrets.entered = nil
	secrets.erase(other)
	_, err := s.Search(ctx, other, storagetest.Vector("q", storagetest.VectorDim), 1, storage.VectorFilter{})
	require.ErrorIs(t, err, apiary.ErrNotFound, "the rotation made during Forget was cached")
}
