package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/fairsem"
	"github.com/apiaryhq/apiary/storage"
)

// Options tunes a Store. The zero value is ready to use.
type Options struct {
	// CompactRatio: the log is compacted when it is larger than CompactRatio
	// times the encoded size of the live records. Default 2; at least 1.1.
	CompactRatio float64
	// CompactMinBytes: logs smaller than this are never compacted.
	// Default 4 MiB; 0 after setDefaults means the default, negative is
	// invalid.
	CompactMinBytes int64
	// CompactDeletedBytes: the log is also compacted once deletes have
	// removed this many bytes of records since the last compaction, and at
	// Close after any delete, so that deleted records (their sealed text)
	// leave the file soon, not only when the log has doubled. Default
	// 256 KiB; negative is invalid.
	CompactDeletedBytes int64
	// Logger receives compaction failures (the write that triggered the
	// compaction has already succeeded) and the accounts dropped because
	// their key is gone. Default slog.Default().
	Logger *slog.Logger
	// Dim, when set, is the dimension the store is opened for: a store
	// holding vectors of another dimension fails Open with an Invalid error,
	// and an empty one records Dim at once. 0 (the default) takes the
	// dimension of the first vector ever upserted.
	Dim int
	// Keys, when set, seals what the store keeps at rest: every record's
	// vector and terms are written sealed with AES-256-GCM under its
	// account's key, bound to the account and the record's place (chunk,
	// document, version, index, model). Open opens them into memory; an
	// account whose key is gone (NotFound) is dropped with a warning. A log
	// written without Keys opens with them and is rewritten sealed at once;
	// a log holding sealed records does not open without them. Default nil:
	// vectors and terms are kept in the clear.
	Keys AtRestKeys
}

func (o *Options) setDefaults() {
	if o.CompactRatio == 0 {
		o.CompactRatio = 2
	}
	if o.CompactMinBytes == 0 {
		o.CompactMinBytes = 4 << 20
	}
	if o.CompactDeletedBytes == 0 {
		o.CompactDeletedBytes = 256 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with o (after defaults are applied).
func (o Options) Validate() error {
	var errs []error
	if o.CompactRatio < 1.1 || math.IsNaN(o.CompactRatio) || math.IsInf(o.CompactRatio, 0) {
		errs = append(errs, fmt.Errorf("local: CompactRatio must be at least 1.1, got %v", o.CompactRatio))
	}
	if o.CompactDeletedBytes < 0 {
		errs = append(errs, fmt.Errorf("local: CompactDeletedBytes must not be negative, got %d", o.CompactDeletedBytes))
	}
	if o.CompactMinBytes < 0 {
		errs = append(errs, fmt.Errorf("local: CompactMinBytes must not be negative, got %d", o.CompactMinBytes))
	}
	if o.Dim < 0 || o.Dim > maxDim {
		errs = append(errs, fmt.Errorf("local: Dim must be 0 to %d, got %d", maxDim, o.Dim))
	}
	return errors.Join(errs...)
}

// Store is the embedded vector store. It is safe for concurrent use.
type Store struct {
	dir  string
	opts Options
	lock *os.File

	// writers serializes writers: validation against dim, the log append
	// and fsync, the in-memory apply and compaction. Holding it is enough to
	// read the in-memory state, since only its holder changes it. It is
	// handed on fairly among accounts: a waiting account that wrote least
	// recently goes first, so one account's stream of writes (each with its
	// fsync) does not queue another's.
	writers *fairsem.Weighted[apiary.AccountID]
	log     *os.File
	size    int64 // bytes in the log; the next record goes at this offset
	failed  error // set when the log's state on disk is unknown; refuses writes
	// nextCompact is the smallest log size at which compaction is tried.
	nextCompact int64
	// deleted is how many bytes of records deletes removed since the last
	// compaction: what the log still holds but nobody can read.
	deleted int64

	// mu guards what searches read. Writers take it (holding the writer's place) only to
	// apply a change that is already durable.
	mu       sync.RWMutex
	closed   bool
	dim      int
	live     int64 // estimated snapshot size of the live records
	accounts map[apiary.AccountID]*shard
}

var _ storage.VectorStore = (*Store)(nil)

var errClosed = apiary.E(apiary.KindUnavailable, "local: vector store is closed")

// Open opens (creating it if needed) the store in dir, replaying its log.
// A second Open of the same directory while the first is open fails with a
// Conflict error.
func Open(dir string, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "local: open")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local: open %s: %w", dir, err)
	}
	lock, err := lockDir(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts, lock: lock, writers: fairsem.New[apiary.AccountID](1), accounts: make(map[apiary.AccountID]*shard)}
	if err := s.load(); err != nil {
		lock.Close() // releases the lock
		return nil, err
	}
	return s, nil
}

