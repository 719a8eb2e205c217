// Package fairsem is a weighted semaphore shared fairly among keys
// (accounts): golang.org/x/sync/semaphore.Weighted, except that when callers
// wait, the next units go to the waiter whose key holds the fewest units at
// that moment; among keys holding equally many, to the key served least
// recently; and among one key's waiters, to the one waiting longest.
//
// What it promises:
//
//   - A key with nothing held overtakes the queue of a key that holds units,
//     and a key that has not been served overtakes one just served: a quiet
//     account's one call runs next even behind a noisy account's hundred,
//     with one unit as with many.
//   - No starvation. Waiting keys take turns (holding equally many units,
//     the least recently served goes first), a key's own waiters are served
//     first in, first out, so one key alone is served in arrival order; and
//     the waiter chosen next blocks the others until its units are free (as
//     in x/sync), so a large request is never passed over forever.
//   - Cancellation. Acquire returns ctx's error when ctx ends first, holding
//     nothing; a waiter that gives up is removed from the queue.
//   - No goroutines: waiting is on the caller's goroutine. What it keeps of
//     a key is dropped once the key neither holds units nor waits.
//
// Safe for concurrent use.
package fairsem

import (
	"context"
	"slices"
	"sync"
)

// Weighted is a semaphore of a fixed number of units shared fairly among
// keys of type K.
type Weighted[K comparable] struct {
	size int64

	mu      sync.Mutex
	cur     int64           // units held, all keys
	keys    map[K]*keyState // each key holding units or waiting
	served  uint64          // grants so far, to order keys by their last
	waiters []*waiter[K]    // oldest first
}

type keyState struct {
	held    int64
	waiting int
	served  uint64 // the value of Weighted.served at the key's last grant
}

type waiter[K comparable] struct {
	key   K
	n     int64
	ready chan struct{} // closed when the units are granted
}

// New returns a semaphore of size units.
func New[K comparable](size int64) *Weighted[K] {
	return &Weighted[K]{size: size, keys: make(map[K]*keyState)}
}

// Acquire takes n units for key, waiting until they are free and its turn
// comes, or until ctx ends (then it returns ctx.Err() and takes nothing).
// A request for more than the semaphore's size waits for ctx.
func (s *Weighted[K]) Acquire(ctx context.Context, key K, n int64) error {
	done := ctx.Done()
	s.mu.Lock()
	select {
	case <-done:
		// Ended already: do not take units even if they are free.
		s.mu.Unlock()
		return ctx.Err()
	default:
	}
	if len(s.waiters) == 0 && s.size-s.cur >= n {
		s.take(s.key(key), n)
		s.mu.Unlock()
		return nil
	}
	if n > s.size {
		// It can never be granted; do not make the others wait behind it.
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
	w := &waiter[K]{key: key, n: n, ready: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.key(key).waiting++
	s.grant()
	s.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-done:
	}
	s.mu.Lock()
	select {
	case <-w.ready:
		// Granted while ctx ended: give the units back.
		s.release(key, n)
	default:
		s.waiters = slices.DeleteFunc(s.waiters, func(o *waiter[K]) bool { return o == w })
		s.keys[key].waiting--
		s.forget(key)
		// The one leaving may have been the next in turn, blocking others.
		s.grant()
	}
	s.mu.Unlock()
	return ctx.Err()
}

// Release gives back n units that key holds. It panics when key holds
// fewer.
func (s *Weighted[K]) Release(key K, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.release(key, n)
}

// key returns key's state, adding it. s.mu must be held.
func (s *Weighted[K]) key(key K) *keyState {
	k := s.keys[key]
	if k == nil {
		k = &keyState{}
		s.keys[key] = k
	}
	return k
}

// forget drops key's state once it neither holds units nor waits. s.mu
// must be held.
func (s *Weighted[K]) forget(key K) {
	if k := s.keys[key]; k != nil && k.held == 0 && k.waiting == 0 {
		delete(s.keys, key)
	}
}

// take records n units granted to k. s.mu must be held.
func (s *Weighted[K]) take(k *keyState, n int64) {
	s.cur += n
	s.served++
	k.held += n
	k.served = s.served
}

// release returns n units of key and grants what is now free. s.mu must be
// held.
func (s *Weighted[K]) release(key K, n int64) {
	k := s.keys[key]
	if k == nil || k.held < n {
		panic("fairsem: released more units than held")
	}
	k.held -= n
	s.cur -= n
	s.forget(key)
	s.grant()
}

// grant hands free units to waiters, each time to the next in turn (see
// the package comment), until that one's request does not fit. s.mu must be
// held.
func (s *Weighted[K]) grant() {
	for len(s.waiters) > 0 {
		next := 0
		for i, w := range s.waiters[1:] {
			if before(s.keys[w.key], s.keys[s.waiters[next].key]) {
				next = i + 1
			}
		}
		w := s.waiters[next]
		if s.size-s.cur < w.n {
			return
		}
		k := s.keys[w.key]
		k.waiting--
		s.take(k, w.n)
		s.waiters = slices.Delete(s.waiters, next, next+1)
		close(w.ready)
	}
}

// before tells whether a waiter of key a goes before one of key b that
// waits longer: a holds fewer units, or as many and was served less
// recently.
func before(a, b *keyState) bool {
	if a.held != b.held {
		return a.held < b.held
	}
	return a.served < b.served
}
