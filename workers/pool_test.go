package workers_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/queue"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

const waitFor = 30 * time.Second

// poolEnv is a JetStream queue on a fresh embedded nats-server.
type poolEnv struct {
	nc *nats.Conn
	q  *jsqueue.Queue
}

func newPoolEnv(t *testing.T, lease time.Duration) *poolEnv {
	t.Helper()
	nc, _ := natstest.Connect(t)
	q, err := jsqueue.New(t.Context(), jsqueue.Config{Conn: nc, Lease: lease, PollWait: 100 * time.Millisecond})
	require.NoError(t, err)
	return &poolEnv{nc: nc, q: q}
}

func (e *poolEnv) enqueue(t *testing.T) apiary.JobMessage {
	t.Helper()
	msg := apiary.JobMessage{Account: "acc_pool", Job: apiary.NewJobID()}
	require.NoError(t, e.q.Enqueue(t.Context(), msg))
	return msg
}

// queued is how many messages the stream still holds: acked and terminated
// ones are gone from a work-queue stream.
func (e *poolEnv) queued(t *testing.T) uint64 {
	t.Helper()
	js, err := natsjs.New(e.nc)
	require.NoError(t, err)
	s, err := js.Stream(t.Context(), "APIARY_JOBS")
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

func (e *poolEnv) requireDrained(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return e.queued(t) == 0 }, waitFor, 10*time.Millisecond,
		"every message must be acked or terminated")
}

// runPool starts p.Run and stops the pool (soft, then hard) when the test
// ends. The returned function waits for Run and returns its result.
func runPool(t *testing.T, p *workers.Pool) (wait func() error) {
	t.Helper()
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = p.Run(context.Background())
	}()
	wait = func() error {
		select {
		case <-done:
			return err
		case <-time.After(waitFor):
			require.FailNow(t, "Run did not return")
			return nil
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Stop(ctx)
		<-done
	})
	return wait
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// giveUps records OnGiveUp calls.
type giveUps struct {
	mu   sync.Mutex
	errs []error
	jobs []apiary.JobID
}

func (g *giveUps) hook(_ context.Context, d *queue.Delivery, err error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.errs = append(g.errs, err)
	g.jobs = append(g.jobs, d.Msg.Job)
	return nil
}

func (g *giveUps) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.errs)
}

// attempts records the attempts a handler saw.
type attempts struct {
	mu  sync.Mutex
	got []int
}

func (a *attempts) add(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, n)
}

func (a *attempts) list() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int(nil), a.got...)
}