// load replays the log into memory, truncating a torn tail.
func (s *Store) load() error {
	// A leftover snapshot is from a compaction that never reached its
	// rename: the log is still the truth.
	if err := os.Remove(filepath.Join(s.dir, tmpName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local: open: remove stale snapshot: %w", err)
	}
	path := filepath.Join(s.dir, logName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("local: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("local: open %s: %w", path, err)
	}
	keys := newReplayKeys(s.opts.Keys)
	good, torn, err := replay(f, st.Size(), func(o op) error { return s.replayOp(o, keys) })
	if err != nil {
		f.Close()
		return fmt.Errorf("local: open %s: %w", path, err)
	}
	if torn {
		s.opts.Logger.Warn("local: dropping torn record at the end of the vector log",
			"path", path, "offset", good, "bytes", st.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return fmt.Errorf("local: open %s: truncate torn tail: %w", path, err)
		}
	}
	if good == 0 {
		if _, err := f.WriteAt(header(), 0); err != nil {
			f.Close()
			return fmt.Errorf("local: open %s: write header: %w", path, err)
		}
		good = int64(headerSize)
	}
	if torn || st.Size() == 0 {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("local: open %s: %w", path, err)
		}
		if err := syncDir(s.dir); err != nil {
			f.Close()
			return err
		}
	}
	s.log, s.size = f, good
	if err := s.fixDim(); err != nil {
		f.Close()
		return err
	}
	s.nextCompact = s.opts.CompactMinBytes
	keys.warn(s.opts.Logger, s.dir)
	if keys.rewrite() || s.deleted > 0 {
		// Seals what is in the clear, forgets what is dropped, and leaves out
		// what deletes removed.
		s.compactLogged(keys.key)
	} else {
		s.maybeCompact(keys.key)
	}
	return nil
}

// fixDim checks the replayed store against Options.Dim, recording it in
// the log when the store has none yet.
func (s *Store) fixDim() error {
	want := s.opts.Dim
	switch {
	case want == 0 || s.dim == want:
		return nil
	case s.dim != 0:
		return apiary.E(apiary.KindInvalid,
			"local: the vector store in %s holds vectors of dimension %d and the embedder makes %d: "+
				"chunks are re-embedded in place only at the same dimension; use an embedder of dimension %d, "+
				"or move %s aside and ingest the documents again", s.dir, s.dim, want, s.dim, s.dir)
	}
	if err := s.append(encodeDim(want)); err != nil {
		return fmt.Errorf("local: open %s: record dimension: %w", s.dir, err)
	}
	s.dim = want
	return nil
}

// replayOp applies one logged operation during load, opening its records
// with keys.
func (s *Store) replayOp(o op, keys *replayKeys) error {
	switch o.kind {
	case opDim:
		if s.dim != 0 && s.dim != o.dim || o.dim < 1 || o.dim > maxDim {
			return fmt.Errorf("dimension record %d contradicts %d", o.dim, s.dim)
		}
		s.dim = o.dim
		return nil
	case opUpsert, opUpsertTerms, opUpsertSealed:
		sc, err := s.scoped(o.account)
		if err != nil {
			return err
		}
		if s.dim != 0 && s.dim != o.dim {
			return fmt.Errorf("upsert of dimension %d into a store of dimension %d", o.dim, s.dim)
		}
		recs, err := keys.records(o)
		if err != nil {
			return err
		}
		s.dim = o.dim
		if len(recs) > 0 {
			sc.upsert(recs)
		}
		return nil
	case opDelete:
		sc, err := s.scoped(o.account)
		if err != nil {
			return err
		}
		sc.deleteDocument(o.doc, o.keep)
		return nil
	}
	return errDecode
}

// scope is the store seen from one account. Every method of Store reaches
// the records through a scope made by scoped, so that no code path can read
// or write across accounts.
type scope struct {
	s       *Store
	account apiary.AccountID
}

// scoped validates account and returns the store as that account sees it.
func (s *Store) scoped(account apiary.AccountID) (scope, error) {
	if err := account.Validate(); err != nil {
		return scope{}, fmt.Errorf("local: %w", err)
	}
	return scope{s: s, account: account}, nil
}

// call begins operation op of a caller: ctx still live, then scoped.
func (s *Store) call(ctx context.Context, op string, account apiary.AccountID) (scope, error) {
	if err := ctx.Err(); err != nil {
		return scope{}, fmt.Errorf("local: %s: %w", op, err)
	}
	return s.scoped(account)
}

// shard returns the account's records, nil when it has none. The caller
// holds s.mu (read or write) or the writer's place.
func (sc scope) shard() *shard { return sc.s.accounts[sc.account] }

// owns checks that rec belongs to the scope's account.
func (sc scope) owns(rec *storage.VectorRecord) error {
	if rec.Account != sc.account {
		return apiary.E(apiary.KindInvalid, "local: upsert: record %s belongs to another account", rec.ChunkID)
	}
	return nil
}

// upsert applies recs (validated, durable) to memory. The caller holds
// s.mu for writing, or is replaying.
func (sc scope) upsert(recs []storage.VectorRecord) {
	sh := sc.s.accounts[sc.account]
	if sh == nil {
		sh = newShard(sc.s.dim)
		sc.s.accounts[sc.account] = sh
	}
	for i := range recs {
		sc.s.live += sh.put(&recs[i])
	}
}

// deleteDocument removes doc's records of versions older than keep (all
// when keep is 0) and returns how many it removed. The caller holds s.mu for
// writing, or is replaying.
func (sc scope) deleteDocument(doc apiary.DocumentID, keep uint64) int {
	sh := sc.s.accounts[sc.account]
	if sh == nil {
		return 0
	}
	n, freed := sh.deleteDocument(doc, keep)
	sc.s.live -= freed
	sc.s.deleted += freed
	if len(sh.ents) == 0 {
		delete(sc.s.accounts, sc.account)
	}
	return n
}

// Upsert writes recs by ChunkID, replacing any with the same id, durably:
// when it returns nil the records are fsynced to the log. Either every
// record is written or none is.
func (s *Store) Upsert(ctx context.Context, account apiary.AccountID, recs []storage.VectorRecord) error {
	sc, err := s.call(ctx, "upsert", account)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if err := sc.owns(&recs[i]); err != nil {
			return err
		}
		if err := validRecord(&recs[i]); err != nil {
			return err
		}
	}
	boxes, err := s.seal(ctx, account, recs)
	if err != nil {
		return err
	}
	if err := s.lockWriter(ctx, account); err != nil {
		return fmt.Errorf("local: upsert: %w", err)
	}
	defer s.unlockWriter(account)
	if err := s.writable(); err != nil {
		return err
	}
	dim := s.dim
	if dim == 0 {
		dim = len(recs[0].Vector)
	}
	for i := range recs {
		if r := &recs[i]; len(r.Vector) != dim {
			return apiary.E(apiary.KindInvalid, "local: upsert: record %s has a vector of dimension %d, the store holds dimension %d", r.ChunkID, len(r.Vector), dim)
		}
	}
	rec := encodeUpsert(account, dim, recs, func(i int) []float32 { return recs[i].Vector }, boxes)
	if len(rec) > maxRecord {
		return apiary.E(apiary.KindTooLarge, "local: upsert: batch of %d records is over %d bytes; split it", len(recs), maxRecord)
	}
	if err := s.append(rec); err != nil {
		return err
	}
	s.mu.Lock()
	s.dim = dim
	sc.upsert(recs)
	s.mu.Unlock()
	s.maybeCompact(s.key)
	return nil
}

