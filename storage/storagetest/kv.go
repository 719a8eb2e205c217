package storagetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// RunKV runs the conformance suite for storage.KV. Each case (they run in
// parallel, and so do the calls of newKV) gets a fresh,
// empty bucket from newKV (which owns any cleanup).
func RunKV(t *testing.T, newKV func(t *testing.T) storage.KV) {
	t.Helper()
	runCases(t, newKV, []testCase[storage.KV]{
		{"GetMissingIsNotFound", testKVGetMissing},
		{"CreateTwiceConflicts", testKVCreateTwice},
		{"UpdateChecksRevision", testKVUpdate},
		{"UpdateMissingConflicts", testKVUpdateMissing},
		{"Put", testKVPut},
		{"DeleteIsIdempotent", testKVDelete},
		{"CreateAfterDelete", testKVCreateAfterDelete},
		{"KeysByPrefix", testKVKeys},
		{"KeysOfEmptyBucket", testKVKeysEmpty},
		{"InvalidKeys", testKVInvalidKeys},
		{"BinaryValues", testKVBinaryValues},
		{"ConcurrentUpdatesAreAtomic", testKVConcurrentCAS},
	})
}

func testKVGetMissing(t *testing.T, kv storage.KV) {
	_, err := kv.Get(t.Context(), "missing.key")
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

func testKVCreateTwice(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	rev, err := kv.Create(ctx, "job.1", []byte("first"))
	require.NoError(t, err)
	require.NotZero(t, rev)

	_, err = kv.Create(ctx, "job.1", []byte("second"))
	require.ErrorIs(t, err, apiary.ErrConflict)

	e, err := kv.Get(ctx, "job.1")
	require.NoError(t, err)
	require.Equal(t, storage.Entry{Key: "job.1", Value: []byte("first"), Revision: rev}, e)
}

func testKVUpdate(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	rev1, err := kv.Create(ctx, "job.1", []byte("v1"))
	require.NoError(t, err)
	rev2, err := kv.Update(ctx, "job.1", []byte("v2"), rev1)
	require.NoError(t, err)
	require.Greater(t, rev2, rev1)

	_, err = kv.Update(ctx, "job.1", []byte("stale"), rev1)
	require.ErrorIs(t, err, apiary.ErrConflict, "update with a stale revision")

	e, err := kv.Get(ctx, "job.1")
	require.NoError(t, err)
	require.Equal(t, []byte("v2"), e.Value)
	require.Equal(t, rev2, e.Revision)

	rev3, err := kv.Update(ctx, "job.1", []byte("v3"), rev2)
	require.NoError(t, err)
	require.Greater(t, rev3, rev2)
}

func testKVUpdateMissing(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	_, err := kv.Update(ctx, "never.written", []byte("v"), 1)
	require.ErrorIs(t, err, apiary.ErrConflict)
	_, err = kv.Get(ctx, "never.written")
	require.ErrorIs(t, err, apiary.ErrNotFound, "a refused update wrote")
}

func testKVPut(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	rev1, err := kv.Put(ctx, "cfg.a", []byte("one"))
	require.NoError(t, err)
	require.NotZero(t, rev1)
	rev2, err := kv.Put(ctx, "cfg.a", []byte("two"))
	require.NoError(t, err)
	require.Greater(t, rev2, rev1)

	e, err := kv.Get(ctx, "cfg.a")
	require.NoError(t, err)
	require.Equal(t, storage.Entry{Key: "cfg.a", Value: []byte("two"), Revision: rev2}, e)

	_, err = kv.Create(ctx, "cfg.a", []byte("three"))
	require.ErrorIs(t, err, apiary.ErrConflict)
}

func testKVDelete(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	require.NoError(t, kv.Delete(ctx, "never.written"))
	_, err := kv.Put(ctx, "doomed.key", []byte("x"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, "kept.key", []byte("y"))
	require.NoError(t, err)

	for range 2 {
		require.NoError(t, kv.Delete(ctx, "doomed.key"))
		_, err = kv.Get(ctx, "doomed.key")
		require.ErrorIs(t, err, apiary.ErrNotFound)
	}
	keys, err := kv.Keys(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"kept.key"}, keys, "a deleted key is still listed")
	_, err = kv.Get(ctx, "kept.key")
	require.NoError(t, err)
}

func testKVCreateAfterDelete(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	_, err := kv.Create(ctx, "idem.key", []byte("a"))
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "idem.key"))
	rev, err := kv.Create(ctx, "idem.key", []byte("b"))
	require.NoError(t, err, "create after delete")
	e, err := kv.Get(ctx, "idem.key")
	require.NoError(t, err)
	require.Equal(t, storage.Entry{Key: "idem.key", Value: []byte("b"), Revision: rev}, e)
}

