package fairsem_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary/internal/fairsem"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// queue starts callers that wait on a semaphore, in a known order, and
// tells in which order they are granted. It runs inside a synctest bubble:
// synctest.Wait returns once every caller is blocked, so "queued" and "not
// granted" are facts, not guesses.
type queue struct {
	t       *testing.T
	s       *fairsem.Weighted[string]
	granted chan string
	release map[string]chan struct{}
	errs    map[string]chan error
	wg      sync.WaitGroup
}

func newQueue(t *testing.T, size int64) *queue {
	return &queue{t: t, s: fairsem.New[string](size), granted: make(chan string, 64),
		release: map[string]chan struct{}{}, errs: map[string]chan error{}}
}

// wait starts name, which takes n units for key (under ctx), reports its
// grant and holds the units until let(name); it returns once name waits
// or holds.
func (q *queue) wait(ctx context.Context, name, key string, n int64) {
	rel, errs := make(chan struct{}), make(chan error, 1)
	q.release[name], q.errs[name] = rel, errs
	q.wg.Go(func() {
		err := q.s.Acquire(ctx, key, n)
		errs <- err
		if err != nil {
			return
		}
		q.granted <- name
		<-rel
		q.s.Release(key, n)
	})
	synctest.Wait()
}

// waitN starts key0 … key<n-1>, each taking one unit for key.
func (q *queue) waitN(key string, n int) {
	for i := range n {
		q.wait(q.t.Context(), fmt.Sprint(key, i), key, 1)
	}
}

// finish lets names go and waits for every caller to return.
func (q *queue) finish(names ...string) {
	for _, name := range names {
		q.let(name)
	}
	q.wg.Wait()
}

// let makes name give its units back.
func (q *queue) let(name string) {
	close(q.release[name])
	synctest.Wait()
}

// grants returns the names granted since the last call, in order.
func (q *queue) grants() []string {
	synctest.Wait()
	var got []string
	for {
		select {
		case n := <-q.granted:
			got = append(got, n)
		default:
			return got
		}
	}
}

// fill has key hold n units, held by the test itself.
func (q *queue) fill(key string, n int64) {
	require.NoError(q.t, q.s.Acquire(context.Background(), key, n))
}

func (q *queue) drop(key string, n int64) {
	q.s.Release(key, n)
	synctest.Wait()
}

func TestQuietKeyOvertakesNoisyQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 2)
		ctx := t.Context()
		q.fill("noisy", 2)
		q.waitN("noisy", 3)
		q.wait(ctx, "quiet", "quiet", 1)
		require.Empty(t, q.grants(), "nothing is free")

		q.drop("noisy", 1) // noisy holds 1, quiet 0: quiet goes first
		require.Equal(t, []string{"quiet"}, q.grants())
		q.drop("noisy", 1) // noisy holds 0, quiet 1: noisy's oldest
		require.Equal(t, []string{"noisy0"}, q.grants())
		q.let("quiet") // noisy holds 1, nobody else waits: noisy's next
		require.Equal(t, []string{"noisy1"}, q.grants())
		q.let("noisy0")
		require.Equal(t, []string{"noisy2"}, q.grants())
		q.finish("noisy1", "noisy2")
	})
}

// With one unit, holdings are always equal when it comes free: keys take
// turns, the least recently served first, so a quiet key still overtakes.
func TestKeysTakeTurnsWithOneUnit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 1)
		q.fill("noisy", 1)
		q.waitN("noisy", 3)
		q.waitN("quiet", 2)
		q.drop("noisy", 1)
		var got []string
		for range 5 {
			g := q.grants()
			require.Len(t, g, 1)
			got = append(got, g[0])
			q.let(g[0])
		}
		require.Equal(t, []string{"quiet0", "noisy0", "quiet1", "noisy1", "noisy2"}, got)
		q.wg.Wait()
	})
}

// One key alone is served first in, first out: a noisy account with
// nobody else waiting is never starved nor reordered.
func TestOneKeyFirstInFirstOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 1)
		q.fill("noisy", 1)
		var want []string
		for i := range 8 {
			name := fmt.Sprint("noisy", i)
			q.wait(t.Context(), name, "noisy", 1)
			want = append(want, name)
		}
		q.drop("noisy", 1)
		var got []string
		for _, name := range want {
			got = append(got, q.grants()...)
			q.let(name)
		}
		require.Equal(t, want, got)
		q.wg.Wait()
	})
}

