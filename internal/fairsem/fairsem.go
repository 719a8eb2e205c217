// Package fairsem is a weighted semaphore shared fairly among keys
// (accounts): golang.org/x/sync/semaphore.Weighted, except that when callers
// wait, the next units go to the waiter whose key holds the fewest units at
// that moment, not to the one that came first.
//
// What it promises:
//
//   - A key with nothing held overtakes the queue of a key that holds units:
//     a quiet account's one call runs next even behind a noisy account's
//     hundred.
//   - No starvation. Among waiters whose keys hold equally many units the one
//     waiting longest goes first, so one key alone is served first in, first
//     out; and a waiter chosen next blocks the others until its units are
//     free (as in x/sync), so a large request is never passed over forever.
//   - Cancellation. Acquire returns ctx's error when ctx ends first, holding
//     nothing; a waiter that gives up is removed from the queue.
//   - No goroutines: waiting is on the caller's goroutine.
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
	cur     int64        // units held, all keys
	held    map[K]int64  // units held by each key holding any
	waiters []*waiter[K] // oldest first
}

type waiter[K comparable] struct {
	key   K
	n     int64
	ready chan struct{} // closed when the units are granted
}

// New returns a semaphore of size units.
func New[K comparable](size int64) *Weighted[K] {
	return &Weighted[K]{size: size, held: make(map[K]int64)}
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
		s.take(key, n)
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

// take records n units held by key. s.mu must be held.
func (s *Weighted[K]) take(key K, n int64) {
	s.cur += n
	s.held[key] += n
}

// release returns n units of key and grants what is now free. s.mu must be
// held.
func (s *Weighted[K]) release(key K, n int64) {
	h := s.held[key] - n
	if h < 0 {
		panic("fairsem: released more units than held")
	}
	if h == 0 {
		delete(s.held, key)
	} else {
		s.held[key] = h
	}
	s.cur -= n
	s.grant()
}

// grant hands free units to waiters, each time to the one whose key holds
// fewest units (the oldest of those), until that one's request does not
// fit. s.mu must be held.
func (s *Weighted[K]) grant() {
	for len(s.waiters) > 0 {
		next := 0
		for i, w := range s.waiters[1:] {
			if s.held[w.key] < s.held[s.waiters[next].key] {
				next = i + 1
			}
		}
		w := s.waiters[next]
		if s.size-s.cur < w.n {
			return
		}
		s.take(w.key, w.n)
		s.waiters = slices.Delete(s.waiters, next, next+1)
		close(w.ready)
	}
}