// seal returns recs' boxes under account's key, nil without Options.Keys.
func (s *Store) seal(ctx context.Context, account apiary.AccountID, recs []storage.VectorRecord) ([][]byte, error) {
	if s.opts.Keys == nil {
		return nil, nil
	}
	key, err := s.opts.Keys.Key(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("local: upsert: key for account %s: %w", account, err)
	}
	boxes := make([][]byte, len(recs))
	for i := range recs {
		if boxes[i], err = sealRecord(key, account, &recs[i]); err != nil {
			return nil, fmt.Errorf("local: upsert: %w", err)
		}
	}
	return boxes, nil
}

// key is the keyFunc of compactions after Open.
func (s *Store) key(account apiary.AccountID) ([]byte, error) {
	return lookupKey(s.opts.Keys, account)
}

func validRecord(r *storage.VectorRecord) error {
	switch {
	case r.ChunkID == "" || len(r.ChunkID) > 256:
		return apiary.E(apiary.KindInvalid, "local: upsert: chunk id must be 1 to 256 bytes")
	case r.Index < 0:
		return apiary.E(apiary.KindInvalid, "local: upsert: record %s has a negative index", r.ChunkID)
	case len(r.Vector) == 0 || len(r.Vector) > maxDim:
		return apiary.E(apiary.KindInvalid, "local: upsert: record %s must have a vector of 1 to %d dimensions", r.ChunkID, maxDim)
	case !finite(r.Vector):
		return apiary.E(apiary.KindInvalid, "local: upsert: record %s has a vector with NaN or infinite values", r.ChunkID)
	}
	if err := r.Document.Validate(); err != nil {
		return fmt.Errorf("local: upsert: record %s: %w", r.ChunkID, err)
	}
	if err := storage.CheckTerms(r.Terms); err != nil {
		return fmt.Errorf("local: upsert: record %s: %w", r.ChunkID, err)
	}
	return nil
}

