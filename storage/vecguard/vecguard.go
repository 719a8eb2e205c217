package vecguard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// Keys hands out each account's 256-bit protection secret, the same one
// every time; NotFound when it is gone for good (the account's key erased).
type Keys interface {
	Key(ctx context.Context, account apiary.AccountID) ([]byte, error)
}

// Records keeps whether each account's vectors are protected.
type Records interface {
	// VectorProtection returns whether account's vectors are stored
	// rotated, or NotFound when that was never decided.
	VectorProtection(ctx context.Context, account apiary.AccountID) (bool, error)
	// CreateVectorProtection records the decision unless one is recorded
	// (Conflict): of two racing writers, the first wins.
	CreateVectorProtection(ctx context.Context, account apiary.AccountID, protected bool) error
}

// Defaults of Options.
const (
	DefaultCacheSize = 16
	DefaultCacheTTL  = 10 * time.Minute
)

// Options tune a Store.
type Options struct {
	// Dim is the dimension of the store's vectors (required). A vector of
	// another dimension is handed to the inner store as it is, which
	// refuses it.
	Dim int
	// Protect says whether an account's vectors are protected when its
	// first vectors are written through the Store. An account that already
	// has vectors in the inner store then stays unprotected.
	Protect bool
	// CacheSize is how many accounts' rotations are kept in memory (each
	// holds about 4·Dim² bytes: 0.6 MB at 384, 9.4 MB at 1536). Default 16.
	CacheSize int
	// CacheTTL is how long a rotation and a decision are kept: erasing an
	// account's key stops its searches within this time. Default 10 min.
	CacheTTL time.Duration
}

// Store is a storage.VectorStore that keeps each protected account's
// vectors rotated in its inner store. Safe for concurrent use.
type Store struct {
	inner   storage.VectorStore
	secrets Keys
	recs    Records
	opts    Options
	now     func() time.Time

	mu    sync.Mutex
	cache map[apiary.AccountID]cached
	// forgets counts Forget calls: a rotation made while one ran is used
	// but not cached (see lexical.Keys).
	forgets uint64
}

// cached is an account's decision and, when protected, its rotation.
type cached struct {
	rot     *rotation // nil: unprotected
	expires time.Time
}

var _ storage.VectorStore = (*Store)(nil)