func TestNewPoolValidates(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2*time.Second)
	h := workers.HandlerFunc(func(context.Context, *queue.Delivery) error { return nil })
	tests := []struct {
		name string
		cfg  workers.PoolConfig
	}{
		{"negative concurrency", workers.PoolConfig{Concurrency: -1}},
		{"negative attempts", workers.PoolConfig{MaxAttempts: -1}},
		{"negative outage window", workers.PoolConfig{OutageGiveUp: -time.Second}},
		{"max under base", workers.PoolConfig{BackoffBase: time.Minute, BackoffMax: time.Second}},
		{"extend not under lease", workers.PoolConfig{ExtendEvery: 2 * time.Second}},
		{"per-account cap over concurrency", workers.PoolConfig{Concurrency: 2, Fair: workers.FairConfig{MaxPerAccount: 3}}},
		{"negative hold", workers.PoolConfig{Fair: workers.FairConfig{MaxHeld: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := workers.NewPool(e.q, h, tt.cfg)
			require.Error(t, err)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
		})
	}
	_, err := workers.NewPool(e.q, nil, workers.PoolConfig{})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestPoolOutcomes(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name        string
		maxAttempts int
		// handle returns the result of the given attempt.
		handle       func(attempt int) error
		wantAttempts []int
		wantGiveUp   bool
	}{
		{
			name:         "success acks once",
			handle:       func(int) error { return nil },
			wantAttempts: []int{1},
		},
		{
			name: "retry after hint then success",
			handle: func(a int) error {
				if a == 1 {
					return apiary.RetryAfter(boom, 50*time.Millisecond)
				}
				return nil
			},
			wantAttempts: []int{1, 2},
		},
		{
			name: "backoff then success",
			handle: func(a int) error {
				if a < 3 {
					return boom
				}
				return nil
			},
			wantAttempts: []int{1, 2, 3},
		},
		{
			name:         "permanent gives up at once",
			handle:       func(int) error { return apiary.Permanent(boom) },
			wantAttempts: []int{1},
			wantGiveUp:   true,
		},
		{
			name:         "invalid input gives up at once",
			handle:       func(int) error { return apiary.Wrap(boom, apiary.KindInvalid, "bad document") },
			wantAttempts: []int{1},
			wantGiveUp:   true,
		},
		{
			// The process holding the job's ephemeral token stopped: no
			// retry can bring the token back.
			name:         "a token holder gone gives up at once",
			handle:       func(int) error { return fmt.Errorf("custody: withdraw: %w: %w", custody.ErrHolderGone, boom) },
			wantAttempts: []int{1},
			wantGiveUp:   true,
		},
		{
			name:         "attempts exhausted",
			maxAttempts:  3,
			handle:       func(int) error { return boom },
			wantAttempts: []int{1, 2, 3},
			wantGiveUp:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newPoolEnv(t, time.Second)
			var seen attempts
			var gu giveUps
			p, err := workers.NewPool(e.q, workers.HandlerFunc(func(_ context.Context, d *queue.Delivery) error {
				seen.add(d.Attempt)
				return tt.handle(d.Attempt)
			}), workers.PoolConfig{
				MaxAttempts: tt.maxAttempts,
				BackoffBase: 20 * time.Millisecond,
				OnGiveUp:    gu.hook,
				Logger:      quiet(),
			})
			require.NoError(t, err)
			msg := e.enqueue(t)
			runPool(t, p)

			e.requireDrained(t)
			// Past one more lease: an acked or terminated job never comes back.
			require.Never(t, func() bool { return len(seen.list()) > len(tt.wantAttempts) },
				1500*time.Millisecond, 50*time.Millisecond)
			require.Equal(t, tt.wantAttempts, seen.list())
			if !tt.wantGiveUp {
				require.Zero(t, gu.count(), "OnGiveUp must not run for a job that succeeded")
				return
			}
			require.Equal(t, 1, gu.count(), "OnGiveUp runs exactly once")
			require.Equal(t, []apiary.JobID{msg.Job}, gu.jobs)
			require.ErrorIs(t, gu.errs[0], boom, "OnGiveUp gets the error that ended the job")
		})
	}
}

// agedQueue wraps a queue: its deliveries say their message was enqueued
// at enqueued(the queue's time), and it records the reasons given to Term.
type agedQueue struct {
	queue.Queue
	enqueued func(time.Time) time.Time
	mu       sync.Mutex
	reasons  []string
}

// olderBy makes every message look enqueued age earlier than it was.
func olderBy(age time.Duration) func(time.Time) time.Time {
	return func(t time.Time) time.Time { return t.Add(-age) }
}

func (q *agedQueue) Receive(ctx context.Context, max int) ([]*queue.Delivery, error) {
	ds, err := q.Queue.Receive(ctx, max)
	for i, d := range ds {
		ds[i] = queue.NewDelivery(d.Msg, d.Attempt, termRecorder{d, q})
		ds[i].Enqueued = q.enqueued(d.Enqueued)
	}
	return ds, err
}

func (q *agedQueue) termReasons() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.reasons...)
}

// termRecorder settles the delivery it wraps, recording a Term's reason.
type termRecorder struct {
	*queue.Delivery
	q *agedQueue
}

func (d termRecorder) Term(ctx context.Context, reason string) error {
	d.q.mu.Lock()
	d.q.reasons = append(d.q.reasons, reason)
	d.q.mu.Unlock()
	return d.Delivery.Term(ctx, reason)
}

