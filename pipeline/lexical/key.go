package lexical

import (
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage"
)

// Key is one account's lexical key: it turns terms into keyed hashes.
type Key struct {
	secret []byte
}

// NewKey returns the Key of a 256-bit secret (an account's lexical key,
// unwrapped). It keeps secret: the caller must not change it.
func NewKey(secret []byte) (Key, error) {
	if len(secret) != encrypt.KeySize {
		return Key{}, apiary.E(apiary.KindInvalid, "lexical: key must be %d bytes", encrypt.KeySize)
	}
	return Key{secret: secret}, nil
}

// Derive returns a 256-bit key for another purpose: HKDF-SHA256 of the
// lexical key with the purpose as its info. It is as erasable as the
// lexical key (it goes with the account's key), and tells nothing of the
// lexical key or of another purpose's key.
func (k Key) Derive(purpose string) ([]byte, error) {
	if k.secret == nil || purpose == "" {
		return nil, apiary.E(apiary.KindInvalid, "lexical: derive: a key and a purpose are needed")
	}
	return hkdf.Key(sha256.New, k.secret, nil, "apiary "+purpose, encrypt.KeySize)
}

// Derived hands out each account's Derive(purpose) key: the key source of
// a store that seals what it keeps under the account (records' sealed
// fields). Its keys go with the account's key, like the lexical key.
func (k *Keys) Derived(purpose string) DerivedKeys { return DerivedKeys{keys: k, purpose: purpose} }

// DerivedKeys is Keys.Derived's key source.
type DerivedKeys struct {
	keys    *Keys
	purpose string
}

// Key returns account's key for the purpose, making its lexical key on
// first use.
func (d DerivedKeys) Key(ctx context.Context, account apiary.AccountID) ([]byte, error) {
	lk, err := d.keys.Key(ctx, account)
	if err != nil {
		return nil, err
	}
	return lk.Derive(d.purpose)
}

// Forget drops account's key for the purpose from memory (Keys.Forget).
func (d DerivedKeys) Forget(account apiary.AccountID) { d.keys.Forget(account) }

// hasher hashes terms with one key; it is not safe for concurrent use.
type hasher struct{ mac hash.Hash }

func (k Key) hasher() hasher { return hasher{mac: hmac.New(sha256.New, k.secret)} }

// hash is HMAC-SHA256(key, term), its first 32 bits reduced to the port's
// range [0, storage.MaxTermHash].
func (h hasher) hash(term string) uint32 {
	h.mac.Reset()
	h.mac.Write([]byte(term))
	var sum [sha256.Size]byte
	return uint32(uint64(binary.BigEndian.Uint32(h.mac.Sum(sum[:0]))) % (storage.MaxTermHash + 1))
}

// Document returns the keyed terms of a chunk's text with their counts, as
// storage.VectorRecord.Terms wants them: sorted by hash, each hash once. A
// text of more than storage.MaxTerms distinct terms keeps the most frequent
// ones.
func (k Key) Document(text string) []storage.TermCount {
	h := k.hasher()
	counts := map[uint32]uint32{}
	for _, t := range Tokens(text) {
		counts[h.hash(t)]++
	}
	out := make([]storage.TermCount, 0, len(counts))
	for hash, n := range counts {
		out = append(out, storage.TermCount{Hash: hash, Count: n})
	}
	if len(out) > storage.MaxTerms {
		slices.SortFunc(out, func(a, b storage.TermCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Hash, b.Hash))
		})
		out = out[:storage.MaxTerms]
	}
	slices.SortFunc(out, func(a, b storage.TermCount) int { return cmp.Compare(a.Hash, b.Hash) })
	return out
}

