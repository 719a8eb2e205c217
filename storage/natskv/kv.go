package natskv

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// KVStore opens JetStream key-value buckets.
type KVStore struct {
	js  jetstream.JetStream
	cfg Config
	err error // from cfg.Validate, returned by every Bucket call

	mu      sync.Mutex
	buckets map[string]*KV
}

var _ storage.KVStore = (*KVStore)(nil)

// NewKVStore returns a KVStore on js. A bad cfg makes every Bucket call fail
// with an Invalid error.
func NewKVStore(js jetstream.JetStream, cfg Config) *KVStore {
	cfg.setDefaults()
	s := &KVStore{js: js, cfg: cfg, buckets: make(map[string]*KV)}
	if err := cfg.Validate(); err != nil {
		s.err = apiary.Wrap(err, apiary.KindInvalid, "natskv: config")
	}
	return s
}

// Bucket returns the bucket Prefix+name, creating it (or updating its
// configuration) on first use. name is [A-Za-z0-9_-]+.
func (s *KVStore) Bucket(ctx context.Context, name string) (storage.KV, error) {
	return s.bucket(ctx, name)
}

func (s *KVStore) bucket(ctx context.Context, name string) (*KV, error) {
	if s.err != nil {
		return nil, s.err
	}
	if !storage.ValidName(name) {
		return nil, apiary.E(apiary.KindInvalid, "natskv: bucket name %q may hold only A-Z, a-z, 0-9, '_' and '-'", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if kv, ok := s.buckets[name]; ok {
		return kv, nil
	}
	full := s.cfg.Prefix + name
	b, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   full,
		History:  1,
		Replicas: s.cfg.Replicas,
		Storage:  s.cfg.Storage,
	})
	if err != nil {
		return nil, translate(err, "open bucket", full)
	}
	kv := &KV{kv: b, name: full}
	s.buckets[name] = kv
	return kv, nil
}

// KV is one JetStream key-value bucket.
type KV struct {
	kv   jetstream.KeyValue
	name string
}

var _ storage.KV = (*KV)(nil)

func (b *KV) subject(key string) string { return b.name + "/" + key }

// Get returns the entry at key, or a NotFound error (also for a deleted key).
func (b *KV) Get(ctx context.Context, key string) (storage.Entry, error) {
	if !storage.ValidKey(key) {
		return storage.Entry{}, invalidKey("get", key)
	}
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		return storage.Entry{}, translate(err, "get", b.subject(key))
	}
	return storage.Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision()}, nil
}

// Create stores value at key if there is none (a deleted key counts as
// none); Conflict otherwise.
func (b *KV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if !storage.ValidKey(key) {
		return 0, invalidKey("create", key)
	}
	rev, err := b.kv.Create(ctx, key, value)
	return rev, translate(err, "create", b.subject(key))
}

// Update stores value if key's last revision is still rev; Conflict
// otherwise (also when key does not exist).
func (b *KV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if !storage.ValidKey(key) {
		return 0, invalidKey("update", key)
	}
	newRev, err := b.kv.Update(ctx, key, value, rev)
	return newRev, translate(err, "update", b.subject(key))
}

// Put stores value unconditionally.
func (b *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if !storage.ValidKey(key) {
		return 0, invalidKey("put", key)
	}
	rev, err := b.kv.Put(ctx, key, value)
	return rev, translate(err, "put", b.subject(key))
}

// Delete removes key (it leaves a delete marker); a missing key is not an error.
func (b *KV) Delete(ctx context.Context, key string) error {
	if !storage.ValidKey(key) {
		return invalidKey("delete", key)
	}
	return translate(b.kv.Delete(ctx, key), "delete", b.subject(key))
}

// listTimeout bounds a Keys call whose context has no deadline.
const listTimeout = 30 * time.Second

// Keys returns the keys that start with prefix, sorted. The server filters
// on the prefix up to its last '.', this side on the rest, so "acct1."
// never matches "acct10.x".
func (b *KV) Keys(ctx context.Context, prefix string) ([]string, error) {
	if !storage.ValidKeyPrefix(prefix) {
		return nil, invalidKey("keys", prefix)
	}
	if _, ok := ctx.Deadline(); !ok {
		// A listing is a watcher that ends when the server says it has sent
		// every key; if that word never comes (a stream still recovering),
		// it must not wait forever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, listTimeout)
		defer cancel()
	}
	var (
		lister jetstream.KeyLister
		err    error
	)
	if cut := strings.LastIndexByte(prefix, '.'); cut >= 0 {
		lister, err = b.kv.ListKeysFiltered(ctx, prefix[:cut+1]+">")
	} else {
		lister, err = b.kv.ListKeys(ctx)
	}
	if err != nil {
		return nil, translate(err, "list keys", b.subject(prefix+"*"))
	}
	keys := []string{}
	for k := range lister.Keys() { // the lister closes the channel when done or canceled
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		// The listing stopped early: a partial list is not an answer.
		return nil, translate(err, "list keys", b.subject(prefix+"*"))
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
