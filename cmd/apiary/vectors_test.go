package main

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/storage"
	localvec "github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

// openStoppedVectors opens the local vector store of an apiary serve
// stopped in dataDir, with the keys it seals its records under (the
// keyring and the records of the data dir). done closes it and them.
func openStoppedVectors(t *testing.T, dataDir string) (vs *localvec.Store, done func()) {
	t.Helper()
	a := bareApp(serveConfig(t, dataDir), slog.New(slog.DiscardHandler))
	require.NoError(t, a.openRecords(t.Context()))
	var err error
	require.NoError(t, a.openKeys(t.Context()))
	vs, err = openLocalVectors(a, 0)
	require.NoError(t, err)
	return vs, func() {
		require.NoError(t, vs.Close())
		a.Close()
	}
}

func serveConfig(t *testing.T, dataDir string, args ...string) Config {
	t.Helper()
	var cfg Config
	fs, envErr := flagSet("serve", &cfg)
	require.NoError(t, fs.Parse(append([]string{"--data-dir", dataDir, "--embedder", "local"}, args...)))
	require.NoError(t, checkConfig(envErr, &cfg, roleServe))
	return cfg
}

// dataFiles reads every file under dir.
func dataFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = b
		return err
	})
	require.NoError(t, err)
	return files
}

func vectorBytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// requireNoVectors fails if any of files holds the first values of a vector
// of recs.
func requireNoVectors(t *testing.T, files map[string][]byte, recs []storage.VectorRecord) {
	t.Helper()
	require.NotEmpty(t, recs)
	for _, r := range recs {
		needle := vectorBytes(r.Vector[:4])
		for path, b := range files {
			require.False(t, bytes.Contains(b, needle), "%s holds the vector of chunk %s in the clear", path, r.ChunkID)
		}
	}
}

// The composition root opens the local vector store with a key per account
// derived from its lexical key: no vector is in the clear in the data dir,
// the store reopens with the same answers, and an account whose key is
// erased is dropped while the others are served.
func TestLocalVectorsAreSealedAtRest(t *testing.T) {
	dataDir := t.TempDir()
	ctx := t.Context()
	var logs testutil.Buffer
	open := func() (*app, *localvec.Store) {
		a := bareApp(serveConfig(t, dataDir), slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, a.openRecords(ctx))
		var err error
		require.NoError(t, a.openKeys(ctx))
		vs, err := openLocalVectors(a, storagetest.VectorDim)
		require.NoError(t, err)
		return a, vs
	}
	accounts := []apiary.AccountID{apiary.NewAccountID(), apiary.NewAccountID()}
	recs := map[apiary.AccountID][]storage.VectorRecord{}
	a, vs := open()
	for _, acc := range accounts {
		require.NoError(t, a.keys.CreateAccountKey(ctx, acc))
		for i := range 3 {
			recs[acc] = append(recs[acc], storagetest.NewRecord(acc, "doc", 1, i, storagetest.VectorDim))
		}
		require.NoError(t, vs.Upsert(ctx, acc, recs[acc]))
	}
	require.NoError(t, vs.Close())
	a.Close()
	requireNoVectors(t, dataFiles(t, dataDir), append(recs[accounts[0]], recs[accounts[1]]...))

	// The first account's key is erased (the keyring's file removed).
	require.NoError(t, os.Remove(filepath.Join(dataDir, "keys", string(accounts[0])+".key")))
	a, vs = open()
	defer a.Close()
	defer vs.Close()
	n, err := vs.Count(ctx, accounts[0], storage.VectorFilter{})
	require.NoError(t, err)
	require.Zero(t, n)
	hits, err := vs.Search(ctx, accounts[1], recs[accounts[1]][2].Vector, 1, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, recs[accounts[1]][2].ChunkID, hits[0].ChunkID)
	require.Equal(t, recs[accounts[1]][2].Vector, hits[0].Vector)
	require.Equal(t, 1, strings.Count(logs.String(), "key is gone"), logs.String())
	require.Contains(t, logs.String(), string(accounts[0]))
}
