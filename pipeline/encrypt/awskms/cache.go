package awskms

import (
	"bytes"
	"container/list"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/apiaryhq/apiary"
)

// cacheID names one unwrapped data key: the wrapped key's SHA-256 followed
// by the canonical encryption context (which holds the account), hashed.
// The same wrapped key under another context or account is another entry.
type cacheID [sha256.Size]byte

func newCacheID(wrapped, canonicalCtx []byte) cacheID {
	w := sha256.Sum256(wrapped)
	h := sha256.New()
	h.Write(w[:])
	h.Write(canonicalCtx)
	var id cacheID
	h.Sum(id[:0])
	return id
}

type cacheEntry struct {
	id      cacheID
	account apiary.AccountID
	key     []byte
	added   time.Time
	uses    int
}

// keyCache holds unwrapped data keys, bounded by age, uses and count. Entries
// sit in order of insertion, which is also the order of age, so eviction
// always starts at the front. Every evicted key is zeroed; callers get copies.
type keyCache struct {
	maxAge     time.Duration
	maxUses    int
	maxEntries int
	now        func() time.Time

	mu      sync.Mutex
	entries map[cacheID]*list.Element
	order   *list.List // of *cacheEntry, oldest first
	// forgets counts forget and purge calls: a key fetched while one ran
	// is not cached (putSince), so that it does not outlive them.
	forgets uint64
}

func newKeyCache(c CacheConfig) *keyCache {
	return &keyCache{
		maxAge:     c.MaxAge,
		maxUses:    c.MaxUses,
		maxEntries: c.MaxEntries,
		now:        time.Now,
		entries:    map[cacheID]*list.Element{},
		order:      list.New(),
	}
}

// get returns a copy of the key cached under id, or nil. A hit counts as a
// use; an entry past its age or uses is evicted instead.
func (c *keyCache) get(id cacheID) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[id]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if c.now().Sub(e.added) >= c.maxAge || e.uses >= c.maxUses {
		c.remove(el)
		return nil
	}
	e.uses++
	return bytes.Clone(e.key)
}

// generation is what putSince is given for a key about to be fetched.
func (c *keyCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forgets
}

// putSince caches a copy of key under id, the copy counting as used once,
// unless forget or purge ran since generation returned gen (the key was
// fetched as its account was being forgotten).
func (c *keyCache) putSince(gen uint64, id cacheID, account apiary.AccountID, key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgets != gen {
		return
	}
	if _, ok := c.entries[id]; ok {
		return
	}
	now := c.now()
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		if now.Sub(el.Value.(*cacheEntry).added) < c.maxAge && c.order.Len() < c.maxEntries {
			break
		}
		c.remove(el)
	}
	e := &cacheEntry{id: id, account: account, key: bytes.Clone(key), added: now, uses: 1}
	c.entries[id] = c.order.PushBack(e)
}

// forget evicts every key of account.
func (c *keyCache) forget(account apiary.AccountID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgets++
	for el := c.order.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*cacheEntry).account == account {
			c.remove(el)
		}
		el = next
	}
}

// purge evicts every key.
func (c *keyCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgets++
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		c.remove(el)
	}
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// remove evicts el and zeroes its key. c.mu is held.
func (c *keyCache) remove(el *list.Element) {
	e := c.order.Remove(el).(*cacheEntry)
	clear(e.key)
	delete(c.entries, e.id)
}
