package local_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(killDirEnv); dir != "" {
		os.Exit(killChild(dir))
	}
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, dir string, opts local.Options) *local.Store {
	t.Helper()
	s, err := local.Open(dir, opts)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		return open(t, t.TempDir(), local.Options{})
	})
}

// TestConformanceCompactingEveryWrite runs the suite with compaction
// considered after every write, so that snapshots are exercised by every case.
func TestConformanceCompactingEveryWrite(t *testing.T) {
	t.Parallel()
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		return open(t, t.TempDir(), local.Options{CompactMinBytes: 1, CompactRatio: 1.1})
	})
}

func records(acc apiary.AccountID, doc apiary.DocumentID, version uint64, n int) []storage.VectorRecord {
	recs := make([]storage.VectorRecord, n)
	for i := range recs {
		recs[i] = storagetest.NewRecord(acc, doc, version, i, storagetest.VectorDim)
	}
	return recs
}

// requireStored checks that exactly want are stored for doc, field by field.
func requireStored(t *testing.T, s *local.Store, acc apiary.AccountID, doc apiary.DocumentID, want []storage.VectorRecord) {
	t.Helper()
	n, err := s.Count(t.Context(), acc, storage.VectorFilter{Document: doc})
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	for _, w := range want {
		hits, err := s.Search(t.Context(), acc, w.Vector, 1, storage.VectorFilter{Document: doc})
		require.NoError(t, err)
		require.Len(t, hits, 1)
		got := hits[0]
		require.Equal(t, w.ChunkID, got.ChunkID)
		require.InDelta(t, 1, got.Score, 1e-5)
		require.Equal(t, w.Vector, got.Vector, "vectors come back exactly as given")
		got.VectorRecord.Vector = w.Vector
		w.Terms = nil // hits leave them out
		require.Equal(t, w, got.VectorRecord)
	}
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	acc, other := apiary.NewAccountID(), apiary.NewAccountID()
	v1 := records(acc, "doc", 1, 4)
	v2 := records(acc, "doc", 2, 3)
	theirs := records(other, "doc", 1, 2)

	s, err := local.Open(dir, local.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Upsert(t.Context(), acc, v1))
	require.NoError(t, s.Upsert(t.Context(), acc, v2))
	require.NoError(t, s.Upsert(t.Context(), other, theirs))
	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 2))
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "closing twice")

	s = open(t, dir, local.Options{})
	requireStored(t, s, acc, "doc", v2)
	requireStored(t, s, other, "doc", theirs)

	// The dimension survives too, even with every record gone.
	require.NoError(t, s.DeleteDocument(t.Context(), acc, "doc", 0))
	require.NoError(t, s.DeleteDocument(t.Context(), other, "doc", 0))
	require.NoError(t, s.Close())
	s = open(t, dir, local.Options{CompactMinBytes: 1}) // compacts on open: nothing is live
	short := storagetest.NewRecord(acc, "doc", 1, 0, storagetest.VectorDim-1)
	require.ErrorIs(t, s.Upsert(t.Context(), acc, []storage.VectorRecord{short}), apiary.ErrInvalid)
}

func TestOpenWithAnotherDimensionIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, local.Options{Dim: storagetest.VectorDim})
	// Recorded at open, before any upsert.
	short := storagetest.NewRecord("acc", "doc", 1, 0, storagetest.VectorDim/2)
	require.ErrorIs(t, s.Upsert(t.Context(), "acc", []storage.VectorRecord{short}), apiary.ErrInvalid)
	require.NoError(t, s.Close())

	_, err := local.Open(dir, local.Options{Dim: storagetest.VectorDim * 2})
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.ErrorContains(t, err, fmt.Sprintf("holds vectors of dimension %d and the embedder makes %d", storagetest.VectorDim, storagetest.VectorDim*2))
	require.ErrorContains(t, err, "ingest the documents again")

	// The same dimension, or none given, opens; the refused open wrote nothing.
	s = open(t, dir, local.Options{})
	require.NoError(t, s.Upsert(t.Context(), "acc", []storage.VectorRecord{storagetest.NewRecord("acc", "doc", 1, 0, storagetest.VectorDim)}))
	require.NoError(t, s.Close())
	open(t, dir, local.Options{Dim: storagetest.VectorDim})
}

func logPath(dir string) string { return filepath.Join(dir, "vectors.log") }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