// Keys holding equally many units take turns, the longest waiting first.
func TestEqualKeysTakeTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 2)
		q.fill("a", 1)
		q.fill("b", 1)
		q.waitN("a", 3)
		q.waitN("b", 3)
		q.drop("a", 1) // a holds 0: a0
		q.drop("b", 1) // a holds 1, b 0: b0
		require.Equal(t, []string{"a0", "b0"}, q.grants())
		for _, step := range []struct{ let, want string }{
			{"a0", "a1"}, {"b0", "b1"}, {"b1", "b2"}, {"a1", "a2"},
		} {
			q.let(step.let)
			require.Equal(t, []string{step.want}, q.grants(), "after %s", step.let)
		}
		q.finish("a2", "b2")
	})
}

// The waiter whose turn it is blocks smaller requests behind it until its
// units are free, so a large request is never passed over forever.
func TestLargeRequestIsNotPassedOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 2)
		q.fill("other", 1)
		q.wait(t.Context(), "big", "big", 2)
		q.wait(t.Context(), "small", "small", 1)
		require.Empty(t, q.grants(), "one unit is free, but it is big's turn")
		q.drop("other", 1)
		require.Equal(t, []string{"big"}, q.grants())
		q.let("big")
		require.Equal(t, []string{"small"}, q.grants())
		q.finish("small")
	})
}

func TestCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 2)
		q.fill("other", 1)
		ctx, cancel := context.WithCancel(t.Context())
		q.wait(ctx, "big", "big", 2) // its turn: blocks small
		q.wait(t.Context(), "small", "small", 1)
		require.Empty(t, q.grants())

		cancel()
		synctest.Wait()
		require.ErrorIs(t, <-q.errs["big"], context.Canceled)
		require.Equal(t, []string{"small"}, q.grants(), "the canceled waiter no longer blocks the queue")
		q.let("small")
		q.drop("other", 1)
		q.wg.Wait()
		// big holds nothing: every unit is free again.
		q.fill("after", 2)
		q.drop("after", 2)
	})
}

func TestCanceledContextTakesNothing(t *testing.T) {
	s := fairsem.New[string](1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, s.Acquire(ctx, "a", 1), context.Canceled, "even with units free")
	require.NoError(t, s.Acquire(t.Context(), "b", 1), "a took nothing")
	s.Release("b", 1)
}

// A request larger than the semaphore waits for its context and keeps
// nobody else waiting.
func TestTooLargeWaitsForContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(t, 2)
		q.fill("other", 1)
		ctx, cancel := context.WithCancel(t.Context())
		q.wait(ctx, "huge", "huge", 3)
		q.wait(t.Context(), "small", "small", 1)
		require.Equal(t, []string{"small"}, q.grants())
		cancel()
		synctest.Wait()
		require.ErrorIs(t, <-q.errs["huge"], context.Canceled)
		q.let("small")
		q.drop("other", 1)
		q.wg.Wait()
	})
}

func TestReleaseMoreThanHeldPanics(t *testing.T) {
	s := fairsem.New[string](2)
	require.NoError(t, s.Acquire(t.Context(), "a", 1))
	require.PanicsWithValue(t, "fairsem: released more units than held", func() { s.Release("b", 1) })
	require.PanicsWithValue(t, "fairsem: released more units than held", func() { s.Release("a", 2) })
	s.Release("a", 1)
}

// Many callers of several keys, some giving up: never more units held than
// the size, and everyone that does not give up is served.
func TestNeverOverCommitted(t *testing.T) {
	t.Parallel()
	const size = 3
	s := fairsem.New[int](size)
	var inside, peak atomic.Int64
	var served atomic.Int64
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			for i := range 200 {
				ctx, cancel := context.WithCancel(t.Context())
				if i%7 == 0 {
					cancel() // some give up before or while waiting
				}
				n := int64(1 + (g+i)%2)
				if err := s.Acquire(ctx, g%4, n); err != nil {
					cancel()
					continue
				}
				now := inside.Add(n)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				inside.Add(-n)
				s.Release(g%4, n)
				served.Add(1)
				cancel()
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int64(size))
	require.Equal(t, int64(24*(200-29)), served.Load(), "all but the 29 in 200 that gave up")
	require.NoError(t, s.Acquire(t.Context(), 0, size), "every unit came back")
	s.Release(0, size)
}
