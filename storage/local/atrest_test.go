package local_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/storage"
	"github.com/apiaryhq/apiary/storage/local"
	"github.com/apiaryhq/apiary/storage/storagetest"
)

// testKeys is an AtRestKeys: a random key per account, made on first use,
// which a test can erase (NotFound from then on) or make unavailable. With
// shared, every account has the same key.
type testKeys struct {
	shared  bool
	mu      sync.Mutex
	keys    map[apiary.AccountID][]byte
	erased  map[apiary.AccountID]bool
	calls   map[apiary.AccountID]int
	failing bool
}

func newTestKeys() *testKeys {
	return &testKeys{keys: map[apiary.AccountID][]byte{}, erased: map[apiary.AccountID]bool{}, calls: map[apiary.AccountID]int{}}
}

func (k *testKeys) Key(_ context.Context, account apiary.AccountID) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[account]++
	switch {
	case k.failing:
		return nil, apiary.E(apiary.KindUnavailable, "test keys: unavailable")
	case k.erased[account]:
		return nil, apiary.E(apiary.KindNotFound, "test keys: no key for account %s", account)
	}
	if k.shared {
		account = ""
	}
	if k.keys[account] == nil {
		k.keys[account] = make([]byte, 32)
		rand.Read(k.keys[account])
	}
	return k.keys[account], nil
}

func (k *testKeys) erase(account apiary.AccountID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.erased[account] = true
}

func (k *testKeys) setFailing(failing bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failing = failing
}

// callsFor returns how often account's key was asked for, and resets it.
func (k *testKeys) callsFor(account apiary.AccountID) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.calls[account]
	k.calls[account] = 0
	return n
}

func TestConformanceSealed(t *testing.T) {
	t.Parallel()
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		return open(t, t.TempDir(), local.Options{Keys: newTestKeys()})
	})
}

func TestConformanceSealedCompactingEveryWrite(t *testing.T) {
	t.Parallel()
	storagetest.RunVectorStore(t, func(t *testing.T) storage.VectorStore {
		return open(t, t.TempDir(), local.Options{Keys: newTestKeys(), CompactMinBytes: 1, CompactRatio: 1.1})
	})
}

// recognisable is a record whose vector and terms are easy to find in a
// file: its vector starts with 0.123456789 (times 1+index) twice, its term
// hashes are 0x0BADC0DE and 0x0CAFC3E2.
func recognisable(acc apiary.AccountID, doc apiary.DocumentID, index int) storage.VectorRecord {
	r := storagetest.NewRecord(acc, doc, 1, index, storagetest.VectorDim)
	r.Vector[0] = 0.123456789 * float32(1+index)
	r.Vector[1] = r.Vector[0]
	r.Terms = []storage.TermCount{{Hash: 0x0BADC0DE, Count: 3}, {Hash: 0x0BADC0DE + 0x01020304, Count: 7 + uint32(index)}}
	return r
}

// clearTerms is how the log writes terms in the clear (opUpsertTerms).
func clearTerms(terms []storage.TermCount) []byte { return local.AppendTerms(nil, terms) }

// filesHold reports whether any file under dir holds needle.
func filesHold(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		found = found || bytes.Contains(b, needle)
		return nil
	})
	require.NoError(t, err)
	return found
}

// results are an account's answers to one dense and one lexical query.
func results(t *testing.T, s *local.Store, acc apiary.AccountID, q storage.VectorRecord) [2][]storage.Hit {
	t.Helper()
	dense, err := s.Search(t.Context(), acc, q.Vector, 10, storage.VectorFilter{})
	require.NoError(t, err)
	lexical, err := s.SearchLexical(t.Context(), acc, []uint32{q.Terms[0].Hash, q.Terms[1].Hash}, 10, storage.VectorFilter{})
	require.NoError(t, err)
	require.NotEmpty(t, dense)
	require.NotEmpty(t, lexical)
	return [2][]storage.Hit{dense, lexical}
}

// With Options.Keys, neither a vector nor a term hash is anywhere under
// the store's directory, in the log or in a snapshot; without, both are
// (which shows the search would find them).
func TestSealedVectorsAndTermsAreNotInTheClear(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   local.Options
		sealed bool
	}{
		{"Clear", local.Options{}, false},
		{"SealedLog", local.Options{Keys: newTestKeys()}, true},
		{"SealedSnapshot", local.Options{Keys: newTestKeys(), CompactMinBytes: 1, CompactRatio: 1.1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s, err := local.Open(dir, tc.opts)
			require.NoError(t, err)
			acc := apiary.NewAccountID()
			recs := []storage.VectorRecord{recognisable(acc, "doc", 0), recognisable(acc, "doc", 1), recognisable(acc, "doc", 2)}
			require.NoError(t, s.Upsert(t.Context(), acc, recs[:2]))
			require.NoError(t, s.Upsert(t.Context(), acc, recs[1:]))
			before := results(t, s, acc, recs[1])
			require.NoError(t, s.Close())

			for _, r := range recs {
				require.Equal(t, !tc.sealed, filesHold(t, dir, vectorBytes(r.Vector[:2])), "vector of %s", r.ChunkID)
				require.Equal(t, !tc.sealed, filesHold(t, dir, clearTerms(r.Terms)), "terms of %s", r.ChunkID)
				require.True(t, filesHold(t, dir, r.Sealed), "the sealed text is stored as given")
			}

			s = open(t, dir, tc.opts)
			require.Equal(t, before, results(t, s, acc, recs[1]), "the same answers after reopening")
			requireStored(t, s, acc, "doc", recs)
		})
	}
}

