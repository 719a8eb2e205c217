package natskv

import (
	"context"
	"errors"
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
	erase := slices.Contains(s.cfg.EraseReplaced, name)
	stream, err := s.openStream(ctx, full)
	if err != nil {
		return nil, translate(err, "open bucket", full)
	}
	b, err := s.js.KeyValue(ctx, full)
	if err != nil {
		return nil, translate(err, "open bucket", full)
	}
	kv := &KV{kv: b, name: full}
	if stream.CachedInfo().Config.DenyDelete {
		s.cfg.Logger.Warn("natskv: bucket was made before secure erase: its deleted values stay in the server's files until the server compacts them; copy its keys to a new bucket to erase them",
			"bucket", full)
	} else {
		kv.stream, kv.eraseReplaced = stream, erase
	}
	s.buckets[name] = kv
	return kv, nil
}

// openStream returns the stream of bucket full, creating it as a key-value
// bucket whose messages may be deleted (a bucket the client library makes
// denies it, and a stream cannot stop denying) or updating its history. A
// bucket made before (it denies deletes) keeps one revision per key.
func (s *KVStore) openStream(ctx context.Context, full string) (jetstream.Stream, error) {
	want := kvStreamConfig(full, s.cfg)
	for {
		stream, err := s.js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			stream, err = s.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // another process made it first
			}
			return stream, err
		}
		if err != nil {
			return nil, err
		}
		cur := stream.CachedInfo().Config
		if cur.DenyDelete {
			want.MaxMsgsPerSubject = 1
		}
		if cur.MaxMsgsPerSubject == want.MaxMsgsPerSubject && cur.Replicas == want.Replicas {
			return stream, nil
		}
		cur.MaxMsgsPerSubject, cur.Replicas = want.MaxMsgsPerSubject, want.Replicas
		return s.js.UpdateStream(ctx, cur)
	}
}

// kvStreamConfig is the stream of a key-value bucket as the client library
// makes it, but for DenyDelete and DenyPurge, and with two revisions per
// key: a deleted key's value is still there, behind its delete marker, to be
// erased (and, in a bucket that erases replaced values, a replaced one).
func kvStreamConfig(full string, cfg Config) jetstream.StreamConfig {
	const history = 2
	return jetstream.StreamConfig{
		Name:              "KV_" + full,
		Subjects:          []string{"$KV." + full + ".>"},
		MaxMsgsPerSubject: history,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           cfg.Storage,
		Replicas:          cfg.Replicas,
		AllowRollup:       true,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
}

// KV is one JetStream key-value bucket.
type KV struct {
	kv   jetstream.KeyValue
	name string
	// stream, when the bucket allows it, erases values: nil for a bucket
	// made before secure erase.
	stream        jetstream.Stream
	eraseReplaced bool // erase the value an update or put replaces
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
	if err != nil {
		return 0, translate(err, "update", b.subject(key))
	}
	if b.eraseReplaced {
		if err := b.erase(ctx, rev); err != nil {
			return newRev, translate(err, "erase replaced", b.subject(key))
		}
	}
	return newRev, nil
}

// Put stores value unconditionally.
func (b *KV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if !storage.ValidKey(key) {
		return 0, invalidKey("put", key)
	}
	rev, err := b.kv.Put(ctx, key, value)
	if err != nil {
		return 0, translate(err, "put", b.subject(key))
	}
	if b.eraseReplaced {
		if err := b.eraseValues(ctx, key, rev); err != nil {
			return rev, translate(err, "erase replaced", b.subject(key))
		}
	}
	return rev, nil
}

// Delete removes key; a missing key is not an error. Its values are
// erased from the server's files (overwritten, not only marked deleted),
// then a delete marker is left.
func (b *KV) Delete(ctx context.Context, key string) error {
	if !storage.ValidKey(key) {
		return invalidKey("delete", key)
	}
	// The marker first, then the erase: a key whose last value is erased
	// before its marker is stored has, for a moment, no message at all, and
	// a listing running then (a JetStream watcher) missed other keys.
	if err := b.kv.Delete(ctx, key); err != nil {
		return translate(err, "delete", b.subject(key))
	}
	if b.stream != nil {
		if err := b.eraseValues(ctx, key, 0); err != nil {
			return translate(err, "erase", b.subject(key))
		}
	}
	return nil
}

// eraseValues erases every stored value of key but revision keep.
func (b *KV) eraseValues(ctx context.Context, key string, keep uint64) error {
	return eraseSubject(ctx, b.stream, "$KV."+b.name+"."+key, keep)
}

// erase erases the message at seq.
func (b *KV) erase(ctx context.Context, seq uint64) error { return eraseMsg(ctx, b.stream, seq) }

// eraseSubject overwrites, in the server's files, every message of stream
// on subject that has data but the one at sequence keep.
func eraseSubject(ctx context.Context, stream jetstream.Stream, subject string, keep uint64) error {
	for seq := uint64(1); ; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Sequence != keep && len(m.Data) > 0 {
			if err := eraseMsg(ctx, stream, m.Sequence); err != nil {
				return err
			}
		}
		seq = m.Sequence + 1
	}
}

// eraseMsg overwrites the message at seq in the server's files (a plain
// delete only marks it deleted: its bytes stay until the server compacts
// the block); a message already gone is not an error.
func eraseMsg(ctx context.Context, stream jetstream.Stream, seq uint64) error {
	err := stream.SecureDeleteMsg(ctx, seq)
	if err == nil {
		return nil
	}
	if _, gerr := stream.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return err
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
