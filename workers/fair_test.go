package workers_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/queue"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
)

const (
	noisy apiary.AccountID = "acc_noisy"
	calm  apiary.AccountID = "acc_calm"
)

func (e *poolEnv) enqueueFor(t *testing.T, account apiary.AccountID, n int) {
	t.Helper()
	for range n {
		require.NoError(t, e.q.Enqueue(t.Context(), apiary.JobMessage{Account: account, Job: apiary.NewJobID()}))
	}
}

// ledger records which account's jobs ran, in order; the noisy account's
// jobs block until release is closed.
type ledger struct {
	release chan struct{}
	calmRan chan struct{}
	once    sync.Once
	mu      sync.Mutex
	order   []apiary.AccountID
}

func newLedger() *ledger {
	return &ledger{release: make(chan struct{}), calmRan: make(chan struct{})}
}

func (l *ledger) Handle(ctx context.Context, d *queue.Delivery) error {
	l.mu.Lock()
	l.order = append(l.order, d.Msg.Account)
	l.mu.Unlock()
	if d.Msg.Account == calm {
		l.once.Do(func() { close(l.calmRan) })
		return nil
	}
	select {
	case <-l.release:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (l *ledger) ran() []apiary.AccountID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.order)
}

// A quiet account's job, queued behind another account's backlog, runs
// while that backlog is still there: the noisy account holds at most
// MaxPerAccount of the pool's slots.
func TestQuietAccountRunsBeforeNoisyBacklogDrains(t *testing.T) {
	t.Parallel()
	env := newPoolEnv(t, 30*time.Second)
	env.enqueueFor(t, noisy, 12)
	env.enqueueFor(t, calm, 1)
	l := newLedger()
	p, err := workers.NewPool(env.q, l, workers.PoolConfig{Concurrency: 2, Logger: quiet()})
	require.NoError(t, err)
	runPool(t, p)

	select {
	case <-l.calmRan:
	case <-time.After(waitFor):
		require.FailNow(t, "the quiet account's job did not run while the noisy account's jobs held the pool", "ran: %v", l.ran())
	}
	require.Equal(t, 1, slices.Index(l.ran(), calm), "one noisy job (its share of two slots), then the quiet one")
	close(l.release)
	env.requireDrained(t)
	require.Len(t, l.ran(), 13, "every job ran once")
}

// When the pool holds MaxHeld jobs of accounts at their cap, it runs them
// anyway rather than leave its slots idle; on Stop the jobs it holds go back
// to the queue at once, not after their lease.
func TestFullHoldStillRunsAndStopHandsBack(t *testing.T) {
	t.Parallel()
	env := newPoolEnv(t, time.Minute)
	env.enqueueFor(t, noisy, 6)
	l := newLedger()
	p, err := workers.NewPool(env.q, l, workers.PoolConfig{Concurrency: 3,
		Fair: workers.FairConfig{MaxPerAccount: 1, MaxHeld: 2}, Logger: quiet()})
	require.NoError(t, err)
	wait := runPool(t, p)
	require.Eventually(t, func() bool { return len(l.ran()) == 3 }, waitFor, 10*time.Millisecond,
		"a full hold borrows the free slots")

	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	close(l.release)
	require.NoError(t, p.Stop(ctx))
	require.NoError(t, wait())

	again := newLedger()
	close(again.release)
	p2, err := workers.NewPool(env.q, again, workers.PoolConfig{Concurrency: 3, Logger: quiet()})
	require.NoError(t, err)
	runPool(t, p2)
	env.requireDrained(t) // within waitFor, under the one-minute lease
	require.Len(t, append(l.ran(), again.ran()...), 6, "every job ran once")
}

// countingHandler counts the jobs it ran and signals when n have.
type countingHandler struct {
	mu   sync.Mutex
	ran  int
	n    int
	done chan struct{}
}

func (h *countingHandler) Handle(context.Context, *queue.Delivery) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ran++; h.ran == h.n {
		close(h.done)
	}
	return nil
}

// A held job runs as soon as its account's running job ends, not when the
// receive already waiting on an empty queue gives up: one account's
// backlog, held behind its cap, once took a whole poll wait per job.
func TestHeldJobRunsWhenItsAccountHasRoom(t *testing.T) {
	t.Parallel()
	const pollWait = time.Minute // far longer than the test may take
	nc, _ := natstest.Connect(t)
	q, err := jsqueue.New(t.Context(), jsqueue.Config{Conn: nc, Lease: 5 * time.Minute, PollWait: pollWait})
	require.NoError(t, err)
	const jobs = 6
	for range jobs {
		require.NoError(t, q.Enqueue(t.Context(), apiary.JobMessage{Account: noisy, Job: apiary.NewJobID()}))
	}
	h := &countingHandler{n: jobs, done: make(chan struct{})}
	p, err := workers.NewPool(q, h, workers.PoolConfig{Concurrency: 2, Fair: workers.FairConfig{MaxPerAccount: 1}, Logger: quiet()})
	require.NoError(t, err)
	runPool(t, p)
	select {
	case <-h.done:
	case <-time.After(waitFor):
		h.mu.Lock()
		defer h.mu.Unlock()
		t.Fatalf("%d of %d jobs ran: the held ones wait for the queue's poll wait (%s)", h.ran, jobs, pollWait)
	}
}
