package awskms

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestCache(cfg CacheConfig) (*keyCache, *fakeClock) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := newKeyCache(cfg)
	c.now = clock.now
	return c, clock
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// stored returns the cache's own slice for id, to check that it is zeroed.
func stored(c *keyCache, id cacheID) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[id].Value.(*cacheEntry).key
}

func TestCacheIDBindsWrappedKeyAndContext(t *testing.T) {
	t.Parallel()
	base := newCacheID([]byte("wrapped"), []byte("ctx"))
	require.Equal(t, base, newCacheID([]byte("wrapped"), []byte("ctx")))
	require.NotEqual(t, base, newCacheID([]byte("wrapped2"), []byte("ctx")))
	require.NotEqual(t, base, newCacheID([]byte("wrapped"), []byte("ctx2")))
}

func TestCacheReturnsCopies(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(CacheConfig{MaxAge: time.Minute, MaxUses: 10, MaxEntries: 10})
	id := newCacheID([]byte("w"), nil)
	k := key(7)
	c.putSince(c.generation(), id, "acc", k)
	clear(k) // the caller wipes its key: the cache keeps its own copy
	got := c.get(id)
	require.Equal(t, key(7), got)
	clear(got)
	require.Equal(t, key(7), c.get(id), "a caller's wipe must not reach the cache")
}

func TestCacheEvictsByAge(t *testing.T) {
	t.Parallel()
	c, clock := newTestCache(CacheConfig{MaxAge: time.Minute, MaxUses: 100, MaxEntries: 10})
	id := newCacheID([]byte("w"), nil)
	c.putSince(c.generation(), id, "acc", key(1))
	inside := stored(c, id)
	clock.advance(59 * time.Second)
	require.NotNil(t, c.get(id))
	clock.advance(time.Second)
	require.Nil(t, c.get(id), "an entry MaxAge old is gone")
	require.Equal(t, make([]byte, 32), inside, "an evicted key is zeroed")
	require.Equal(t, 0, c.len())
}

func TestCacheEvictsByUses(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(CacheConfig{MaxAge: time.Hour, MaxUses: 3, MaxEntries: 10})
	id := newCacheID([]byte("w"), nil)
	c.putSince(c.generation(), id, "acc", key(1)) // use 1: the decrypt that filled it
	inside := stored(c, id)
	require.NotNil(t, c.get(id)) // use 2
	require.NotNil(t, c.get(id)) // use 3
	require.Nil(t, c.get(id), "MaxUses reached")
	require.Equal(t, make([]byte, 32), inside)
}

func TestCacheEvictsOldestWhenFull(t *testing.T) {
	t.Parallel()
	c, clock := newTestCache(CacheConfig{MaxAge: time.Hour, MaxUses: 100, MaxEntries: 2})
	a, b, d := newCacheID([]byte("a"), nil), newCacheID([]byte("b"), nil), newCacheID([]byte("d"), nil)
	c.putSince(c.generation(), a, "acc", key(1))
	inA := stored(c, a)
	clock.advance(time.Second)
	c.putSince(c.generation(), b, "acc", key(2))
	clock.advance(time.Second)
	c.putSince(c.generation(), d, "acc", key(3))
	require.Equal(t, 2, c.len())
	require.Nil(t, c.get(a), "the oldest entry makes room")
	require.Equal(t, make([]byte, 32), inA)
	require.Equal(t, key(2), c.get(b))
	require.Equal(t, key(3), c.get(d))
}

func TestCachePutDropsExpired(t *testing.T) {
	t.Parallel()
	c, clock := newTestCache(CacheConfig{MaxAge: time.Minute, MaxUses: 100, MaxEntries: 10})
	for i := range 5 {
		c.putSince(c.generation(), newCacheID([]byte{byte(i)}, nil), "acc", key(byte(i)))
	}
	clock.advance(2 * time.Minute)
	c.putSince(c.generation(), newCacheID([]byte("new"), nil), "acc", key(9))
	require.Equal(t, 1, c.len(), "expired entries do not linger until read")
}

func TestCacheForgetAndPurge(t *testing.T) {
	t.Parallel()
	c, _ := newTestCache(CacheConfig{MaxAge: time.Hour, MaxUses: 100, MaxEntries: 10})
	ids := map[apiary.AccountID]cacheID{"a": newCacheID([]byte("a"), nil), "b": newCacheID([]byte("b"), nil)}
	for acc, id := range ids {
		c.putSince(c.generation(), id, acc, key(1))
	}
	inA := stored(c, ids["a"])
	c.forget("a")
	require.Nil(t, c.get(ids["a"]))
	require.Equal(t, make([]byte, 32), inA)
	require.NotNil(t, c.get(ids["b"]))
	inB := stored(c, ids["b"])
	c.purge()
	require.Equal(t, 0, c.len())
	require.Equal(t, make([]byte, 32), inB)
}