// New returns a Store over inner.
func New(inner storage.VectorStore, secrets Keys, recs Records, opts Options) (*Store, error) {
	if inner == nil || secrets == nil || recs == nil || opts.Dim <= 0 {
		return nil, apiary.E(apiary.KindInvalid, "vecguard: a store, secrets, records and a positive dimension are needed")
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	return &Store{inner: inner, secrets: secrets, recs: recs, opts: opts, now: time.Now, cache: map[apiary.AccountID]cached{}}, nil
}

// rotationFor returns account's rotation, nil when its vectors are not
// protected. With decide, an account without a decision gets one: Protect,
// unless the inner store already holds vectors of it.
func (s *Store) rotationFor(ctx context.Context, account apiary.AccountID, decide bool) (*rotation, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[account]
	forgets := s.forgets
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.rot, nil
	}
	protected, err := s.recs.VectorProtection(ctx, account)
	switch {
	case errors.Is(err, apiary.ErrNotFound) && !decide:
		// Nothing written through a Store yet: whatever the inner store
		// holds was stored as it is. Not cached: a decision may come.
		return nil, nil
	case errors.Is(err, apiary.ErrNotFound):
		if protected, err = s.decide(ctx, account); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("vecguard: protection of account %s: %w", account, err)
	}
	var rot *rotation
	if protected {
		secret, err := s.secrets.Key(ctx, account)
		if err != nil {
			return nil, fmt.Errorf("vecguard: secret of account %s: %w", account, err)
		}
		if rot, err = newRotation(secret, s.opts.Dim); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forgets != forgets {
		return rot, nil // a Forget ran meanwhile: not cached
	}
	if len(s.cache) >= s.opts.CacheSize {
		s.evict(now)
	}
	s.cache[account] = cached{rot: rot, expires: now.Add(s.opts.CacheTTL)}
	return rot, nil
}

// decide records whether account's vectors are protected, and returns the
// decision that stands.
func (s *Store) decide(ctx context.Context, account apiary.AccountID) (bool, error) {
	protect := s.opts.Protect
	if protect {
		n, err := s.inner.Count(ctx, account, storage.VectorFilter{})
		if err != nil {
			return false, fmt.Errorf("vecguard: count vectors of account %s: %w", account, err)
		}
		// Vectors stored before protection stay as they are, and so
		// must the account's new ones, or its searches would mix spaces.
		protect = n == 0
	}
	err := s.recs.CreateVectorProtection(ctx, account, protect)
	if errors.Is(err, apiary.ErrConflict) {
		protect, err = s.recs.VectorProtection(ctx, account)
	}
	if err != nil {
		return false, fmt.Errorf("vecguard: record protection of account %s: %w", account, err)
	}
	return protect, nil
}

// evict makes room in a full cache: it drops the expired entries, or else
// one at random (map order), which bounds memory without bookkeeping.
// Caller holds s.mu.
func (s *Store) evict(now time.Time) {
	for a, c := range s.cache {
		if !now.Before(c.expires) {
			delete(s.cache, a)
		}
	}
	for a := range s.cache {
		if len(s.cache) < s.opts.CacheSize {
			break
		}
		delete(s.cache, a)
	}
}

// rotate returns v transformed by rot (forward, or back), or v itself when
// there is no rotation or v is not of the store's dimension.
func (s *Store) rotate(rot *rotation, v []float32, forward bool) []float32 {
	if rot == nil || len(v) != rot.dim {
		return v
	}
	return rot.apply(v, forward)
}

// Upsert writes recs with their vectors rotated (the caller's are left as
// they are).
func (s *Store) Upsert(ctx context.Context, account apiary.AccountID, recs []storage.VectorRecord) error {
	if err := account.Validate(); err != nil {
		return err
	}
	rot, err := s.rotationFor(ctx, account, len(recs) > 0)
	if err != nil {
		return err
	}
	if rot != nil {
		recs = append([]storage.VectorRecord(nil), recs...)
		for i := range recs {
			recs[i].Vector = s.rotate(rot, recs[i].Vector, true)
		}
	}
	return s.inner.Upsert(ctx, account, recs)
}

// DeleteDocument is the inner store's.
func (s *Store) DeleteDocument(ctx context.Context, account apiary.AccountID, doc apiary.DocumentID, keep uint64) error {
	return s.inner.DeleteDocument(ctx, account, doc, keep)
}

// DeleteAccount deletes account's vectors in the inner store and drops its
// rotation from memory (wiped with the account's key: account deletion).
func (s *Store) DeleteAccount(ctx context.Context, account apiary.AccountID) error {
	s.Forget(account)
	return s.inner.DeleteAccount(ctx, account)
}

// Forget drops account's rotation from memory, and its secret from the
// secrets' (when they keep one): the next use derives them again from the
// account's key, which fails once the account is deleted.
func (s *Store) Forget(account apiary.AccountID) {
	s.mu.Lock()
	delete(s.cache, account)
	s.forgets++
	s.mu.Unlock()
	if f, ok := s.secrets.(interface{ Forget(apiary.AccountID) }); ok {
		f.Forget(account) // else the rotation is derived again from a cached secret
	}
}

// Search rotates the query as the account's vectors are, so scores and
// ranks are those of the vectors as given; hits carry them as given.
func (s *Store) Search(ctx context.Context, account apiary.AccountID, vec []float32, k int, f storage.VectorFilter) ([]storage.Hit, error) {
	if err := account.Validate(); err != nil {
		return nil, err
	}
	rot, err := s.rotationFor(ctx, account, false)
	if err != nil {
		return nil, err
	}
	hits, err := s.inner.Search(ctx, account, s.rotate(rot, vec, true), k, f)
	return s.restoreHits(rot, hits), err
}

// SearchLexical is the inner store's, its hits' vectors as given.
func (s *Store) SearchLexical(ctx context.Context, account apiary.AccountID, terms []uint32, k int, f storage.VectorFilter) ([]storage.Hit, error) {
	hits, err := s.inner.SearchLexical(ctx, account, terms, k, f)
	if err != nil || len(hits) == 0 {
		return hits, err
	}
	rot, err := s.rotationFor(ctx, account, false)
	if err != nil {
		return nil, err
	}
	return s.restoreHits(rot, hits), nil
}

// restoreHits rotates the hits' vectors back, all at once.
func (s *Store) restoreHits(rot *rotation, hits []storage.Hit) []storage.Hit {
	if rot == nil {
		return hits
	}
	var vs [][]float32
	var at []int
	for i := range hits {
		if len(hits[i].Vector) == rot.dim {
			vs, at = append(vs, hits[i].Vector), append(at, i)
		}
	}
	for j, v := range rot.applyAll(vs, false) {
		hits[at[j]].Vector = v
	}
	return hits
}

// Count is the inner store's.
func (s *Store) Count(ctx context.Context, account apiary.AccountID, f storage.VectorFilter) (int, error) {
	return s.inner.Count(ctx, account, f)
}

// Scan is the inner store's, its records' vectors as given.
func (s *Store) Scan(ctx context.Context, account apiary.AccountID, after apiary.ChunkID, limit int, f storage.VectorFilter) ([]storage.VectorRecord, error) {
	recs, err := s.inner.Scan(ctx, account, after, limit, f)
	if err != nil || len(recs) == 0 {
		return recs, err
	}
	rot, err := s.rotationFor(ctx, account, false)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].Vector = s.rotate(rot, recs[i].Vector, false)
	}
	return recs, nil
}

// Close closes the inner store.
func (s *Store) Close() error { return s.inner.Close() }