func TestTornTailIsDropped(t *testing.T) {
	t.Parallel()
	acc := apiary.NewAccountID()
	first := records(acc, "first", 1, 3)
	second := records(acc, "second", 1, 3)

	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string, goodSize int64)
	}{
		{"TruncatedRecord", func(t *testing.T, path string, _ int64) {
			require.NoError(t, os.Truncate(path, fileSize(t, path)-5))
		}},
		{"TruncatedFrameHeader", func(t *testing.T, path string, goodSize int64) {
			require.NoError(t, os.Truncate(path, goodSize+3))
		}},
		{"GarbageAfterFrame", func(t *testing.T, path string, goodSize int64) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, fileSize(t, path)-4)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := local.Open(dir, local.Options{})
			require.NoError(t, err)
			require.NoError(t, s.Upsert(t.Context(), acc, first))
			goodSize := fileSize(t, logPath(dir))
			require.NoError(t, s.Upsert(t.Context(), acc, second))
			require.NoError(t, s.Close())

			tc.tear(t, logPath(dir), goodSize)

			s = open(t, dir, local.Options{})
			requireStored(t, s, acc, "first", first)
			requireStored(t, s, acc, "second", nil)
			require.Equal(t, goodSize, fileSize(t, logPath(dir)), "the torn tail is truncated")

			// Writing after the repair lands behind the good records.
			require.NoError(t, s.Upsert(t.Context(), acc, second))
			require.NoError(t, s.Close())
			s = open(t, dir, local.Options{})
			requireStored(t, s, acc, "first", first)
			requireStored(t, s, acc, "second", second)
		})
	}
}

func TestDamageBeforeTheTailFailsOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	acc := apiary.NewAccountID()
	s, err := local.Open(dir, local.Options{})
	require.NoError(t, err)
	recs := records(acc, "doc", 1, 2)
	require.NoError(t, s.Upsert(t.Context(), acc, recs[:1]))
	firstEnd := fileSize(t, logPath(dir))
	require.NoError(t, s.Upsert(t.Context(), acc, recs[1:]))
	require.NoError(t, s.Close())

	// Flip a byte inside the first record: an acknowledged write is damaged,
	// and Open must say so rather than drop it and everything after it.
	raw, err := os.ReadFile(logPath(dir))
	require.NoError(t, err)
	raw[firstEnd-10] ^= 0xff
	require.NoError(t, os.WriteFile(logPath(dir), raw, 0o600))

	_, err = local.Open(dir, local.Options{})
	require.ErrorContains(t, err, "checksum mismatch")
	after, err := os.ReadFile(logPath(dir))
	require.NoError(t, err)
	require.Equal(t, raw, after, "a failed Open must not rewrite the log")
}

func TestStoresSealedBytesVerbatimAndNothingElse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts local.Options
	}{
		{"Log", local.Options{}},
		{"Snapshot", local.Options{CompactMinBytes: 1, CompactRatio: 1.1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := open(t, dir, tc.opts)
			acc := apiary.NewAccountID()
			recs := records(acc, "doc", 1, 5)
			for i := range recs {
				recs[i].Sealed = fmt.Appendf(nil, "SEALED-%d-%x", i, recs[i].Sealed)
			}
			require.NoError(t, s.Upsert(t.Context(), acc, recs[:2]))
			require.NoError(t, s.Upsert(t.Context(), acc, recs[2:]))
			// Replacing records leaves a stale copy in the log until compaction.
			require.NoError(t, s.Upsert(t.Context(), acc, recs[2:]))
			require.NoError(t, s.Close())

			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			require.Equal(t, []string{"LOCK", "vectors.log"}, names)

			raw, err := os.ReadFile(logPath(dir))
			require.NoError(t, err)
			copies := bytes.Count(raw, recs[0].Sealed)
			require.GreaterOrEqual(t, copies, 1, "Sealed is stored verbatim")
			// Take out every byte the store was given; what remains is
			// framing: lengths, checksums, op codes, varints.
			rest := raw
			for _, r := range recs {
				for _, field := range [][]byte{r.Sealed, []byte(r.ChunkID), vectorBytes(r.Vector)} {
					require.NotEqual(t, -1, bytes.Index(rest, field))
					rest = bytes.ReplaceAll(rest, field, nil)
				}
			}
			for _, field := range []string{string(acc), "doc", "storagetest", "APIARYVS"} {
				rest = bytes.ReplaceAll(rest, []byte(field), nil)
			}
			const perBatch, perRecord = 16, 8
			batches, stored := 3, len(recs)+3
			require.LessOrEqual(t, len(rest), 4+batches*perBatch+stored*perRecord,
				"the log holds bytes the store was not given")
		})
	}
}

func vectorBytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func TestCompactionBoundsTheLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	acc := apiary.NewAccountID()
	s := open(t, dir, local.Options{CompactMinBytes: 1})
	recs := records(acc, "doc", 1, 10)
	require.NoError(t, s.Upsert(t.Context(), acc, recs))
	oneRound := fileSize(t, logPath(dir))

	var last []storage.VectorRecord
	for round := range 30 {
		last = slices.Clone(recs)
		for i := range last {
			last[i].Sealed = fmt.Appendf(nil, "round %d chunk %d", round, i)
		}
		require.NoError(t, s.Upsert(t.Context(), acc, last))
		require.NoError(t, s.Upsert(t.Context(), acc, records(acc, "scratch", uint64(round+1), 2)))
		require.NoError(t, s.DeleteDocument(t.Context(), acc, "scratch", 0))
		require.LessOrEqual(t, fileSize(t, logPath(dir)), 3*oneRound, "round %d", round)
	}
	requireStored(t, s, acc, "doc", last)
	require.NoError(t, s.Close())
	_, err := os.Stat(filepath.Join(dir, "vectors.log.tmp"))
	require.ErrorIs(t, err, os.ErrNotExist)

	s = open(t, dir, local.Options{})
	requireStored(t, s, acc, "doc", last)
	requireStored(t, s, acc, "scratch", nil)
}

func TestLeftoverSnapshotIsIgnored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	acc := apiary.NewAccountID()
	s, err := local.Open(dir, local.Options{})
	require.NoError(t, err)
	recs := records(acc, "doc", 1, 2)
	require.NoError(t, s.Upsert(t.Context(), acc, recs))
	require.NoError(t, s.Close())
	// A crash during compaction, before the rename.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "vectors.log.tmp"), []byte("APIARYVS half a snapshot"), 0o600))

	s = open(t, dir, local.Options{})
	requireStored(t, s, acc, "doc", recs)
	_, err = os.Stat(filepath.Join(dir, "vectors.log.tmp"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestSecondOpenOfADirectoryConflicts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := local.Open(dir, local.Options{})
	require.NoError(t, err)
	_, err = local.Open(dir, local.Options{})
	require.ErrorIs(t, err, apiary.ErrConflict)
	require.NoError(t, s.Close())
	s = open(t, dir, local.Options{}) // released by Close
	require.NoError(t, s.Close())
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	s, err := local.Open(t.TempDir(), local.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	acc := apiary.NewAccountID()
	ctx := t.Context()
	require.ErrorIs(t, s.Upsert(ctx, acc, records(acc, "doc", 1, 1)), apiary.ErrUnavailable)
	require.ErrorIs(t, s.DeleteDocument(ctx, acc, "doc", 0), apiary.ErrUnavailable)
	_, err = s.Search(ctx, acc, storagetest.Vector("q", storagetest.VectorDim), 1, storage.VectorFilter{})
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	_, err = s.Count(ctx, acc, storage.VectorFilter{})
	require.ErrorIs(t, err, apiary.ErrUnavailable)
}

func TestInputValidation(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), local.Options{})
	acc := apiary.NewAccountID()
	ctx := t.Context()
	good := storagetest.NewRecord(acc, "doc", 1, 0, storagetest.VectorDim)
	for _, tc := range []struct {
		name string
		edit func(r *storage.VectorRecord)
	}{
		{"NoChunkID", func(r *storage.VectorRecord) { r.ChunkID = "" }},
		{"NoDocument", func(r *storage.VectorRecord) { r.Document = "" }},
		{"NegativeIndex", func(r *storage.VectorRecord) { r.Index = -1 }},
		{"NaN", func(r *storage.VectorRecord) { r.Vector[1] = float32(math.NaN()) }},
		{"Inf", func(r *storage.VectorRecord) { r.Vector[0] = float32(math.Inf(-1)) }},
	} {
		r := good
		r.Vector = slices.Clone(good.Vector)
		tc.edit(&r)
		require.ErrorIs(t, s.Upsert(ctx, acc, []storage.VectorRecord{r}), apiary.ErrInvalid, tc.name)
	}
	require.ErrorIs(t, s.Upsert(ctx, "Not An Account", nil), apiary.ErrInvalid)
	_, err := s.Search(ctx, "", good.Vector, 1, storage.VectorFilter{})
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.ErrorIs(t, s.DeleteDocument(ctx, acc, "", 0), apiary.ErrInvalid)

	// A zero vector is stored and scores 0 against anything.
	zero := storagetest.NewRecord(acc, "doc", 1, 1, storagetest.VectorDim)
	zero.Vector = make([]float32, storagetest.VectorDim)
	require.NoError(t, s.Upsert(ctx, acc, []storage.VectorRecord{zero}))
	hits, err := s.Search(ctx, acc, good.Vector, 1, storage.VectorFilter{})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Zero(t, hits[0].Score)
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts local.Options
		ok   bool
	}{
		{local.Options{}, true},
		{local.Options{CompactRatio: 1.5, CompactMinBytes: 10}, true},
		{local.Options{CompactRatio: 1}, false},
		{local.Options{CompactRatio: math.NaN()}, false},
		{local.Options{CompactMinBytes: -1}, false},
		{local.Options{Dim: 384}, true},
		{local.Options{Dim: -1}, false},
	} {
		_, err := local.Open(t.TempDir(), tc.opts)
		if tc.ok {
			require.NoError(t, err, "%+v", tc.opts)
		} else {
			require.ErrorIs(t, err, apiary.ErrInvalid, "%+v", tc.opts)
		}
	}
}

