package natskv_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/storage/natskv"
)

// storeServer starts a server whose JetStream store is a directory the
// test reads, and returns it with a JetStream context on it.
func storeServer(t *testing.T) (*natsserver.Server, string, jetstream.JetStream) {
	t.Helper()
	dir := t.TempDir()
	srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return srv, dir, js
}

// filesHold reports whether any file under dir holds b.
func filesHold(t *testing.T, dir string, b []byte) bool {
	t.Helper()
	found := false
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(data, b)
		return nil
	}))
	return found
}

// A deleted key's values, and the values an update replaced in a bucket
// that erases them, leave the server's files; a bucket that does not
// erase replaced values (a hot one) still erases on delete.
func TestDeleteErasesEveryRevision(t *testing.T) {
	t.Parallel()
	srv, dir, js := storeServer(t)
	ctx := t.Context()
	store := natskv.NewKVStore(js, natskv.Config{EraseReplaced: []string{"docs"}})
	docs, err := store.Bucket(ctx, "docs")
	require.NoError(t, err)
	jobs, err := store.Bucket(ctx, "jobs")
	require.NoError(t, err)

	rev, err := docs.Create(ctx, "a.1", []byte("canary-doc-first-revision"))
	require.NoError(t, err)
	_, err = docs.Update(ctx, "a.1", []byte("canary-doc-second-revision"), rev)
	require.NoError(t, err)
	_, err = docs.Put(ctx, "a.2", []byte("canary-doc-kept-old"))
	require.NoError(t, err)
	_, err = docs.Put(ctx, "a.2", []byte("canary-doc-kept-new"))
	require.NoError(t, err)
	_, err = jobs.Put(ctx, "j.1", []byte("canary-job-only"))
	require.NoError(t, err)
	require.NoError(t, docs.Delete(ctx, "a.1"))
	require.NoError(t, jobs.Delete(ctx, "j.1"))

	e, err := docs.Get(ctx, "a.2")
	require.NoError(t, err)
	require.Equal(t, "canary-doc-kept-new", string(e.Value))
	// The same key can be made again after a secure delete.
	_, err = docs.Create(ctx, "a.1", []byte("canary-doc-again"))
	require.NoError(t, err)

	srv.Shutdown() // the server writes what it buffers
	require.True(t, filesHold(t, dir, []byte("canary-doc-kept-new")), "the search finds what is stored")
	require.True(t, filesHold(t, dir, []byte("canary-doc-again")), "the search finds what is stored")
	for _, gone := range []string{"canary-doc-first-revision", "canary-doc-second-revision", "canary-doc-kept-old", "canary-job-only"} {
		require.False(t, filesHold(t, dir, []byte(gone)), "%q is still in the store's files", gone)
	}
}

func TestBlobDeleteErasesChunks(t *testing.T) {
	t.Parallel()
	srv, dir, js := storeServer(t)
	ctx := t.Context()
	blobs, err := natskv.NewBlobs(ctx, js, "stage", natskv.Config{})
	require.NoError(t, err)
	big := bytes.Repeat([]byte("canary-staged-upload "), 20000) // several chunks
	require.NoError(t, blobs.Put(ctx, "acct.job1", big))
	require.NoError(t, blobs.Put(ctx, "acct.job2", []byte("canary-staged-kept")))
	require.NoError(t, blobs.Delete(ctx, "acct.job1"))
	srv.Shutdown()
	require.True(t, filesHold(t, dir, []byte("canary-staged-kept")), "the search finds what is stored")
	require.False(t, filesHold(t, dir, []byte("canary-staged-upload")), "a deleted blob is still in the store's files")
}

// A bucket made before secure erase (its stream denies deletes) still
// works: deletes leave a marker as before.
func TestLegacyBucketStillDeletes(t *testing.T) {
	t.Parallel()
	_, _, js := storeServer(t)
	ctx := t.Context()
	_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "apiary_old", History: 1})
	require.NoError(t, err)
	kv, err := natskv.NewKVStore(js, natskv.Config{EraseReplaced: []string{"old"}}).Bucket(ctx, "old")
	require.NoError(t, err)
	_, err = kv.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "k"))
	_, err = kv.Get(ctx, "k")
	require.Error(t, err)
}

// BenchmarkUpdate is the cost of erasing what an update replaces: a bucket
// of Config.EraseReplaced against a plain one, on a file store.
func BenchmarkUpdate(b *testing.B) {
	for _, name := range []string{"plain", "erasing"} {
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			srv, err := natsserver.Start(natsserver.Config{StoreDir: dir})
			require.NoError(b, err)
			defer srv.Shutdown()
			nc, err := nats.Connect("", nats.InProcessServer(srv))
			require.NoError(b, err)
			defer nc.Close()
			js, err := jetstream.New(nc)
			require.NoError(b, err)
			kv, err := natskv.NewKVStore(js, natskv.Config{EraseReplaced: []string{"erasing"}}).Bucket(b.Context(), name)
			require.NoError(b, err)
			value := bytes.Repeat([]byte("v"), 512)
			rev, err := kv.Create(b.Context(), "k", value)
			require.NoError(b, err)
			b.ResetTimer()
			for b.Loop() {
				if rev, err = kv.Update(b.Context(), "k", value, rev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