// splice appends to the log in dir a copy of the record that ends at end
// (and starts at start), with from replaced by to in its payload.
func splice(t *testing.T, dir string, start, end int64, from, to string) {
	t.Helper()
	require.Len(t, to, len(from))
	raw, err := os.ReadFile(logPath(dir))
	require.NoError(t, err)
	payload := bytes.Clone(raw[start+8 : end])
	require.Equal(t, 1, bytes.Count(payload, []byte(from)))
	payload = bytes.Replace(payload, []byte(from), []byte(to), 1)
	frame := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	frame = binary.LittleEndian.AppendUint32(frame, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	require.NoError(t, os.WriteFile(logPath(dir), append(append(raw, frame...), payload...), 0o600))
}

// A sealed record is bound to its account and chunk: copied into another
// account's records, or renamed to another chunk, it does not open, and is
// dropped with a warning instead of being served. Every account has the
// same key here, so that only the associated data tells them apart.
func TestSealedRecordDoesNotOpenElsewhere(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		to   func(a, b apiary.AccountID, r storage.VectorRecord) (from, to string, owner apiary.AccountID)
	}{
		{"AnotherAccount", func(a, b apiary.AccountID, _ storage.VectorRecord) (string, string, apiary.AccountID) {
			return string(a), string(b), b
		}},
		{"AnotherChunk", func(a, _ apiary.AccountID, r storage.VectorRecord) (string, string, apiary.AccountID) {
			id := string(r.ChunkID)
			other := "0"
			if id[0] == '0' {
				other = "1"
			}
			return id, other + id[1:], a
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			keys := newTestKeys()
			keys.shared = true
			a, b := apiary.NewAccountID(), apiary.NewAccountID()
			mine := recognisable(a, "doc", 0)
			theirs := recognisable(b, "other", 0)
			s, err := local.Open(dir, local.Options{Keys: keys})
			require.NoError(t, err)
			start := fileSize(t, logPath(dir))
			require.NoError(t, s.Upsert(t.Context(), a, []storage.VectorRecord{mine}))
			end := fileSize(t, logPath(dir))
			require.NoError(t, s.Upsert(t.Context(), b, []storage.VectorRecord{theirs}))
			require.NoError(t, s.Close())

			from, to, owner := tc.to(a, b, mine)
			splice(t, dir, start, end, from, to)

			var logs testutil.Buffer
			s = open(t, dir, local.Options{Keys: keys, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			requireStored(t, s, a, "doc", []storage.VectorRecord{mine})
			requireStored(t, s, b, "other", []storage.VectorRecord{theirs})
			n, err := s.Count(t.Context(), owner, storage.VectorFilter{})
			require.NoError(t, err)
			require.Equal(t, 1, n, "the spliced record is not served")
			require.Equal(t, 1, strings.Count(logs.String(), "do not open"), logs.String())
			require.Contains(t, logs.String(), "account="+string(owner))
		})
	}
}

// An account whose key is gone (erased) is dropped as the store opens, with
// one warning naming it, and every other account is served; the log is
// rewritten without it at once.
func TestSealedAccountWithoutKeyIsDropped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := newTestKeys()
	gone, kept := apiary.NewAccountID(), apiary.NewAccountID()
	s, err := local.Open(dir, local.Options{Keys: keys})
	require.NoError(t, err)
	goneRecs := []storage.VectorRecord{recognisable(gone, "doc", 0), recognisable(gone, "doc", 1)}
	keptRecs := []storage.VectorRecord{recognisable(kept, "doc", 0)}
	require.NoError(t, s.Upsert(t.Context(), gone, goneRecs[:1]))
	require.NoError(t, s.Upsert(t.Context(), kept, keptRecs))
	require.NoError(t, s.Upsert(t.Context(), gone, goneRecs[1:]))
	require.NoError(t, s.Close())
	require.True(t, filesHold(t, dir, []byte(goneRecs[0].ChunkID)))

	keys.erase(gone)
	keys.callsFor(gone)
	keys.callsFor(kept)
	var logs testutil.Buffer
	s, err = local.Open(dir, local.Options{Keys: keys, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	require.Equal(t, 1, keys.callsFor(gone), "one key lookup per account per open")
	require.Equal(t, 1, keys.callsFor(kept), "one key lookup per account per open, compaction included")
	requireStored(t, s, kept, "doc", keptRecs)
	requireStored(t, s, gone, "doc", nil)
	require.Equal(t, 1, strings.Count(logs.String(), "level=WARN"), logs.String())
	require.Contains(t, logs.String(), "account="+string(gone))
	require.False(t, filesHold(t, dir, []byte(goneRecs[0].ChunkID)), "the log no longer holds the account's records")
	require.NoError(t, s.Close())

	logs = testutil.Buffer{}
	s = open(t, dir, local.Options{Keys: keys, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	requireStored(t, s, kept, "doc", keptRecs)
	require.Empty(t, logs.String())
}

// A key erased while the store is open drops the account at the next
// compaction.
func TestSealedAccountErasedWhileOpenIsDroppedByCompaction(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := newTestKeys()
	gone, kept := apiary.NewAccountID(), apiary.NewAccountID()
	var logs testutil.Buffer
	s := open(t, dir, local.Options{Keys: keys, CompactMinBytes: 1, CompactRatio: 1.1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	goneRecs := []storage.VectorRecord{recognisable(gone, "doc", 0)}
	require.NoError(t, s.Upsert(t.Context(), gone, goneRecs))
	keys.erase(gone)
	// Replacing a record leaves a stale copy: the log outgrows the live size.
	keptRecs := []storage.VectorRecord{recognisable(kept, "doc", 0)}
	require.NoError(t, s.Upsert(t.Context(), kept, keptRecs))
	require.NoError(t, s.Upsert(t.Context(), kept, keptRecs))
	requireStored(t, s, gone, "doc", nil)
	requireStored(t, s, kept, "doc", keptRecs)
	require.Contains(t, logs.String(), "account="+string(gone))
	require.False(t, filesHold(t, dir, []byte(goneRecs[0].ChunkID)))
}

// Without its key a write is refused and nothing is written; a key that is
// unavailable (not gone) fails Open rather than drop the account.
func TestSealedKeyUnavailable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := newTestKeys()
	acc := apiary.NewAccountID()
	recs := records(acc, "doc", 1, 2)
	s, err := local.Open(dir, local.Options{Keys: keys})
	require.NoError(t, err)
	require.NoError(t, s.Upsert(t.Context(), acc, recs[:1]))
	size := fileSize(t, logPath(dir))
	keys.setFailing(true)
	require.ErrorIs(t, s.Upsert(t.Context(), acc, recs[1:]), apiary.ErrUnavailable)
	require.Equal(t, size, fileSize(t, logPath(dir)))
	require.NoError(t, s.Close())

	_, err = local.Open(dir, local.Options{Keys: keys})
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	keys.setFailing(false)
	s = open(t, dir, local.Options{Keys: keys})
	requireStored(t, s, acc, "doc", recs[:1])
}

// A log written in the clear (before Options.Keys, or without it) opens
// with Keys and is rewritten sealed at once; a sealed log does not open
// without them.
func TestClearLogOpensSealed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	acc := apiary.NewAccountID()
	old := []storage.VectorRecord{recognisable(acc, "old", 0), recognisable(acc, "old", 1)}
	s, err := local.Open(dir, local.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Upsert(t.Context(), acc, old[:1]))
	require.NoError(t, s.Upsert(t.Context(), acc, records(acc, "gone", 1, 2)))
	require.NoError(t, s.DeleteDocument(t.Context(), acc, "gone", 0))
	require.NoError(t, s.Upsert(t.Context(), acc, old[1:]))
	before := results(t, s, acc, old[1])
	require.NoError(t, s.Close())
	require.True(t, filesHold(t, dir, vectorBytes(old[0].Vector[:2])))

	keys := newTestKeys()
	s, err = local.Open(dir, local.Options{Keys: keys})
	require.NoError(t, err)
	require.Equal(t, before, results(t, s, acc, old[1]))
	requireStored(t, s, acc, "old", old)
	requireStored(t, s, acc, "gone", nil)
	for _, r := range old {
		require.False(t, filesHold(t, dir, vectorBytes(r.Vector[:2])), "vector of %s", r.ChunkID)
		require.False(t, filesHold(t, dir, clearTerms(r.Terms)), "terms of %s", r.ChunkID)
	}
	newer := []storage.VectorRecord{recognisable(acc, "new", 3)}
	require.NoError(t, s.Upsert(t.Context(), acc, newer))
	require.False(t, filesHold(t, dir, vectorBytes(newer[0].Vector[:2])))
	before = results(t, s, acc, old[1])
	require.NoError(t, s.Close())

	_, err = local.Open(dir, local.Options{})
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.ErrorContains(t, err, "Options.Keys")

	s = open(t, dir, local.Options{Keys: keys})
	require.Equal(t, before, results(t, s, acc, old[1]))
	requireStored(t, s, acc, "old", old)
	requireStored(t, s, acc, "new", newer)
}

func TestSealedKeyOfWrongSizeIsRefused(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir(), local.Options{Keys: shortKeys{}})
	acc := apiary.NewAccountID()
	require.ErrorIs(t, s.Upsert(t.Context(), acc, records(acc, "doc", 1, 1)), apiary.ErrInvalid)
}

type shortKeys struct{}

func (shortKeys) Key(context.Context, apiary.AccountID) ([]byte, error) { return make([]byte, 16), nil }
