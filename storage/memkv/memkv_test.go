package memkv_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/memkv"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKVConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunKV(t, func(t *testing.T) storage.KV { return memkv.NewKV() })
}

func TestStoreBucketsConformance(t *testing.T) {
	t.Parallel()
	store := memkv.New()
	var n atomic.Int64 // the factory runs in parallel cases
	storagetest.RunKV(t, func(t *testing.T) storage.KV {
		kv, err := store.Bucket(t.Context(), fmt.Sprintf("bucket-%d", n.Add(1)))
		require.NoError(t, err)
		return kv
	})
}

func TestBlobsConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunBlobs(t, func(t *testing.T) storage.Blobs { return memkv.NewBlobs() })
}

func TestBucketsAreSharedByName(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memkv.New()
	a, err := store.Bucket(ctx, "jobs")
	require.NoError(t, err)
	again, err := store.Bucket(ctx, "jobs")
	require.NoError(t, err)
	other, err := store.Bucket(ctx, "tokens")
	require.NoError(t, err)

	rev, err := a.Put(ctx, "job.1", []byte("v"))
	require.NoError(t, err)
	e, err := again.Get(ctx, "job.1")
	require.NoError(t, err)
	require.Equal(t, rev, e.Revision)
	_, err = other.Get(ctx, "job.1")
	require.ErrorIs(t, err, apiary.ErrNotFound)

	for _, name := range []string{"", "a.b", "a b"} {
		_, err := store.Bucket(ctx, name)
		require.ErrorIs(t, err, apiary.ErrInvalid, "bucket %q", name)
	}
}

func TestValuesAreCopied(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kv := memkv.NewKV()
	v := []byte("original")
	_, err := kv.Put(ctx, "k", v)
	require.NoError(t, err)
	v[0] = 'X'
	e, err := kv.Get(ctx, "k")
	require.NoError(t, err)
	e.Value[1] = 'Y'
	e, err = kv.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "original", string(e.Value))

	b := memkv.NewBlobs()
	require.NoError(t, b.Put(ctx, "k", v))
	v[0] = 'Z'
	got, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "Xriginal", string(got))
	require.ErrorIs(t, b.Put(ctx, "big", make([]byte, memkv.MaxBlobSize+1)), apiary.ErrTooLarge)
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	kv := memkv.NewKV()
	_, err := kv.Put(ctx, "k", []byte("v"))
	require.ErrorIs(t, err, context.Canceled)
	_, err = kv.Keys(ctx, "")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, memkv.NewBlobs().Put(ctx, "k", nil), context.Canceled)
}