const killDirEnv = "APIARY_LOCAL_KILL_DIR"

var killAccount = apiary.AccountID("kill-test")

// killChild is the process TestSurvivesKill9 kills: it upserts batch after
// batch and reports each one on stdout only after Upsert has returned.
func killChild(dir string) int {
	s, err := local.Open(dir, local.Options{CompactMinBytes: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		doc := apiary.DocumentID("doc-" + strconv.Itoa(i))
		if err := s.Upsert(ctx, killAccount, records(killAccount, doc, 1, 3)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if i%2 == 1 { // exercise deletes and, with them, compaction
			prev := apiary.DocumentID("doc-" + strconv.Itoa(i-1))
			if err := s.DeleteDocument(ctx, killAccount, prev, 0); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		fmt.Println(i)
	}
}

func TestSurvivesKill9(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	acked := -1
	lines := bufio.NewScanner(out)
	for acked < 200 && lines.Scan() {
		acked, err = strconv.Atoi(lines.Text())
		require.NoError(t, err)
	}
	require.NoError(t, cmd.Process.Kill()) // SIGKILL: no chance to flush or close
	_, _ = io.Copy(io.Discard, out)
	_ = cmd.Wait()
	require.GreaterOrEqual(t, acked, 200, "the child stopped early")

	s := open(t, dir, local.Options{})
	// Doc i is upserted in step i; an even doc is deleted in step i+1.
	// Acknowledged steps must all be there; the step in flight when the
	// child died may or may not be (so doc acked, if even, is either).
	for i := 0; i < acked; i++ {
		doc := apiary.DocumentID("doc-" + strconv.Itoa(i))
		n, err := s.Count(t.Context(), killAccount, storage.VectorFilter{Document: doc})
		require.NoError(t, err)
		if i%2 == 0 {
			require.Zero(t, n, "doc %d was deleted", i)
		} else {
			require.Equal(t, 3, n, "acknowledged doc %d is missing", i)
		}
	}
	if acked%2 == 1 {
		n, err := s.Count(t.Context(), killAccount, storage.VectorFilter{Document: apiary.DocumentID("doc-" + strconv.Itoa(acked))})
		require.NoError(t, err)
		require.Equal(t, 3, n, "the last acknowledged doc is missing")
	}
}

// A deleted document's sealed chunks leave the log at the next compaction,
// which deletes bring about: once CompactDeletedBytes have been deleted,
// and at Close; so do a deleted account's.
func TestDeletesCompact(t *testing.T) {
	t.Parallel()
	sealed := func(recs []storage.VectorRecord, tag string) []storage.VectorRecord {
		for i := range recs {
			recs[i].Sealed = fmt.Appendf(nil, "SEALED-%s-%d", tag, i)
		}
		return recs
	}
	for _, tc := range []struct {
		name    string
		opts    local.Options
		atClose bool
	}{
		{"AtClose", local.Options{}, true},
		{"AfterDeletedBytes", local.Options{CompactDeletedBytes: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := local.Open(dir, tc.opts)
			require.NoError(t, err)
			acc, other := apiary.NewAccountID(), apiary.NewAccountID()
			require.NoError(t, s.Upsert(t.Context(), acc, sealed(records(acc, "gone", 1, 3), "gone")))
			require.NoError(t, s.Upsert(t.Context(), acc, sealed(records(acc, "kept", 1, 3), "kept")))
			require.NoError(t, s.Upsert(t.Context(), other, sealed(records(other, "theirs", 1, 3), "theirs")))
			require.NoError(t, s.DeleteDocument(t.Context(), acc, "gone", 0))
			require.NoError(t, s.DeleteAccount(t.Context(), other))
			if tc.atClose {
				require.NoError(t, s.Close())
			}
			raw, err := os.ReadFile(logPath(dir))
			require.NoError(t, err)
			require.Contains(t, string(raw), "SEALED-kept-0")
			require.NotContains(t, string(raw), "SEALED-gone-")
			require.NotContains(t, string(raw), "SEALED-theirs-")
			require.NoError(t, s.Close())

			s = open(t, dir, tc.opts)
			n, err := s.Count(t.Context(), other, storage.VectorFilter{})
			require.NoError(t, err)
			require.Zero(t, n)
			requireStored(t, s, acc, "kept", sealed(records(acc, "kept", 1, 3), "kept"))
		})
	}
}
