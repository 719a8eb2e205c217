package natskv_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

// connect starts a fresh server for t and returns a JetStream context on it.
func connect(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return natstest.Connect(t)
}

var seq atomic.Int64

func uniqueName(prefix string) string { return fmt.Sprintf("%s%d", prefix, seq.Add(1)) }

func TestKVConformance(t *testing.T) {
	t.Parallel()
	_, js := connect(t) // one server; a bucket per case
	store := natskv.NewKVStore(js, natskv.Config{})
	storagetest.RunKV(t, func(t *testing.T) storage.KV {
		kv, err := store.Bucket(t.Context(), uniqueName("conformance"))
		require.NoError(t, err)
		return kv
	})
}

func TestBlobsConformance(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	storagetest.RunBlobs(t, func(t *testing.T) storage.Blobs {
		b, err := natskv.NewBlobs(t.Context(), js, uniqueName("blobs"), natskv.Config{})
		require.NoError(t, err)
		return b
	})
}

func TestBucketIsPrefixedWithTwoRevisions(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	store := natskv.NewKVStore(js, natskv.Config{Prefix: "test_"})
	kv, err := store.Bucket(t.Context(), "jobs")
	require.NoError(t, err)
	again, err := store.Bucket(t.Context(), "jobs")
	require.NoError(t, err)
	require.Same(t, kv, again)

	raw, err := js.KeyValue(t.Context(), "test_jobs")
	require.NoError(t, err)
	status, err := raw.Status(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(2), status.History(), "a deleted value stays behind its marker until it is erased")

	// A second store (another process) shares the bucket.
	other, err := natskv.NewKVStore(js, natskv.Config{Prefix: "test_"}).Bucket(t.Context(), "jobs")
	require.NoError(t, err)
	rev, err := kv.Put(t.Context(), "job.1", []byte("v"))
	require.NoError(t, err)
	e, err := other.Get(t.Context(), "job.1")
	require.NoError(t, err)
	require.Equal(t, rev, e.Revision)

	def, err := natskv.NewKVStore(js, natskv.Config{}).Bucket(t.Context(), "jobs")
	require.NoError(t, err)
	_, err = def.Get(t.Context(), "job.1")
	require.ErrorIs(t, err, apiary.ErrNotFound, "the default prefix is another bucket")
	_, err = js.KeyValue(t.Context(), "apiary_jobs")
	require.NoError(t, err)
}

func TestInvalidNamesAndConfig(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	ctx := t.Context()
	store := natskv.NewKVStore(js, natskv.Config{})
	for _, name := range []string{"", "a.b", "a b", "a*", "a>"} {
		_, err := store.Bucket(ctx, name)
		require.ErrorIs(t, err, apiary.ErrInvalid, "bucket %q", name)
		_, err = natskv.NewBlobs(ctx, js, name, natskv.Config{})
		require.ErrorIs(t, err, apiary.ErrInvalid, "object store %q", name)
	}
	for _, cfg := range []natskv.Config{
		{Prefix: "bad.prefix"},
		{Replicas: -1},
		{Replicas: 7},
		{Storage: jetstream.StorageType(9)},
	} {
		_, err := natskv.NewKVStore(js, cfg).Bucket(ctx, "ok")
		require.ErrorIs(t, err, apiary.ErrInvalid, "%+v", cfg)
		_, err = natskv.NewBlobs(ctx, js, "ok", cfg)
		require.ErrorIs(t, err, apiary.ErrInvalid, "%+v", cfg)
	}
	require.NoError(t, natskv.Config{Prefix: "x-", Replicas: 3, Storage: jetstream.MemoryStorage}.Validate())
}

func TestBlobOverLimitIsTooLarge(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	b, err := natskv.NewBlobs(t.Context(), js, "big", natskv.Config{})
	require.NoError(t, err)
	err = b.Put(t.Context(), "k", make([]byte, natskv.MaxBlobSize+1))
	require.ErrorIs(t, err, apiary.ErrTooLarge)
	_, err = b.Get(t.Context(), "k")
	require.ErrorIs(t, err, apiary.ErrNotFound)
}

func TestClosedConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	ctx := t.Context()
	kv, err := natskv.NewKVStore(js, natskv.Config{}).Bucket(ctx, "jobs")
	require.NoError(t, err)
	b, err := natskv.NewBlobs(ctx, js, "blobs", natskv.Config{})
	require.NoError(t, err)
	nc.Close()

	_, err = kv.Get(ctx, "job.1")
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	_, err = kv.Put(ctx, "job.1", []byte("v"))
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	_, err = kv.Keys(ctx, "job.")
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	require.ErrorIs(t, b.Put(ctx, "k", []byte("v")), apiary.ErrUnavailable)
	_, err = b.Get(ctx, "k")
	require.ErrorIs(t, err, apiary.ErrUnavailable)
}

func TestKeysWithCanceledContextFails(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	kv, err := natskv.NewKVStore(js, natskv.Config{}).Bucket(t.Context(), "jobs")
	require.NoError(t, err)
	for i := range 50 {
		_, err := kv.Put(t.Context(), fmt.Sprintf("job.%d", i), []byte("v"))
		require.NoError(t, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	keys, err := kv.Keys(ctx, "job.")
	require.ErrorIs(t, err, context.Canceled)
	require.Nil(t, keys, "a partial listing was returned")
}

// A listing while other keys are deleted (their messages erased) still names
// every key that stays (api TestMutualAdminDeletionLeavesOne saw a token
// missing from a listing as another token was deleted).
func TestKeysDuringDeletesMissNothing(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	kv, err := natskv.NewKVStore(js, natskv.Config{}).Bucket(t.Context(), "tokens")
	require.NoError(t, err)
	ctx := t.Context()
	for i := range 100 {
		var stay []string
		for j := range 5 { // gone and staying keys interleaved in the stream
			_, err := kv.Put(ctx, fmt.Sprintf("gone.%d.%d", i, j), []byte("v"))
			require.NoError(t, err)
			k := fmt.Sprintf("stay.%d", j)
			_, err = kv.Put(ctx, k, []byte("v"))
			require.NoError(t, err)
			stay = append(stay, k)
		}
		var deleter sync.WaitGroup
		deleter.Go(func() {
			for j := range 5 {
				assert.NoError(t, kv.Delete(ctx, fmt.Sprintf("gone.%d.%d", i, j)))
			}
		})
		keys, err := kv.Keys(ctx, "")
		deleter.Wait()
		require.NoError(t, err)
		for _, k := range stay {
			require.Contains(t, keys, k, "iteration %d", i)
		}
	}
}