// Query returns the keyed terms of a query, each once, in order of first
// appearance.
func (k Key) Query(text string) []uint32 {
	h := k.hasher()
	seen := map[uint32]bool{}
	var out []uint32
	for _, t := range Tokens(text) {
		if x := h.hash(t); !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// KeyRecords keeps each account's lexical key, wrapped by the account's
// key (storage/records implements it).
type KeyRecords interface {
	// LexicalKey returns account's wrapped lexical key, or an error of kind
	// NotFound when none is stored.
	LexicalKey(ctx context.Context, account apiary.AccountID) ([]byte, error)
	// CreateLexicalKey stores account's wrapped lexical key unless one is
	// stored already (Conflict).
	CreateLexicalKey(ctx context.Context, account apiary.AccountID, wrapped []byte) error
}

// Defaults of KeysConfig.
const (
	DefaultCacheSize = 1024
	DefaultCacheTTL  = 10 * time.Minute
)

// KeysConfig tunes Keys' cache of unwrapped keys.
type KeysConfig struct {
	// CacheSize is how many accounts' keys are kept unwrapped. Default 1024.
	CacheSize int
	// CacheTTL is how long an unwrapped key is kept: erasing an account's
	// key stops its lexical search within this time. Default 10 min.
	CacheTTL time.Duration
}

// Keys hands out each account's lexical Key: a 256-bit key made once per
// account by the key provider (encryption context account and purpose
// "lexical"), stored wrapped by KeyRecords, unwrapped on use and kept in a
// bounded cache. Two processes making an account's first key at once both
// end up with the one stored first. Safe for concurrent use.
type Keys struct {
	kp   encrypt.KeyProvider
	recs KeyRecords
	cfg  KeysConfig
	now  func() time.Time

	mu    sync.Mutex
	cache map[apiary.AccountID]cachedKey
	// forgets counts Forget calls: a key loaded while one ran is used but
	// not cached, so that a key unwrapped just before its account's
	// deletion does not outlive the Forget that followed it.
	forgets uint64
}

type cachedKey struct {
	key     Key
	expires time.Time
}

// NewKeys returns Keys over a key provider and the records of wrapped keys.
func NewKeys(kp encrypt.KeyProvider, recs KeyRecords, cfg KeysConfig) *Keys {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	return &Keys{kp: kp, recs: recs, cfg: cfg, now: time.Now, cache: map[apiary.AccountID]cachedKey{}}
}

func keyContext(account apiary.AccountID) encrypt.Context {
	return encrypt.Context{"account": string(account), "purpose": "lexical"}
}

// Key returns account's lexical key, making it on first use.
func (k *Keys) Key(ctx context.Context, account apiary.AccountID) (Key, error) {
	if err := account.Validate(); err != nil {
		return Key{}, err
	}
	now := k.now()
	k.mu.Lock()
	c, ok := k.cache[account]
	forgets := k.forgets
	k.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.key, nil
	}
	secret, err := k.load(ctx, account)
	if err != nil {
		return Key{}, fmt.Errorf("lexical: key: %w", err)
	}
	key, err := NewKey(secret)
	if err != nil {
		return Key{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.forgets != forgets {
		return key, nil // a Forget ran meanwhile: not cached
	}
	if len(k.cache) >= k.cfg.CacheSize {
		k.evict(now)
	}
	k.cache[account] = cachedKey{key: key, expires: now.Add(k.cfg.CacheTTL)}
	return key, nil
}

// load unwraps account's stored key, or makes and stores one.
func (k *Keys) load(ctx context.Context, account apiary.AccountID) ([]byte, error) {
	wrapped, err := k.recs.LexicalKey(ctx, account)
	if apiary.KindOf(err) == apiary.KindNotFound {
		var made []byte
		if wrapped, made, err = k.create(ctx, account); made != nil || err != nil {
			return made, err
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	secret, err := k.kp.Decrypt(ctx, account, wrapped, keyContext(account))
	if err != nil {
		return nil, fmt.Errorf("unwrap: %w", err)
	}
	return secret, nil
}

// create makes account's key and stores it wrapped. It returns the key
// made, or, when another process stored one first, that one still wrapped.
func (k *Keys) create(ctx context.Context, account apiary.AccountID) (wrapped, made []byte, err error) {
	dk, err := k.kp.GenerateDataKey(ctx, account, keyContext(account))
	if err != nil {
		return nil, nil, fmt.Errorf("generate: %w", err)
	}
	err = k.recs.CreateLexicalKey(ctx, account, dk.Wrapped)
	if err == nil {
		return nil, dk.Plaintext, nil
	}
	encrypt.Wipe(dk.Plaintext)
	if !errors.Is(err, apiary.ErrConflict) {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	wrapped, err = k.recs.LexicalKey(ctx, account)
	if err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return wrapped, nil, nil
}

// Forget drops account's key from the cache: a deletion of the account
// calls it once the account's key is erased (in every process: cmd/apiary
// listens for deletions), so that nothing more is sealed or hashed with a
// key of the account (the next use unwraps the key again, which fails once
// it is erased). A key being loaded while Forget runs is not cached.
func (k *Keys) Forget(account apiary.AccountID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.cache, account)
	k.forgets++
}

// evict drops the expired keys, and the one expiring first if none is.
// Caller holds k.mu. Dropped keys are not wiped: a caller may still hash
// with them.
func (k *Keys) evict(now time.Time) {
	var first apiary.AccountID
	var at time.Time
	for a, c := range k.cache {
		if !now.Before(c.expires) {
			delete(k.cache, a)
			continue
		}
		if first == "" || c.expires.Before(at) {
			first, at = a, c.expires
		}
	}
	if len(k.cache) >= k.cfg.CacheSize {
		delete(k.cache, first)
	}
}