// TestOutageDoesNotSpendAttempts: a handler failing because a dependency
// is down (apiary.KindUnavailable) is retried past MaxAttempts while its
// message is younger than OutageGiveUp; after that, or when the queue does
// not say when the message was enqueued, it is given up with its attempts,
// the reason naming the outage. Any other error still ends the job at
// MaxAttempts, also after outages took it past them.
func TestOutageDoesNotSpendAttempts(t *testing.T) {
	t.Parallel()
	outage := apiary.E(apiary.KindUnavailable, "vectors: search: milvus unavailable")
	boom := errors.New("boom")
	tests := []struct {
		name string
		// enqueued rewrites when the queue says a message was enqueued.
		enqueued func(time.Time) time.Time
		// handle returns the result of the given attempt.
		handle       func(attempt int) error
		wantAttempts []int
		wantReason   string // of the give-up; none when empty
	}{
		{
			name: "an outage longer than the attempts is waited out",
			handle: func(a int) error {
				if a <= 4 {
					return outage
				}
				return nil
			},
			wantAttempts: []int{1, 2, 3, 4, 5},
		},
		{
			name: "an outage hint past the attempts is waited out too",
			handle: func(a int) error {
				if a <= 3 {
					return apiary.RetryAfter(boom, 30*time.Millisecond)
				}
				return nil
			},
			wantAttempts: []int{1, 2, 3, 4},
		},
		{
			name:         "an outage past OutageGiveUp ends the job",
			enqueued:     olderBy(2 * time.Hour),
			handle:       func(int) error { return outage },
			wantAttempts: []int{1, 2},
			wantReason:   "gave up after 2 attempts: a dependency was still unavailable 2h0m",
		},
		{
			name:         "an outage with no enqueue time spends attempts",
			enqueued:     func(time.Time) time.Time { return time.Time{} },
			handle:       func(int) error { return outage },
			wantAttempts: []int{1, 2},
			wantReason:   "gave up after 2 attempts: vectors: search: milvus unavailable",
		},
		{
			name:         "another error ends the job at MaxAttempts",
			handle:       func(int) error { return boom },
			wantAttempts: []int{1, 2},
			wantReason:   "gave up after 2 attempts: boom",
		},
		{
			name: "another error after outages ends the job at once",
			handle: func(a int) error {
				if a <= 3 {
					return outage
				}
				return boom
			},
			wantAttempts: []int{1, 2, 3, 4},
			wantReason:   "gave up after 4 attempts: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newPoolEnv(t, time.Second)
			aq := &agedQueue{Queue: e.q, enqueued: tt.enqueued}
			if aq.enqueued == nil {
				aq.enqueued = olderBy(0)
			}
			var seen attempts
			var gu giveUps
			p, err := workers.NewPool(aq, workers.HandlerFunc(func(_ context.Context, d *queue.Delivery) error {
				seen.add(d.Attempt)
				return tt.handle(d.Attempt)
			}), workers.PoolConfig{
				MaxAttempts:  2,
				OutageGiveUp: time.Hour,
				BackoffBase:  10 * time.Millisecond,
				BackoffMax:   40 * time.Millisecond,
				OnGiveUp:     gu.hook,
				Logger:       quiet(),
			})
			require.NoError(t, err)
			e.enqueue(t)
			runPool(t, p)

			e.requireDrained(t)
			require.Equal(t, tt.wantAttempts, seen.list())
			if tt.wantReason == "" {
				require.Zero(t, gu.count(), "the job was not given up")
				require.Empty(t, aq.termReasons())
				return
			}
			require.Equal(t, 1, gu.count(), "OnGiveUp runs exactly once")
			reasons := aq.termReasons()
			require.Len(t, reasons, 1)
			require.Contains(t, reasons[0], tt.wantReason)
		})
	}
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	t.Parallel()
	const secret = "document text that must never be logged"
	e := newPoolEnv(t, time.Second)
	var logs testutil.Buffer
	var seen attempts
	var gu giveUps
	p, err := workers.NewPool(e.q, workers.HandlerFunc(func(_ context.Context, d *queue.Delivery) error {
		seen.add(d.Attempt)
		if d.Attempt == 1 {
			panic(secret)
		}
		return nil
	}), workers.PoolConfig{
		BackoffBase: 20 * time.Millisecond,
		OnGiveUp:    gu.hook,
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	e.enqueue(t)
	runPool(t, p)

	e.requireDrained(t)
	require.Equal(t, []int{1, 2}, seen.list(), "a panic is an ordinary, retried failure")
	require.Zero(t, gu.count())
	require.Contains(t, logs.String(), "handler panicked")
	require.Contains(t, logs.String(), "pool_test.go", "the stack is logged")
	require.NotContains(t, logs.String(), secret, "the panic value is not logged")
}

// heldQueue wraps a queue and tracks deliveries received but not yet
// settled, to check that the pool never holds more than it can run.
type heldQueue struct {
	queue.Queue
	held, maxHeld atomic.Int64
}

func (q *heldQueue) Receive(ctx context.Context, max int) ([]*queue.Delivery, error) {
	ds, err := q.Queue.Receive(ctx, max)
	n := q.held.Add(int64(len(ds)))
	for {
		m := q.maxHeld.Load()
		if n <= m || q.maxHeld.CompareAndSwap(m, n) {
			break
		}
	}
	for i, d := range ds {
		ds[i] = queue.NewDelivery(d.Msg, d.Attempt, heldDelivery{d, q})
		ds[i].Enqueued = d.Enqueued
	}
	return ds, err
}

// heldDelivery settles the delivery it wraps, counting it off q's held.
type heldDelivery struct {
	*queue.Delivery
	q *heldQueue
}

func (d heldDelivery) Ack(ctx context.Context) error {
	d.q.held.Add(-1)
	return d.Delivery.Ack(ctx)
}

func (d heldDelivery) Nack(ctx context.Context, delay time.Duration) error {
	d.q.held.Add(-1)
	return d.Delivery.Nack(ctx, delay)
}

func (d heldDelivery) Term(ctx context.Context, reason string) error {
	d.q.held.Add(-1)
	return d.Delivery.Term(ctx, reason)
}

func TestConcurrencyNeverExceedsLimit(t *testing.T) {
	t.Parallel()
	const limit, jobs = 3, 10
	e := newPoolEnv(t, 2*time.Second)
	hq := &heldQueue{Queue: e.q}
	var running, maxRunning, finished atomic.Int64
	release := make(chan struct{})
	p, err := workers.NewPool(hq, workers.HandlerFunc(func(ctx context.Context, _ *queue.Delivery) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		finished.Add(1)
		return nil
	}), workers.PoolConfig{Concurrency: limit, Logger: quiet(),
		// One account with every slot: nothing is held for fairness.
		Fair: workers.FairConfig{MaxPerAccount: limit}})
	require.NoError(t, err)
	for range jobs {
		e.enqueue(t)
	}
	runPool(t, p)

	require.Eventually(t, func() bool { return running.Load() == limit }, waitFor, time.Millisecond)
	// With every slot busy the pool must not take more work.
	require.Never(t, func() bool { return running.Load() > limit || hq.held.Load() > limit },
		500*time.Millisecond, 10*time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return finished.Load() == jobs }, waitFor, time.Millisecond)
	e.requireDrained(t)
	require.EqualValues(t, limit, maxRunning.Load(), "handlers running at once")
	require.LessOrEqual(t, hq.maxHeld.Load(), int64(limit), "deliveries held at once")
}