// DeleteDocument removes the document's chunks of versions older than keep
// (keep 0 removes them all), durably. Deleting nothing is not an error.
func (s *Store) DeleteDocument(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, keep uint64) error {
	sc, err := s.call(ctx, "delete document", account)
	if err != nil {
		return err
	}
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("local: delete document: %w", err)
	}
	if err := s.lockWriter(ctx, account); err != nil {
		return fmt.Errorf("local: delete document: %w", err)
	}
	defer s.unlockWriter(account)
	if err := s.writable(); err != nil {
		return err
	}
	if sh := sc.shard(); sh == nil || !sh.hasOtherVersion(doc, keep) {
		return nil // nothing to delete: nothing to log
	}
	if err := s.append(encodeDelete(account, doc, keep)); err != nil {
		return err
	}
	s.mu.Lock()
	sc.deleteDocument(doc, keep)
	s.mu.Unlock()
	s.compactAfterDeletes()
	return nil
}

// DeleteAccount removes every record of account, durably, and compacts the
// log at once so that their sealed bytes leave the file.
func (s *Store) DeleteAccount(ctx context.Context, account apiary.AccountID) error {
	sc, err := s.call(ctx, "delete account", account)
	if err != nil {
		return err
	}
	if f, ok := s.opts.Keys.(interface{ Forget(apiary.AccountID) }); ok {
		f.Forget(account) // its key is erased: drop the copy the key source keeps
	}
	if err := s.lockWriter(ctx, account); err != nil {
		return fmt.Errorf("local: delete account: %w", err)
	}
	defer s.unlockWriter(account)
	if err := s.writable(); err != nil {
		return err
	}
	sh := sc.shard()
	if sh == nil {
		return nil
	}
	docs := slices.Sorted(maps.Keys(sh.docs))
	// One delete record per document: the log format (and its replay) is
	// unchanged.
	for _, doc := range docs {
		if err := s.append(encodeDelete(account, doc, 0)); err != nil {
			return err
		}
		s.mu.Lock()
		sc.deleteDocument(doc, 0)
		s.mu.Unlock()
	}
	s.compactLogged(s.key)
	return nil
}

// compactAfterDeletes compacts once deletes have removed
// CompactDeletedBytes, or else when the log has grown enough. Caller holds
// the writer's place.
func (s *Store) compactAfterDeletes() {
	if s.deleted >= s.opts.CompactDeletedBytes {
		s.compactLogged(s.key)
		return
	}
	s.maybeCompact(s.key)
}

// Search returns up to k records of account closest to vec by cosine
// similarity, best first; ties go to the smaller ChunkID.
func (s *Store) Search(ctx context.Context, account apiary.AccountID, vec []float32, k int, f storage.VectorFilter) ([]storage.Hit, error) {
	sc, err := s.call(ctx, "search", account)
	if err != nil {
		return nil, err
	}
	if k <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "local: search: k must be positive, got %d", k)
	}
	if len(vec) == 0 || !finite(vec) {
		return nil, apiary.E(apiary.KindInvalid, "local: search: the query vector must be non-empty and finite")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	if s.dim != 0 && len(vec) != s.dim {
		return nil, apiary.E(apiary.KindInvalid, "local: search: query of dimension %d, the store holds dimension %d", len(vec), s.dim)
	}
	sh := sc.shard()
	if sh == nil {
		return nil, nil
	}
	return sh.search(vec, k, f), nil
}