func testKVKeys(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	for _, k := range []string{"acct2.x", "acct10.a", "acct1.b", "acct1.a", "acct1.sub.c", "acct1", "other"} {
		_, err := kv.Put(ctx, k, []byte(k))
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"acct1.", []string{"acct1.a", "acct1.b", "acct1.sub.c"}},
		{"acct1.sub.", []string{"acct1.sub.c"}},
		{"acct1.a", []string{"acct1.a"}},
		{"acct1", []string{"acct1", "acct1.a", "acct1.b", "acct1.sub.c", "acct10.a"}},
		{"acct", []string{"acct1", "acct1.a", "acct1.b", "acct1.sub.c", "acct10.a", "acct2.x"}},
		{"", []string{"acct1", "acct1.a", "acct1.b", "acct1.sub.c", "acct10.a", "acct2.x", "other"}},
		{"acct3.", nil},
		{"zzz", nil},
	} {
		got, err := kv.Keys(ctx, tc.prefix)
		require.NoError(t, err, "prefix %q", tc.prefix)
		if tc.want == nil {
			require.Empty(t, got, "prefix %q", tc.prefix)
			continue
		}
		require.Equal(t, tc.want, got, "prefix %q", tc.prefix)
	}
}

func testKVKeysEmpty(t *testing.T, kv storage.KV) {
	for _, prefix := range []string{"", "acct1.", "acct1"} {
		keys, err := kv.Keys(t.Context(), prefix)
		require.NoError(t, err, "prefix %q", prefix)
		require.Empty(t, keys, "prefix %q", prefix)
	}
}

func testKVInvalidKeys(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	for _, key := range []string{"", ".", "a..b", ".a", "a.", "a b", "a*", "a.>", "a/b", "ä", "a\nb"} {
		_, err := kv.Get(ctx, key)
		require.ErrorIs(t, err, apiary.ErrInvalid, "Get(%q)", key)
		_, err = kv.Put(ctx, key, []byte("x"))
		require.ErrorIs(t, err, apiary.ErrInvalid, "Put(%q)", key)
		_, err = kv.Create(ctx, key, []byte("x"))
		require.ErrorIs(t, err, apiary.ErrInvalid, "Create(%q)", key)
		_, err = kv.Update(ctx, key, []byte("x"), 1)
		require.ErrorIs(t, err, apiary.ErrInvalid, "Update(%q)", key)
		require.ErrorIs(t, kv.Delete(ctx, key), apiary.ErrInvalid, "Delete(%q)", key)
	}
	for _, prefix := range []string{"a*", "a b", ".a", "a..b"} {
		_, err := kv.Keys(ctx, prefix)
		require.ErrorIs(t, err, apiary.ErrInvalid, "Keys(%q)", prefix)
	}
	for _, key := range []string{"a", "A-Z_0=9", "tok.abc-DEF_123=", "a.b.c.d"} {
		_, err := kv.Put(ctx, key, []byte("x"))
		require.NoError(t, err, "Put(%q)", key)
	}
}

func testKVBinaryValues(t *testing.T, kv storage.KV) {
	ctx := t.Context()
	val := make([]byte, 64<<10)
	_, _ = rand.Read(val)
	val[0], val[1] = 0, '\n'
	_, err := kv.Put(ctx, "bin", val)
	require.NoError(t, err)
	e, err := kv.Get(ctx, "bin")
	require.NoError(t, err)
	require.True(t, bytes.Equal(val, e.Value), "value changed in the round trip")
}

func testKVConcurrentCAS(t *testing.T, kv storage.KV) {
	const workers, each = 8, 10
	ctx := t.Context()
	_, err := kv.Create(ctx, "counter", []byte("0"))
	require.NoError(t, err)

	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for done := 0; done < each; {
				e, err := kv.Get(ctx, "counter")
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(e.Value))
				if err != nil {
					errs <- err
					return
				}
				_, err = kv.Update(ctx, "counter", []byte(strconv.Itoa(n+1)), e.Revision)
				switch {
				case errors.Is(err, apiary.ErrConflict):
					continue // someone else won this round
				case err != nil:
					errs <- err
					return
				}
				done++
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	e, err := kv.Get(ctx, "counter")
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(workers*each), string(e.Value))
}