func TestLongHandlerKeepsItsLease(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	e := newPoolEnv(t, lease)
	var calls atomic.Int64
	// Extending every tenth of the lease (not the default third) leaves
	// 1.8 s for one extension to land, not 1.3 s: the test is about the
	// extensions keeping the delivery, not about a loaded machine's delays.
	p, err := workers.NewPool(e.q, workers.HandlerFunc(func(ctx context.Context, _ *queue.Delivery) error {
		calls.Add(1)
		// Work for three leases.
		select {
		case <-time.After(3 * lease):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}), workers.PoolConfig{Concurrency: 2, ExtendEvery: lease / 10, Logger: quiet()})
	require.NoError(t, err)
	e.enqueue(t)
	runPool(t, p)

	e.requireDrained(t)
	require.EqualValues(t, 1, calls.Load(), "an extended delivery must not be redelivered while it runs")
}

// blocking is a handler that reports when it starts and runs until released
// or canceled, recording its context's cause.
type blocking struct {
	started chan *queue.Delivery
	release chan struct{}
	mu      sync.Mutex
	cause   error
}

func newBlocking() *blocking {
	return &blocking{started: make(chan *queue.Delivery, 10), release: make(chan struct{})}
}

func (b *blocking) Handle(ctx context.Context, d *queue.Delivery) error {
	b.started <- d
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		b.cause = context.Cause(ctx)
		b.mu.Unlock()
		return ctx.Err()
	}
}

func (b *blocking) canceledBy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cause
}

func waitStarted(t *testing.T, b *blocking) *queue.Delivery {
	t.Helper()
	select {
	case d := <-b.started:
		return d
	case <-time.After(waitFor):
		require.FailNow(t, "handler did not start")
		return nil
	}
}

func TestSoftStopWaitsForRunningHandler(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2*time.Second)
	h := newBlocking()
	p, err := workers.NewPool(e.q, h, workers.PoolConfig{Concurrency: 1, Logger: quiet()})
	require.NoError(t, err)
	e.enqueue(t)
	e.enqueue(t) // never started: the only slot is busy, then the pool stops
	ran := runPool(t, p)
	waitStarted(t, h)

	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		require.FailNow(t, "Stop returned while a handler was running", "err: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(h.release)
	require.NoError(t, <-stopped)
	require.NoError(t, ran())
	require.NoError(t, h.canceledBy(), "a soft stop does not cancel handlers")
	require.Empty(t, h.started, "a stopping pool starts no new work")
	require.Eventually(t, func() bool { return e.queued(t) == 1 }, waitFor, 10*time.Millisecond,
		"the finished job is acked, the other one stays queued")
}

