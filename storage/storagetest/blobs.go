package storagetest

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// RunBlobs runs the conformance suite for storage.Blobs. Each case gets a
// fresh, empty store from newBlobs (which owns any cleanup).
func RunBlobs(t *testing.T, newBlobs func(t *testing.T) storage.Blobs) {
	t.Helper()
	runCases(t, newBlobs, []testCase[storage.Blobs]{
		{"PutGetDelete", testBlobsPutGetDelete},
		{"GetMissingIsNotFound", testBlobsGetMissing},
		{"PutReplaces", testBlobsPutReplaces},
		{"LargeValue", testBlobsLarge},
		{"EmptyKeyIsInvalid", testBlobsEmptyKey},
	})
}

func testBlobsPutGetDelete(t *testing.T, b storage.Blobs) {
	ctx := t.Context()
	require.NoError(t, b.Put(ctx, "uploads/acc_1/doc-1", []byte("sealed upload")))
	require.NoError(t, b.Put(ctx, "uploads/acc_1/doc-2", []byte("another")))
	got, err := b.Get(ctx, "uploads/acc_1/doc-1")
	require.NoError(t, err)
	require.Equal(t, []byte("sealed upload"), got)

	for range 2 {
		require.NoError(t, b.Delete(ctx, "uploads/acc_1/doc-1"))
		_, err = b.Get(ctx, "uploads/acc_1/doc-1")
		require.ErrorIs(t, err, apiary.ErrNotFound)
	}
	got, err = b.Get(ctx, "uploads/acc_1/doc-2")
	require.NoError(t, err)
	require.Equal(t, []byte("another"), got)
}

func testBlobsGetMissing(t *testing.T, b storage.Blobs) {
	_, err := b.Get(t.Context(), "never/written")
	require.ErrorIs(t, err, apiary.ErrNotFound)
	require.NoError(t, b.Delete(t.Context(), "never/written"))
}

func testBlobsPutReplaces(t *testing.T, b storage.Blobs) {
	ctx := t.Context()
	require.NoError(t, b.Put(ctx, "k", []byte("a longer first value")))
	require.NoError(t, b.Put(ctx, "k", []byte("second")))
	got, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, []byte("second"), got)
}

func testBlobsLarge(t *testing.T, b storage.Blobs) {
	ctx := t.Context()
	val := make([]byte, 5<<20)
	_, _ = rand.Read(val)
	require.NoError(t, b.Put(ctx, "large", val))
	got, err := b.Get(ctx, "large")
	require.NoError(t, err)
	require.Equal(t, len(val), len(got))
	require.True(t, bytes.Equal(val, got), "a 5 MiB value changed in the round trip")
}

func testBlobsEmptyKey(t *testing.T, b storage.Blobs) {
	ctx := t.Context()
	require.ErrorIs(t, b.Put(ctx, "", []byte("x")), apiary.ErrInvalid)
	_, err := b.Get(ctx, "")
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.ErrorIs(t, b.Delete(ctx, ""), apiary.ErrInvalid)
}
