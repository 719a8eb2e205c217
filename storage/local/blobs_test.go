package local_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

func TestBlobsConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunBlobs(t, func(t *testing.T) storage.Blobs {
		b, err := local.OpenBlobs(t.TempDir())
		require.NoError(t, err)
		return b
	})
}

func TestBlobsSurviveReopenAndDropHalfWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := local.OpenBlobs(dir)
	require.NoError(t, err)
	require.NoError(t, b.Put(t.Context(), "uploads/acc/doc", []byte("sealed")))
	half := filepath.Join(dir, "blob-123.tmp")
	require.NoError(t, os.WriteFile(half, []byte("half"), 0o600))

	b, err = local.OpenBlobs(dir)
	require.NoError(t, err)
	got, err := b.Get(t.Context(), "uploads/acc/doc")
	require.NoError(t, err)
	require.Equal(t, []byte("sealed"), got)
	_, err = os.Stat(half)
	require.ErrorIs(t, err, os.ErrNotExist)

	require.ErrorIs(t, b.Put(t.Context(), "big", make([]byte, local.MaxBlobSize+1)), apiary.ErrTooLarge)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "a refused Put left a file")
}
