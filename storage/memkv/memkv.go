// Package memkv is an in-memory implementation of storage.KVStore,
// storage.KV and storage.Blobs: a real adapter (it passes the storagetest
// suites), for fast unit tests and benchmarks. Nothing survives the process.
//
// It follows the natskv semantics: revisions grow across a bucket (not per
// key), a deleted key may be created again, Update of a missing key is a
// Conflict, keys are tokens of [A-Za-z0-9_=-] joined by '.', and values are
// copied on the way in and out. Blobs hold values up to MaxBlobSize. All
// types are safe for concurrent use.
package memkv

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// Store is a set of named in-memory buckets.
type Store struct {
	mu      sync.Mutex
	buckets map[string]*KV
}

var _ storage.KVStore = (*Store)(nil)

// New returns an empty Store.
func New() *Store { return &Store{buckets: make(map[string]*KV)} }

// Bucket returns the bucket name, creating it on first use. name is
// [A-Za-z0-9_-]+.
func (s *Store) Bucket(ctx context.Context, name string) (storage.KV, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memkv: open bucket %s: %w", name, err)
	}
	if !storage.ValidName(name) {
		return nil, apiary.E(apiary.KindInvalid, "memkv: bucket name %q may hold only A-Z, a-z, 0-9, '_' and '-'", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kv, ok := s.buckets[name]
	if !ok {
		kv = NewKV()
		s.buckets[name] = kv
	}
	return kv, nil
}

// KV is one in-memory bucket.
type KV struct {
	mu      sync.RWMutex
	rev     uint64 // the last revision handed out in this bucket
	entries map[string]storage.Entry
}

var _ storage.KV = (*KV)(nil)

// NewKV returns an empty bucket.
func NewKV() *KV { return &KV{entries: make(map[string]storage.Entry)} }

// check validates a call's context and key.
func check(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memkv: %s %s: %w", op, key, err)
	}
	if !storage.ValidKey(key) {
		return apiary.E(apiary.KindInvalid, "memkv: %s: key %q must be tokens of A-Z, a-z, 0-9, '_', '=' and '-' joined by '.'", op, key)
	}
	return nil
}

// Get returns the entry at key, or a NotFound error.
func (b *KV) Get(ctx context.Context, key string) (storage.Entry, error) {
	if err := check(ctx, "get", key); err != nil {
		return storage.Entry{}, err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	e, ok := b.entries[key]
	if !ok {
		return storage.Entry{}, apiary.E(apiary.KindNotFound, "memkv: get %s: not found", key)
	}
	e.Value = slices.Clone(e.Value)
	return e, nil
}

// set stores value at key under a new revision. Caller holds b.mu.
func (b *KV) set(key string, value []byte) uint64 {
	b.rev++
	b.entries[key] = storage.Entry{Key: key, Value: slices.Clone(value), Revision: b.rev}
	return b.rev
}

// Create stores value at key if there is none; Conflict otherwise.
func (b *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := check(ctx, "create", key); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.entries[key]; ok {
		return 0, apiary.E(apiary.KindConflict, "memkv: create %s: key exists", key)
	}
	return b.set(key, value), nil
}

// Update stores value if key's revision is still rev; Conflict otherwise
// (also when key does not exist).
func (b *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := check(ctx, "update", key); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[key]; !ok || e.Revision != rev {
		return 0, apiary.E(apiary.KindConflict, "memkv: update %s: revision %d is not the last", key, rev)
	}
	return b.set(key, value), nil
}

// Put stores value unconditionally.
func (b *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := check(ctx, "put", key); err != nil {
		return 0, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set(key, value), nil
}

// Delete removes key; a missing key is not an error.
func (b *KV) Delete(ctx context.Context, key string) error {
	if err := check(ctx, "delete", key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, key)
	return nil
}

// Keys returns the keys that start with prefix, sorted.
func (b *KV) Keys(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memkv: keys %s: %w", prefix, err)
	}
	if !storage.ValidKeyPrefix(prefix) {
		return nil, apiary.E(apiary.KindInvalid, "memkv: keys: prefix %q must be tokens of A-Z, a-z, 0-9, '_', '=' and '-' joined by '.'", prefix)
	}
	b.mu.RLock()
	keys := []string{}
	for k := range b.entries {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	b.mu.RUnlock()
	sort.Strings(keys)
	return keys, nil
}

// NewKVStore is New, named like natskv.NewKVStore.
func NewKVStore() *Store { return New() }