// SearchLexical returns up to k records of account holding any of terms,
// best first by BM25 over the account's records (exact: the statistics are
// kept current by every write); ties go to the smaller ChunkID.
func (s *Store) SearchLexical(ctx context.Context, account apiary.AccountID, terms []uint32, k int, f storage.VectorFilter) ([]storage.Hit, error) {
	sc, err := s.call(ctx, "search lexical", account)
	if err != nil {
		return nil, err
	}
	if k <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "local: search lexical: k must be positive, got %d", k)
	}
	for _, t := range terms {
		if t > storage.MaxTermHash {
			return nil, apiary.E(apiary.KindInvalid, "local: search lexical: term hash above %d", uint32(storage.MaxTermHash))
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	sh := sc.shard()
	if sh == nil {
		return nil, nil
	}
	return sh.searchLexical(terms, k, f), nil
}

// Count returns how many of account's records match f.
func (s *Store) Count(ctx context.Context, account apiary.AccountID, f storage.VectorFilter) (int, error) {
	sc, err := s.call(ctx, "count", account)
	if err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errClosed
	}
	sh := sc.shard()
	if sh == nil {
		return 0, nil
	}
	return sh.count(f), nil
}

// Scan returns up to limit of account's records that match f, with ChunkID
// above after, in ChunkID order. Each page is one pass over the account's
// records (or the document's, with a document filter).
func (s *Store) Scan(ctx context.Context, account apiary.AccountID, after apiary.ChunkID, limit int, f storage.VectorFilter) ([]storage.VectorRecord, error) {
	sc, err := s.call(ctx, "scan", account)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "local: scan: limit must be positive, got %d", limit)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	sh := sc.shard()
	if sh == nil {
		return nil, nil
	}
	return sh.scan(after, limit, f), nil
}

// Close releases the store: later calls fail with an Unavailable error.
// Every acknowledged write is already on disk. Closing twice is not an error.
func (s *Store) Close() error {
	_ = s.lockWriter(context.Background(), "") // cannot fail without a deadline
	defer s.unlockWriter("")
	if !s.closed && s.deleted > 0 {
		s.compactLogged(s.key) // what deletes removed leaves the file
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.accounts = nil
	err := s.log.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("local: close: %w", err)
	}
	return nil
}

// lockWriter takes the writer's place for account, in its fair turn.
func (s *Store) lockWriter(ctx context.Context, account apiary.AccountID) error {
	return s.writers.Acquire(ctx, account, 1)
}

func (s *Store) unlockWriter(account apiary.AccountID) { s.writers.Release(account, 1) }

// writable reports why writes are refused, if they are. Caller holds the
// writer's place.
func (s *Store) writable() error {
	if s.closed { // only changes under the writer's place, so reading it here is safe
		return errClosed
	}
	if s.failed != nil {
		return apiary.Wrap(s.failed, apiary.KindUnavailable, "local: the vector log failed earlier; reopen the store")
	}
	return nil
}

// append writes rec at the end of the log and fsyncs it. Caller holds the
// writer's place.
func (s *Store) append(rec []byte) error {
	if _, err := s.log.WriteAt(rec, s.size); err != nil {
		// Cut the partial record off so that the next append does not
		// land behind garbage; if even that fails, stop writing.
		if terr := s.log.Truncate(s.size); terr != nil {
			s.failed = errors.Join(err, terr)
		}
		return apiary.Wrap(err, apiary.KindUnavailable, "local: append to vector log")
	}
	if err := s.log.Sync(); err != nil {
		// After a failed fsync the page cache may not match the disk.
		s.failed = err
		return apiary.Wrap(err, apiary.KindUnavailable, "local: sync vector log")
	}
	s.size += int64(len(rec))
	return nil
}

func finite(v []float32) bool {
	for _, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return false
		}
	}
	return true
}

// sortedAccounts returns the account ids in order, for deterministic snapshots.
func (s *Store) sortedAccounts() []apiary.AccountID {
	ids := make([]apiary.AccountID, 0, len(s.accounts))
	for id := range s.accounts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