func TestHardStopCancelsAndHandsBack(t *testing.T) {
	t.Parallel()
	// A lease far longer than the test: the job can only come back this
	// quickly because the stopped pool handed it back.
	const lease = time.Minute
	e := newPoolEnv(t, lease)
	h := newBlocking()
	p, err := workers.NewPool(e.q, h, workers.PoolConfig{Concurrency: 1, Logger: quiet()})
	require.NoError(t, err)
	msg := e.enqueue(t)
	ran := runPool(t, p)
	first := waitStarted(t, h)
	require.Equal(t, 1, first.Attempt)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Stop(ctx), context.DeadlineExceeded)
	require.NoError(t, ran())
	require.ErrorIs(t, h.canceledBy(), workers.ErrHardStop)
	require.ErrorIs(t, h.canceledBy(), context.DeadlineExceeded, "the cause says why")

	// A new pool gets the job again, long before its lease would run out.
	var seen attempts
	var again atomic.Value
	p2, err := workers.NewPool(e.q, workers.HandlerFunc(func(_ context.Context, d *queue.Delivery) error {
		again.Store(d.Msg)
		seen.add(d.Attempt)
		return nil
	}), workers.PoolConfig{Logger: quiet()})
	require.NoError(t, err)
	runPool(t, p2)
	require.Eventually(t, func() bool { return len(seen.list()) == 1 }, waitFor, 10*time.Millisecond)
	require.Equal(t, []int{2}, seen.list())
	require.Equal(t, msg, again.Load())
	e.requireDrained(t)
}

func TestRunContextEndIsHardStop(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, time.Minute)
	h := newBlocking()
	p, err := workers.NewPool(e.q, h, workers.PoolConfig{Logger: quiet()})
	require.NoError(t, err)
	e.enqueue(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx) }()
	waitStarted(t, h)

	shutdown := errors.New("shutting down")
	cancel(shutdown)
	require.ErrorIs(t, <-ran, shutdown)
	require.ErrorIs(t, h.canceledBy(), shutdown)
	// Handed back at once, not after the one-minute lease. A pull the
	// pool had in flight as it stopped may have taken the message once
	// more and handed it back too: attempt 2 or later.
	require.Eventually(t, func() bool {
		ds, err := e.q.Receive(t.Context(), 1)
		return err == nil && len(ds) == 1 && ds[0].Attempt >= 2
	}, waitFor, time.Millisecond)
}

func TestStopBeforeRun(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, 2*time.Second)
	p, err := workers.NewPool(e.q, workers.HandlerFunc(func(context.Context, *queue.Delivery) error { return nil }),
		workers.PoolConfig{Logger: quiet()})
	require.NoError(t, err)
	require.NoError(t, p.Stop(t.Context()))
	require.NoError(t, p.Run(t.Context()), "Run after Stop returns at once")
}

// TestJobThatKillsItsWorkerIsGivenUp models a job whose earlier deliveries
// died with their processes (received, never settled): once it is delivered
// more often than it may be, the pool gives up without running it again.
// That is MaxAttempts once its message is older than OutageGiveUp; before,
// the earlier deliveries may have been retried on an outage, and it is
// MaxDeliveries.
func TestJobThatKillsItsWorkerIsGivenUp(t *testing.T) {
	t.Parallel()
	// Backoffs of an hour: a one-hour outage window holds two retries
	// past MaxAttempts.
	base := workers.PoolConfig{MaxAttempts: 2, OutageGiveUp: time.Hour, BackoffBase: time.Hour, BackoffMax: time.Hour}
	require.Equal(t, 4, base.MaxDeliveries())
	tests := []struct {
		name    string
		age     time.Duration
		crashes int
	}{
		{"past the outage window, after MaxAttempts", 2 * time.Hour, 2},
		{"within the outage window, after MaxDeliveries", 0, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newPoolEnv(t, time.Second)
			msg := e.enqueue(t)
			for want := 1; want <= tt.crashes; want++ {
				var ds []*queue.Delivery
				require.Eventually(t, func() bool {
					var err error
					ds, err = e.q.Receive(t.Context(), 1)
					return err == nil && len(ds) == 1
				}, waitFor, 10*time.Millisecond)
				require.Equal(t, want, ds[0].Attempt)
			}

			var ran atomic.Int32
			gaveUp := make(chan error, 1)
			cfg := base
			cfg.Logger = quiet()
			cfg.OnGiveUp = func(_ context.Context, d *queue.Delivery, err error) error {
				require.Equal(t, msg, d.Msg)
				gaveUp <- err
				return nil
			}
			p, err := workers.NewPool(&agedQueue{Queue: e.q, enqueued: olderBy(tt.age)}, workers.HandlerFunc(func(context.Context, *queue.Delivery) error {
				ran.Add(1)
				return nil
			}), cfg)
			require.NoError(t, err)
			runPool(t, p)
			select {
			case err := <-gaveUp:
				require.True(t, apiary.IsPermanent(err))
			case <-time.After(waitFor):
				t.Fatal("the pool never gave up on the crash-looping job")
			}
			e.requireDrained(t)
			require.Zero(t, ran.Load(), "the handler is not run again")
		})
	}
}

// TestMaxDeliveries: past MaxAttempts, outage retries add as many
// deliveries as OutageGiveUp holds at the shortest jittered backoff (three
// quarters of BackoffBase·2^(n-1), at most of BackoffMax).
func TestMaxDeliveries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  workers.PoolConfig
		want int
	}{
		// 16 s, 32 s, 64 s, 128 s, 256 s (12 s … 192 s at their
		// shortest: 372 s), then 225 s at a time: 3228 s more, 15 of them.
		{"defaults", workers.PoolConfig{}, 5 + 5 + 15},
		{"one backoff holds the window", workers.PoolConfig{MaxAttempts: 1, OutageGiveUp: time.Minute, BackoffBase: time.Hour, BackoffMax: time.Hour}, 2},
		{"capped at once", workers.PoolConfig{MaxAttempts: 3, OutageGiveUp: time.Hour, BackoffBase: 4 * time.Minute, BackoffMax: 4 * time.Minute}, 3 + 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, tt.cfg.MaxDeliveries())
		})
	}
}

// nackQueue wraps a queue: the delays its deliveries are handed back with
// are sent on nacks.
type nackQueue struct {
	queue.Queue
	nacks chan time.Duration
}

func (q *nackQueue) Receive(ctx context.Context, max int) ([]*queue.Delivery, error) {
	ds, err := q.Queue.Receive(ctx, max)
	for i, d := range ds {
		ds[i] = queue.NewDelivery(d.Msg, d.Attempt, nackRecorder{d, q.nacks})
		ds[i].Enqueued = d.Enqueued
	}
	return ds, err
}

type nackRecorder struct {
	*queue.Delivery
	nacks chan time.Duration
}

func (d nackRecorder) Nack(ctx context.Context, delay time.Duration) error {
	select {
	case d.nacks <- delay:
	default: // only the first ones are looked at
	}
	return d.Delivery.Nack(ctx, delay)
}

// TestOutageRetryStaysInItsWindow: past MaxAttempts, an outage whose hint
// reaches past OutageGiveUp (a Retry-After of a day from the embedder) is
// retried by the end of the job's outage window, not after the hint: the
// job is not held queued beyond its outage budget.
func TestOutageRetryStaysInItsWindow(t *testing.T) {
	t.Parallel()
	e := newPoolEnv(t, time.Second)
	q := &nackQueue{Queue: e.q, nacks: make(chan time.Duration, 8)}
	throttled := apiary.RetryAfter(apiary.E(apiary.KindUnavailable, "embed: throttled"), 24*time.Hour)
	p, err := workers.NewPool(q, workers.HandlerFunc(func(context.Context, *queue.Delivery) error {
		return throttled
	}), workers.PoolConfig{
		MaxAttempts:  1,
		OutageGiveUp: time.Minute,
		BackoffBase:  10 * time.Millisecond,
		BackoffMax:   40 * time.Millisecond,
		Logger:       quiet(),
	})
	require.NoError(t, err)
	e.enqueue(t)
	runPool(t, p)
	select {
	case delay := <-q.nacks:
		require.LessOrEqual(t, delay, time.Minute, "retried after the outage window closed")
	case <-time.After(waitFor):
		require.FailNow(t, "the job was not handed back")
	}
}
